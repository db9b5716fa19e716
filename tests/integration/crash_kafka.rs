//! Exactly-once into Kafka while the engine is killed: a `weir run` child process streams from
//! a broker in its own process (which outlives every kill) into a Kafka table, and is killed
//! with SIGKILL at random moments, once right after a batch was produced but before
//! `commits/N`, and once in the middle of producing a batch. The output topic must hold every
//! input record exactly once: without transactions (records found by content on a replay), and
//! with them on the real broker, where Kafka's own console consumer reading `read_committed`
//! must also never see part of a batch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use rand::Rng;

use super::common::{Broker, Record, produce, real_broker_or_skip, spawn_run, unique};
use super::kafka_sink::read_topic;
use super::real_kafka::console_consume;

struct Job {
    broker: String,
    dir: PathBuf,
    input: String,
    output: String,
    /// Extra options of the sink table.
    sink_options: &'static str,
}

impl Job {
    fn script(&self, trigger: &str) -> PathBuf {
        let script = self
            .dir
            .join(format!("job-{}.sql", trigger.replace(' ', "-")));
        let sql = format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{input}', 'format' 'json', 'maxOffsetsPerTrigger' '60');
             CREATE EXTERNAL TABLE sink STORED AS KAFKA OPTIONS ('subscribe' '{output}', 'kafka.linger.ms' '20', 'kafka.compression.type' 'lz4' {sink_options});
             CREATE STREAMING QUERY job WITH ('checkpoint' '{cp}', 'trigger' '{trigger}', 'checkpointRetention' '1000')
               AS INSERT INTO sink (key, value)
                  SELECT CASE WHEN n % 3 = 0 THEN NULL ELSE CAST(n % 11 AS VARCHAR) END, CAST(n AS VARCHAR) FROM src;",
            input = self.input,
            output = self.output,
            sink_options = self.sink_options,
            cp = self.dir.join("cp").display(),
        );
        std::fs::write(&script, sql).unwrap();
        script
    }

    fn spawn(&self, trigger: &str, fault: Option<(&str, &str)>) -> Child {
        spawn_run(
            &self.broker,
            &self.script(trigger),
            &fault.into_iter().collect::<Vec<_>>(),
        )
    }

    fn batches(&self, dir: &str) -> Vec<u64> {
        std::fs::read_dir(self.dir.join("cp").join(dir))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the newest planned batch has no commit: the next start replays it.
    fn uncommitted(&self) -> bool {
        match self.batches("offsets").into_iter().max() {
            Some(planned) => !self.batches("commits").contains(&planned),
            None => false,
        }
    }
}

fn numbers(partitions: i32, count: usize, from: usize) -> Vec<(i32, String)> {
    (0..partitions)
        .flat_map(|p| {
            (0..count).map(move |i| (p, format!("{{\"n\": {}}}", from + p as usize * 100_000 + i)))
        })
        .collect()
}

fn produce_numbers(bootstrap: &str, topic: &str, values: &[(i32, String)]) {
    let records: Vec<Record<'_>> = values.iter().map(|(p, v)| Record::value(*p, v)).collect();
    produce(bootstrap, topic, &records);
}

fn setup(dir: &Path, sink_options: &'static str) -> (Broker, Job) {
    setup_on(Broker::outliving(), dir, sink_options)
}

fn setup_on(mut broker: Broker, dir: &Path, sink_options: &'static str) -> (Broker, Job) {
    let input = unique("kcrash-in");
    let output = unique("kcrash-out");
    broker.create_topic(&input, 3);
    broker.create_topic(&output, 4);
    produce_numbers(&broker.bootstrap(), &input, &numbers(3, 300, 0));
    let job = Job {
        broker: broker.bootstrap(),
        dir: dir.to_path_buf(),
        input,
        output,
        sink_options,
    };
    (broker, job)
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_output_is_exactly_once_across_kills_without_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, job) = setup(dir.path(), ", 'transactional' 'false'");

    // Dies right after batch 0 was produced and acknowledged, before commits/0.
    assert!(
        !job.spawn("default", Some(("WEIR_FAULT_AFTER_SINK_COMMIT", "abort")))
            .wait()
            .unwrap()
            .success()
    );
    assert!(job.uncommitted(), "batch 0 produced but not committed");
    // Dies in the middle of the replay of batch 0 (25 records sent again would be
    // duplicates, so it sends none and moves on), then in the middle of batch 1.
    assert!(
        !job.spawn("default", Some(("WEIR_FAULT_KAFKA_SINK_PARTIAL", "25")))
            .wait()
            .unwrap()
            .success()
    );
    assert!(job.uncommitted(), "a batch was partly produced");

    let mut rng = rand::rng();
    let mut uncommitted = 0;
    for kill in 0..12 {
        if kill == 6 {
            produce_numbers(&broker.bootstrap(), &job.input, &numbers(3, 100, 1000));
        }
        let mut child = job.spawn(
            "default",
            Some(("WEIR_FAULT_AFTER_SINK_COMMIT", "sleep:40")),
        );
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        child.kill().unwrap();
        child.wait().unwrap();
        uncommitted += usize::from(job.uncommitted());
    }
    assert!(job.spawn("availableNow", None).wait().unwrap().success());
    eprintln!("{uncommitted} of 12 random kills left a batch produced but not committed");

    let out = read_topic(&broker.bootstrap(), &job.output, 4);
    assert_exactly_once(out.iter().map(|r| r.value.as_str()), &expected_values());
}

