//! What only a real Apache Kafka broker shows: offsets-for-times against the time index,
//! transactions (committed, aborted, fenced), compaction, partitions added and records deleted
//! under a running query, consumer-group offsets seen by Kafka's own tools, and SASL/SCRAM over
//! TLS. Each test is skipped, with a message, where `tests/kafka/start.sh` did not start the
//! broker (and fails instead under `WEIR_REQUIRE_KAFKA`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir::Engine;

use super::common::{
    Record, admin, eventually, fails, lines, produce, real_broker_or_skip, rows_read, run, unique,
};

fn producer(bootstrap: &str, transactional_id: Option<&str>) -> BaseProducer {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    if let Some(id) = transactional_id {
        config.set("transactional.id", id);
    }
    config.create().expect("producer")
}

/// Sends `values` to partition 0 of `topic` with these timestamps and waits for them.
fn produce_at(bootstrap: &str, topic: &str, partition: i32, records: &[(i64, String)]) {
    let producer = producer(bootstrap, None);
    for (timestamp, value) in records {
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(partition)
            .timestamp(*timestamp)
            .payload(value.as_bytes());
        producer.send(record).map_err(|(e, _)| e).expect("sent");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("acknowledged");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs one of Kafka's own command-line tools from the broker's jars; its output.
pub fn kafka_tool(class: &str, args: &[&str]) -> String {
    let libs = std::env::var("WEIR_TEST_KAFKA_LIBS").expect("WEIR_TEST_KAFKA_LIBS");
    let output = Command::new("java")
        .args([
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            &format!("{libs}/*"),
            class,
        ])
        .args(args)
        .output()
        .expect("java runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One record as Kafka's console consumer printed it.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub headers: BTreeMap<String, String>,
    pub value: String,
}

/// Every record of `topic`, read by Kafka's Java console consumer with `isolation`.
pub fn console_consume(bootstrap: &str, topic: &str, isolation: &str) -> Vec<Consumed> {
    let output = kafka_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--from-beginning",
            "--isolation-level",
            isolation,
            "--timeout-ms",
            "6000",
            "--formatter-property",
            "print.headers=true",
        ],
    );
    output
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(2, '\t');
            let headers = fields
                .next()?
                .split(',')
                .filter_map(|h| h.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some(Consumed {
                headers,
                value: fields.next()?.to_string(),
            })
        })
        .collect()
}

