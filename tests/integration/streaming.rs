//! Streaming queries: triggers, rate options, checkpoints and restarts, sinks, control.

use std::time::Duration;

use super::common::{
    Broker, Record, admin, eventually, fails, lines, produce, produce_json, rows_read, run, unique,
};
use weir::Engine;
use weir::stream::{QueryStatus, Trigger};

/// A source table `src` over `topic` (JSON values with `n`), a memory table `out`.
async fn tables(engine: &Engine, topic: &str, source_options: &str) {
    run(
        engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json' {source_options});
             CREATE EXTERNAL TABLE out (n BIGINT, p INT, o BIGINT) STORED AS MEMORY"
        ),
    )
    .await;
}

fn json_values(partitions: i32, per_partition: usize, from: usize) -> Vec<(i32, String)> {
    (0..partitions)
        .flat_map(|p| {
            (0..per_partition)
                .map(move |i| (p, format!("{{\"n\": {}}}", from + p as usize * 100_000 + i)))
        })
        .collect()
}

/// An in-process broker with a topic of `partitions` partitions holding `per_partition` JSON
/// records each, and an engine using it.
fn json_topic(prefix: &str, partitions: i32, per_partition: usize) -> (Broker, String, Engine) {
    let mut broker = Broker::for_test();
    let topic = unique(prefix);
    broker.create_topic(&topic, partitions);
    produce_json(
        &broker.bootstrap(),
        &topic,
        &json_values(partitions, per_partition, 0),
    );
    let engine = broker.engine();
    (broker, topic, engine)
}

const QUERY: &str = "INSERT INTO out SELECT n, _partition, _offset FROM src";

fn checkpoint(dir: &tempfile::TempDir) -> String {
    dir.path().join("cp").display().to_string()
}

#[tokio::test]
async fn available_now_drains_in_rate_limited_batches_and_stops() {
    let (_broker, topic, engine) = json_topic("avail", 3, 100);
    tables(&engine, &topic, ", 'maxOffsetsPerTrigger' '70'").await;
    let dir = tempfile::tempdir().unwrap();
    let result = run(
        &engine,
        &format!("CREATE STREAMING QUERY drain WITH ('trigger' 'availableNow', 'checkpoint' '{}') AS {QUERY}", checkpoint(&dir)),
    )
    .await;
    assert!(
        result
            .message
            .unwrap()
            .contains("Started streaming query 'drain'")
    );
    let query = engine.query("drain").unwrap();
    query.await_termination().await.unwrap();
    assert_eq!(query.status(), QueryStatus::Finished);
    let progress = query.recent_progress();
    let sizes: Vec<u64> = progress.iter().map(|p| p.num_input_rows).collect();
    assert_eq!(sizes.iter().sum::<u64>(), 300);
    assert!(
        sizes.iter().all(|s| *s <= 70),
        "maxOffsetsPerTrigger caps every batch: {sizes:?}"
    );
    assert_eq!(
        sizes.len(),
        5,
        "300 offsets in batches of at most 70: {sizes:?}"
    );
    let last = progress.last().unwrap();
    assert_eq!(last.total_lag(), 0);
    assert!(
        last.sources[0]
            .partitions
            .iter()
            .all(|p| p.end_offset == 100 && p.latest_offset == 100)
    );
    let result = run(&engine, "SELECT count(*), count(DISTINCT (p, o)) FROM out").await;
    assert_eq!(lines(&result.batches), vec!["300|300"]);
}