/// Every value the input holds once it is fully produced, as the sink writes it.
fn expected_values() -> Vec<String> {
    numbers(3, 300, 0)
        .into_iter()
        .chain(numbers(3, 100, 1000))
        .map(|(_, json)| {
            json.trim_start_matches("{\"n\": ")
                .trim_end_matches('}')
                .to_string()
        })
        .collect()
}

fn assert_exactly_once<'a>(values: impl Iterator<Item = &'a str>, expected: &[String]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for value in values {
        *seen.entry(value).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(duplicated.is_empty(), "duplicates: {duplicated:?}");
    let missing: Vec<_> = expected
        .iter()
        .filter(|v| !seen.contains_key(v.as_str()))
        .collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert_eq!(seen.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn transactional_output_is_exactly_once_and_whole_for_read_committed_readers_across_kills() {
    let Some(broker) = real_broker_or_skip("transactional kills") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (broker, job) = setup_on(broker, dir.path(), ", 'transactional' 'true'");
    let faults = [
        ("WEIR_FAULT_KAFKA_BEFORE_COMMIT", "abort"),
        ("WEIR_FAULT_KAFKA_SINK_PARTIAL", "25"),
        ("WEIR_FAULT_AFTER_SINK_COMMIT", "abort"),
        ("WEIR_FAULT_KAFKA_BEFORE_COMMIT", "abort"),
    ];
    for fault in faults {
        assert!(
            !job.spawn("default", Some(fault)).wait().unwrap().success(),
            "{fault:?}"
        );
        assert!(job.uncommitted(), "{fault:?} left a batch uncommitted");
    }
    let mut rng = rand::rng();
    let mut uncommitted = 0;
    for kill in 0..20 {
        if kill == 10 {
            produce_numbers(&broker.bootstrap(), &job.input, &numbers(3, 100, 1000));
        }
        let mut child = job.spawn(
            "default",
            Some(("WEIR_FAULT_AFTER_SINK_COMMIT", "sleep:40")),
        );
        std::thread::sleep(Duration::from_millis(rng.random_range(400..1600)));
        child.kill().unwrap();
        child.wait().unwrap();
        uncommitted += usize::from(job.uncommitted());
    }
    assert!(job.spawn("availableNow", None).wait().unwrap().success());
    eprintln!("{uncommitted} of 20 random kills left a batch uncommitted");

    // Kafka's own consumer, reading only committed records.
    let out = console_consume(&broker.bootstrap(), &job.output, "read_committed");
    assert_exactly_once(out.iter().map(|r| r.value.as_str()), &expected_values());
    // Every batch in the topic is whole: as many records as its slice held offsets.
    let mut per_batch: BTreeMap<u64, i64> = BTreeMap::new();
    for record in &out {
        let batch = record.headers["weir.batch.id"].parse().unwrap();
        *per_batch.entry(batch).or_default() += 1;
    }
    for (batch, records) in per_batch {
        let offsets: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("cp/offsets/{batch}"))).unwrap(),
        )
        .unwrap();
        let size: i64 = offsets["sources"]["src"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["end"].as_i64().unwrap() - s["start"].as_i64().unwrap())
            .sum();
        assert_eq!(records, size, "batch {batch} is whole");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_with_the_querys_transactional_id_fences_it() {
    let Some(broker) = real_broker_or_skip("fencing") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (broker, job) = setup_on(broker, dir.path(), ", 'transactional' 'true'");
    let engine = broker.engine();
    let sql = std::fs::read_to_string(job.script("processingTime 200 milliseconds")).unwrap();
    super::common::run(&engine, &sql).await;
    let query = engine.query("job").unwrap();
    let started = std::time::Instant::now();
    while query.progress().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "a first batch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another instance with the same transactional.id (as a second weir on a copy of the
    // checkpoint would have) initialises it: the query's producer is fenced.
    let other: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("transactional.id", format!("weir-{}", query.id()))
        .create()
        .unwrap();
    rdkafka::producer::Producer::init_transactions(&other, Duration::from_secs(30)).unwrap();
    produce_numbers(&broker.bootstrap(), &job.input, &numbers(3, 10, 5000));
    let e = query.await_termination().await.unwrap_err().to_string();
    assert!(
        e.contains("took over") && e.contains(&format!("weir-{}", query.id())),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_started_at_once_never_both_write() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, job) = setup(dir.path(), "");
    let script = job.script("processingTime 100 milliseconds");
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["--bootstrap-servers", &job.broker, "run"])
            .arg(&script)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = start();
    let mut second = start();
    // One of them is refused at once; the other keeps running.
    let started = std::time::Instant::now();
    let (mut refused, mut running) = loop {
        if let Some(status) = first.try_wait().unwrap() {
            assert!(!status.success());
            break (first, second);
        }
        if let Some(status) = second.try_wait().unwrap() {
            assert!(!status.success());
            break (second, first);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "neither instance was refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut message = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().unwrap(), &mut message).unwrap();
    assert!(message.contains("already running"), "{message}");
    let mut out = vec![];
    while out.len() < 900 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            running.try_wait().unwrap().is_none(),
            "the other instance goes on"
        );
        out = read_topic(&broker.bootstrap(), &job.output, 4);
    }
    running.kill().unwrap();
    running.wait().unwrap();
    let _ = refused.wait();
    let mut values: Vec<&str> = out.iter().map(|r| r.value.as_str()).collect();
    values.sort_unstable();
    let before = values.len();
    values.dedup();
    assert_eq!(values.len(), before, "no record written twice");
    assert_eq!(before, 900, "the running instance wrote everything once");
}