#[tokio::test]
async fn timestamps_resolve_against_the_brokers_time_index() {
    let Some(mut broker) = real_broker_or_skip("timestamps") else {
        return;
    };
    let topic = unique("ts");
    broker.create_topic(&topic, 2);
    // Records a second apart, from a minute ago; partition 1 starts 2.5 s later.
    let base = now_ms() - 60_000;
    for partition in 0..2 {
        let records: Vec<(i64, String)> = (0..5)
            .map(|i| {
                (
                    base + i64::from(partition) * 2_500 + i * 1_000,
                    format!("p{partition}-{i}"),
                )
            })
            .collect();
        produce_at(&broker.bootstrap(), &topic, partition, &records);
    }
    let engine = broker.engine();
    let table = |name: &str, options: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} STORED AS KAFKA OPTIONS ('subscribe' '{topic}', {options})"
        )
    };
    let count = async |sql: &str| lines(&run(&engine, sql).await.batches);
    run(
        &engine,
        &table(
            "a",
            &format!(
                "'startingTimestamp' '{}', 'endingOffsets' 'latest'",
                base + 3_000
            ),
        ),
    )
    .await;
    assert_eq!(
        count("SELECT partition, min(\"offset\"), count(*) FROM a GROUP BY partition ORDER BY partition").await,
        vec!["0|3|2", "1|1|4"],
        "each partition from its first record at or after the timestamp"
    );
    run(
        &engine,
        &table(
            "b",
            &format!(
                "'startingTimestamp' '{}', 'endingTimestamp' '{}'",
                base,
                base + 3_000
            ),
        ),
    )
    .await;
    assert_eq!(
        count("SELECT partition, count(*) FROM b GROUP BY partition ORDER BY partition").await,
        vec!["0|3", "1|1"]
    );
    let by_partition = format!(
        "'startingOffsetsByTimestamp' '{{\"{topic}\":{{\"0\":{},\"1\":{}}}}}', 'endingOffsets' 'latest'",
        base + 4_000,
        base
    );
    run(&engine, &table("c", &by_partition)).await;
    assert_eq!(
        count("SELECT partition, count(*) FROM c GROUP BY partition ORDER BY partition").await,
        vec!["0|1", "1|5"]
    );
    // No record at or after the start: an error naming the strategy, or latest with it.
    let later = base + 3_600_000;
    let e = fails(
        &engine,
        &format!(
            "{}; SELECT * FROM d",
            table(
                "d",
                &format!("'startingTimestamp' '{later}', 'endingOffsets' 'latest'")
            )
        ),
    )
    .await;
    assert!(e.contains("startingOffsetsByTimestampStrategy"), "{e}");
    run(
        &engine,
        &table(
            "e",
            &format!("'startingTimestamp' '{later}', 'startingOffsetsByTimestampStrategy' 'latest', 'endingOffsets' 'latest'"),
        ),
    )
    .await;
    assert_eq!(count("SELECT count(*) FROM e").await, vec!["0"]);
    // A timestamp predicate narrows what is fetched through the same lookup.
    run(&engine, &table("f", "'endingOffsets' 'latest'")).await;
    let result = run(
        &engine,
        &format!(
            "SELECT count(*) FROM f WHERE timestamp >= to_timestamp_millis({})",
            base + 4_000
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["4"]);
    assert_eq!(
        result.kafka.records_fetched, 4,
        "only records at or after the timestamp"
    );
    // A stream started from a timestamp.
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "{}; CREATE EXTERNAL TABLE out (v VARCHAR) STORED AS MEMORY;
             CREATE STREAMING QUERY since WITH ('checkpoint' '{}', 'trigger' 'availableNow')
               AS INSERT INTO out SELECT CAST(value AS VARCHAR) FROM s",
            table("s", &format!("'startingTimestamp' '{}'", base + 4_000)),
            dir.path().join("cp").display()
        ),
    )
    .await;
    engine
        .query("since")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    assert_eq!(
        count("SELECT v FROM out ORDER BY v").await,
        vec!["p0-4", "p1-2", "p1-3", "p1-4"]
    );
}

#[tokio::test]
async fn read_committed_skips_aborted_transactions_and_their_markers() {
    let Some(mut broker) = real_broker_or_skip("read_committed") else {
        return;
    };
    let topic = unique("txn");
    broker.create_topic(&topic, 1);
    // An independent transactional producer: 3 committed, 2 aborted, 2 committed.
    let writer = producer(&broker.bootstrap(), Some(&unique("independent")));
    writer.init_transactions(Duration::from_secs(30)).unwrap();
    for (values, commit) in [
        (vec!["a0", "a1", "a2"], true),
        (vec!["b0", "b1"], false),
        (vec!["c0", "c1"], true),
    ] {
        writer.begin_transaction().unwrap();
        for value in values {
            writer
                .send(
                    BaseRecord::<'_, [u8], [u8]>::to(&topic)
                        .partition(0)
                        .payload(value.as_bytes()),
                )
                .map_err(|(e, _)| e)
                .unwrap();
        }
        writer.flush(Duration::from_secs(30)).unwrap();
        if commit {
            writer.commit_transaction(Duration::from_secs(30)).unwrap();
        } else {
            writer.abort_transaction(Duration::from_secs(30)).unwrap();
        }
    }
    let engine = broker.engine();
    let read = async |isolation: &str| {
        let name = format!("t_{isolation}");
        lines(
            &run(
                &engine,
                &format!(
                    "CREATE EXTERNAL TABLE {name} STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' 'latest', 'kafka.isolation.level' '{isolation}');
                     SELECT \"offset\", CAST(value AS VARCHAR) FROM {name} ORDER BY \"offset\""
                ),
            )
            .await
            .batches,
        )
    };
    // Offsets: a0..a2 0-2, commit marker 3, b0 b1 4-5, abort marker 6, c0 c1 7-8, marker 9.
    assert_eq!(
        read("read_committed").await,
        vec!["0|a0", "1|a1", "2|a2", "7|c0", "8|c1"]
    );
    assert_eq!(
        read("read_uncommitted").await,
        vec!["0|a0", "1|a1", "2|a2", "4|b0", "5|b1", "7|c0", "8|c1"]
    );
    // The same through streaming queries, in batches that end inside the gaps; read_committed
    // is weir's default.
    let dir = tempfile::tempdir().unwrap();
    let stream = async |name: &str, option: &str| {
        run(
            &engine,
            &format!(
                "CREATE EXTERNAL TABLE s_{name} STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'startingOffsets' 'earliest', 'maxOffsetsPerTrigger' '2'{option});
                 CREATE EXTERNAL TABLE out_{name} (o BIGINT, v VARCHAR) STORED AS MEMORY;
                 CREATE STREAMING QUERY {name} WITH ('checkpoint' '{}', 'trigger' 'availableNow')
                   AS INSERT INTO out_{name} SELECT \"offset\", CAST(value AS VARCHAR) FROM s_{name}",
                dir.path().join(name).display()
            ),
        )
        .await;
        let query = engine.query(name).unwrap();
        query.await_termination().await.unwrap();
        assert!(
            query.recent_progress().len() >= 4,
            "{name}: several batches"
        );
        let sql = format!("SELECT o, v FROM out_{name} ORDER BY o");
        lines(&run(&engine, &sql).await.batches)
    };
    assert_eq!(
        stream("by_default", "").await,
        vec!["0|a0", "1|a1", "2|a2", "7|c0", "8|c1"],
    );
    assert_eq!(
        stream(
            "uncommitted",
            ", 'kafka.isolation.level' 'read_uncommitted'"
        )
        .await,
        vec!["0|a0", "1|a1", "2|a2", "4|b0", "5|b1", "7|c0", "8|c1"],
    );
}

