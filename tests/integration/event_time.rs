//! Event time: watermarks, tumbling / hopping / session windows, stateful aggregation in the
//! three output modes, late data, idle partitions, and restarts in the middle of open windows.
//! Streaming results are compared with a batch query over the same offsets.

use std::time::Duration;

use weir::Engine;
use weir::stream::QueryHandle;

use super::common::{Broker, Record, fails, lines, produce, run, unique};

/// One event: key, value, event time in seconds after 2024-01-01T00:00:00Z.
type Event = (&'static str, i64, i64);

fn json(event: &Event) -> String {
    let (k, v, secs) = event;
    let ts = chrono_free_timestamp(*secs);
    format!("{{\"k\": \"{k}\", \"v\": {v}, \"ts\": \"{ts}\"}}")
}

/// `2024-01-01T00:00:00Z` plus `secs` seconds (0 ≤ secs < 86 400).
fn chrono_free_timestamp(secs: i64) -> String {
    format!(
        "2024-01-01T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

fn produce_events(bootstrap: &str, topic: &str, events: &[(i32, Event)]) {
    let values: Vec<(i32, String)> = events.iter().map(|(p, e)| (*p, json(e))).collect();
    let records: Vec<Record<'_>> = values.iter().map(|(p, v)| Record::value(*p, v)).collect();
    produce(bootstrap, topic, &records);
}

/// Events on two partitions, in order per partition, keys a/b/c, over about 70 s.
fn events(from: i64, to: i64) -> Vec<(i32, Event)> {
    let keys = ["a", "b", "c"];
    (from..to)
        .map(|i| {
            let partition = (i % 2) as i32;
            (partition, (keys[(i % 3) as usize], i, i * 7 / 10))
        })
        .collect()
}

struct Setup {
    broker: Broker,
    topic: String,
    dir: tempfile::TempDir,
}

fn setup(prefix: &str, events: &[(i32, Event)]) -> Setup {
    let mut broker = Broker::for_test();
    let topic = unique(prefix);
    broker.create_topic(&topic, 2);
    produce_events(&broker.bootstrap(), &topic, events);
    Setup {
        broker,
        topic,
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

impl Setup {
    /// `src` (the stream, with a watermark), `fixed` (the same topic, bounded), `out`.
    async fn tables(&self, engine: &Engine, source_options: &str, out_columns: &str) {
        run(
            engine,
            &format!(
                "CREATE EXTERNAL TABLE src (k VARCHAR, v BIGINT, ts TIMESTAMP) STORED AS KAFKA
                   OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{t}', 'format' 'json', 'maxOffsetsPerTrigger' '15',
                            'watermark' 'ts - INTERVAL ''2 seconds''' {source_options});
                 CREATE EXTERNAL TABLE fixed (k VARCHAR, v BIGINT, ts TIMESTAMP) STORED AS KAFKA
                   OPTIONS ('subscribe' '{t}', 'format' 'json', 'endingOffsets' 'latest');
                 CREATE EXTERNAL TABLE out ({out_columns}) STORED AS MEMORY",
                t = self.topic
            ),
        )
        .await;
    }

    fn checkpoint(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

async fn finished(engine: &Engine, name: &str) -> std::sync::Arc<QueryHandle> {
    let query = engine.query(name).expect("query started");
    query.await_termination().await.expect("query finishes");
    query
}

fn final_watermark(query: &QueryHandle) -> i64 {
    query
        .progress()
        .and_then(|p| p.event_time.next_watermark_ms)
        .expect("a watermark")
}

async fn sorted_rows(engine: &Engine, sql: &str) -> Vec<String> {
    let mut rows = lines(&run(engine, sql).await.batches);
    rows.sort();
    rows
}

const OUT: &str = "window_start TIMESTAMP, window_end TIMESTAMP, k VARCHAR, n BIGINT, total BIGINT";

/// Streams `windows` (a window table function call over `TABLE`) over `events` in append mode
/// and checks the result equals the batch query over `fixed` for every window the final
/// watermark closed (at least `at_least` rows).
async fn append_equals_batch(
    prefix: &str,
    events: &[(i32, Event)],
    windows: &str,
    at_least: usize,
) {
    let setup = setup(prefix, events);
    let engine = setup.broker.engine();
    setup.tables(&engine, "", OUT).await;
    let aggregate = |table: &str| {
        format!(
            "SELECT window_start, window_end, k, count(*) AS n, sum(v) AS total
             FROM {} GROUP BY window_start, window_end, k",
            windows.replace("TABLE", table)
        )
    };
    run(
        &engine,
        &format!(
            "CREATE STREAMING QUERY w WITH ('checkpoint' '{}', 'trigger' 'availableNow')
               AS INSERT INTO out {}",
            setup.checkpoint("cp"),
            aggregate("src")
        ),
    )
    .await;
    let query = finished(&engine, "w").await;
    let batches = query.recent_progress().len();
    assert!(batches >= 5, "several batches: {batches}");
    let watermark = final_watermark(&query);
    let streamed = sorted_rows(&engine, "SELECT * FROM out").await;
    let expected = sorted_rows(
        &engine,
        &format!(
            "SELECT * FROM ({}) WHERE window_end <= to_timestamp_millis({watermark})",
            aggregate("fixed")
        ),
    )
    .await;
    assert!(expected.len() >= at_least, "{expected:?}");
    assert_eq!(streamed, expected, "{windows}");
    let held = query.progress().expect("progress").event_time.state_rows;
    assert!(held > 0, "windows past the watermark are still open");
}

#[tokio::test(flavor = "multi_thread")]
async fn tumbling_windows_in_append_mode_equal_the_batch_query() {
    append_equals_batch(
        "tumble",
        &events(0, 100),
        "tumble(TABLE, ts, INTERVAL '10' SECOND)",
        10,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hopping_windows_in_append_mode_equal_the_batch_query() {
    append_equals_batch(
        "hop",
        &events(0, 100),
        "hop(TABLE, ts, INTERVAL '5' SECOND, INTERVAL '15' SECOND)",
        10,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn session_windows_in_append_mode_equal_the_batch_query() {
    // Gaps of 3 s and more split the sessions: every tenth second is quiet.
    let events: Vec<(i32, Event)> = events(0, 100)
        .into_iter()
        .filter(|(_, (_, _, secs))| secs % 10 < 6)
        .collect();
    append_equals_batch(
        "session",
        &events,
        "session(TABLE, ts, INTERVAL '3' SECOND, k)",
        6,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn update_and_complete_modes_of_an_unwindowed_aggregation() {
    let setup = setup("modes", &events(0, 60));
    let engine = setup.broker.engine();
    setup
        .tables(&engine, "", "k VARCHAR, n BIGINT, total BIGINT")
        .await;
    run(
        &engine,
        "CREATE EXTERNAL TABLE latest (k VARCHAR, n BIGINT, total BIGINT) STORED AS MEMORY",
    )
    .await;
    let query = |name: &str, mode: &str, sink: &str| {
        format!(
            "CREATE STREAMING QUERY {name} WITH ('checkpoint' '{}', 'trigger' 'availableNow', 'outputMode' '{mode}')
               AS INSERT INTO {sink} SELECT k, count(*), sum(v) FROM src GROUP BY k",
            setup.checkpoint(name)
        )
    };
    run(&engine, &query("upd", "update", "out")).await;
    let update = finished(&engine, "upd").await;
    run(&engine, &query("all", "complete", "latest")).await;
    finished(&engine, "all").await;
    let expected = sorted_rows(&engine, "SELECT k, count(*), sum(v) FROM fixed GROUP BY k").await;
    // Complete: the memory table holds the latest batch, the whole result.
    assert_eq!(sorted_rows(&engine, "SELECT * FROM latest").await, expected);
    // Update: each batch wrote the groups it changed; the last row per key is the result.
    let batches = update.recent_progress().len() as u64;
    let written: u64 = update
        .recent_progress()
        .iter()
        .map(|p| p.num_output_rows)
        .sum();
    assert!(
        batches >= 4 && written <= 3 * batches && written >= 3,
        "{written} rows in {batches} batches"
    );
    assert_eq!(
        sorted_rows(&engine, "SELECT k, max(n), max(total) FROM out GROUP BY k").await,
        expected
    );
    // Append mode cannot emit an aggregation without windows: the query is refused, saying so.
    run(
        &engine,
        "CREATE EXTERNAL TABLE out2 (k VARCHAR, n BIGINT, total BIGINT) STORED AS MEMORY",
    )
    .await;
    let error = fails(&engine, &query("app", "append", "out2")).await;
    assert!(
        error.contains("'outputMode' 'update' or 'complete'"),
        "{error}"
    );

    // Without GROUP BY the whole stream is one group; a restart restores it from the checkpoint
    // and goes on counting.
    run(
        &engine,
        "CREATE EXTERNAL TABLE totals (n BIGINT, total BIGINT) STORED AS MEMORY",
    )
    .await;
    let whole = format!(
        "CREATE STREAMING QUERY whole WITH ('checkpoint' '{}', 'trigger' 'availableNow', 'outputMode' 'complete')
           AS INSERT INTO totals SELECT count(*), sum(v) FROM src",
        setup.checkpoint("whole")
    );
    run(&engine, &whole).await;
    finished(&engine, "whole").await;
    assert_eq!(
        sorted_rows(&engine, "SELECT * FROM totals").await,
        vec!["60|1770"]
    );
    produce_events(&setup.broker.bootstrap(), &setup.topic, &events(60, 90));
    run(&engine, &whole).await;
    finished(&engine, "whole").await;
    let expected = sorted_rows(&engine, "SELECT count(*), sum(v) FROM fixed").await;
    assert_eq!(expected, vec!["90|4005"]);
    assert_eq!(sorted_rows(&engine, "SELECT * FROM totals").await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn late_rows_are_dropped_and_counted_and_emitted_windows_leave_the_state() {
    let setup = setup("late", &events(0, 40));
    let engine = setup.broker.engine();
    setup.tables(&engine, "", OUT).await;
    let sql = format!(
        "CREATE STREAMING QUERY l WITH ('checkpoint' '{}', 'trigger' 'availableNow')
           AS INSERT INTO out SELECT window_start, window_end, k, count(*), sum(v)
              FROM tumble(src, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k",
        setup.checkpoint("cp")
    );
    run(&engine, &sql).await;
    let first = finished(&engine, "l").await;
    let watermark = final_watermark(&first);
    let emitted = sorted_rows(&engine, "SELECT * FROM out").await;
    // Rows for the window [0 s, 10 s), emitted long ago, arrive late; one row is on time.
    produce_events(
        &setup.broker.bootstrap(),
        &setup.topic,
        &[
            (0, ("a", 1000, 3)),
            (1, ("b", 1001, 4)),
            (0, ("c", 1002, 60)),
        ],
    );
    let engine = setup.broker.engine();
    setup.tables(&engine, "", OUT).await;
    run(&engine, &sql).await;
    let second = finished(&engine, "l").await;
    let late: u64 = second
        .recent_progress()
        .iter()
        .map(|p| p.event_time.late_rows)
        .sum();
    assert_eq!(late, 2, "the two rows of an emitted window");
    assert_eq!(
        second.recent_progress()[0].event_time.watermark_ms,
        Some(watermark),
        "the restarted query resumes with the watermark it had"
    );
    let after = sorted_rows(&engine, "SELECT * FROM out").await;
    assert!(
        after
            .iter()
            .all(|r| !r.contains("1000") && !r.contains("1001")),
        "{after:?}"
    );
    assert!(!emitted.is_empty());
    // Only windows the watermark has not passed are held: at most 2 windows × 3 keys.
    let held = second.progress().expect("progress").event_time.state_rows;
    assert!(held <= 6, "{held} state rows");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_partition_holds_the_watermark_back_only_until_its_timeout() {
    for (idle, windows_expected) in [("", false), (", 'watermarkIdleTimeout' '1s'", true)] {
        let setup = setup("idle", &[(1, ("a", 0, 1))]);
        let engine = setup.broker.engine();
        setup.tables(&engine, idle, OUT).await;
        let sql = format!(
            "CREATE STREAMING QUERY i WITH ('checkpoint' '{}', 'trigger' 'processingTime 200 milliseconds')
               AS INSERT INTO out SELECT window_start, window_end, k, count(*), sum(v)
                  FROM tumble(src, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k",
            setup.checkpoint("cp")
        );
        run(&engine, &sql).await;
        let query = engine.query("i").expect("query");
        // Partition 0 moves on to 60 s; partition 1 stays at 1 s.
        for step in 0..6 {
            produce_events(
                &setup.broker.bootstrap(),
                &setup.topic,
                &[(0, ("b", step, 10 + step * 10))],
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        query.stop().await.expect("stopped");
        let emitted = lines(&run(&engine, "SELECT * FROM out").await.batches);
        assert_eq!(
            !emitted.is_empty(),
            windows_expected,
            "idle option {idle:?}: {emitted:?}"
        );
    }
}

/// Counts and sums per key in 10 s tumbling windows over `TABLE` (replaced by the table's name).
const TUMBLING_COUNTS: &str = "SELECT window_start, window_end, k, count(*) AS n, sum(v) AS total
     FROM tumble(TABLE, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k";

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_in_the_middle_of_open_windows_restores_the_state() {
    let setup = setup("restart", &events(0, 100));
    let aggregate = TUMBLING_COUNTS;
    let start = |trigger: &str| {
        format!(
            "CREATE STREAMING QUERY r WITH ('checkpoint' '{}', 'trigger' '{trigger}')
               AS INSERT INTO out {}",
            setup.checkpoint("cp"),
            aggregate.replace("TABLE", "src")
        )
    };
    // Three single batches, each by a new engine (as after a crash), then the rest. A
    // processing-time trigger runs its first batch at once (15 offsets), and the query is
    // stopped at the next batch boundary.
    let mut all_rows = vec![];
    for _ in 0..3 {
        let engine = setup.broker.engine();
        setup.tables(&engine, "", OUT).await;
        run(&engine, &start("processingTime 1 hour")).await;
        let query = engine.query("r").expect("query started");
        while query.progress().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        query.stop().await.expect("stopped");
        assert!(query.progress().expect("progress").event_time.state_rows > 0);
        all_rows.extend(lines(&run(&engine, "SELECT * FROM out").await.batches));
    }
    let engine = setup.broker.engine();
    setup.tables(&engine, "", OUT).await;
    run(&engine, &start("availableNow")).await;
    let query = finished(&engine, "r").await;
    all_rows.extend(lines(&run(&engine, "SELECT * FROM out").await.batches));
    all_rows.sort();
    let watermark = final_watermark(&query);
    let expected = closed_windows(&engine, aggregate, watermark).await;
    assert_eq!(all_rows, expected, "every window once, across restarts");
}

/// The batches whose state the checkpoint at `dir` holds, and how many files are changes
/// (deleting files on a local disk leaves their directories).
fn saved_state(dir: &std::path::Path) -> (Vec<u64>, usize) {
    let mut batches = vec![];
    let mut changes = 0;
    for entry in std::fs::read_dir(dir.join("state")).expect("state/") {
        let entry = entry.expect("entry");
        let files: Vec<String> = std::fs::read_dir(entry.path())
            .expect("state/N/")
            .map(|f| f.expect("file").file_name().to_string_lossy().into_owned())
            .collect();
        if !files.is_empty() {
            batches.push(
                entry
                    .file_name()
                    .to_string_lossy()
                    .parse()
                    .expect("a batch"),
            );
        }
        changes += files.iter().filter(|f| f.ends_with(".delta")).count();
    }
    batches.sort();
    (batches, changes)
}

#[tokio::test(flavor = "multi_thread")]
async fn state_saved_as_changes_between_snapshots_restores_exactly_across_restarts() {
    let setup = setup("deltas", &events(0, 400));
    let aggregate = TUMBLING_COUNTS;
    let start = |trigger: &str| {
        format!(
            "SET spark.sql.streaming.stateStore.minDeltasForSnapshot = 4;
             CREATE STREAMING QUERY d WITH ('checkpoint' '{}', 'trigger' '{trigger}', 'checkpointRetention' '3')
               AS INSERT INTO out {}",
            setup.checkpoint("cp"),
            aggregate.replace("TABLE", "src")
        )
    };
    // Stopped (as after a crash, by a new engine each time) after batches 6, 13 and 19: each
    // restart restores a snapshot and the changes after it, and windows the watermark closed
    // in those changes must neither come back nor be lost.
    let mut all_rows = vec![];
    for stop_after in [6, 13, 19] {
        let engine = setup.broker.engine();
        setup.tables(&engine, "", OUT).await;
        run(&engine, &start("processingTime 50 milliseconds")).await;
        let query = engine.query("d").expect("query started");
        while query.progress().is_none_or(|p| p.batch_id < stop_after) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        query.stop().await.expect("stopped");
        all_rows.extend(lines(&run(&engine, "SELECT * FROM out").await.batches));
    }
    let (batches, changes) = saved_state(&setup.dir.path().join("cp"));
    assert!(changes > 0, "batches between snapshots save changes");
    assert!(
        batches.len() <= 3 + 4 + 1,
        "state older than the kept batches' snapshot is purged: {batches:?}"
    );
    let engine = setup.broker.engine();
    setup.tables(&engine, "", OUT).await;
    run(&engine, &start("availableNow")).await;
    let query = finished(&engine, "d").await;
    all_rows.extend(lines(&run(&engine, "SELECT * FROM out").await.batches));
    all_rows.sort();
    assert!(query.progress().expect("progress").batch_id > 22);
    let watermark = final_watermark(&query);
    let expected = closed_windows(&engine, aggregate, watermark).await;
    assert!(expected.len() > 60, "{}", expected.len());
    assert_eq!(all_rows, expected, "every window once, across restarts");

    // A damaged changes file stops the restart with a message naming it.
    let cp = setup.dir.path().join("cp");
    let (batches, _) = saved_state(&cp);
    let last = batches.last().expect("a batch");
    let delta = cp.join(format!("state/{last}/0.delta"));
    let damaged = if delta.exists() {
        delta
    } else {
        cp.join(format!("state/{last}/0"))
    };
    let bytes = std::fs::read(&damaged).expect("state file");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).expect("truncated");
    let engine = setup.broker.engine();
    setup.tables(&engine, "", OUT).await;
    run(&engine, &start("availableNow")).await;
    let query = engine.query("d").expect("query started");
    let error = query
        .await_termination()
        .await
        .expect_err("damaged state")
        .to_string();
    assert!(
        error.contains(&format!("state of operator 0 after batch {last}"))
            && error.contains("truncated"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn windowed_aggregation_in_update_and_complete_modes_equals_the_batch_query() {
    let setup = setup("wmodes", &events(0, 100));
    let engine = setup.broker.engine();
    setup.tables(&engine, "", OUT).await;
    run(
        &engine,
        &format!("CREATE EXTERNAL TABLE whole ({OUT}) STORED AS MEMORY"),
    )
    .await;
    let aggregate = |table: &str| {
        format!(
            "SELECT window_start, window_end, k, count(*) AS n, sum(v) AS total
             FROM hop({table}, ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND)
             GROUP BY window_start, window_end, k"
        )
    };
    for (name, mode, sink) in [("u", "update", "out"), ("c", "complete", "whole")] {
        run(
            &engine,
            &format!(
                "CREATE STREAMING QUERY {name} WITH ('checkpoint' '{}', 'trigger' 'availableNow', 'outputMode' '{mode}')
                   AS INSERT INTO {sink} {}",
                setup.checkpoint(name),
                aggregate("src")
            ),
        )
        .await;
        finished(&engine, name).await;
    }
    // Every window, open or closed, with its values over all rows read.
    let expected = sorted_rows(&engine, &aggregate("fixed")).await;
    assert!(expected.len() > 20);
    assert_eq!(
        sorted_rows(&engine, "SELECT * FROM whole").await,
        expected,
        "complete: the latest batch is the whole result"
    );
    assert_eq!(
        sorted_rows(
            &engine,
            "SELECT window_start, window_end, k, max(n), max(total) FROM out
             GROUP BY window_start, window_end, k"
        )
        .await,
        expected,
        "update: the latest row of each group is its result"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_the_stateful_runner_cannot_run_exactly_are_refused_with_a_reason() {
    let setup = setup("refused", &events(0, 20));
    let engine = setup.broker.engine();
    setup.tables(&engine, "", OUT).await;
    // Refused when the query is created, before it reads anything, as Spark refuses them.
    let fails_with = async |name: &str, insert: &str, reason: &str| {
        let error = fails(
            &engine,
            &format!(
                "CREATE STREAMING QUERY {name} WITH ('checkpoint' '{}', 'trigger' 'availableNow') AS {insert}",
                setup.checkpoint(name)
            ),
        )
        .await;
        assert!(error.contains(reason), "{error}");
        assert!(engine.query(name).is_err(), "{name} never started");
    };
    // Sessions grow across batches: their rows can only be aggregated.
    fails_with(
        "s",
        "INSERT INTO out SELECT window_start, window_end, k, v, v + 1 FROM session(src, ts, INTERVAL '3' SECOND, k)",
        "session-windowed stream rows can only be aggregated",
    )
    .await;
    // A raw stream joined with windowed results would meet only the windows of its batch.
    fails_with(
        "j",
        "INSERT INTO out SELECT w.window_start, w.window_end, s.k, w.n, s.v FROM src s
           JOIN (SELECT window_start, window_end, k, count(*) AS n FROM tumble(src, ts, INTERVAL '10' SECOND)
                 GROUP BY window_start, window_end, k) w ON s.k = w.k",
        "must be windowed as well",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn windowed_results_into_kafka_are_replayed_from_the_first_attempts_output() {
    let mut setup = setup("wkafka", &events(0, 100));
    let output = unique("wkafka-out");
    setup.broker.create_topic(&output, 2);
    let script = format!(
        "CREATE EXTERNAL TABLE sink STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{output}');
         CREATE STREAMING QUERY wk WITH ('checkpoint' '{}', 'trigger' 'availableNow')
           AS INSERT INTO sink (key, value)
              SELECT k, CAST(window_end AS VARCHAR) || ' ' || CAST(avg(v * 0.1) AS VARCHAR)
              FROM tumble(src, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k",
        setup.checkpoint("cp")
    );
    let engine = setup.broker.engine();
    setup.tables(&engine, "", OUT).await;
    run(&engine, &script).await;
    let first = finished(&engine, "wk").await;
    let last = first.progress().expect("progress").batch_id;
    let before = super::kafka_sink::read_topic(&setup.broker.bootstrap(), &output, 2);
    assert!(before.len() >= 15, "{} windows", before.len());
    let cp = setup.dir.path().join("cp");
    assert!(
        cp.join(format!("outputs/{last}")).exists(),
        "the output is kept"
    );
    // As if the engine died after producing the last batch, before commits/N.
    std::fs::remove_file(cp.join(format!("commits/{last}"))).expect("commit removed");
    let engine = setup.broker.engine();
    setup.tables(&engine, "", OUT).await;
    run(&engine, &script).await;
    let replay = finished(&engine, "wk").await;
    assert!(replay.recent_progress()[0].replayed);
    let after = super::kafka_sink::read_topic(&setup.broker.bootstrap(), &output, 2);
    assert_eq!(after.len(), before.len(), "nothing sent twice");
}

/// The rows of `aggregate` (over the fixed table) whose windows the watermark has closed.
async fn closed_windows(engine: &Engine, aggregate: &str, watermark: i64) -> Vec<String> {
    let closed = format!(
        "SELECT * FROM ({}) WHERE window_end <= to_timestamp_millis({watermark})",
        aggregate.replace("TABLE", "fixed")
    );
    sorted_rows(engine, &closed).await
}
