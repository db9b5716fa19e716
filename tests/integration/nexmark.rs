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
