//! Streaming queries into Kafka tables: deterministic partitions, weir's headers, replays that
//! send only what is missing, plan-time checks of the record columns, and one instance per
//! checkpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use weir::kafka::partitioner::key_partition;

use super::common::{Broker, Record, fails, produce, run, unique};

/// One record read back from an output topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub partition: i32,
    pub key: Option<String>,
    pub value: String,
    pub headers: BTreeMap<String, String>,
}

/// Every record of `topic` (of `partitions` partitions), read to its end.
pub fn read_topic(bootstrap: &str, topic: &str, partitions: i32) -> Vec<OutputRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assigned");
    let mut open = partitions;
    let mut out = vec![];
    let started = std::time::Instant::now();
    while open > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "reading {topic} took too long"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push(OutputRecord {
                partition: m.partition(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
        }
    }
    out
}

/// Records in (partition, value) order, as they are in no particular order across partitions.
fn sorted(mut records: Vec<OutputRecord>) -> Vec<OutputRecord> {
    records.sort_by(|a, b| (a.partition, &a.value).cmp(&(b.partition, &b.value)));
    records
}

fn produce_numbers(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
    let values: Vec<(i32, String)> = (0..partitions)
        .flat_map(|p| {
            (0..per_partition).map(move |i| (p, format!("{{\"n\": {}}}", p as usize * 10_000 + i)))
        })
        .collect();
    let records: Vec<Record<'_>> = values.iter().map(|(p, v)| Record::value(*p, v)).collect();
    produce(bootstrap, topic, &records);
}

struct Pipeline {
    broker: Broker,
    input: String,
    output: String,
    checkpoint: tempfile::TempDir,
}

/// A 3-partition input of JSON numbers and an empty 4-partition output topic.
fn pipeline(prefix: &str, per_partition: usize) -> Pipeline {
    let mut broker = Broker::for_test();
    let input = unique(&format!("{prefix}-in"));
    let output = unique(&format!("{prefix}-out"));
    broker.create_topic(&input, 3);
    broker.create_topic(&output, 4);
    produce_numbers(&broker.bootstrap(), &input, 3, per_partition);
    Pipeline {
        broker,
        input,
        output,
        checkpoint: tempfile::tempdir().expect("temp dir"),
    }
}

