//! Exactly-once into Parquet while the engine is killed: a `weir run` child process is killed
//! with SIGKILL at random moments (and once right after the sink committed a batch but before
//! `commits/N`), restarted each time, and the output must hold every input record once.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use rand::Rng;

use super::common::{Broker, json_records, lines, produce_json, run, spawn_run, unique};

struct Job {
    broker: String,
    script: PathBuf,
    dir: PathBuf,
}

impl Job {
    fn new(broker: &Broker, topic: &str, dir: &Path) -> Job {
        let script = dir.join("job.sql");
        let sql = format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '40');
             CREATE EXTERNAL TABLE lake (n BIGINT, p INT, o BIGINT) STORED AS PARQUET LOCATION '{lake}';
             CREATE STREAMING QUERY job WITH ('checkpoint' '{cp}', 'trigger' '{{TRIGGER}}')
               AS INSERT INTO lake SELECT n, _partition, _offset FROM src;",
            lake = dir.join("lake").display(),
            cp = dir.join("cp").display(),
        );
        std::fs::write(&script, sql).unwrap();
        Job {
            broker: broker.bootstrap(),
            script,
            dir: dir.to_path_buf(),
        }
    }

    fn spawn(&self, trigger: &str, fault: Option<&str>) -> Child {
        let sql = std::fs::read_to_string(&self.script)
            .unwrap()
            .replace("{TRIGGER}", trigger);
        let script = self
            .dir
            .join(format!("job-{}.sql", trigger.replace(' ', "-")));
        std::fs::write(&script, sql).unwrap();
        let env: Vec<(&str, &str)> = fault
            .map(|f| ("WEIR_FAULT_AFTER_SINK_COMMIT", f))
            .into_iter()
            .collect();
        spawn_run(&self.broker, &script, &env)
    }

    /// The newest batch planned but not committed whose sink commit is done: a crash landed
    /// between the sink's write and `commits/N`.
    fn committed_in_sink_only(&self) -> Option<u64> {
        let ids = |dir: &str| -> Vec<u64> {
            std::fs::read_dir(self.dir.join("cp").join(dir))
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let planned = ids("offsets").into_iter().max()?;
        let committed = ids("commits").contains(&planned);
        let in_sink = manifest_of(&self.dir.join("lake"), planned).is_some();
        (!committed && in_sink).then_some(planned)
    }
}

/// The manifest committing batch `batch` to the Parquet table at `lake`, if there is one (its
/// name carries the query's id and the batch).
fn manifest_of(lake: &Path, batch: u64) -> Option<PathBuf> {
    let suffix = format!("-{batch:012}.json");
    std::fs::read_dir(lake.join("_weir/batches"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(&suffix))
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_output_is_exactly_once_across_kills() {
    let mut broker = Broker::outliving();
    let topic = unique("crash");
    broker.create_topic(&topic, 3);
    produce_json(&broker.bootstrap(), &topic, &json_records(3, 300, 0));
    let dir = tempfile::tempdir().unwrap();
    let job = Job::new(&broker, &topic, dir.path());

    // A crash right after the sink committed batch 0, before commits/0.
    let status = job.spawn("default", Some("abort")).wait().unwrap();
    assert!(!status.success());
    assert_eq!(
        job.committed_in_sink_only(),
        Some(0),
        "the process died between the sink's commit and commits/0"
    );
    let mut in_window = 1;

    let mut rng = rand::rng();
    for kill in 0..12 {
        if kill == 6 {
            produce_json(&broker.bootstrap(), &topic, &json_records(3, 100, 1000));
        }
        let mut child = job.spawn("default", Some("sleep:60"));
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        child.kill().unwrap();
        child.wait().unwrap();
        in_window += usize::from(job.committed_in_sink_only().is_some());
    }
    let status = job.spawn("availableNow", None).wait().unwrap();
    assert!(status.success(), "the final run drains the topic");
    eprintln!("{in_window} of 13 crashes landed between a sink commit and its commits/N");

    let engine = weir::Engine::builder().build().unwrap();
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE lake (n BIGINT, p INT, o BIGINT) STORED AS PARQUET LOCATION '{}';
             SELECT p, count(*), count(DISTINCT o), min(o), max(o) FROM lake GROUP BY p ORDER BY p",
            dir.path().join("lake").display()
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["0|400|400|0|399", "1|400|400|0|399", "2|400|400|0|399"],
        "every (partition, offset) of the topic exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uncommitted_batch_is_replayed_with_its_recorded_slice() {
    let mut broker = Broker::outliving();
    let topic = unique("replay");
    broker.create_topic(&topic, 2);
    produce_json(&broker.bootstrap(), &topic, &json_records(2, 30, 0));
    let dir = tempfile::tempdir().unwrap();
    let job = Job::new(&broker, &topic, dir.path());
    assert!(
        !job.spawn("default", Some("abort"))
            .wait()
            .unwrap()
            .success()
    );
    let recorded = std::fs::read_to_string(dir.path().join("cp/offsets/0")).unwrap();
    // As if the crash had come before the sink's commit: the batch must run again.
    std::fs::remove_file(manifest_of(&dir.path().join("lake"), 0).expect("batch 0 committed"))
        .unwrap();
    produce_json(&broker.bootstrap(), &topic, &json_records(2, 50, 100));

    let engine = broker.engine();
    let sql = std::fs::read_to_string(&job.script)
        .unwrap()
        .replace("{TRIGGER}", "once");
    run(&engine, &sql).await;
    let query = engine.query("job").unwrap();
    query.await_termination().await.unwrap();
    let replay = &query.recent_progress()[0];
    assert!(replay.replayed);
    assert_eq!(replay.batch_id, 0);
    let recorded: serde_json::Value = serde_json::from_str(&recorded).unwrap();
    for (i, partition) in replay.sources[0].partitions.iter().enumerate() {
        let slice = &recorded["sources"]["src"][i];
        assert_eq!(partition.start_offset, slice["start"].as_i64().unwrap());
        assert_eq!(partition.end_offset, slice["end"].as_i64().unwrap());
    }
    let offsets: i64 = replay.sources[0]
        .partitions
        .iter()
        .map(|p| p.end_offset - p.start_offset)
        .sum();
    assert_eq!(
        replay.num_output_rows as i64, offsets,
        "the replay wrote exactly the recorded slice"
    );
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cp/offsets/0")).unwrap())
            .unwrap();
    assert_eq!(
        after, recorded,
        "offsets/0 is written once and never changed"
    );
}