#[tokio::test]
async fn once_ignores_the_read_limits_and_available_now_applies_them() {
    // Spark's Trigger.Once reads everything available in one batch; AvailableNow (and every
    // other trigger) keeps to maxOffsetsPerTrigger and its per-partition cap.
    let (_broker, topic, engine) = json_topic("cap", 2, 50);
    tables(
        &engine,
        &topic,
        ", 'maxOffsetsPerPartitionPerTrigger' '20', 'maxOffsetsPerTrigger' '10'",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cp = checkpoint(&dir);
    run(
        &engine,
        &format!(
            "CREATE STREAMING QUERY one WITH ('trigger' 'once', 'checkpoint' '{cp}') AS {QUERY}"
        ),
    )
    .await;
    let query = engine.query("one").unwrap();
    query.await_termination().await.unwrap();
    let progress = query.recent_progress();
    assert_eq!(progress.len(), 1, "once runs one batch");
    assert_eq!(
        progress[0].num_input_rows, 100,
        "and reads everything there is"
    );
    assert_eq!(progress[0].total_lag(), 0);

    let dir = tempfile::tempdir().unwrap();
    let cp = checkpoint(&dir);
    run(
        &engine,
        "CREATE EXTERNAL TABLE capped (n BIGINT, p INT, o BIGINT) STORED AS MEMORY",
    )
    .await;
    run(
        &engine,
        &format!(
            "CREATE STREAMING QUERY drain WITH ('trigger' 'availableNow', 'checkpoint' '{cp}') \
             AS INSERT INTO capped SELECT n, _partition, _offset FROM src"
        ),
    )
    .await;
    let query = engine.query("drain").unwrap();
    query.await_termination().await.unwrap();
    let sizes: Vec<u64> = query
        .recent_progress()
        .iter()
        .map(|p| p.num_input_rows)
        .collect();
    assert!(sizes.iter().all(|s| *s <= 10), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<u64>(), 100, "{sizes:?}");
}

#[tokio::test]
async fn the_default_trigger_follows_new_data_and_stops_cleanly() {
    let mut broker = Broker::for_test();
    let topic = unique("live");
    broker.create_topic(&topic, 2);
    let engine = broker.engine();
    tables(&engine, &topic, "").await;
    let dir = tempfile::tempdir().unwrap();
    let cp = checkpoint(&dir);
    run(
        &engine,
        &format!("SET weir.checkpoint_root = '{}'", dir.path().display()),
    )
    .await;
    let result = run(&engine, QUERY).await;
    assert!(
        result
            .message
            .unwrap()
            .contains("Started streaming query 'out'"),
        "a streaming INSERT starts a query named after its sink"
    );
    let query = engine.query("out").unwrap();
    produce_json(&broker.bootstrap(), &topic, &json_values(2, 10, 0));
    eventually("the first 20 rows", || rows_read(&query) == 20).await;
    produce_json(&broker.bootstrap(), &topic, &json_values(2, 5, 1000));
    eventually("5 more rows per partition", || rows_read(&query) == 30).await;
    let shown = run(&engine, "SHOW QUERIES").await;
    let row = &lines(&shown.batches)[0];
    assert!(row.starts_with("out|running|"), "{row}");
    // The same, and more, as tables.
    let sql = "SELECT name, status, error IS NULL, batch IS NOT NULL, lag FROM weir.queries";
    let queries = run(&engine, sql).await;
    assert_eq!(lines(&queries.batches), vec!["out|running|true|true|0"]);
    let sql =
        "SELECT sum(input_rows), min(total_ms) > 0 FROM weir.query_progress WHERE query = 'out'";
    let progress = run(&engine, sql).await;
    assert_eq!(lines(&progress.batches), vec!["30|true"]);
    let sql = "SELECT query, topic, partition, committed_end, latest, lag FROM weir.kafka_lag ORDER BY partition";
    let lag = run(&engine, sql).await;
    assert_eq!(
        lines(&lag.batches),
        vec![
            format!("out|{topic}|0|15|15|0"),
            format!("out|{topic}|1|15|15|0")
        ]
    );
    let described = run(&engine, "DESCRIBE QUERY out").await.message.unwrap();
    assert!(
        described.contains("\"numInputRows\"") && described.contains("\"lag\": 0"),
        "{described}"
    );
    let stopped = run(&engine, "STOP QUERY out").await.message.unwrap();
    assert!(
        stopped.starts_with("Stopped streaming query 'out' after batch"),
        "{stopped}"
    );
    assert_eq!(query.status(), QueryStatus::Stopped);
    // A clean stop leaves no batch half done: every planned batch is committed.
    let count = |d: &str| {
        std::fs::read_dir(
            std::path::Path::new(&cp)
                .parent()
                .unwrap()
                .join("out")
                .join(d),
        )
        .unwrap()
        .count()
    };
    assert_eq!(count("offsets"), count("commits"));
    let result = run(&engine, "SELECT count(*) FROM out").await;
    assert_eq!(lines(&result.batches), vec!["30"]);
    let e = fails(&engine, "STOP QUERY nope").await;
    assert!(e.contains("no streaming query named 'nope'"), "{e}");
}

#[tokio::test]
async fn processing_time_spaces_batches() {
    let (_broker, topic, engine) = json_topic("interval", 1, 30);
    tables(&engine, &topic, ", 'maxOffsetsPerTrigger' '10'").await;
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "CREATE STREAMING QUERY tick WITH ('trigger' '400 ms', 'checkpoint' '{}') AS {QUERY}",
            checkpoint(&dir)
        ),
    )
    .await;
    let query = engine.query("tick").unwrap();
    eventually("three batches", || query.recent_progress().len() == 3).await;
    query.stop().await.unwrap();
    let starts: Vec<i64> = query
        .recent_progress()
        .iter()
        .map(|p| p.timestamp_ms)
        .collect();
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= 390,
            "batches start an interval apart: {starts:?}"
        );
    }
}

