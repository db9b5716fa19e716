//! Exactly-once into a Delta table while the engine is killed: a `weir run` child process is
//! killed with SIGKILL at random moments, and once at each of the two dangerous points — after
//! a batch's data files are written but before its Delta commit, and after the Delta commit
//! but before `commits/N` — restarted each time, and drained. The table, read by weir and by
//! the `deltalake` Python package, must hold every input record once.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use super::common::{Broker, json_records, lines, produce_json, spawn_run, unique};
use super::delta::{read_with_deltalake, read_with_spark};

struct Job {
    broker: String,
    dir: PathBuf,
}

impl Job {
    fn lake(&self) -> PathBuf {
        self.dir.join("lake")
    }

    fn script(&self, topic: &str, trigger: &str) -> String {
        format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '40');
             CREATE EXTERNAL TABLE lake (n BIGINT, p INT, o BIGINT) STORED AS DELTA LOCATION '{lake}'
               OPTIONS ('delta.checkpointInterval' '5', 'partitionBy' 'p');
             CREATE STREAMING QUERY job WITH ('checkpoint' '{cp}', 'trigger' '{trigger}')
               AS INSERT INTO lake SELECT n, _partition, _offset FROM src;",
            lake = self.lake().display(),
            cp = self.dir.join("cp").display(),
        )
    }

    fn spawn(&self, topic: &str, trigger: &str, fault: Option<(&str, &str)>) -> Child {
        let script = self
            .dir
            .join(format!("job-{}.sql", trigger.replace(' ', "-")));
        std::fs::write(&script, self.script(topic, trigger)).unwrap();
        let env: Vec<(&str, &str)> = fault.into_iter().collect();
        spawn_run(&self.broker, &script, &env)
    }

    fn batch_ids(&self, dir: &str) -> Vec<u64> {
        std::fs::read_dir(self.dir.join("cp").join(dir))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The newest batch planned (`offsets/N`) but not committed (`commits/N`).
    fn uncommitted(&self) -> Option<u64> {
        let planned = self.batch_ids("offsets").into_iter().max()?;
        (!self.batch_ids("commits").contains(&planned)).then_some(planned)
    }

    /// The batch ids the Delta log's commits record in their `txn` actions.
    fn committed_in_delta(&self) -> Vec<u64> {
        let log = self.lake().join("_delta_log");
        let mut versions = vec![];
        for entry in std::fs::read_dir(log).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    let action: Value = serde_json::from_str(line).unwrap();
                    if let Some(version) = action["txn"]["version"].as_u64() {
                        versions.push(version);
                    }
                }
            }
        }
        versions.sort_unstable();
        versions
    }

    /// Data files in the table's partition directories that no commit adds: an attempt's
    /// files whose commit never came.
    fn uncommitted_files(&self) -> usize {
        let log = std::fs::read_dir(self.lake().join("_delta_log"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect::<String>();
        let partitions = std::fs::read_dir(self.lake())
            .into_iter()
            .flatten()
            .flatten();
        partitions
            .filter(|p| p.file_name().to_string_lossy().starts_with("p="))
            .flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
            .filter(|e| !log.contains(e.file_name().to_string_lossy().as_ref()))
            .count()
    }
}

fn exits_with_failure(mut child: Child) {
    assert!(
        !child.wait().unwrap().success(),
        "the fault hook ended the process"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_output_is_exactly_once_across_kills() {
    let mut broker = Broker::outliving();
    let topic = unique("crash_delta");
    broker.create_topic(&topic, 3);
    produce_json(&broker.bootstrap(), &topic, &json_records(3, 300, 0));
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        broker: broker.bootstrap(),
        dir: dir.path().to_path_buf(),
    };

    // A crash after batch 0's data files, before its Delta commit.
    let before_commit = ("WEIR_FAULT_DELTA_BEFORE_COMMIT", "abort");
    exits_with_failure(job.spawn(&topic, "default", Some(before_commit)));
    assert_eq!(job.uncommitted(), Some(0));
    assert!(job.committed_in_delta().is_empty(), "no Delta commit yet");
    assert!(
        job.uncommitted_files() > 0,
        "the data files were written, and no commit names them"
    );

    // A crash after batch 0's Delta commit, before commits/0.
    let after_commit = ("WEIR_FAULT_AFTER_SINK_COMMIT", "abort");
    exits_with_failure(job.spawn(&topic, "default", Some(after_commit)));
    assert_eq!(job.uncommitted(), Some(0));
    assert_eq!(
        job.committed_in_delta(),
        vec![0],
        "batch 0 is in the Delta log"
    );

    let mut rng = rand::rng();
    let mut between = 0;
    for kill in 0..16 {
        if kill == 8 {
            produce_json(&broker.bootstrap(), &topic, &json_records(3, 100, 1000));
        }
        let mut child = job.spawn(
            &topic,
            "default",
            Some(("WEIR_FAULT_AFTER_SINK_COMMIT", "sleep:60")),
        );
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        child.kill().unwrap();
        child.wait().unwrap();
        let in_delta = job.committed_in_delta();
        between += usize::from(job.uncommitted().is_some_and(|b| in_delta.contains(&b)));
    }
    let status = job.spawn(&topic, "availableNow", None).wait().unwrap();
    assert!(status.success(), "the final run drains the topic");
    eprintln!("{between} of 16 kills landed between a Delta commit and its commits/N");

    let committed = job.committed_in_delta();
    let mut unique_batches = committed.clone();
    unique_batches.dedup();
    assert_eq!(
        committed, unique_batches,
        "no batch committed twice to Delta"
    );
    let last = job.batch_ids("commits").into_iter().max().unwrap();
    assert_eq!(
        committed,
        (0..=last).collect::<Vec<_>>(),
        "every batch once, in order"
    );
    assert!(
        job.lake().join("_delta_log/_last_checkpoint").exists(),
        "Delta checkpoints of the log were written along the way"
    );

    let engine = weir::Engine::builder().build().unwrap();
    let expected = vec!["0|400|400|0|399", "1|400|400|0|399", "2|400|400|0|399"];
    let result = super::common::run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE lake STORED AS DELTA LOCATION '{}';
             SELECT p, count(*), count(DISTINCT o), min(o), max(o) FROM lake GROUP BY p ORDER BY p",
            job.lake().display()
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        expected,
        "weir reads every offset once"
    );
    let lake = job.lake().display().to_string();
    if let Some(read) = read_with_deltalake(&lake, "", &[]) {
        assert_eq!(
            per_partition(&read),
            expected,
            "the deltalake package reads every offset once"
        );
    }
    if let Some(read) = read_with_spark(&lake) {
        assert_eq!(read["partitions"], serde_json::json!(["p"]));
        assert_eq!(
            per_partition(&read),
            expected,
            "Spark with delta-spark reads every offset once"
        );
    }
}

/// `p|count|distinct offsets|min|max` per partition of the rows `read` holds.
fn per_partition(read: &Value) -> Vec<String> {
    let columns: Vec<&str> = read["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let at = |name: &str| columns.iter().position(|c| *c == name).unwrap();
    let (p_at, o_at) = (at("p"), at("o"));
    let mut offsets: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for row in read["rows"].as_array().unwrap() {
        let p = row[p_at].as_i64().unwrap();
        offsets
            .entry(p)
            .or_default()
            .push(row[o_at].as_i64().unwrap());
    }
    offsets
        .into_iter()
        .map(|(p, mut o)| {
            let count = o.len();
            o.sort_unstable();
            o.dedup();
            format!("{p}|{count}|{}|{}|{}", o.len(), o[0], o[o.len() - 1])
        })
        .collect()
}
