//! Windowed aggregation across kills: a `weir run` child process aggregates tumbling windows
//! from a broker in its own process into Parquet, and is killed with SIGKILL while windows are
//! open (once right after a batch's sink commit, then at random moments); each restart restores
//! the windows' state from the checkpoint. In the end every window the watermark closed is in the
//! table once, with the counts a batch query over the same records gives.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use rand::Rng;

use super::common::{Broker, Record, lines, produce, run, spawn_run, unique};

struct Job {
    broker: String,
    topic: String,
    dir: PathBuf,
}

impl Job {
    fn tables(&self) -> String {
        format!(
            "CREATE EXTERNAL TABLE src (k VARCHAR, v BIGINT, ts TIMESTAMP) STORED AS KAFKA
               OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{t}', 'format' 'json', 'maxOffsetsPerTrigger' '40',
                        'watermark' 'ts - INTERVAL ''1 second''');
             CREATE EXTERNAL TABLE lake (window_end TIMESTAMP, k VARCHAR, n BIGINT, total BIGINT)
               STORED AS PARQUET LOCATION '{lake}';",
            t = self.topic,
            lake = self.dir.join("lake").display()
        )
    }

    fn spawn(&self, trigger: &str, fault: Option<&str>) -> Child {
        let script = self
            .dir
            .join(format!("job-{}.sql", trigger.replace(' ', "-")));
        let sql = format!(
            "{}
             CREATE STREAMING QUERY job WITH ('checkpoint' '{cp}', 'trigger' '{trigger}')
               AS INSERT INTO lake SELECT window_end, k, count(*), sum(v)
                  FROM tumble(src, ts, INTERVAL '5' SECOND) GROUP BY window_start, window_end, k;",
            self.tables(),
            cp = self.dir.join("cp").display(),
        );
        std::fs::write(&script, sql).unwrap();
        let env: Vec<(&str, &str)> = fault
            .map(|f| ("WEIR_FAULT_AFTER_SINK_COMMIT", f))
            .into_iter()
            .collect();
        spawn_run(&self.broker, &script, &env)
    }

    /// The watermark after the latest committed batch, from the checkpoint.
    fn watermark(&self) -> i64 {
        let commits = self.dir.join("cp/commits");
        let latest = std::fs::read_dir(&commits)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap();
        let commit: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(commits.join(latest.to_string())).unwrap(),
        )
        .unwrap();
        commit["eventTime"]["watermarkMs"].as_i64().unwrap()
    }
}

fn events(from: usize, to: usize) -> Vec<(i32, String)> {
    (from..to)
        .map(|i| {
            let secs = i / 4;
            (
                (i % 3) as i32,
                format!(
                    "{{\"k\": \"k{}\", \"v\": {i}, \"ts\": \"2024-01-01T00:{:02}:{:02}Z\"}}",
                    i % 5,
                    secs / 60,
                    secs % 60
                ),
            )
        })
        .collect()
}

fn produce_events(bootstrap: &str, topic: &str, values: &[(i32, String)]) {
    let records: Vec<Record<'_>> = values.iter().map(|(p, v)| Record::value(*p, v)).collect();
    produce(bootstrap, topic, &records);
}

fn setup(dir: &Path) -> (Broker, Job) {
    let mut broker = Broker::outliving();
    let topic = unique("windows-crash");
    broker.create_topic(&topic, 3);
    produce_events(&broker.bootstrap(), &topic, &events(0, 600));
    let job = Job {
        broker: broker.bootstrap(),
        topic,
        dir: dir.to_path_buf(),
    };
    (broker, job)
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_are_emitted_once_across_kills_with_open_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, job) = setup(dir.path());

    // Batch 0 leaves windows open in its state; the process dies right after its sink commit.
    assert!(
        !job.spawn("default", Some("abort"))
            .wait()
            .unwrap()
            .success()
    );
    assert!(
        dir.path().join("cp/state/0").exists(),
        "the open windows' state is in the checkpoint"
    );
    let mut rng = rand::rng();
    for kill in 0..10 {
        if kill == 5 {
            produce_events(&broker.bootstrap(), &job.topic, &events(600, 900));
        }
        let mut child = job.spawn("default", Some("sleep:40"));
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1200)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(job.spawn("availableNow", None).wait().unwrap().success());

    let watermark = job.watermark();
    let engine = weir::Engine::builder()
        .bootstrap_servers(broker.bootstrap())
        .build()
        .unwrap();
    run(&engine, &job.tables()).await;
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE fixed (k VARCHAR, v BIGINT, ts TIMESTAMP) STORED AS KAFKA
               OPTIONS ('subscribe' '{}', 'format' 'json', 'endingOffsets' 'latest')",
            job.topic
        ),
    )
    .await;
    let mut streamed = lines(&run(&engine, "SELECT * FROM lake").await.batches);
    streamed.sort();
    let mut expected = lines(
        &run(
            &engine,
            &format!(
                "SELECT * FROM (SELECT window_end, k, count(*), sum(v) FROM tumble(fixed, ts, INTERVAL '5' SECOND)
                                GROUP BY window_start, window_end, k)
                 WHERE window_end <= to_timestamp_millis({watermark})"
            ),
        )
        .await
        .batches,
    );
    expected.sort();
    assert!(expected.len() > 100, "{} windows", expected.len());
    assert_eq!(
        streamed, expected,
        "every closed window once, with its full counts"
    );
}