#[tokio::test]
async fn min_offsets_waits_for_data_or_the_delay() {
    let (broker, topic, engine) = json_topic("min", 1, 5);
    tables(
        &engine,
        &topic,
        ", 'minOffsetsPerTrigger' '20', 'maxTriggerDelay' '60s'",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "CREATE STREAMING QUERY patient WITH ('checkpoint' '{}') AS {QUERY}",
            checkpoint(&dir)
        ),
    )
    .await;
    let query = engine.query("patient").unwrap();
    eventually(
        "a first batch (nothing ran before, so the delay has passed)",
        || query.recent_progress().len() == 1,
    )
    .await;
    produce_json(&broker.bootstrap(), &topic, &json_values(1, 10, 100));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        query.recent_progress().len(),
        1,
        "10 offsets are fewer than minOffsetsPerTrigger"
    );
    produce_json(&broker.bootstrap(), &topic, &json_values(1, 10, 200));
    eventually("a batch once 20 offsets wait", || {
        query.recent_progress().len() == 2
    })
    .await;
    assert_eq!(query.recent_progress()[1].num_input_rows, 20);
    query.stop().await.unwrap();
}

#[tokio::test]
async fn new_topics_matching_a_pattern_are_read_from_earliest() {
    let mut broker = Broker::for_test();
    let prefix = unique("pattern");
    broker.create_topic(&format!("{prefix}.a"), 1);
    produce_json(
        &broker.bootstrap(),
        &format!("{prefix}.a"),
        &json_values(1, 4, 0),
    );
    let engine = broker.engine();
    let escaped: String = prefix
        .chars()
        .flat_map(|c| {
            if c.is_alphanumeric() {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribePattern' '{escaped}\\..*', 'format' 'json');
             CREATE EXTERNAL TABLE out (n BIGINT, t VARCHAR) STORED AS MEMORY"
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    run(&engine, &format!("CREATE STREAMING QUERY grow WITH ('checkpoint' '{}') AS INSERT INTO out SELECT n, _topic FROM src", checkpoint(&dir))).await;
    let query = engine.query("grow").unwrap();
    eventually("the first topic", || rows_read(&query) == 4).await;
    broker.create_topic(&format!("{prefix}.b"), 2);
    produce_json(
        &broker.bootstrap(),
        &format!("{prefix}.b"),
        &json_values(2, 3, 0),
    );
    eventually("the new topic", || rows_read(&query) == 10).await;
    query.stop().await.unwrap();
    let result = run(&engine, "SELECT t, count(*) FROM out GROUP BY t ORDER BY t").await;
    assert_eq!(
        lines(&result.batches),
        vec![format!("{prefix}.a|4"), format!("{prefix}.b|6")]
    );
}

#[tokio::test]
async fn lost_offsets_fail_the_query_or_are_skipped_and_counted() {
    for fail_on_data_loss in [true, false] {
        let mut broker = Broker::for_test();
        let topic = unique("loss");
        broker.create_topic(&topic, 1);
        produce_json(&broker.bootstrap(), &topic, &json_values(1, 3, 0));
        let engine = broker.engine();
        tables(
            &engine,
            &topic,
            &format!(", 'failOnDataLoss' '{fail_on_data_loss}'"),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let cp = checkpoint(&dir);
        let create = format!(
            "CREATE STREAMING QUERY lossy WITH ('trigger' 'availableNow', 'checkpoint' '{cp}') AS {QUERY}"
        );
        run(&engine, &create).await;
        engine
            .query("lossy")
            .unwrap()
            .await_termination()
            .await
            .unwrap();
        let expected_loss = if broker.is_real() {
            // While the query is down, 10 records arrive and the first 5 are deleted.
            produce_json(&broker.bootstrap(), &topic, &json_values(1, 10, 100));
            admin::delete_records(&broker.bootstrap(), &topic, 0, 8);
            5
        } else {
            // While the query is down, 7 MiB arrive and push unread records out of the mock's
            // 5 MiB.
            let big = format!("{{\"n\": 1, \"pad\": \"{}\"}}", "x".repeat(64 * 1024));
            let records: Vec<Record<'_>> = (0..112).map(|_| Record::value(0, &big)).collect();
            produce(&broker.bootstrap(), &topic, &records);
            0
        };
        run(&engine, &create).await;
        let query = engine.query("lossy").unwrap();
        let outcome = query.await_termination().await;
        if fail_on_data_loss {
            let e = outcome.unwrap_err().to_string();
            assert!(
                e.contains("data loss: offsets 3 to") && e.contains("failOnDataLoss"),
                "{e}"
            );
        } else {
            outcome.unwrap();
            let progress = query.recent_progress();
            let lost: i64 = progress
                .iter()
                .flat_map(|p| &p.sources)
                .map(|s| s.lost_offsets)
                .sum();
            assert!(lost > 0, "lost offsets are counted in progress");
            if expected_loss > 0 {
                assert_eq!(lost, expected_loss);
            }
            let read: u64 = progress.iter().map(|p| p.num_input_rows).sum();
            let written = if broker.is_real() { 10 } else { 112 };
            assert_eq!(read as i64 + lost, written);
        }
    }
}

#[tokio::test]
async fn foreign_and_corrupt_checkpoints_are_refused() {
    let (_broker, topic, engine) = json_topic("foreign", 1, 3);
    tables(&engine, &topic, "").await;
    let other = unique("other");
    run(&engine, &format!("CREATE EXTERNAL TABLE src2 (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{other}', 'format' 'json')")).await;
    let dir = tempfile::tempdir().unwrap();
    let cp = checkpoint(&dir);
    run(&engine, &format!("CREATE STREAMING QUERY a WITH ('trigger' 'availableNow', 'checkpoint' '{cp}') AS {QUERY}")).await;
    engine
        .query("a")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    let e = fails(&engine, &format!("CREATE STREAMING QUERY b WITH ('checkpoint' '{cp}') AS INSERT INTO out SELECT n, 0 AS p, 1 AS o FROM src2")).await;
    assert!(
        e.contains("belongs to query 'a' over src: subscribe")
            && e.contains("another checkpoint location"),
        "{e}"
    );
    std::fs::write(dir.path().join("cp/offsets/0"), "{\"batchId\": 0, \"sour").unwrap();
    let e = fails(
        &engine,
        &format!("CREATE STREAMING QUERY a WITH ('checkpoint' '{cp}') AS {QUERY}"),
    )
    .await;
    assert!(
        e.contains("offsets/0 is not a valid weir checkpoint file"),
        "{e}"
    );
    let e = fails(
        &engine,
        &format!(
            "CREATE STREAMING QUERY c WITH ('checkpoint' '{cp}2', 'tigger' 'once') AS {QUERY}"
        ),
    )
    .await;
    assert!(e.contains("unknown streaming query option 'tigger'"), "{e}");
    let e = fails(
        &engine,
        &format!(
            "CREATE STREAMING QUERY c WITH ('checkpoint' '{cp}3', 'trigger' 'sometimes') AS {QUERY}"
        ),
    )
    .await;
    assert!(e.contains("trigger 'sometimes' is not one of"), "{e}");
    let e = fails(
        &engine,
        "CREATE STREAMING QUERY d AS INSERT INTO out SELECT n, 0 AS p, 1 AS o FROM src",
    )
    .await;
    assert!(e.contains("needs a checkpoint location"), "{e}");
    let e = fails(
        &engine,
        &format!(
            "CREATE STREAMING QUERY e WITH ('checkpoint' '{cp}4') AS INSERT INTO out SELECT 1, 2, 3"
        ),
    )
    .await;
    assert!(e.contains("reads no Kafka stream"), "{e}");
    run(
        &engine,
        &format!("CREATE EXTERNAL TABLE dest (value VARCHAR) STORED AS CSV LOCATION '{cp}-csv/'"),
    )
    .await;
    let e = fails(&engine, &format!("CREATE STREAMING QUERY f WITH ('checkpoint' '{cp}5') AS INSERT INTO dest (value) SELECT CAST(n AS VARCHAR) FROM src")).await;
    assert!(
        e.contains(
            "table 'dest' cannot take a streaming query's output: streaming sinks are Kafka \
             tables, JDBC tables, Parquet tables with declared columns, Delta tables, MEMORY \
             tables, CONSOLE tables"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn checkpoints_in_memory_and_file_urls_and_group_commits() {
    let (broker, topic, engine) = json_topic("stores", 2, 6);
    tables(&engine, &topic, "").await;
    let dir = tempfile::tempdir().unwrap();
    for (name, cp) in [
        ("mem", format!("memory://{}/cp", unique("m"))),
        ("file", format!("file://{}/cp", dir.path().display())),
    ] {
        run(
            &engine,
            &format!("CREATE STREAMING QUERY {name} WITH ('trigger' 'availableNow', 'checkpoint' '{cp}', 'commitOffsetsToGroup' 'true') AS {QUERY}"),
        )
        .await;
        engine
            .query(name)
            .unwrap()
            .await_termination()
            .await
            .unwrap();
        // A second run on the same checkpoint finds nothing new.
        run(&engine, &format!("CREATE STREAMING QUERY {name} WITH ('trigger' 'availableNow', 'checkpoint' '{cp}') AS {QUERY}")).await;
        let again = engine.query(name).unwrap();
        again.await_termination().await.unwrap();
        assert!(
            again.recent_progress().is_empty(),
            "{name}: nothing to read after a restart"
        );
        assert_eq!(
            committed_offsets(&broker.bootstrap(), name, &topic, 2),
            vec![6, 6],
            "{name}: group offsets"
        );
    }
    let result = run(&engine, "SELECT count(*) FROM out").await;
    assert_eq!(
        lines(&result.batches),
        vec!["12"],
        "each query wrote its 12 rows in its own batches 0.."
    );
}

fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

#[tokio::test]
async fn console_sink_and_trigger_parsing() {
    let (_broker, topic, engine) = super::common::filled_topic("console", 1, 2);
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE raw STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}');
             CREATE EXTERNAL TABLE screen (v VARCHAR) STORED AS CONSOLE;
             SET weir.trigger = 'once';
             CREATE STREAMING QUERY show WITH ('checkpoint' '{}') AS INSERT INTO screen SELECT CAST(value AS VARCHAR) FROM raw",
            checkpoint(&dir)
        ),
    )
    .await;
    let query = engine.query("show").unwrap();
    query.await_termination().await.unwrap();
    assert_eq!(query.recent_progress()[0].num_output_rows, 2);
    assert_eq!(
        Trigger::parse("2 seconds").unwrap(),
        Trigger::ProcessingTime(Duration::from_secs(2))
    );
    let e = fails(&engine, "SET weir.trigger = 'whenever'").await;
    assert!(e.contains("is not one of"), "{e}");
}

#[tokio::test]
async fn parquet_sink_reads_back_only_committed_batches() {
    let (_broker, topic, engine) = json_topic("pq", 2, 25);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '20');
             CREATE EXTERNAL TABLE lake (n BIGINT, p INT, o BIGINT) STORED AS PARQUET LOCATION '{}' OPTIONS ('parquet.compression' 'zstd');
             CREATE STREAMING QUERY pq WITH ('trigger' 'availableNow', 'checkpoint' '{}/cp') AS INSERT INTO lake SELECT n, _partition, _offset FROM src",
            lake.display(),
            dir.path().display()
        ),
    )
    .await;
    engine
        .query("pq")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    let result = run(&engine, "SELECT count(*), count(DISTINCT (p, o)) FROM lake").await;
    assert_eq!(lines(&result.batches), vec!["50|50"]);
    // A file that no manifest lists (a batch that crashed before its commit) is not read.
    let committed = std::fs::read_dir(&lake)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("a committed file");
    std::fs::copy(
        &committed,
        lake.join("part-abandoned-000000000099-0000.parquet"),
    )
    .unwrap();
    let result = run(&engine, "SELECT count(*) FROM lake").await;
    assert_eq!(lines(&result.batches), vec!["50"]);
    // A plain INSERT adds a committed write of its own.
    run(&engine, "INSERT INTO lake VALUES (1, 9, 9)").await;
    let result = run(&engine, "SELECT count(*) FROM lake").await;
    assert_eq!(lines(&result.batches), vec!["51"]);
    let e = fails(&engine, &format!("CREATE EXTERNAL TABLE bad (n INT) STORED AS PARQUET LOCATION '{}' OPTIONS ('parquet.compression' 'rar')", lake.display())).await;
    assert!(
        e.contains("option 'parquet.compression' has the value 'rar'"),
        "{e}"
    );
}

#[tokio::test]
async fn an_instance_taken_over_stops_before_its_next_write() {
    let (broker, topic, engine) = json_topic("fenced", 1, 10);
    tables(&engine, &topic, "").await;
    let dir = tempfile::tempdir().unwrap();
    let cp = checkpoint(&dir);
    run(
        &engine,
        &format!("CREATE STREAMING QUERY f WITH ('checkpoint' '{cp}') AS {QUERY}"),
    )
    .await;
    let query = engine.query("f").unwrap();
    eventually("the first 10 rows", || rows_read(&query) == 10).await;
    // Another instance, on another host, presumed this one dead and took the checkpoint over.
    let locks = std::path::Path::new(&cp).join("lock");
    let epoch: u64 = std::fs::read_dir(&locks)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .max()
        .expect("a lock epoch");
    let held = std::fs::read_to_string(locks.join(epoch.to_string())).unwrap();
    let mut newer: serde_json::Value = serde_json::from_str(&held).unwrap();
    newer["epoch"] = (epoch + 1).into();
    newer["host"] = "another-host".into();
    std::fs::write(locks.join((epoch + 1).to_string()), newer.to_string()).unwrap();
    let batches = std::fs::read_dir(std::path::Path::new(&cp).join("offsets"))
        .unwrap()
        .count();

    produce_json(&broker.bootstrap(), &topic, &json_values(1, 10, 1000));
    let e = query.await_termination().await.unwrap_err().to_string();
    assert!(
        e.contains("took this query over") && e.contains("another-host"),
        "{e}"
    );
    let after = std::fs::read_dir(std::path::Path::new(&cp).join("offsets"))
        .unwrap()
        .count();
    assert_eq!(after, batches, "no batch planned after the takeover");
    let result = run(&engine, "SELECT count(*) FROM out").await;
    assert_eq!(lines(&result.batches), vec!["10"]);
}
