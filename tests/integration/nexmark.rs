//! The Nexmark generator through Kafka: `sql/nexmark/setup.sql` loads a topic, and the views and
//! q0–q2 over Kafka give what the same queries give over the generator directly.

use super::common::{lines, run};

fn setup_sql(events: u64) -> String {
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sql/nexmark/setup.sql"
    ))
    .unwrap();
    assert!(sql.contains("nexmark(50000, 10000, 0)"));
    sql.replace(
        "nexmark(50000, 10000, 0)",
        &format!("nexmark({events}, 10000, 0)"),
    )
}

fn query(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/sql/nexmark/{name}.sql",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn nexmark_queries_over_kafka_match_the_generator() {
    let engine = weir::Engine::builder()
        .embedded_kafka(true)
        .build()
        .unwrap();
    run(&engine, &setup_sql(20_000)).await;
    let counts = run(
        &engine,
        "SELECT event_type, count(*) FROM nexmark_events GROUP BY event_type ORDER BY event_type",
    )
    .await;
    assert_eq!(lines(&counts.batches), vec!["0|400", "1|1200", "2|18400"]);

    // The same queries over the generator itself, with the views over it instead of Kafka.
    let direct = weir::Engine::builder().build().unwrap();
    let views = setup_sql(20_000);
    let views = &views[views.find("CREATE VIEW person").unwrap()..];
    run(
        &direct,
        &format!("CREATE VIEW nexmark_events AS SELECT * FROM nexmark(20000, 10000, 0); {views}"),
    )
    .await;
    for name in ["q0", "q1", "q2"] {
        let over_kafka = run(&engine, &query(name)).await;
        let over_generator = run(&direct, &query(name)).await;
        assert_eq!(
            lines(&over_kafka.batches),
            lines(&over_generator.batches),
            "{name}"
        );
        assert_eq!(
            over_kafka.kafka.records_fetched, 20_000,
            "{name} reads the topic"
        );
    }
    let people = run(
        &engine,
        "SELECT min(id), max(id), count(DISTINCT state) <= 6 FROM person",
    )
    .await;
    assert_eq!(lines(&people.batches), vec!["1000|1399|true"]);
    let e = super::common::fails(&engine, "SELECT * FROM nexmark(-1)").await;
    assert!(e.contains("argument 'events' of nexmark"), "{e}");
    let keyed = run(
        &engine,
        "SELECT count(DISTINCT key), count(*) FROM datagen(1000, 7, 3)",
    )
    .await;
    assert_eq!(lines(&keyed.batches), vec!["7|1000"]);
}

/// `file` of sql/nexmark/ without its CREATE TOPIC (the test broker's topic is made directly).
fn without_create_topic(file: &str) -> String {
    query(file)
        .lines()
        .filter(|l| !l.starts_with("CREATE TOPIC"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_q5_and_q7_equal_their_batch_evaluation() {
    let mut broker = super::common::Broker::for_test();
    let topic = super::common::unique("nexmark");
    broker.create_topic(&topic, 4);
    // 6000 events at 200 per second: 30 s of event time.
    let batch = broker.engine();
    let setup = without_create_topic("setup").replace("'nexmark_events'", &format!("'{topic}'"));
    assert!(setup.contains("nexmark(50000, 10000, 0)"));
    run(
        &batch,
        &setup.replace("nexmark(50000, 10000, 0)", "nexmark(6000, 200, 0)"),
    )
    .await;

    let stream = broker.engine();
    let setup_stream =
        without_create_topic("setup-stream").replace("'nexmark_events'", &format!("'{topic}'"));
    assert!(setup_stream.contains("'format' 'json',"));
    run(
        &stream,
        &setup_stream.replace(
            "'format' 'json',",
            "'format' 'json', 'maxOffsetsPerTrigger' '700',",
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    run(
        &stream,
        &format!(
            "CREATE EXTERNAL TABLE hot (auction BIGINT, num BIGINT, window_end TIMESTAMP) STORED AS MEMORY;
             CREATE EXTERNAL TABLE top (auction BIGINT, price BIGINT, bidder BIGINT, \"dateTime\" TIMESTAMP, window_end TIMESTAMP) STORED AS MEMORY;
             CREATE STREAMING QUERY q5 WITH ('checkpoint' '{cp}/q5', 'trigger' 'availableNow') AS INSERT INTO hot {q5};
             CREATE STREAMING QUERY q7 WITH ('checkpoint' '{cp}/q7', 'trigger' 'availableNow') AS INSERT INTO top {q7};",
            cp = dir.path().display(),
            q5 = query("q5"),
            q7 = query("q7"),
        ),
    )
    .await;
    // q5 has a row per hot auction and sliding window, q7 one per tumbling window (or more on
    // ties).
    for (name, sink, at_least) in [("q5", "hot", 10), ("q7", "top", 2)] {
        let handle = stream.query(name).unwrap();
        handle.await_termination().await.unwrap();
        let progress = handle.recent_progress();
        assert!(progress.len() >= 5, "{name}: {} batches", progress.len());
        let late: u64 = progress.iter().map(|p| p.event_time.late_rows).sum();
        assert_eq!(late, 0, "{name}: events arrive in order per partition");
        let watermark = handle
            .progress()
            .and_then(|p| p.event_time.next_watermark_ms)
            .unwrap();
        let mut streamed = lines(&run(&stream, &format!("SELECT * FROM {sink}")).await.batches);
        streamed.sort();
        let mut expected = lines(
            &run(
                &batch,
                &format!(
                    "SELECT * FROM ({}) WHERE window_end <= to_timestamp_millis({watermark})",
                    query(name)
                ),
            )
            .await
            .batches,
        );
        expected.sort();
        assert!(expected.len() >= at_least, "{name}: {expected:?}");
        assert_eq!(streamed, expected, "{name}");
    }
}