#[tokio::test]
async fn a_compacted_topic_is_read_across_its_gaps_with_tombstones_as_null() {
    let Some(broker) = real_broker_or_skip("compaction") else {
        return;
    };
    let topic = unique("compacted");
    admin::create_topic(
        &broker.bootstrap(),
        &topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "0"),
            ("delete.retention.ms", "3600000"),
        ],
    );
    let values: Vec<(String, String)> = (1..=5)
        .flat_map(|v| (0..4).map(move |k| (format!("k{k}"), format!("v{v}"))))
        .collect();
    let mut records: Vec<Record<'_>> = values
        .iter()
        .map(|(k, v)| Record {
            partition: 0,
            key: Some(k.as_bytes()),
            value: Some(v.as_bytes()),
            headers: &[],
        })
        .collect();
    records.push(Record {
        partition: 0,
        key: Some(b"k1"),
        value: None,
        headers: &[],
    });
    produce(&broker.bootstrap(), &topic, &records);
    // A segment rolls only on an append after segment.ms: the cleaner may then compact it.
    std::thread::sleep(Duration::from_millis(300));
    produce(
        &broker.bootstrap(),
        &topic,
        &[Record {
            partition: 0,
            key: Some(b"roll"),
            value: Some(b"r"),
            headers: &[],
        }],
    );
    let engine = broker.engine();
    run(
        &engine,
        &format!("CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' 'latest')"),
    )
    .await;
    let started = Instant::now();
    loop {
        let count = lines(&run(&engine, "SELECT count(*) FROM t").await.batches);
        if count == vec!["5"] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not compacted: {count:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let expected = vec![
        "16|k0|v5|false",
        "18|k2|v5|false",
        "19|k3|v5|false",
        "20|k1||true",
        "21|roll|r|false",
    ];
    let query = "SELECT o, k, v, tombstone FROM (SELECT \"offset\" AS o, CAST(key AS VARCHAR) AS k, CAST(value AS VARCHAR) AS v, value IS NULL AS tombstone FROM t) ORDER BY o";
    assert_eq!(lines(&run(&engine, query).await.batches), expected);
    // A stream in batches of 3 offsets: most batches fall in the gaps compaction left.
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE s STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'startingOffsets' 'earliest', 'maxOffsetsPerTrigger' '3');
             CREATE EXTERNAL TABLE out (o BIGINT, k VARCHAR, v VARCHAR, tombstone BOOLEAN) STORED AS MEMORY;
             CREATE STREAMING QUERY c WITH ('checkpoint' '{}', 'trigger' 'availableNow')
               AS INSERT INTO out SELECT \"offset\", CAST(key AS VARCHAR), CAST(value AS VARCHAR), value IS NULL FROM s",
            dir.path().join("cp").display()
        ),
    )
    .await;
    engine
        .query("c")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    assert_eq!(
        lines(&run(&engine, "SELECT * FROM out ORDER BY o").await.batches),
        expected
    );
}

