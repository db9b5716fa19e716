//! The `weir` command: runner, one-shot, REPL (piped standard input), and the quick start.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;
use weir::kafka::read_progress::ReadTotals;

use super::common::{Broker, fill, unique};

fn weir() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .env_remove("WEIR_KAFKA_BOOTSTRAP")
        .env("RUST_LOG", "error");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("weir runs");
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

#[test]
fn the_quick_start_script_runs_on_the_embedded_broker() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/examples/quickstart.sql");
    let output = run_ok(weir().args(["--embedded-kafka", "run", script]));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("Embedded Kafka broker listening on 127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stdout.contains("| 1000  |"),
        "1000 orders inserted:\n{stdout}"
    );
    assert!(stdout.contains("| customer-5 | 143    |"), "{stdout}");
    assert!(
        stderr.contains("10 rows")
            && stderr.contains("read 10 Kafka record(s) from 1 offset range(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is a stream (no endingOffsets): this read a snapshot"),
        "{stderr}"
    );
}

#[test]
fn the_runner_stops_at_the_first_failure_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("01-setup.sql"),
        "CREATE TOPIC t PARTITIONS 2;\nSELECT 41 + 1 AS answer;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("02-broken.sql"),
        "SELECT 1;\n\n  SELEC oops;\nSELECT 'never';\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not SQL").unwrap();
    let output = weir()
        .args(["--embedded-kafka", "run"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(stdout.contains("| 42     |"), "{stdout}");
    assert!(
        stderr.contains(
            "02-broken.sql:3: syntax error at line 1, column 1: expected an SQL statement, found 'SELEC'"
        ),
        "{stderr}"
    );
    assert!(!stdout.contains("never"), "{stdout}");

    let missing = weir().args(["run", "/no/such/file.sql"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("/no/such/file.sql: no such file"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn output_formats_for_one_shot_sql() {
    let csv = run_ok(weir().args([
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y' ORDER BY a",
    ]));
    assert_eq!(text(&csv.stdout), "a,b\n1,x\n2,y\n");
    let json = run_ok(weir().args(["--format", "json", "-c", "SELECT 1 AS a, 'x' AS b"]));
    assert_eq!(text(&json.stdout), "{\"a\":1,\"b\":\"x\"}\n");
    let bad = weir()
        .args(["-c", "SELECT 1; SELECT nope FROM nowhere"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("line 1 of -c") && text(&bad.stderr).contains("nowhere"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn one_shot_sql_against_a_broker_process_from_the_environment() {
    let mut broker = Broker::process();
    let topic = unique("cli");
    broker.create_topic(&topic, 2);
    fill(&broker.bootstrap(), &topic, 2, 3);
    let sql = format!(
        "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}'); SELECT count(*) AS n FROM t"
    );
    let output = run_ok(
        weir()
            .env("WEIR_KAFKA_BOOTSTRAP", broker.bootstrap())
            .args(["--format", "csv", "-c", &sql]),
    );
    assert_eq!(text(&output.stdout), "n\n6\n");
}

#[test]
fn the_repl_reads_multi_line_statements_and_backslash_commands() {
    let history = tempfile::NamedTempFile::new().unwrap();
    let mut child = weir()
        .arg("--embedded-kafka")
        .env("WEIR_HISTORY", history.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = "\\?\nCREATE TOPIC events PARTITIONS 2;\nCREATE EXTERNAL TABLE events\n  STORED AS KAFKA\n  OPTIONS ('subscribe' 'events',\n    'kafka.sasl.password' 'hunter2');\n\\d\n\\d events\nSELECT 6 *\n  7 AS answer;\nSELECT nope;\n\\q\nSELECT 'after quit';\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("\\d NAME"), "help: {stdout}");
    assert!(
        stdout.contains("events  kafka (stream)"),
        "table list: {stdout}"
    );
    assert!(
        stdout.contains("timestampType  Int32"),
        "description: {stdout}"
    );
    assert!(
        stdout.contains("kafka.sasl.password = ********") && !stdout.contains("hunter2"),
        "secret redacted: {stdout}"
    );
    assert!(
        stdout.contains("| 42     |") && stdout.contains("1 row in"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error:") && stdout.contains("nope"),
        "{stdout}"
    );
    assert!(!stdout.contains("after quit"), "{stdout}");
    let saved = std::fs::read_to_string(history.path()).unwrap();
    assert!(saved.contains("SELECT 6 *"), "history saved: {saved}");
    assert!(
        !saved.contains("hunter2"),
        "secrets are not saved in the history: {saved}"
    );
}

#[test]
fn ctrl_c_cancels_the_running_statement_not_the_repl() {
    let mut child = weir()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"SELECT count(*) FROM generate_series(1, 100000000000) AS t(n) WHERE n % 7 = 3;\n",
        )
        .unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let pid = child.id().to_string();
    let started = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    stdin
        .write_all(b"SELECT 'still here' AS status;\n")
        .unwrap();
    drop(stdin);
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{stdout}");
    assert!(stdout.contains("Statement cancelled."), "{stdout}");
    assert!(stdout.contains("still here"), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the cancelled statement did not keep running"
    );
}

#[test]
fn the_streaming_example_runs_on_the_embedded_broker() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/examples/streaming.sql");
    let output = run_ok(weir().args(["--embedded-kafka", "run", script]));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    for batch in 0..4 {
        assert!(
            stderr.contains(&format!("query page_views_job batch {batch}: 250 rows")),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("Streaming query 'page_views_job' finished."),
        "{stderr}"
    );
    assert!(stdout.contains("| page_views_job | finished |"), "{stdout}");
    assert!(
        stdout.contains("| page-6 | 143   | 50    |") && !stdout.contains("page-0"),
        "{stdout}"
    );
}

#[test]
fn the_delta_example_runs_on_the_embedded_broker_and_spark_reads_it() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sql/examples/kafka-to-delta.sql"
    );
    let dir = tempfile::tempdir().unwrap();
    let output = run_ok(
        weir()
            .current_dir(dir.path())
            .args(["--embedded-kafka", "run", script]),
    );
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("query orders_to_delta batch 2: 200 rows"),
        "{stderr}"
    );
    assert!(
        stdout.contains("| 1000   | 1000            | 47525.0 |"),
        "{stdout}"
    );
    assert!(stdout.contains("| customer-0  | 50     |"), "{stdout}");
    let lake = dir.path().join("target/examples/orders");
    assert!(lake.join("_delta_log").is_dir());
    if let Some(read) = super::delta::read_with_spark(&lake.display().to_string()) {
        assert_eq!(read["rows"].as_array().unwrap().len(), 1000);
        assert_eq!(read["partitions"], serde_json::json!(["day"]));
    }
}

#[test]
fn errors_read_as_sentences_and_verbose_shows_their_causes() {
    let output = weir().args(["-c", "SELEC 1"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "error: statement at line 1 of -c: syntax error at line 1, column 1: expected an SQL statement, found 'SELEC'"
    );
    // Statements are split with the tokenizer first: its errors read the same way.
    let output = weir().args(["-c", "SELECT 'open"]).output().unwrap();
    assert!(
        text(&output.stderr)
            .contains("-c: syntax error at line 1, column 8: unterminated string literal"),
        "{}",
        text(&output.stderr)
    );
    let output = weir().args(["-c", "SELECT * FROM nope"]).output().unwrap();
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("-c: table 'datafusion.public.nope' not found")
            && !stderr.contains("Error during planning"),
        "{stderr}"
    );
    let output = weir()
        .args(["--verbose", "-c", "SELECT * FROM nope"])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "\n  caused by: Error during planning: table 'datafusion.public.nope' not found"
        ),
        "{stderr}"
    );
}

/// Runs `command` with its standard output and error on a new pseudo-terminal of 120 columns;
/// returns everything written there.
fn on_a_terminal(command: &mut Command) -> String {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut leader, mut follower) = (0, 0);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two new descriptors into the integers given.
    let opened = unsafe {
        libc::openpty(
            &mut leader,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(opened, 0, "openpty");
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (leader, follower) =
        unsafe { (OwnedFd::from_raw_fd(leader), OwnedFd::from_raw_fd(follower)) };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(follower.try_clone().unwrap())
        .stderr(follower)
        .spawn()
        .unwrap();
    // The command holds the parent's copies of the follower until it is dropped.
    let _ = std::mem::replace(command, Command::new("true"));
    let reader = std::thread::spawn(move || {
        let mut leader = std::fs::File::from(leader);
        let mut seen = vec![];
        let mut buffer = [0u8; 4096];
        // Reading fails (EIO) once the child has closed the terminal.
        while let Ok(n @ 1..) = leader.read(&mut buffer) {
            seen.extend_from_slice(&buffer[..n]);
        }
        seen
    });
    assert!(child.wait().unwrap().success());
    text(&reader.join().unwrap())
}

/// A script draining 6 000 records of `topic` in batches of 50 into a memory table: 120
/// batches, long enough for the progress to show.
fn drain_script(topic: &str) -> String {
    let checkpoint = tempfile::tempdir().unwrap().keep();
    format!(
        "CREATE EXTERNAL TABLE src STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
           'startingOffsets' 'earliest', 'maxOffsetsPerTrigger' '50');
         CREATE EXTERNAL TABLE out (v BYTEA) STORED AS MEMORY;
         CREATE STREAMING QUERY drain WITH ('trigger' 'availableNow', 'checkpoint' '{}')
           AS INSERT INTO out SELECT value FROM src",
        checkpoint.display()
    )
}

#[test]
fn a_drain_shows_a_progress_bar_on_a_terminal_and_plain_lines_otherwise() {
    let mut broker = Broker::for_test();
    let topic = unique("progress-bar");
    broker.create_topic(&topic, 2);
    fill(&broker.bootstrap(), &topic, 2, 3000);
    let bootstrap = broker.bootstrap();

    let seen = on_a_terminal(weir().args([
        "--bootstrap-servers",
        &bootstrap,
        "-c",
        &drain_script(&topic),
    ]));
    assert!(seen.contains("query drain ["), "the bar, named: {seen}");
    assert!(
        seen.contains("/6,000 records ("),
        "records read of the records to read: {seen}"
    );
    assert!(seen.contains("ETA "), "{seen}");
    assert!(seen.contains("Streaming query 'drain' finished."), "{seen}");

    let output = run_ok(weir().args([
        "--bootstrap-servers",
        &bootstrap,
        "-c",
        &drain_script(&topic),
    ]));
    let stderr = text(&output.stderr);
    let plain = Regex::new(r"query drain: read \d+ of 6000 records \(\d+%, \d+ records/s").unwrap();
    assert!(
        plain.is_match(&stderr),
        "a plain line without a terminal: {stderr}"
    );
    assert!(
        !stderr.contains("ETA "),
        "no bar without a terminal: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bounded_read_counts_the_offsets_it_planned_and_read() {
    let mut broker = Broker::for_test();
    let topic = unique("read-progress");
    broker.create_topic(&topic, 2);
    fill(&broker.bootstrap(), &topic, 2, 150);
    let engine = broker.engine();
    assert_eq!(engine.read_progress(), ReadTotals::default());
    engine
        .sql(&format!(
            "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}')"
        ))
        .await
        .unwrap();
    let counted = engine.sql("SELECT count(*) FROM t").await.unwrap();
    assert_eq!(counted[0].num_rows(), 1);
    let totals = engine.read_progress();
    assert_eq!((totals.planned, totals.read), (300, 300));
}

#[test]
fn a_web_ui_address_that_cannot_be_served_is_named() {
    let output = weir()
        .args(["--ui", "localhost-ish", "-c", "SELECT 1"])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("invalid value 'localhost-ish' for '--ui <HOST:PORT>'"),
        "{stderr}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = weir()
        .args(["--ui", &address, "-c", "SELECT 1"])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("error: cannot serve the web UI on {address}: ")),
        "{stderr}"
    );
}

#[test]
fn the_streaming_example_with_ui_serves_its_page_until_ctrl_c() {
    use std::io::BufRead;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/examples/streaming.sql");
    let mut child = weir()
        .args(["--embedded-kafka", "--ui", "127.0.0.1:0", "run", script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut address = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("Web UI at http://") {
            address = rest.split('/').next().map(str::to_string);
        }
        if line.contains("the web UI stays at") {
            break;
        }
    }
    let address: std::net::SocketAddr = address
        .expect("the UI's address is printed")
        .parse()
        .unwrap();
    let (status, _, body) = super::web::http_get(address, "/api/queries/page_views_job");
    assert_eq!(status, 200);
    let query: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(query["status"], "finished");
    assert_eq!(query["batch"], 3, "four batches of 250 offsets");
    let (status, _, page) = super::web::http_get(address, "/query/page_views_job");
    assert_eq!(status, 200);
    assert!(page.contains("<svg id=\"rates\""), "{page}");
    // SAFETY: signals the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success(), "Ctrl-C ends it cleanly");
}
