//! Where a Spark user first touches weir, weir answers as Spark does: starting offsets resolved
//! once, records of one key in order, shared sinks, replays that send what the first attempt
//! computed, the queries Spark refuses, and the sink's column rules.

use std::collections::BTreeMap;

use weir::Engine;
use weir::kafka::partitioner::key_partition;

use super::common::{
    Broker, Record, eventually, fails, lines, produce, rows_read, run, spawn_run, unique,
};
use super::kafka_sink::read_topic;

fn produce_numbers(bootstrap: &str, topic: &str, partition: i32, numbers: std::ops::Range<u64>) {
    let values: Vec<String> = numbers.map(|n| format!("{{\"n\": {n}}}")).collect();
    let records: Vec<Record<'_>> = values.iter().map(|v| Record::value(partition, v)).collect();
    produce(bootstrap, topic, &records);
}

/// A broker with a new topic, and an engine on it.
fn topic(prefix: &str, partitions: i32) -> (Broker, String, Engine) {
    let mut broker = Broker::for_test();
    let topic = unique(prefix);
    broker.create_topic(&topic, partitions);
    let engine = broker.engine();
    (broker, topic, engine)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_starting_at_latest_reads_what_arrives_after_it_starts() {
    // Before: the first batch resolved start and end from the same latest offsets and, finding
    // nothing, resolved "latest" again on every try: 50 new records were never read.
    let (broker, topic, engine) = topic("latest", 2);
    produce_numbers(&broker.bootstrap(), &topic, 0, 0..30);
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp");
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'format' 'json');
             CREATE EXTERNAL TABLE out (n BIGINT) STORED AS MEMORY;
             CREATE STREAMING QUERY tail WITH ('checkpoint' '{}', 'trigger' 'processingTime 100 milliseconds')
               AS INSERT INTO out SELECT n FROM src",
            cp.display()
        ),
    )
    .await;
    let query = engine.query("tail").unwrap();
    // The start is in the checkpoint before any data is read.
    eventually("the recorded starts", || cp.join("sources").exists()).await;
    produce_numbers(&broker.bootstrap(), &topic, 1, 100..150);
    eventually("50 new records", || rows_read(&query) >= 50).await;
    query.stop().await.unwrap();
    let result = run(&engine, "SELECT count(*), min(n), max(n) FROM out").await;
    assert_eq!(
        lines(&result.batches),
        vec!["50|100|149"],
        "latest is the default for a stream: the 30 older records are not read"
    );
    let sources: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cp.join("sources")).unwrap()).unwrap();
    let starts: Vec<i64> = sources["sources"]["src"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(
        starts,
        vec![30, 0],
        "the latest offsets when the query first started"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_before_the_first_batch_starts_where_the_first_attempt_would_have() {
    let (broker, topic, engine) = topic("latest-restart", 1);
    produce_numbers(&broker.bootstrap(), &topic, 0, 0..10);
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp");
    let create = format!(
        "CREATE STREAMING QUERY tail WITH ('checkpoint' '{}', 'trigger' 'processingTime 100 milliseconds')
           AS INSERT INTO out SELECT n FROM src",
        cp.display()
    );
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'format' 'json', 'startingOffsets' 'latest');
             CREATE EXTERNAL TABLE out (n BIGINT) STORED AS MEMORY;
             {create}"
        ),
    )
    .await;
    eventually("the recorded starts", || cp.join("sources").exists()).await;
    engine.query("tail").unwrap().stop().await.unwrap();
    // Records that arrive while the query is down, before its first batch.
    produce_numbers(&broker.bootstrap(), &topic, 0, 10..25);
    run(&engine, &create).await;
    let query = engine.query("tail").unwrap();
    eventually("the 15 records", || rows_read(&query) >= 15).await;
    query.stop().await.unwrap();
    let result = run(&engine, "SELECT count(*), min(n), max(n) FROM out").await;
    assert_eq!(lines(&result.batches), vec!["15|10|24"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn records_of_one_key_keep_their_order_through_the_kafka_sink() {
    // Before: each batch was sorted by value bytes before it was sent, so every key came out of
    // order ([10, 1, 2, …]) and compacted topics kept stale values.
    let (mut broker, input, engine) = topic("order-in", 1);
    let values: Vec<(String, String)> = (1..=30)
        .flat_map(|version| (0..10).map(move |key| (format!("key-{key}"), format!("{version}"))))
        .collect();
    let records: Vec<Record<'_>> = values
        .iter()
        .map(|(k, v)| Record {
            partition: 0,
            key: Some(k.as_bytes()),
            value: Some(v.as_bytes()),
            headers: &[],
        })
        .collect();
    produce(&broker.bootstrap(), &input, &records);
    // A lookup table joined in: the join must not reorder the stream's records either.
    let labels = unique("order-labels");
    broker.create_topic(&labels, 1);
    let label_values: Vec<String> = (0..10)
        .map(|k| format!("{{\"k\": \"key-{k}\", \"label\": \"L{k}\"}}"))
        .collect();
    let label_records: Vec<Record<'_>> = label_values.iter().map(|v| Record::value(0, v)).collect();
    produce(&broker.bootstrap(), &labels, &label_records);
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src STORED AS KAFKA OPTIONS ('subscribe' '{input}', 'startingOffsets' 'earliest', 'maxOffsetsPerTrigger' '70');
             CREATE EXTERNAL TABLE labels (k VARCHAR, label VARCHAR) STORED AS KAFKA OPTIONS ('subscribe' '{labels}', 'format' 'json', 'endingOffsets' 'latest')"
        ),
    )
    .await;
    let queries = [
        "SELECT key, value FROM src",
        "SELECT s.key, s.value FROM src s JOIN labels l ON CAST(s.key AS VARCHAR) = l.k",
    ];
    for (i, select) in queries.iter().enumerate() {
        let output = unique("order-out");
        broker.create_topic(&output, 3);
        let dir = tempfile::tempdir().unwrap();
        run(
            &engine,
            &format!(
                "CREATE OR REPLACE EXTERNAL TABLE sink STORED AS KAFKA OPTIONS ('subscribe' '{output}');
                 CREATE STREAMING QUERY cdc{i} WITH ('checkpoint' '{}', 'trigger' 'availableNow')
                   AS INSERT INTO sink {select}",
                dir.path().join("cp").display()
            ),
        )
        .await;
        let query = engine.query(&format!("cdc{i}")).unwrap();
        query.await_termination().await.unwrap();
        assert!(query.recent_progress().len() >= 4, "several batches");
        let out = read_topic(&broker.bootstrap(), &output, 3);
        assert_eq!(out.len(), 300, "{select}");
        let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for record in &out {
            let key = record.key.clone().expect("keyed");
            assert_eq!(record.partition, key_partition(key.as_bytes(), 3));
            by_key
                .entry(key)
                .or_default()
                .push(record.value.parse().unwrap());
        }
        for (key, versions) in by_key {
            assert_eq!(versions, (1..=30).collect::<Vec<_>>(), "{key}: {select}");
        }
    }
}

