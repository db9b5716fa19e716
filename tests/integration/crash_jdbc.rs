//! Exactly-once into PostgreSQL and MariaDB while the engine is killed: a `weir run` child
//! process streaming from a broker in its own process is killed with SIGKILL at random moments
//! (and once right after the database committed a batch, before `commits/N`), restarted each
//! time, and the table must hold every input record once. See crash.rs for Parquet.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use rand::Rng;

use super::common::{Broker, json_records, produce_json, spawn_run, unique};
use super::jdbc::{TestDb, table_name};

struct Job {
    broker: String,
    script: PathBuf,
    dir: PathBuf,
    table: String,
}

impl Job {
    fn new(broker: &Broker, topic: &str, dir: &Path, db: &TestDb, table: &str) -> Job {
        let script = dir.join("job.sql");
        let sql = format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '40');
             CREATE EXTERNAL TABLE sink (n BIGINT, p INT, o BIGINT) STORED AS JDBC LOCATION '{url}' OPTIONS ('table' '{table}');
             CREATE STREAMING QUERY job WITH ('checkpoint' '{cp}', 'trigger' '{{TRIGGER}}')
               AS INSERT INTO sink SELECT n, _partition, _offset FROM src;",
            url = db.url(),
            cp = dir.join("cp").display(),
        );
        std::fs::write(&script, sql).unwrap();
        Job {
            broker: broker.bootstrap(),
            script,
            dir: dir.to_path_buf(),
            table: table.to_string(),
        }
    }

    fn spawn(&self, trigger: &str, fault: Option<&str>) -> Child {
        let sql = std::fs::read_to_string(&self.script)
            .unwrap()
            .replace("{TRIGGER}", trigger);
        let script = self.dir.join(format!("job-{trigger}.sql"));
        std::fs::write(&script, sql).unwrap();
        let env: Vec<(&str, &str)> = fault
            .map(|f| ("WEIR_FAULT_AFTER_SINK_COMMIT", f))
            .into_iter()
            .collect();
        spawn_run(&self.broker, &script, &env)
    }

    /// The newest batch planned but not committed in the checkpoint whose progress row is in
    /// the database: a crash landed between the database's commit and `commits/N`.
    async fn committed_in_sink_only(&self, db: &TestDb) -> Option<u64> {
        let ids = |dir: &str| -> Vec<u64> {
            std::fs::read_dir(self.dir.join("cp").join(dir))
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let planned = ids("offsets").into_iter().max()?;
        if ids("commits").contains(&planned) {
            return None;
        }
        let metadata: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.join("cp/metadata")).ok()?)
                .ok()?;
        let id = metadata["id"].as_str()?;
        let found = db
            .query(&format!(
                "SELECT count(*) FROM _weir_progress WHERE query_id = '{id}' AND batch_id = {planned}"
            ))
            .await;
        (found == ["1"]).then_some(planned)
    }
}

async fn exactly_once_across_kills(db: TestDb) {
    let mut broker = Broker::outliving();
    let topic = unique("crash-jdbc");
    broker.create_topic(&topic, 3);
    produce_json(&broker.bootstrap(), &topic, &json_records(3, 300, 0));
    let dir = tempfile::tempdir().unwrap();
    let table = table_name("crash");
    let job = Job::new(&broker, &topic, dir.path(), &db, &table);

    // A crash right after the database committed batch 0, before commits/0.
    let status = job.spawn("default", Some("abort")).wait().unwrap();
    assert!(!status.success());
    assert_eq!(
        job.committed_in_sink_only(&db).await,
        Some(0),
        "the process died between the database's commit and commits/0"
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
        in_window += usize::from(job.committed_in_sink_only(&db).await.is_some());
    }
    let status = job.spawn("availableNow", None).wait().unwrap();
    assert!(status.success(), "the final run drains the topic");
    eprintln!("{in_window} of 13 crashes landed between a database commit and its commits/N");

    assert_eq!(
        db.query(&format!(
            "SELECT p, count(*), count(DISTINCT o), min(o), max(o) FROM {} GROUP BY p ORDER BY p",
            job.table
        ))
        .await,
        vec!["0|400|400|0|399", "1|400|400|0|399", "2|400|400|0|399"],
        "every (partition, offset) of the topic exactly once"
    );
    db.drop_streamed_table(&job.table).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_output_is_exactly_once_across_kills() {
    if let Some(db) = TestDb::postgres().await {
        exactly_once_across_kills(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_output_is_exactly_once_across_kills() {
    if let Some(db) = TestDb::mysql().await {
        exactly_once_across_kills(db).await;
    }
}
