//! Delta Lake tables: INSERT and SELECT, partitions, streaming queries (append and complete
//! modes, two queries into one table), OPTIMIZE and VACUUM while a query runs, and bad input.
//! What weir wrote is read back by the `deltalake` Python package (`tests/delta/read.py`);
//! `.ci/run` installs it and sets WEIR_REQUIRE_PYTHON_LIBS, so CI never skips that reader.

use std::ops::Range;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::common::{Broker, eventually, fails, lines, produce_json, rows_read, run, unique};

/// What the `deltalake` Python package sees in the table at `uri`, or `None` when the package
/// is missing and not required.
pub fn read_with_deltalake(uri: &str, storage_options: &str, apps: &[&str]) -> Option<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/delta/read.py");
    let output = Command::new("python3")
        .args([script, uri, storage_options, &apps.join(",")])
        .output();
    let failure = match &output {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(failure) = failure {
        assert!(
            std::env::var("WEIR_REQUIRE_PYTHON_LIBS").is_err()
                || !failure.contains("No module named 'deltalake'"),
            "the deltalake package is missing (python3 -m pip install deltalake): {failure}"
        );
        assert!(
            failure.contains("No module named") || failure.contains("No such file"),
            "the deltalake package could not read {uri}: {failure}"
        );
        eprintln!(
            "skipped: reading with the deltalake package needs python3 -m pip install deltalake"
        );
        return None;
    }
    let stdout = output.map(|o| o.stdout).unwrap_or_default();
    Some(serde_json::from_slice(&stdout).expect("read.py prints JSON"))
}