#[tokio::test]
async fn a_bounded_insert_places_keys_with_the_same_partitioner_as_the_streaming_sink() {
    let (mut broker, _, engine) = topic("unused", 1);
    let output = unique("placed");
    broker.create_topic(&output, 5);
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{output}');
             INSERT INTO t (key, value) SELECT 'key-' || CAST(n AS VARCHAR), 'v' FROM generate_series(1, 200) AS s(n)"
        ),
    )
    .await;
    let out = read_topic(&broker.bootstrap(), &output, 5);
    assert_eq!(out.len(), 200);
    for record in out {
        let key = record.key.expect("keyed");
        assert_eq!(
            record.partition,
            key_partition(key.as_bytes(), 5),
            "{key}: Kafka's murmur2 partitioner, as the Java client and the streaming sink"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_writers_to_one_parquet_location_keep_each_others_files() {
    // Before: file and manifest names came from the batch id alone, so a second query (or a
    // restart with a new checkpoint) overwrote the first's batches: 300 of 600 rows were lost.
    let (broker, a, engine) = topic("pq-a", 1);
    let b = unique("pq-b");
    let mut admin_broker = Broker::for_test();
    admin_broker.create_topic(&b, 1);
    produce_numbers(&broker.bootstrap(), &a, 0, 0..300);
    produce_numbers(&broker.bootstrap(), &b, 0, 1000..1300);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE a (n BIGINT) STORED AS KAFKA OPTIONS ('subscribe' '{a}', 'format' 'json', 'startingOffsets' 'earliest', 'maxOffsetsPerTrigger' '100');
             CREATE EXTERNAL TABLE b (n BIGINT) STORED AS KAFKA OPTIONS ('subscribe' '{b}', 'format' 'json', 'startingOffsets' 'earliest', 'maxOffsetsPerTrigger' '100');
             CREATE EXTERNAL TABLE lake (n BIGINT) STORED AS PARQUET LOCATION '{}'",
            lake.display()
        ),
    )
    .await;
    for (name, source, cp) in [("qa", "a", "cpa"), ("qb", "b", "cpb"), ("qa2", "a", "cpa2")] {
        run(
            &engine,
            &format!(
                "CREATE STREAMING QUERY {name} WITH ('checkpoint' '{}', 'trigger' 'availableNow')
                   AS INSERT INTO lake SELECT n FROM {source}",
                dir.path().join(cp).display()
            ),
        )
        .await;
        engine
            .query(name)
            .unwrap()
            .await_termination()
            .await
            .unwrap();
    }
    let result = run(
        &engine,
        "SELECT count(*), count(DISTINCT n), sum(CASE WHEN n < 1000 THEN 1 ELSE 0 END) FROM lake",
    )
    .await;
    // qa2 is query a restarted with a new checkpoint: it reads a again, and adds its rows
    // beside the others instead of replacing them.
    assert_eq!(lines(&result.batches), vec!["900|600|600"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_sends_what_the_first_attempt_computed_though_a_lookup_table_changed() {
    // Before: the replay read the lookup table again, computed other rows, and the sink's match
    // by sequence number duplicated some records and dropped others.
    let mut broker = Broker::outliving();
    let (input, lookup, output) = (unique("lk-in"), unique("lk-ref"), unique("lk-out"));
    broker.create_topic(&input, 1);
    broker.create_topic(&lookup, 1);
    broker.create_topic(&output, 2);
    produce_numbers(&broker.bootstrap(), &input, 0, 0..100);
    let regions = |name: &str| -> Vec<String> {
        (0..4)
            .map(|r| format!("{{\"id\": {r}, \"name\": \"{name}-{r}\"}}"))
            .collect()
    };
    let produce_regions = |values: Vec<String>| {
        let records: Vec<Record<'_>> = values.iter().map(|v| Record::value(0, v)).collect();
        produce(&broker.bootstrap(), &lookup, &records);
    };
    produce_regions(regions("old"));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("job.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('subscribe' '{input}', 'format' 'json', 'startingOffsets' 'earliest', 'maxOffsetsPerTrigger' '100');
             CREATE EXTERNAL TABLE regions (id BIGINT, name VARCHAR) STORED AS KAFKA OPTIONS ('subscribe' '{lookup}', 'format' 'json', 'endingOffsets' 'latest');
             CREATE EXTERNAL TABLE sink STORED AS KAFKA OPTIONS ('subscribe' '{output}', 'transactional' 'false');
             CREATE STREAMING QUERY enrich WITH ('checkpoint' '{}', 'trigger' 'availableNow')
               AS INSERT INTO sink (key, value)
                  SELECT CAST(s.n AS VARCHAR), CAST(s.n AS VARCHAR) || ' ' || r.name
                  FROM src s JOIN (SELECT id, max(name) AS name FROM regions GROUP BY id) r ON s.n % 4 = r.id;",
            dir.path().join("cp").display()
        ),
    )
    .unwrap();
    // The first attempt dies after sending 40 of the batch's 100 records.
    let status = spawn_run(
        &broker.bootstrap(),
        &script,
        &[("WEIR_FAULT_KAFKA_SINK_PARTIAL", "40")],
    )
    .wait()
    .unwrap();
    assert!(!status.success());
    assert_eq!(read_topic(&broker.bootstrap(), &output, 2).len(), 40);
    // The reference data changes before the restart.
    produce_regions(regions("renamed"));
    let status = spawn_run(&broker.bootstrap(), &script, &[]).wait().unwrap();
    assert!(status.success());
    let out = read_topic(&broker.bootstrap(), &output, 2);
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in out {
        by_key
            .entry(record.key.unwrap())
            .or_default()
            .push(record.value);
    }
    assert_eq!(by_key.len(), 100, "every input record");
    for (key, values) in by_key {
        assert_eq!(values.len(), 1, "{key} once: {values:?}");
        assert!(
            values[0].contains(" old-"),
            "{key}: the replay sent the first attempt's rows: {values:?}"
        );
    }
}

/// Creates the tables the refusal tests use: a stream `src` (with a watermark) and `bare`
/// (without), Parquet, Kafka and JDBC sinks, and a memory table.
async fn refusal_tables(engine: &Engine, topic: &str, dir: &std::path::Path) {
    run(
        engine,
        &format!(
            "CREATE EXTERNAL TABLE src (k VARCHAR, v BIGINT, ts TIMESTAMP) STORED AS KAFKA
               OPTIONS ('subscribe' '{topic}', 'format' 'json', 'watermark' 'ts - INTERVAL ''1'' SECOND');
             CREATE EXTERNAL TABLE bare (k VARCHAR, v BIGINT, ts TIMESTAMP) STORED AS KAFKA
               OPTIONS ('subscribe' '{topic}', 'format' 'json');
             CREATE EXTERNAL TABLE lake (k VARCHAR, n BIGINT) STORED AS PARQUET LOCATION '{lake}';
             CREATE EXTERNAL TABLE kout STORED AS KAFKA OPTIONS ('subscribe' '{topic}');
             CREATE EXTERNAL TABLE db (k VARCHAR, n BIGINT) STORED AS JDBC LOCATION 'sqlite://{db}'
               OPTIONS ('table' 'counts');
             CREATE EXTERNAL TABLE mem (k VARCHAR, n BIGINT) STORED AS MEMORY",
            lake = dir.join("lake").display(),
            db = dir.join("counts.db").display()
        ),
    )
    .await;
}

#[tokio::test]
async fn queries_spark_refuses_are_refused_when_they_start() {
    let (_broker, topic, engine) = topic("refuse", 1);
    let dir = tempfile::tempdir().unwrap();
    refusal_tables(&engine, &topic, dir.path()).await;
    let mut n = 0;
    let mut refused = async |with: &str, insert: &str| -> String {
        n += 1;
        let e = fails(
            &engine,
            &format!(
                "CREATE STREAMING QUERY r{n} WITH ('checkpoint' '{}'{with}) AS {insert}",
                dir.path().join(format!("cp{n}")).display()
            ),
        )
        .await;
        assert!(
            engine.query(&format!("r{n}")).is_err(),
            "never started: {e}"
        );
        e
    };
    let windowed = "SELECT k, count(*) FROM tumble(bare, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k";
    let e = refused("", &format!("INSERT INTO mem {windowed}")).await;
    assert!(
        e.contains("its stream has no 'watermark' option") && e.contains("outputMode"),
        "{e}"
    );
    let counts = "SELECT k, count(*) FROM src GROUP BY k";
    let e = refused(
        ", 'outputMode' 'update'",
        &format!("INSERT INTO lake {counts}"),
    )
    .await;
    assert!(e.contains("Parquet table 'lake' only appends files"), "{e}");
    let e = refused(
        ", 'outputMode' 'complete'",
        &format!("INSERT INTO db {counts}"),
    )
    .await;
    assert!(
        e.contains("'mode' 'upsert'"),
        "JDBC append mode points at upsert: {e}"
    );
    let e = refused(
        ", 'outputMode' 'update'",
        "INSERT INTO kout (value) SELECT CAST(count(*) AS VARCHAR) FROM src GROUP BY k",
    )
    .await;
    assert!(e.contains("have no key"), "{e}");
    let e = refused(
        ", 'outputMode' 'complete'",
        "INSERT INTO mem SELECT k, v FROM src",
    )
    .await;
    assert!(e.contains("'complete' needs an aggregation"), "{e}");
    let e = refused(
        "",
        "INSERT INTO mem SELECT a.k, b.v FROM src a JOIN bare b ON a.k = b.k",
    )
    .await;
    assert!(e.contains("two streams joined without windows"), "{e}");
    let e = refused(
        "",
        "INSERT INTO mem SELECT k, v FROM src WHERE k IN (SELECT k FROM bare)",
    )
    .await;
    assert!(
        e.contains("stream table 'bare' is read inside a subquery"),
        "{e}"
    );
}

#[tokio::test]
async fn limits_near_the_largest_offset_do_not_overflow() {
    let (broker, topic, engine) = topic("limits", 1);
    produce_numbers(&broker.bootstrap(), &topic, 0, 0..10);
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'format' 'json', 'startingOffsets' 'earliest',
               'maxOffsetsPerPartitionPerTrigger' '9223372036854775807', 'maxOffsetsPerTrigger' '9223372036854775807');
             CREATE EXTERNAL TABLE out (n BIGINT) STORED AS MEMORY;
             CREATE STREAMING QUERY big WITH ('checkpoint' '{}', 'trigger' 'availableNow') AS INSERT INTO out SELECT n FROM src",
            dir.path().join("cp").display()
        ),
    )
    .await;
    engine
        .query("big")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    // The next batch starts past offset 0, where start + limit would overflow.
    produce_numbers(&broker.bootstrap(), &topic, 0, 10..15);
    run(
        &engine,
        &format!(
            "CREATE STREAMING QUERY big WITH ('checkpoint' '{}', 'trigger' 'availableNow') AS INSERT INTO out SELECT n FROM src",
            dir.path().join("cp").display()
        ),
    )
    .await;
    engine
        .query("big")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    let result = run(&engine, "SELECT count(*) FROM out").await;
    assert_eq!(lines(&result.batches), vec!["15"]);
    let e = fails(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE d STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'maxTriggerDelay' '99999999999999999999 hours')"
        ),
    )
    .await;
    assert!(e.contains("'maxTriggerDelay'"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_insert_plans_the_same_way_bounded_and_streaming() {
    // Before: matched by name as a bounded statement, but "Column count doesn't match insert
    // query!" as a streaming query.
    let (mut broker, input, engine) = topic("same-in", 1);
    let output = unique("same-out");
    broker.create_topic(&output, 1);
    produce(
        &broker.bootstrap(),
        &input,
        &[
            Record::value(0, r#"{"id": 1, "name": "a"}"#),
            Record::value(0, r#"{"id": 2, "name": "b"}"#),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE t (id BIGINT, name VARCHAR) STORED AS KAFKA OPTIONS ('subscribe' '{input}', 'format' 'json', 'startingOffsets' 'earliest');
             CREATE EXTERNAL TABLE o (id BIGINT, name VARCHAR) STORED AS KAFKA OPTIONS ('subscribe' '{output}', 'format' 'json');
             INSERT INTO o SELECT id, name FROM t;
             CREATE STREAMING QUERY copy WITH ('checkpoint' '{}', 'trigger' 'availableNow') AS INSERT INTO o SELECT id, name FROM t",
            dir.path().join("cp").display()
        ),
    )
    .await;
    engine
        .query("copy")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE back (id BIGINT, name VARCHAR) STORED AS KAFKA OPTIONS ('subscribe' '{output}', 'format' 'json', 'endingOffsets' 'latest');
             SELECT id, name, count(*) FROM back GROUP BY id, name ORDER BY id"
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["1|a|2", "2|b|2"],
        "once bounded, once streaming"
    );
    let many: Vec<String> = (0..11).map(|i| format!("id AS c{i}")).collect();
    let e = fails(
        &engine,
        &format!("INSERT INTO o SELECT {} FROM t", many.join(", ")),
    )
    .await;
    assert!(
        e.contains("gives 11 columns (c0, c1, c2") && e.contains("the table has 9 (id, name, _key"),
        "{e}"
    );
}

#[tokio::test]
async fn the_kafka_sink_follows_sparks_column_rules() {
    let (mut broker, _, engine) = topic("cols", 1);
    let (a, b) = (unique("cols-a"), unique("cols-b"));
    broker.create_topic(&a, 1);
    broker.create_topic(&b, 1);
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE fixed STORED AS KAFKA OPTIONS ('subscribe' '{a}', 'topic' '{a}');
             CREATE EXTERNAL TABLE routed STORED AS KAFKA OPTIONS ('subscribe' '{a},{b}')"
        ),
    )
    .await;
    // The table's topic option overrides the topic column, as in Spark.
    run(
        &engine,
        &format!("INSERT INTO fixed (topic, value) VALUES ('{b}', 'x')"),
    )
    .await;
    assert_eq!(read_topic(&broker.bootstrap(), &a, 1).len(), 1);
    assert!(read_topic(&broker.bootstrap(), &b, 1).is_empty());
    // Without the option, the column routes each record.
    run(
        &engine,
        &format!("INSERT INTO routed (topic, value) VALUES ('{b}', 'y')"),
    )
    .await;
    assert_eq!(read_topic(&broker.bootstrap(), &b, 1).len(), 1);
    // Columns named after the table's and one that is not: refused, not shifted by position.
    let e = fails(
        &engine,
        "INSERT INTO fixed SELECT 'v' AS value, 'x' AS note",
    )
    .await;
    assert!(
        e.contains("(note)") && e.contains("name every column"),
        "{e}"
    );
    // A value column is required; NULL AS value writes a tombstone.
    let e = fails(&engine, "INSERT INTO fixed (key) VALUES ('k')").await;
    assert!(e.contains("gives no 'value' column"), "{e}");
    run(
        &engine,
        "INSERT INTO fixed SELECT 'k' AS key, CAST(NULL AS BYTEA) AS value",
    )
    .await;
    // A headers column is written whether or not the table reads headers.
    run(
        &engine,
        "INSERT INTO fixed SELECT 'with headers' AS value, [named_struct('key', 'trace', 'value', CAST('t1' AS BYTEA))] AS headers",
    )
    .await;
    let out = read_topic(&broker.bootstrap(), &a, 1);
    assert_eq!(out.len(), 3);
    assert_eq!(out[2].headers.get("trace").map(String::as_str), Some("t1"));
    // A bounded query cannot start at latest.
    let e = fails(
        &engine,
        &format!("CREATE EXTERNAL TABLE late STORED AS KAFKA OPTIONS ('subscribe' '{a}', 'startingOffsets' 'latest', 'endingOffsets' 'latest')"),
    )
    .await;
    assert!(e.contains("a bounded query cannot start from"), "{e}");
    let e = fails(
        &engine,
        "CREATE EXTERNAL TABLE p STORED AS KAFKA OPTIONS ('subscribePattern' '')",
    )
    .await;
    assert!(e.contains("'subscribePattern'"), "{e}");
}