/// A stream `src` of JSON numbers over `topic` (from its earliest offsets) and a memory table
/// `out`.
async fn numbers_tables(engine: &Engine, topic: &str) {
    run(
        engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'format' 'json', 'startingOffsets' 'earliest');
             CREATE EXTERNAL TABLE out (n BIGINT, p INT) STORED AS MEMORY"
        ),
    )
    .await;
}

/// A stream `src` of JSON numbers over `topic` into memory table `out`, as query `name` with a
/// processing-time trigger.
async fn follow(engine: &Engine, topic: &str, name: &str, options: &str, cp: &std::path::Path) {
    run(
        engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'format' 'json', 'startingOffsets' 'earliest' {options});
             CREATE EXTERNAL TABLE out (n BIGINT, p INT) STORED AS MEMORY;
             CREATE STREAMING QUERY {name} WITH ('checkpoint' '{}', 'trigger' 'processingTime 200 milliseconds')
               AS INSERT INTO out SELECT n, _partition FROM src",
            cp.display()
        ),
    )
    .await;
}

fn numbers(partition: i32, range: std::ops::Range<i64>) -> Vec<(i64, String)> {
    range
        .map(|n| {
            (
                now_ms(),
                format!("{{\"n\": {}}}", n + i64::from(partition) * 1000),
            )
        })
        .collect()
}

#[tokio::test]
async fn partitions_added_while_a_query_runs_are_read_from_their_earliest_offset() {
    let Some(mut broker) = real_broker_or_skip("create_partitions") else {
        return;
    };
    let topic = unique("grow");
    broker.create_topic(&topic, 1);
    produce_at(&broker.bootstrap(), &topic, 0, &numbers(0, 0..5));
    let engine = broker.engine();
    let dir = tempfile::tempdir().unwrap();
    follow(
        &engine,
        &topic,
        "grow",
        ", 'kafka.topic.metadata.refresh.interval.ms' '500'",
        &dir.path().join("cp"),
    )
    .await;
    let query = engine.query("grow").unwrap();
    eventually("the first 5 records", || rows_read(&query) == 5).await;
    admin::create_partitions(&broker.bootstrap(), &topic, 3);
    for partition in 1..3 {
        produce_at(
            &broker.bootstrap(),
            &topic,
            partition,
            &numbers(partition, 0..5),
        );
    }
    eventually("the new partitions' records", || rows_read(&query) == 15).await;
    query.stop().await.unwrap();
    assert_eq!(
        lines(
            &run(
                &engine,
                "SELECT p, count(*), min(n) FROM out GROUP BY p ORDER BY p"
            )
            .await
            .batches
        ),
        vec!["0|5|0", "1|5|1000", "2|5|2000"]
    );
}

#[tokio::test]
async fn records_deleted_under_a_running_query_fail_it_or_are_skipped_and_counted() {
    let Some(mut broker) = real_broker_or_skip("delete_records") else {
        return;
    };
    for fail_on_data_loss in [true, false] {
        let topic = unique("deleted");
        broker.create_topic(&topic, 1);
        produce_at(&broker.bootstrap(), &topic, 0, &numbers(0, 0..50));
        let engine = broker.engine();
        let dir = tempfile::tempdir().unwrap();
        follow(
            &engine,
            &topic,
            "del",
            &format!(", 'maxOffsetsPerTrigger' '5', 'failOnDataLoss' '{fail_on_data_loss}'"),
            &dir.path().join("cp"),
        )
        .await;
        let query = engine.query("del").unwrap();
        eventually("a first batch", || rows_read(&query) >= 5).await;
        admin::delete_records(&broker.bootstrap(), &topic, 0, 30);
        if fail_on_data_loss {
            let e = query.await_termination().await.unwrap_err().to_string();
            assert!(
                e.contains("data loss: offsets")
                    && e.contains("to 29 of")
                    && e.contains(&format!("{topic}[0]")),
                "{e}"
            );
            assert!(e.contains("failOnDataLoss"), "{e}");
        } else {
            let done = || {
                let lost: i64 = query
                    .recent_progress()
                    .iter()
                    .flat_map(|p| &p.sources)
                    .map(|s| s.lost_offsets)
                    .sum();
                rows_read(&query) as i64 + lost == 50 && lost > 0
            };
            eventually("every offset read or counted as lost", done).await;
            query.stop().await.unwrap();
            let result = run(&engine, "SELECT max(n) FROM out").await;
            assert_eq!(lines(&result.batches), vec!["49"]);
        }
    }
}