/// What Apache Spark with Delta Lake's Spark connector sees in the table at `path`, or `None`
/// when pyspark or the connector's jars (`tests/delta/spark-jars.sh`) are missing and
/// WEIR_REQUIRE_SPARK is not set.
pub fn read_with_spark(path: &str) -> Option<Value> {
    let required = std::env::var("WEIR_REQUIRE_SPARK").is_ok();
    if std::env::var("WEIR_TEST_DELTA_SPARK_JARS").is_err() {
        assert!(
            !required,
            "WEIR_REQUIRE_SPARK is set but WEIR_TEST_DELTA_SPARK_JARS is not: run tests/delta/spark-jars.sh"
        );
        eprintln!("skipped: reading with Spark needs pyspark and tests/delta/spark-jars.sh");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/delta/spark_read.py");
    let output = Command::new("python3")
        .args([script, path])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("No module named 'pyspark'") && !required {
        eprintln!("skipped: reading with Spark needs python3 -m pip install pyspark==4.0.1");
        return None;
    }
    assert!(
        output.status.success(),
        "Spark could not read {path}: {stderr}"
    );
    Some(serde_json::from_slice(&output.stdout).expect("spark_read.py prints JSON"))
}

/// The rows `read` holds, each as its cells joined with '|', sorted.
pub fn sorted_rows(read: &Value) -> Vec<String> {
    let mut rows: Vec<String> = read["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            let cells: Vec<String> = row
                .as_array()
                .expect("a row")
                .iter()
                .map(|cell| match cell {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            cells.join("|")
        })
        .collect();
    rows.sort();
    rows
}

fn path_of(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// JSON values `{"n": …, "k": "k<n % 3>"}` for `values` on each of `partitions` partitions.
fn keyed_json(partitions: i32, values: Range<i64>) -> Vec<(i32, String)> {
    (0..partitions)
        .flat_map(|p| {
            values
                .clone()
                .map(move |n| (p, format!("{{\"n\": {n}, \"k\": \"k{}\"}}", n % 3)))
        })
        .collect()
}

/// A broker with a topic of `partitions` partitions holding `keyed_json(values)`, a directory
/// for tables and checkpoints, and an engine on the broker.
fn keyed_topic(
    prefix: &str,
    partitions: i32,
    values: Range<i64>,
) -> (Broker, String, tempfile::TempDir, weir::Engine) {
    let mut broker = Broker::for_test();
    let topic = unique(prefix);
    broker.create_topic(&topic, partitions);
    produce_json(&broker.bootstrap(), &topic, &keyed_json(partitions, values));
    let engine = broker.engine();
    (broker, topic, tempfile::tempdir().unwrap(), engine)
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_select_overwrite_and_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = path_of(dir.path(), "events");
    let engine = weir::Engine::builder().build().unwrap();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE events (id BIGINT, name VARCHAR, day DATE, amount DOUBLE)
               STORED AS DELTA LOCATION '{lake}'
               OPTIONS ('partitionBy' 'day', 'parquet.compression' 'zstd', 'delta.checkpointInterval' '2');
             INSERT INTO events VALUES (1, 'a', DATE '2026-01-01', 1.5), (2, 'b', DATE '2026-01-02', 2.5);
             INSERT INTO events VALUES (3, NULL, DATE '2026-01-01', 3.5)"
        ),
    )
    .await;
    let result = run(
        &engine,
        "SELECT id, name, day, amount FROM events ORDER BY id",
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec![
            "1|a|2026-01-01|1.5",
            "2|b|2026-01-02|2.5",
            "3||2026-01-01|3.5"
        ]
    );
    let filtered = run(
        &engine,
        "SELECT count(*) FROM events WHERE day = DATE '2026-01-01'",
    )
    .await;
    assert_eq!(lines(&filtered.batches), vec!["2"]);
    assert!(
        dir.path().join("events/day=2026-01-01").is_dir(),
        "partition directories as Delta lays them out"
    );
    assert!(
        dir.path()
            .join("events/_delta_log/_last_checkpoint")
            .exists(),
        "a Delta checkpoint every 'delta.checkpointInterval' commits"
    );
    if let Some(read) = read_with_deltalake(&lake, "", &[]) {
        assert_eq!(read["partitions"], serde_json::json!(["day"]));
        assert_eq!(
            sorted_rows(&read),
            vec![
                "1|a|2026-01-01|1.5",
                "2|b|2026-01-02|2.5",
                "3|null|2026-01-01|3.5"
            ]
        );
    }

    // Another session declaring the table without columns takes the table's.
    let other = weir::Engine::builder().build().unwrap();
    let again = run(
        &other,
        &format!(
            "CREATE EXTERNAL TABLE events STORED AS DELTA LOCATION '{lake}';
             INSERT OVERWRITE events VALUES (9, 'z', DATE '2026-02-01', 0.0);
             SELECT * FROM events"
        ),
    )
    .await;
    assert_eq!(lines(&again.batches), vec!["9|z|2026-02-01|0.0"]);
    let first = run(&engine, "SELECT count(*) FROM events").await;
    assert_eq!(
        lines(&first.batches),
        vec!["1"],
        "a SELECT reads the latest version"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_columns_must_agree_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let lake = path_of(dir.path(), "t");
    let engine = weir::Engine::builder().build().unwrap();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE t (id BIGINT, name VARCHAR) STORED AS DELTA LOCATION '{lake}';
             INSERT INTO t VALUES (1, 'one')"
        ),
    )
    .await;
    let declare = |columns: &str, options: &str| {
        format!("CREATE EXTERNAL TABLE u ({columns}) STORED AS DELTA LOCATION '{lake}' {options}")
    };
    let refusals = [
        (
            "id INT, name VARCHAR",
            "",
            "column 'id' is declared Int32 but the table stores Int64",
        ),
        (
            "id BIGINT",
            "",
            "the table has column 'name', which the declaration lacks",
        ),
        (
            "name VARCHAR, id BIGINT",
            "",
            "column 1 is 'name' in the declaration but 'id' in the table",
        ),
        (
            "id BIGINT, name VARCHAR, score DOUBLE",
            "",
            "columns the table lacks (score); set 'mergeSchema' 'true'",
        ),
        (
            "id BIGINT, name VARCHAR, score DOUBLE NOT NULL",
            "OPTIONS ('mergeSchema' 'true')",
            "column 'score' is NOT NULL",
        ),
        (
            "id BIGINT, name VARCHAR",
            "OPTIONS ('partitionBy' 'name')",
            "the table is partitioned by (), not by (name)",
        ),
        (
            "id BIGINT, name VARCHAR",
            "OPTIONS ('delta.checkpointInterval' '5')",
            "the table has delta.checkpointInterval = (unset), not 5",
        ),
    ];
    for (columns, options, expected) in refusals {
        let e = fails(&engine, &declare(columns, options)).await;
        assert!(e.contains(expected), "({columns}) {options}: {e}");
    }

    // mergeSchema adds a nullable column, as Delta's schema evolution does.
    run(
        &engine,
        &format!(
            "{};
             INSERT INTO u VALUES (2, 'two', 0.5)",
            declare(
                "id BIGINT, name VARCHAR, score DOUBLE",
                "OPTIONS ('mergeSchema' 'true')"
            )
        ),
    )
    .await;
    let result = run(&engine, "SELECT * FROM u ORDER BY id").await;
    assert_eq!(lines(&result.batches), vec!["1|one|", "2|two|0.5"]);
    if let Some(read) = read_with_deltalake(&lake, "", &[]) {
        assert_eq!(read["columns"], serde_json::json!(["id", "name", "score"]));
        assert_eq!(sorted_rows(&read), vec!["1|one|null", "2|two|0.5"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_locations_and_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = weir::Engine::builder().build().unwrap();
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("data.csv"), "1,2\n").unwrap();
    let e = fails(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE t (a BIGINT) STORED AS DELTA LOCATION '{}'",
            plain.display()
        ),
    )
    .await;
    assert!(
        e.contains("is not a Delta table (it has no _delta_log) and is not empty"),
        "{e}"
    );
    assert!(
        !plain.join("_delta_log").exists(),
        "nothing written into a foreign directory"
    );

    let empty = path_of(dir.path(), "empty");
    let refusals = [
        ("", "", "declare its columns to create it"),
        (
            "(a BIGINT)",
            "('createIfMissing' 'false')",
            "'createIfMissing' is false",
        ),
        (
            "(a BIGINT)",
            "('subscribe' 'x')",
            "unknown option 'subscribe' for a Delta table",
        ),
        (
            "(a BIGINT)",
            "('partitionBy' 'b')",
            "partition column 'b' is not a declared column",
        ),
        (
            "(a BIGINT)",
            "('delta.checkpointInterval' 'often')",
            "'delta.checkpointInterval' has the value 'often'; expected a positive whole number",
        ),
    ];
    for (columns, options, expected) in refusals {
        let options = if options.is_empty() {
            String::new()
        } else {
            format!("OPTIONS {options}")
        };
        let e = fails(
            &engine,
            &format!(
                "CREATE EXTERNAL TABLE t {columns} STORED AS DELTA LOCATION '{empty}' {options}"
            ),
        )
        .await;
        assert!(e.contains(expected), "{columns} {options}: {e}");
    }
    assert!(
        !Path::new(&empty).join("_delta_log").exists(),
        "no table made by a refused declaration"
    );

    let e = fails(
        &engine,
        "CREATE EXTERNAL TABLE p (a BIGINT) STORED AS MEMORY; OPTIMIZE p",
    )
    .await;
    assert!(
        e.contains("OPTIMIZE works on Delta tables (STORED AS DELTA); 'p' is not one"),
        "{e}"
    );
    let e = fails(&engine, "OPTIMIZE nosuch").await;
    assert!(e.contains("nosuch"), "{e}");
    let e = fails(&engine, "VACUUM p RETAIN many HOURS").await;
    assert!(
        e.contains("expected VACUUM table [RETAIN n HOURS] [DRY RUN]"),
        "{e}"
    );
    let lake = path_of(dir.path(), "kept");
    let e = fails(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE kept (a BIGINT) STORED AS DELTA LOCATION '{lake}';
             INSERT INTO kept VALUES (1);
             VACUUM kept RETAIN 0 HOURS"
        ),
    )
    .await;
    assert!(
        e.contains(
            "VACUUM RETAIN 0 HOURS is shorter than the table's delta.deletedFileRetentionDuration (604800 s)"
        ),
        "VACUUM keeps files a reader of a recent version may need: {e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_into_delta_commits_each_batch_with_its_txn() {
    let (_broker, topic, dir, engine) = keyed_topic("delta", 2, 0..50);
    let lake = path_of(dir.path(), "lake");
    let cp = path_of(dir.path(), "cp");
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT, k VARCHAR) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '40');
             CREATE EXTERNAL TABLE lake (n BIGINT, k VARCHAR, p INT, o BIGINT) STORED AS DELTA LOCATION '{lake}' OPTIONS ('partitionBy' 'k');
             CREATE STREAMING QUERY job WITH ('trigger' 'availableNow', 'checkpoint' '{cp}')
               AS INSERT INTO lake SELECT n, k, _partition, _offset FROM src"
        ),
    )
    .await;
    let query = engine.query("job").unwrap();
    query.await_termination().await.unwrap();
    let batches = query.recent_progress().len();
    assert_eq!(batches, 3, "100 offsets in batches of at most 40");
    let result = run(&engine, "SELECT count(*), count(DISTINCT (p, o)) FROM lake").await;
    assert_eq!(lines(&result.batches), vec!["100|100"]);
    let Some(read) = read_with_deltalake(&lake, "", &[query.id()]) else {
        return;
    };
    assert_eq!(read["rows"].as_array().unwrap().len(), 100);
    assert_eq!(
        read["txn"][query.id()],
        2,
        "the last commit carries the query's id and its last batch id"
    );
    assert_eq!(
        read["version"], 3,
        "one Delta commit per batch after the table's creation"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_mode_replaces_the_rows_and_update_mode_is_refused() {
    let (broker, topic, dir, engine) = keyed_topic("delta_agg", 1, 0..30);
    let lake = path_of(dir.path(), "counts");
    let cp = path_of(dir.path(), "cp");
    let start = format!(
        "CREATE STREAMING QUERY counts WITH ('trigger' 'availableNow', 'checkpoint' '{cp}', 'outputMode' 'complete')
           AS INSERT INTO counts SELECT k, count(*) FROM src GROUP BY k"
    );
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT, k VARCHAR) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '10');
             CREATE EXTERNAL TABLE counts (k VARCHAR, c BIGINT) STORED AS DELTA LOCATION '{lake}';
             {start}"
        ),
    )
    .await;
    engine
        .query("counts")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    produce_json(&broker.bootstrap(), &topic, &keyed_json(1, 30..36));
    run(&engine, &start).await;
    engine
        .query("counts")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    let result = run(&engine, "SELECT k, c FROM counts ORDER BY k").await;
    assert_eq!(lines(&result.batches), vec!["k0|12", "k1|12", "k2|12"]);
    if let Some(read) = read_with_deltalake(&lake, "", &[]) {
        assert_eq!(sorted_rows(&read), vec!["k0|12", "k1|12", "k2|12"]);
    }

    let e = fails(
        &engine,
        &format!(
            "CREATE STREAMING QUERY updates WITH ('checkpoint' '{}', 'outputMode' 'update')
               AS INSERT INTO counts SELECT k, count(*) FROM src GROUP BY k",
            path_of(dir.path(), "cp2")
        ),
    )
    .await;
    assert!(
        e.contains("'outputMode' 'update' is not supported by the sink: Delta table 'counts' takes append and complete modes"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_queries_write_one_table_each_with_its_own_txn() {
    let mut broker = Broker::for_test();
    let (first, second) = (unique("delta_a"), unique("delta_b"));
    broker.create_topic(&first, 2);
    broker.create_topic(&second, 2);
    produce_json(&broker.bootstrap(), &first, &keyed_json(2, 0..60));
    produce_json(&broker.bootstrap(), &second, &keyed_json(2, 1000..1060));
    let dir = tempfile::tempdir().unwrap();
    let lake = path_of(dir.path(), "both");
    let engine = broker.engine();
    let query = |name: &str, table: &str| {
        format!(
            "CREATE STREAMING QUERY {name} WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO both_topics SELECT n, '{name}' AS source FROM {table}",
            path_of(dir.path(), name)
        )
    };
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE a (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{first}', 'format' 'json', 'maxOffsetsPerTrigger' '15');
             CREATE EXTERNAL TABLE b (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{second}', 'format' 'json', 'maxOffsetsPerTrigger' '15');
             CREATE EXTERNAL TABLE both_topics (n BIGINT, source VARCHAR) STORED AS DELTA LOCATION '{lake}';
             {};
             {}",
            query("qa", "a"),
            query("qb", "b")
        ),
    )
    .await;
    let (qa, qb) = (engine.query("qa").unwrap(), engine.query("qb").unwrap());
    qa.await_termination().await.unwrap();
    qb.await_termination().await.unwrap();
    let result = run(
        &engine,
        "SELECT source, count(*), count(DISTINCT n), min(n), max(n) FROM both_topics GROUP BY source ORDER BY source",
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["qa|120|60|0|59", "qb|120|60|1000|1059"],
        "both queries' rows, each once per (partition, offset)"
    );
    if let Some(read) = read_with_deltalake(&lake, "", &[qa.id(), qb.id()]) {
        assert_eq!(read["rows"].as_array().unwrap().len(), 240);
        let last = |q: &weir::stream::QueryHandle| q.recent_progress().last().unwrap().batch_id;
        assert_eq!(read["txn"][qa.id()], last(&qa));
        assert_eq!(read["txn"][qb.id()], last(&qb));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn optimize_and_vacuum_while_a_query_runs_keep_the_table_exact() {
    let (broker, topic, dir, engine) = keyed_topic("delta_live", 2, 0..0);
    let lake = path_of(dir.path(), "live");
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '25');
             CREATE EXTERNAL TABLE live (n BIGINT, p INT, o BIGINT) STORED AS DELTA LOCATION '{lake}'
               OPTIONS ('delta.deletedFileRetentionDuration' 'interval 1 second', 'delta.checkpointInterval' '4');
             CREATE STREAMING QUERY live_job WITH ('trigger' '100 milliseconds', 'checkpoint' '{}')
               AS INSERT INTO live SELECT n, _partition, _offset FROM src",
            path_of(dir.path(), "cp")
        ),
    )
    .await;
    let mut produced = 0i64;
    let mut compacted = 0u64;
    let mut vacuumed = 0usize;
    for round in 0..6 {
        produce_json(
            &broker.bootstrap(),
            &topic,
            &keyed_json(2, produced..produced + 40),
        );
        produced += 40;
        let optimized = run(&engine, "OPTIMIZE live").await;
        compacted += lines(&optimized.batches)[0]
            .split('|')
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap();
        if round >= 2 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        vacuumed += run(&engine, "VACUUM live")
            .await
            .batches
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>();
        let seen = run(&engine, "SELECT count(*), count(DISTINCT (p, o)) FROM live").await;
        let cells: Vec<u64> = lines(&seen.batches)[0]
            .split('|')
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(cells[0], cells[1], "no row twice, in round {round}");
        assert!(cells[0] <= 2 * produced as u64);
    }
    let total = 2 * produced as u64;
    let query = engine.query("live_job").unwrap();
    eventually("the query reads every record", || {
        rows_read(&query) == total
    })
    .await;
    query.stop().await.unwrap();
    assert!(compacted > 0, "OPTIMIZE compacted some files");
    assert!(
        vacuumed > 0,
        "VACUUM deleted the compacted files past the retention"
    );
    let result = run(
        &engine,
        "SELECT count(*), count(DISTINCT (p, o)), min(o), max(o) FROM live",
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec![format!("{total}|{total}|0|{}", produced - 1)]
    );
    if let Some(read) = read_with_deltalake(&lake, "", &[]) {
        assert_eq!(read["rows"].as_array().unwrap().len() as u64, total);
    }
}