impl Pipeline {
    fn script(&self, sink_options: &str) -> String {
        format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{input}', 'format' 'json', 'maxOffsetsPerTrigger' '50');
             CREATE EXTERNAL TABLE sink STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{output}' {sink_options});
             CREATE STREAMING QUERY job WITH ('checkpoint' '{cp}', 'trigger' 'availableNow')
               AS INSERT INTO sink (key, value)
                  SELECT CASE WHEN n % 2 = 0 THEN 'k' || CAST(n % 7 AS VARCHAR) END, CAST(n AS VARCHAR) FROM src",
            input = self.input,
            output = self.output,
            cp = self.checkpoint.path().join("cp").display(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_into_kafka_lands_once_with_deterministic_partitions_and_weir_headers() {
    let pipeline = pipeline("ks", 40);
    let engine = pipeline.broker.engine();
    run(&engine, &pipeline.script("")).await;
    let query = engine.query("job").expect("query");
    query.await_termination().await.expect("query finishes");
    let batches = query.recent_progress().len();
    assert!(batches >= 3, "rate-limited into several batches: {batches}");

    let out = read_topic(&pipeline.broker.bootstrap(), &pipeline.output, 4);
    assert_eq!(out.len(), 120, "every input record once");
    let mut values: Vec<i64> = out.iter().map(|r| r.value.parse().unwrap()).collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), 120);
    for record in &out {
        if let Some(key) = &record.key {
            assert_eq!(
                record.partition,
                key_partition(key.as_bytes(), 4),
                "keyed records go where Kafka's default partitioner puts them"
            );
        }
        assert_eq!(record.headers["weir.query.id"], query.id());
        assert!(record.headers["weir.batch.id"].parse::<u64>().is_ok());
    }
    let unkeyed: Vec<i32> = out
        .iter()
        .filter(|r| r.key.is_none())
        .map(|r| r.partition)
        .collect();
    for p in 0..4 {
        assert!(
            unkeyed.contains(&p),
            "unkeyed records spread over partitions"
        );
    }
    let recorded = std::fs::read_to_string(pipeline.checkpoint.path().join("cp/sinks/0"))
        .expect("sinks/0 recorded before the first write");
    assert!(recorded.contains("startOffsets"), "{recorded}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_batch_sends_only_what_is_missing() {
    let pipeline = pipeline("kr", 30);
    let engine = pipeline.broker.engine();
    run(&engine, &pipeline.script("")).await;
    let query = engine.query("job").expect("query");
    query.await_termination().await.expect("query finishes");
    let before = read_topic(&pipeline.broker.bootstrap(), &pipeline.output, 4);
    assert_eq!(before.len(), 90);
    let last = query.progress().expect("progress").batch_id;

    // As if the engine had died after producing the last batch but before commits/N.
    std::fs::remove_file(
        pipeline
            .checkpoint
            .path()
            .join(format!("cp/commits/{last}")),
    )
    .expect("commit removed");
    let engine = pipeline.broker.engine();
    run(&engine, &pipeline.script("")).await;
    let replay = engine.query("job").expect("query");
    replay.await_termination().await.expect("replay finishes");
    let first = &replay.recent_progress()[0];
    assert!(first.replayed);
    assert_eq!(first.batch_id, last);
    let after = read_topic(&pipeline.broker.bootstrap(), &pipeline.output, 4);
    assert_eq!(after.len(), before.len(), "the replay sent nothing again");
    assert!(
        sorted(after) == sorted(before),
        "the replay found every record already there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transactional_batches_run_on_a_broker_that_accepts_the_calls() {
    let pipeline = pipeline("kt", 20);
    let engine = pipeline.broker.engine();
    run(&engine, &pipeline.script(", 'transactional' 'true'")).await;
    let query = engine.query("job").expect("query");
    query.await_termination().await.expect("query finishes");
    let out = read_topic(&pipeline.broker.bootstrap(), &pipeline.output, 4);
    assert_eq!(out.len(), 60);
}

/// The offsets `topic`'s partitions hold, records and transaction markers alike.
fn offsets_used(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

#[tokio::test]
async fn by_default_each_batch_is_a_transaction_where_the_broker_has_them() {
    for (options, transactional) in [("", true), (", 'transactional' 'false'", false)] {
        let pipeline = pipeline("kd", 20);
        if !pipeline.broker.is_real() {
            eprintln!("skipped: the mock broker's transactions write no markers to count");
            return;
        }
        let engine = pipeline.broker.engine();
        run(&engine, &pipeline.script(options)).await;
        let query = engine.query("job").expect("query");
        query.await_termination().await.expect("query finishes");
        let batches = query.recent_progress().len() as i64;
        assert!(batches >= 2, "60 records in batches of at most 50");
        let out = read_topic(&pipeline.broker.bootstrap(), &pipeline.output, 4);
        assert_eq!(out.len(), 60);
        // A committed transaction leaves a marker in each partition it wrote to.
        let used = offsets_used(&pipeline.broker.bootstrap(), &pipeline.output, 4);
        if transactional {
            assert!(
                used >= 60 + batches,
                "{used} offsets: a marker per batch expected"
            );
        } else {
            assert_eq!(used, 60, "no markers without transactions");
        }
    }
}

#[tokio::test]
async fn record_columns_are_checked_before_the_query_starts() {
    let mut broker = Broker::for_test();
    let input = unique("kc-in");
    broker.create_topic(&input, 1);
    let engine = broker.engine();
    let tables = format!(
        "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{input}', 'format' 'json');
         CREATE EXTERNAL TABLE anywhere STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribePattern' 'kc-.*');
         CREATE EXTERNAL TABLE sink STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' 'kc-out');"
    );
    run(&engine, &tables).await;
    let cp = tempfile::tempdir().unwrap();
    let start = |insert: &str| {
        format!(
            "CREATE STREAMING QUERY bad WITH ('checkpoint' '{}') AS {insert}",
            cp.path().join(unique("cp")).display()
        )
    };
    let error = fails(
        &engine,
        &start("INSERT INTO sink (value) SELECT CAST(n AS DOUBLE) FROM src"),
    )
    .await;
    // DataFusion's own INSERT planning refuses types it cannot cast to the column's.
    assert!(
        error.contains("Float64") && error.contains("Binary"),
        "{error}"
    );
    let error = fails(
        &engine,
        &start("INSERT INTO sink (value, topic) SELECT 'x', n FROM src"),
    )
    .await;
    assert!(
        error.contains("'topic'") && error.contains("must be a string"),
        "{error}"
    );
    let error = fails(
        &engine,
        &start("INSERT INTO sink (value, partition) SELECT 'x', 'p1' FROM src"),
    )
    .await;
    assert!(
        error.contains("'partition'") && error.contains("integer"),
        "{error}"
    );
    let error = fails(
        &engine,
        &start("INSERT INTO anywhere (value) SELECT 'x' FROM src"),
    )
    .await;
    assert!(error.contains("no topic"), "{error}");
    let error = fails(
        &engine,
        &start("INSERT INTO sink (value, \"offset\") SELECT 'x', n FROM src"),
    )
    .await;
    assert!(
        error.contains("'offset'") && error.contains("assigned by Kafka"),
        "{error}"
    );
    // The same checks guard a bounded INSERT.
    let error = fails(
        &engine,
        "INSERT INTO sink (value, partition) SELECT 'x', CAST(value AS VARCHAR) FROM generate_series(1, 2)",
    )
    .await;
    assert!(
        error.contains("'partition'") && error.contains("integer"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_instance_on_the_same_checkpoint_is_refused() {
    let pipeline = pipeline("k2", 5);
    let script = |name: &str| {
        format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{input}', 'format' 'json');
             CREATE EXTERNAL TABLE sink STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{output}');
             CREATE STREAMING QUERY {name} WITH ('checkpoint' '{cp}', 'trigger' 'processingTime 100 milliseconds')
               AS INSERT INTO sink (value) SELECT CAST(n AS VARCHAR) FROM src",
            input = pipeline.input,
            output = pipeline.output,
            cp = pipeline.checkpoint.path().join("cp").display(),
        )
    };
    let first_engine = pipeline.broker.engine();
    run(&first_engine, &script("first")).await;
    let second_engine = pipeline.broker.engine();
    let error = fails(&second_engine, &script("second")).await;
    assert!(error.contains("already running"), "{error}");
    assert!(
        error.contains(&format!("process {}", std::process::id())),
        "{error}"
    );
    let first = first_engine.query("first").expect("query");
    let started = std::time::Instant::now();
    while first
        .recent_progress()
        .iter()
        .map(|p| p.num_input_rows)
        .sum::<u64>()
        < 15
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first query reads the input"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.stop().await.expect("stopped");
    // Stopped cleanly, it gave the checkpoint up.
    let third_engine = pipeline.broker.engine();
    run(&third_engine, &script("second")).await;
    third_engine
        .query("second")
        .expect("query")
        .stop()
        .await
        .expect("stopped");
    let out = read_topic(&pipeline.broker.bootstrap(), &pipeline.output, 4);
    assert_eq!(out.len(), 15, "never both writing: every record once");
}

#[tokio::test(flavor = "multi_thread")]
async fn producer_settings_pass_through_with_every_compression_codec() {
    let pipeline = pipeline("kz", 10);
    for codec in ["lz4", "zstd", "snappy", "gzip"] {
        let output = unique(&format!("kz-{codec}"));
        let mut broker_topics = Broker::for_test();
        broker_topics.create_topic(&output, 1);
        let engine = pipeline.broker.engine();
        let cp = pipeline.checkpoint.path().join(codec);
        run(
            &engine,
            &format!(
                "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{input}', 'format' 'json');
                 CREATE EXTERNAL TABLE sink STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{output}',
                   'kafka.bootstrap.servers' '{other}', 'kafka.compression.type' '{codec}',
                   'kafka.linger.ms' '5', 'kafka.batch.size' '16384');
                 CREATE STREAMING QUERY job WITH ('checkpoint' '{cp}', 'trigger' 'availableNow')
                   AS INSERT INTO sink (value) SELECT CAST(n AS VARCHAR) FROM src",
                input = pipeline.input,
                other = broker_topics.bootstrap(),
                cp = cp.display(),
            ),
        )
        .await;
        engine
            .query("job")
            .expect("query")
            .await_termination()
            .await
            .unwrap_or_else(|e| panic!("{codec}: {e}"));
        let out = read_topic(&broker_topics.bootstrap(), &output, 1);
        assert_eq!(out.len(), 30, "{codec}");
    }
}
