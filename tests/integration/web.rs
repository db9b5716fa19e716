//! The web UI, its JSON API and its Prometheus metrics, read as a user's tools read them: over
//! HTTP, with a Prometheus text-format parser, and in a real browser (Debian's `chromium`,
//! headless). Every number read there is checked against the query's own progress records.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;

use regex::Regex;
use serde_json::Value;
use weir::Engine;
use weir::stream::{QueryHandle, QueryProgress};

use super::common::{Broker, eventually, fill, run, unique};

/// `GET path` on `address`: the status code, the content type and the body.
pub fn http_get(address: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).expect("the web UI accepts connections");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, content_type, dechunk(head, body))
}

/// The body of a response sent in chunks, joined.
fn dechunk(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut joined = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        joined.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    joined
}

/// An engine serving the web UI on a free port, with a topic of 2 × `per_partition` records
/// and a streaming query `name` reading it in batches of at most 40 offsets into memory.
async fn watched_query(name: &str, per_partition: usize) -> (Broker, Engine, Arc<QueryHandle>) {
    let mut broker = Broker::for_test();
    let topic = unique("web");
    broker.create_topic(&topic, 2);
    fill(&broker.bootstrap(), &topic, 2, per_partition);
    let engine = Engine::builder()
        .bootstrap_servers(broker.bootstrap())
        .ui("127.0.0.1:0".parse().unwrap())
        .build()
        .expect("engine builds and serves");
    let checkpoint = tempfile::tempdir().unwrap().keep();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
               'startingOffsets' 'earliest', 'maxOffsetsPerTrigger' '40');
             CREATE EXTERNAL TABLE out (v VARCHAR, p INT) STORED AS MEMORY;
             CREATE STREAMING QUERY {name} WITH ('trigger' '50 ms', 'checkpoint' '{}')
               AS INSERT INTO out SELECT CAST(value AS VARCHAR), \"partition\" FROM src",
            checkpoint.display()
        ),
    )
    .await;
    let query = engine.query(name).unwrap();
    let total = 2 * per_partition as u64;
    eventually("the query reads every record", || {
        query
            .recent_progress()
            .iter()
            .map(|p| p.num_input_rows)
            .sum::<u64>()
            == total
    })
    .await;
    query.stop().await.unwrap();
    (broker, engine, query)
}

fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)));
    match found.map(|s| &s.value) {
        Some(
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v),
        ) => *v,
        other => panic!("{metric} {labels:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_and_the_metrics_agree_with_the_progress_records() {
    let (_broker, engine, query) = watched_query("api_job", 100).await;
    let address = engine.ui_address().expect("the UI listens");
    let records = query.recent_progress();
    assert_eq!(records.len(), 5, "200 records in batches of 40");

    for record in &records {
        let d = &record.durations;
        let phases = d.plan_ms + d.read_ms + d.execute_ms + d.sink_ms + d.commit_ms;
        assert!(
            phases <= d.total_ms * 1.05 + 0.05 && phases >= d.total_ms * 0.8,
            "the phases make up the batch: {d:?}"
        );
        assert!(
            d.plan_ms > 0.0 && d.read_ms > 0.0 && d.commit_ms > 0.0,
            "{d:?}"
        );
    }

    let (status, content_type, body) = http_get(address, "/api/queries");
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let list: Value = serde_json::from_str(&body).unwrap();
    let listed = &list.as_array().unwrap()[0];
    assert_eq!(listed["name"], "api_job");
    assert_eq!(listed["status"], "stopped");
    assert_eq!(listed["batch"], records.last().unwrap().batch_id);
    assert_eq!(listed["lag"], 0);

    let (status, _, body) = http_get(address, "/api/queries/api_job/progress?last=2");
    assert_eq!(status, 200);
    // Both sides through the same text and parser: serde_json's default float parsing may be
    // a unit in the last place off, the same way on both.
    let served: Value = serde_json::from_str(&body).unwrap();
    let expected = serde_json::to_string(&records[3..]).unwrap();
    assert_eq!(served, serde_json::from_str::<Value>(&expected).unwrap());
    let (_, _, body) = http_get(address, "/api/queries/api_job/progress");
    assert_eq!(
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        5
    );

    let (status, _, body) = http_get(address, "/api/queries/api_job");
    assert_eq!(status, 200);
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert!(
        detail["sql"].as_str().unwrap().contains("INSERT INTO out"),
        "{detail}"
    );
    let plan = detail["plan"].as_str().unwrap();
    assert!(
        plan.contains("KafkaScanExec") && plan.contains("records_fetched="),
        "{plan}"
    );

    let (status, _, body) = http_get(address, "/api/queries/nope/progress");
    assert_eq!(status, 404);
    assert!(body.contains("no streaming query named 'nope'"), "{body}");
    assert_eq!(http_get(address, "/no/such/page").0, 404);
    let (status, content_type, page) = http_get(address, "/query/api_job");
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    assert!(page.contains("/assets/weir.js"));
    assert_eq!(http_get(address, "/assets/weir.js").1, "text/javascript");

    let (status, content_type, text) = http_get(address, "/metrics");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    check_metrics(&scrape, &records);
}