#[tokio::test]
async fn a_partition_that_appears_with_its_first_records_deleted_is_data_loss() {
    let Some(mut broker) = real_broker_or_skip("new_partition_loss") else {
        return;
    };
    let topic = unique("newloss");
    broker.create_topic(&topic, 1);
    produce_at(&broker.bootstrap(), &topic, 0, &numbers(0, 0..3));
    let engine = broker.engine();
    let dir = tempfile::tempdir().unwrap();
    let create = format!(
        "CREATE STREAMING QUERY nl WITH ('checkpoint' '{}', 'trigger' 'availableNow') AS INSERT INTO out SELECT n, _partition FROM src",
        dir.path().join("cp").display()
    );
    numbers_tables(&engine, &topic).await;
    run(&engine, &create).await;
    engine
        .query("nl")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    admin::create_partitions(&broker.bootstrap(), &topic, 2);
    produce_at(&broker.bootstrap(), &topic, 1, &numbers(1, 0..5));
    admin::delete_records(&broker.bootstrap(), &topic, 1, 2);
    run(&engine, &create).await;
    let e = engine
        .query("nl")
        .unwrap()
        .await_termination()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "{topic}[1] appeared while the query ran and starts at offset 2 instead of 0"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn committed_offsets_show_in_kafkas_consumer_groups_tool() {
    let Some(mut broker) = real_broker_or_skip("consumer_groups") else {
        return;
    };
    let topic = unique("group");
    broker.create_topic(&topic, 2);
    for partition in 0..2 {
        produce_at(
            &broker.bootstrap(),
            &topic,
            partition,
            &numbers(partition, 0..10),
        );
    }
    let name = unique("lagq").replace('-', "_");
    let engine = broker.engine();
    let dir = tempfile::tempdir().unwrap();
    let create = format!(
        "CREATE STREAMING QUERY {name} WITH ('checkpoint' '{}', 'trigger' 'availableNow', 'commitOffsetsToGroup' 'true')
           AS INSERT INTO out SELECT n, _partition FROM src",
        dir.path().join("cp").display()
    );
    numbers_tables(&engine, &topic).await;
    run(&engine, &create).await;
    engine
        .query(&name)
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    produce_at(&broker.bootstrap(), &topic, 1, &numbers(1, 10..13));
    let described = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--bootstrap-server",
            &broker.bootstrap(),
            "--describe",
            "--group",
            &name,
        ],
    );
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG …
    let rows: Vec<Vec<&str>> = described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 6 && f[1] == topic)
        .collect();
    let lags: BTreeMap<&str, (&str, &str, &str)> =
        rows.iter().map(|f| (f[2], (f[3], f[4], f[5]))).collect();
    assert_eq!(
        lags,
        BTreeMap::from([("0", ("10", "10", "0")), ("1", ("10", "13", "3"))]),
        "{described}"
    );
}

/// The options of a table on the broker's SASL_SSL listener as user alice.
fn sasl_ssl_options(mechanism: &str, password: &str, trusted: bool) -> String {
    let address = std::env::var("WEIR_TEST_KAFKA_SASL_SSL").expect("WEIR_TEST_KAFKA_SASL_SSL");
    let ca = std::env::var("WEIR_TEST_KAFKA_CA").expect("WEIR_TEST_KAFKA_CA");
    let trust = if trusted {
        format!(", 'kafka.ssl.ca.location' '{ca}'")
    } else {
        String::new()
    };
    format!(
        "'kafka.bootstrap.servers' '{address}', 'kafka.security.protocol' 'SASL_SSL',
         'kafka.sasl.mechanism' '{mechanism}', 'kafka.sasl.username' 'alice',
         'kafka.sasl.password' '{password}', 'brokerTimeoutMs' '20000'{trust}"
    )
}

