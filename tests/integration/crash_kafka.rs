//! Exactly-once into Kafka while the engine is killed: a `weir run` child process streams from
//! a broker in its own process (which outlives every kill) into a Kafka table, and is killed
//! with SIGKILL at random moments, once right after a batch was produced but before
//! `commits/N`, and once in the middle of producing a batch. The output topic must hold every
//! input record exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use rand::Rng;

use super::common::{Broker, Record, produce, spawn_run, unique};
use super::kafka_sink::read_topic;

struct Job {
    broker: String,
    dir: PathBuf,
    input: String,
    output: String,
}

impl Job {
    fn script(&self, trigger: &str) -> PathBuf {
        let script = self
            .dir
            .join(format!("job-{}.sql", trigger.replace(' ', "-")));
        let sql = format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{input}', 'format' 'json', 'maxOffsetsPerTrigger' '60');
             CREATE EXTERNAL TABLE sink STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{output}', 'kafka.linger.ms' '20', 'kafka.compression.type' 'lz4');
             CREATE STREAMING QUERY job WITH ('checkpoint' '{cp}', 'trigger' '{trigger}')
               AS INSERT INTO sink (key, value)
                  SELECT CASE WHEN n % 3 = 0 THEN NULL ELSE CAST(n % 11 AS VARCHAR) END, CAST(n AS VARCHAR) FROM src;",
            input = self.input,
            output = self.output,
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

fn setup(dir: &Path) -> (Broker, Job) {
    let mut broker = Broker::outliving();
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
    };
    (broker, job)
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_output_is_exactly_once_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, job) = setup(dir.path());

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
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for record in &out {
        *seen.entry(record.value.clone()).or_default() += 1;
    }
    let expected: Vec<String> = numbers(3, 300, 0)
        .into_iter()
        .chain(numbers(3, 100, 1000))
        .map(|(_, json)| {
            json.trim_start_matches("{\"n\": ")
                .trim_end_matches('}')
                .to_string()
        })
        .collect();
    let duplicated: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(duplicated.is_empty(), "duplicates: {duplicated:?}");
    let missing: Vec<_> = expected.iter().filter(|v| !seen.contains_key(*v)).collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert_eq!(out.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_started_at_once_never_both_write() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, job) = setup(dir.path());
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