fn check_metrics(scrape: &prometheus_parse::Scrape, records: &[QueryProgress]) {
    let query = [("query", "api_job")];
    let sum = |f: fn(&QueryProgress) -> f64| records.iter().map(f).sum::<f64>();
    assert_eq!(sample(scrape, "weir_query_input_rows_total", &query), 200.0);
    assert_eq!(
        sample(scrape, "weir_query_output_rows_total", &query),
        200.0
    );
    assert_eq!(sample(scrape, "weir_query_batches_total", &query), 5.0);
    assert_eq!(
        sample(scrape, "weir_query_replayed_batches_total", &query),
        0.0
    );
    assert_eq!(
        sample(scrape, "weir_query_batch_duration_seconds_count", &query),
        5.0
    );
    let total_seconds = sample(scrape, "weir_query_batch_duration_seconds_sum", &query);
    assert!((total_seconds - sum(|p| p.durations.total_ms) / 1000.0).abs() < 1e-9);
    for (phase, ms) in [
        ("plan", sum(|p| p.durations.plan_ms)),
        ("read", sum(|p| p.durations.read_ms)),
        ("execute", sum(|p| p.durations.execute_ms)),
        ("sink", sum(|p| p.durations.sink_ms)),
        ("commit", sum(|p| p.durations.commit_ms)),
    ] {
        let seconds = sample(
            scrape,
            "weir_query_phase_seconds_total",
            &[("query", "api_job"), ("phase", phase)],
        );
        assert!(
            (seconds - ms / 1000.0).abs() < 1e-9,
            "{phase}: {seconds} s vs {ms} ms"
        );
    }
    let latest = records.last().unwrap();
    assert_eq!(
        sample(scrape, "weir_query_latest_batch", &query),
        latest.batch_id as f64
    );
    assert_eq!(
        sample(scrape, "weir_query_input_rows_per_second", &query),
        latest.input_rows_per_second
    );
    for partition in &latest.sources[0].partitions {
        let labels = [
            ("query", "api_job"),
            ("topic", partition.topic.as_str()),
            ("partition", &partition.partition.to_string()),
        ];
        assert_eq!(
            sample(scrape, "weir_query_lag_offsets", &labels),
            partition.lag as f64
        );
    }
    assert_eq!(
        sample(
            scrape,
            "weir_query_status",
            &[("query", "api_job"), ("status", "stopped")]
        ),
        1.0
    );
    assert_eq!(sample(scrape, "weir_query_failures_total", &query), 0.0);
    assert!(sample(scrape, "weir_process_cpu_seconds_total", &[]) > 0.0);
    assert!(sample(scrape, "weir_process_resident_memory_bytes", &[]) > 1e6);
    assert!(sample(scrape, "weir_process_threads", &[]) >= 2.0);
}

/// Debian's chromium, or `None` (with a message) when it is not installed and not required.
fn chromium() -> Option<String> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        assert!(
            std::env::var("WEIR_REQUIRE_BROWSER").is_err(),
            "WEIR_REQUIRE_BROWSER is set but chromium is not installed (apt-get install chromium)"
        );
        eprintln!("skipped: the web page test needs Debian's chromium (apt-get install chromium)");
    }
    found.map(str::to_string)
}