#[tokio::test]
async fn sasl_scram_over_tls_works_and_bad_credentials_fail_fast_naming_the_cause() {
    let Some(mut broker) = real_broker_or_skip("sasl_ssl") else {
        return;
    };
    let topic = unique("secure");
    broker.create_topic(&topic, 1);
    produce_at(&broker.bootstrap(), &topic, 0, &numbers(0, 0..4));
    let engine = weir::Engine::builder().build().unwrap();
    let address = std::env::var("WEIR_TEST_KAFKA_SASL_SSL").unwrap();
    let table = |name: &str, options: String| {
        format!(
            "CREATE EXTERNAL TABLE {name} STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' 'latest', {options});
             SELECT count(*) FROM {name}"
        )
    };
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
        let name = format!("ok_{}", mechanism.to_lowercase().replace('-', "_"));
        let result = run(
            &engine,
            &table(&name, sasl_ssl_options(mechanism, "alice-secret", true)),
        )
        .await;
        assert_eq!(lines(&result.batches), vec!["4"], "{mechanism}");
    }
    let plaintext = std::env::var("WEIR_TEST_KAFKA_SASL").expect("WEIR_TEST_KAFKA_SASL");
    let sasl_plaintext = |mechanism: &str, password: &str| {
        format!(
            "'kafka.bootstrap.servers' '{plaintext}', 'kafka.security.protocol' 'SASL_PLAINTEXT',
             'kafka.sasl.mechanism' '{mechanism}', 'kafka.sasl.username' 'alice',
             'kafka.sasl.password' '{password}', 'brokerTimeoutMs' '20000'"
        )
    };
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let name = format!("plain_{}", mechanism.to_lowercase().replace('-', "_"));
        let options = sasl_plaintext(mechanism, "alice-secret");
        let result = run(&engine, &table(&name, options)).await;
        assert_eq!(
            lines(&result.batches),
            vec!["4"],
            "SASL_PLAINTEXT {mechanism}"
        );
    }
    let e = fails(
        &engine,
        &table("plain_wrong", sasl_plaintext("PLAIN", "not-the-secret")),
    )
    .await;
    assert!(
        e.contains("Authentication failed") && e.contains(&plaintext) && !e.contains("secret"),
        "{e}"
    );
    let cases = [
        (
            "wrong_password",
            sasl_ssl_options("SCRAM-SHA-512", "not-the-secret", true),
            "Authentication failed",
        ),
        (
            "wrong_mechanism",
            sasl_ssl_options("OAUTHBEARER", "alice-secret", true)
                + ", 'kafka.enable.sasl.oauthbearer.unsecure.jwt' 'true', 'kafka.sasl.oauthbearer.config' 'principal=alice'",
            "Unsupported SASL mechanism",
        ),
        (
            "untrusted",
            sasl_ssl_options("SCRAM-SHA-512", "alice-secret", false),
            "certificate verify failed",
        ),
    ];
    for (name, options, cause) in cases {
        let started = Instant::now();
        let e = fails(&engine, &table(name, options)).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} failed in {:?}, not at once",
            started.elapsed()
        );
        assert!(e.contains(cause) && e.contains(&address), "{name}: {e}");
        assert!(
            !e.contains("alice-secret") && !e.contains("not-the-secret"),
            "{name}: {e}"
        );
    }
    let (_, options) = engine.describe("ok_scram_sha_512").await.unwrap();
    let shown = format!("{options:?}");
    assert!(
        !shown.contains("alice-secret") && shown.contains("********"),
        "{shown}"
    );
    // The command line, logging at debug, never prints the password either.
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "-c",
            &table(
                "cli",
                sasl_ssl_options("SCRAM-SHA-512", "alice-secret", true),
            ),
        ])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    assert!(
        !printed.contains("alice-secret"),
        "the password was printed"
    );
}