/// Runs headless chromium on `url` with `action` (`--dump-dom`, `--screenshot=…`); its stdout.
fn headless(chromium: &str, url: &str, action: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--window-size=1400,1700",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(action)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The attributes of every `tag` element inside the element with id `id` of `dom`.
fn elements(dom: &str, id: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let section = Regex::new(&format!(r#"(?s)<svg id="{id}"[^>]*>(.*?)</svg>"#)).unwrap();
    let inner = section
        .captures(dom)
        .unwrap_or_else(|| panic!("no chart {id}"))[1]
        .to_string();
    let element = Regex::new(&format!("<{tag} ([^>]*)>")).unwrap();
    let attribute = Regex::new(r#"([\w-]+)="([^"]*)""#).unwrap();
    element
        .captures_iter(&inner)
        .map(|c| {
            attribute
                .captures_iter(&c[1])
                .map(|a| (a[1].to_string(), a[2].to_string()))
                .collect()
        })
        .collect()
}

fn shown_number(dom: &str, field: &str) -> f64 {
    let pattern = Regex::new(&format!(r#"data-field="{field}">([^<]*)<"#)).unwrap();
    let text = &pattern
        .captures(dom)
        .unwrap_or_else(|| panic!("no {field}"))[1];
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{field}: {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_query_page_draws_the_progress_records_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let (_broker, engine, query) = watched_query("page_job", 200).await;
    let url = format!("http://{}/query/page_job", engine.ui_address().unwrap());
    let dom = tokio::task::spawn_blocking({
        let (chromium, url) = (chromium.clone(), url.clone());
        move || headless(&chromium, &url, "--dump-dom")
    })
    .await
    .unwrap();
    let records: HashMap<u64, QueryProgress> = query
        .recent_progress()
        .into_iter()
        .map(|p| (p.batch_id, p))
        .collect();
    assert_eq!(records.len(), 10);
    let latest = &records[&9];
    assert!(
        dom.contains(r#"<section id="latest" class="numbers" data-batch="9">"#),
        "{dom}"
    );
    assert_eq!(
        shown_number(&dom, "numInputRows"),
        latest.num_input_rows as f64
    );
    assert!(
        (shown_number(&dom, "inputRowsPerSecond") - latest.input_rows_per_second).abs() <= 0.0501
    );
    assert!((shown_number(&dom, "totalMs") - latest.durations.total_ms).abs() <= 0.0051);
    assert_eq!(shown_number(&dom, "lag"), 0.0);

    let rates = elements(&dom, "rates", "circle");
    assert_eq!(rates.len(), 20, "two series of ten batches");
    for point in &rates {
        let record = &records[&point["data-batch"].parse().unwrap()];
        let expected = match point["data-series"].as_str() {
            "input rows/s" => record.input_rows_per_second,
            "processed rows/s" => record.processed_rows_per_second,
            other => panic!("series {other}"),
        };
        assert_eq!(point["data-value"].parse::<f64>().unwrap(), expected);
    }
    let phases = elements(&dom, "durations", "rect");
    let bars: Vec<_> = phases
        .iter()
        .filter(|r| r.contains_key("data-phase"))
        .collect();
    assert_eq!(bars.len(), 50, "five phases of ten batches");
    for bar in bars {
        let d = &records[&bar["data-batch"].parse().unwrap()].durations;
        let expected = match bar["data-phase"].as_str() {
            "plan" => d.plan_ms,
            "read" => d.read_ms,
            "execute" => d.execute_ms,
            "sink" => d.sink_ms,
            "commit" => d.commit_ms,
            other => panic!("phase {other}"),
        };
        assert_eq!(bar["data-value"].parse::<f64>().unwrap(), expected);
    }
    let lag_points = elements(&dom, "lag", "circle");
    assert_eq!(lag_points.len(), 20, "two partitions of ten batches");
    for point in lag_points {
        let record = &records[&point["data-batch"].parse().unwrap()];
        let partition = &record.sources[0]
            .partitions
            .iter()
            .find(|p| point["data-series"] == format!("{}[{}]", p.topic, p.partition));
        assert_eq!(
            point["data-value"].parse::<i64>().unwrap(),
            partition.unwrap().lag
        );
    }
    assert!(dom.contains("KafkaScanExec"), "the plan is shown");

    let screenshot =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-ui-query-page.png");
    let action = format!("--screenshot={}", screenshot.display());
    tokio::task::spawn_blocking(move || headless(&chromium, &url, &action))
        .await
        .unwrap();
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{}",
        screenshot.display()
    );
    eprintln!("screenshot of the query page: {}", screenshot.display());
}
