//! End-to-end throughput against a bare consumer, as `../shared/docs/benchmarks.md` describes:
//! a broker in its own process (`weir broker`), topics pre-loaded once, then in the same run,
//! alternating, the ceilings C0 (bare rdkafka consumer) and C1 (C0 plus copying keys and values
//! into Arrow builders) and weir on W1 (`SELECT *` into a discard sink), W1k (the same into a
//! Kafka topic), W2 (JSON decode, filter, projection), W2a (W2 over the same records as Avro
//! values), W2p and W2d (W2 as a streaming query into a Parquet table and into a Delta table,
//! exactly once), W3 and W3k (streaming 10 s tumbling
//! windows with count/sum/max by 100 and 100 000 keys, event-time watermark), Nexmark q0–q2 (batch
//! queries) and q5, q7 (streaming queries), each in a child process whose CPU time (user + sys) is
//! its own.
//!
//! `cargo bench --bench kafka` (records: `WEIR_BENCH_RECORDS`, default 1 000 000; runs:
//! `WEIR_BENCH_RUNS`, default 5; a subset: `WEIR_BENCH_WORKLOADS=W3,W3k`, C0 always runs). It
//! prints a Markdown table and stops by itself.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayBuilder, BinaryBuilder};
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 64;
const WORKLOADS: [&str; 15] = [
    "C0", "C1", "W1", "W1k", "W2", "W2a", "W2p", "W2d", "W3", "W3k", "q0", "q1", "q2", "q5", "q7",
];
/// The columns W2 and its variants declare over the `json` (or `avro`) topic.
const W2_COLUMNS: &str = "id BIGINT, name VARCHAR, v BIGINT, city VARCHAR";

/// W2's query: JSON decode, a filter that passes 10 %, a projection.
const W2_QUERY: &str = "SELECT id, name FROM t WHERE v % 10 = 0";

/// The Avro schema of W2a's values: the fields of W2's JSON.
const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "W2", "fields": [
  {"name": "id", "type": "long"}, {"name": "name", "type": "string"},
  {"name": "v", "type": "long"}, {"name": "city", "type": "string"},
  {"name": "ts", "type": "string"}, {"name": "pad", "type": "string"}]}"#;
/// Records per batch of the streaming workloads.
const STREAM_BATCH: u64 = 100_000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(&args[2], &args[3], &args[4], args[5].parse().unwrap());
        return;
    }
    orchestrate();
}

// ---------------------------------------------------------------- the orchestrating process

struct Broker {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    bootstrap: String,
}

impl Broker {
    fn start() -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("broker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("weir broker starts");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let bootstrap = first.trim_start_matches("bootstrap.servers=").to_string();
        Broker {
            child,
            stdin,
            lines,
            bootstrap,
        }
    }

    fn create_topic(&mut self, name: &str) {
        writeln!(self.stdin, "create-topic {name} {PARTITIONS}").unwrap();
        assert_eq!(self.lines.next().unwrap().unwrap(), "ok");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

fn produce_all(
    producer: &BaseProducer,
    topic: &str,
    records: u64,
    make: impl Fn(u64) -> (Vec<u8>, Vec<u8>),
) {
    for i in 0..records {
        let (key, value) = make(i);
        let partition = (i % PARTITIONS as u64) as i32;
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(partition)
            .key(key.as_slice())
            .payload(value.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

/// A 100-byte value (W1).
fn raw_value(i: u64) -> Vec<u8> {
    let mut v = format!("record-{i:012}-").into_bytes();
    v.resize(100, b'x');
    v
}

/// About 120 bytes of flat JSON (W2, W3); `v` is uniform in 0..100, `ts` moves on 1 ms per
/// record from 2024-01-01T00:00:00Z.
fn json_value(i: u64) -> Vec<u8> {
    let mut v = format!(
        r#"{{"id":{i},"name":"user-{:06}","v":{},"city":"Seattle","ts":"2024-01-01T{:02}:{:02}:{:02}.{:03}Z","pad":""#,
        i % 100_000,
        (i * 7919) % 100,
        i / 3_600_000,
        (i / 60_000) % 60,
        (i / 1000) % 60,
        i % 1000
    )
    .into_bytes();
    while v.len() < 98 {
        v.push(b'y');
    }
    v.extend_from_slice(b"\"}");
    v
}

/// W2's record `i` as Avro binary of [`AVRO_SCHEMA`]: zig-zag varints and length-prefixed
/// strings, the same values as [`json_value`].
fn avro_value(i: u64) -> Vec<u8> {
    fn long(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    fn string(s: &str, out: &mut Vec<u8>) {
        long(s.len() as i64, out);
        out.extend_from_slice(s.as_bytes());
    }
    let json: serde_json::Value = serde_json::from_slice(&json_value(i)).unwrap();
    let mut out = Vec::with_capacity(100);
    long(json["id"].as_i64().unwrap(), &mut out);
    string(json["name"].as_str().unwrap(), &mut out);
    long(json["v"].as_i64().unwrap(), &mut out);
    string(json["city"].as_str().unwrap(), &mut out);
    string(json["ts"].as_str().unwrap(), &mut out);
    string(json["pad"].as_str().unwrap(), &mut out);
    out
}

struct Sample {
    records: u64,
    wall: f64,
    cpu: f64,
}

fn run_child(workload: &str, bootstrap: &str, topic: &str, expected: u64) -> Sample {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["child", workload, bootstrap, topic, &expected.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "{workload} failed");
    let text = String::from_utf8(output.stdout).unwrap();
    let parts: Vec<f64> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    Sample {
        records: parts[0] as u64,
        wall: parts[1],
        cpu: parts[2],
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn orchestrate() {
    let records = env_number("WEIR_BENCH_RECORDS", 1_000_000);
    let runs = env_number("WEIR_BENCH_RUNS", 5) as usize;
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap.clone();
    for topic in ["raw", "json", "avro", "nexmark_events", "sink"] {
        broker.create_topic(topic);
    }
    let loading = Instant::now();
    let p = producer(&bootstrap);
    produce_all(&p, "raw", records, |i| {
        (format!("k{}", i % 1000).into_bytes(), raw_value(i))
    });
    produce_all(&p, "json", records, |i| {
        (format!("k{}", i % 1000).into_bytes(), json_value(i))
    });
    produce_all(&p, "avro", records, |i| {
        (format!("k{}", i % 1000).into_bytes(), avro_value(i))
    });
    drop(p);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let engine = weir::Engine::builder()
            .bootstrap_servers(&bootstrap)
            .build()
            .unwrap();
        engine.sql(&nexmark_table_sql()).await.unwrap();
        engine
            .sql(&format!(
                // Explicit partitions spread the events evenly (the sticky partitioner would
                // not, and the broker keeps only about 5 MiB per partition); written in
                // event-time order (10 000 events per second of event time), so each partition's
                // event times only grow, as the streaming q5 and q7 expect.
                "INSERT INTO nexmark_events (event_type, person, auction, bid, _partition)
                 SELECT event_type, person, auction, bid,
                        CAST(coalesce(person['id'], auction['id'], bid['price']) % {PARTITIONS} AS INT)
                 FROM nexmark({records}, 10000, 0)
                 ORDER BY coalesce(bid['dateTime'], auction['dateTime'], person['dateTime'])"
            ))
            .await
            .unwrap();
    });
    eprintln!(
        "pre-loaded 4 × {records} records in {:.1} s",
        loading.elapsed().as_secs_f64()
    );

    let topic_of = |w: &str| match w {
        "C0" | "C1" | "W1" | "W1k" => "raw",
        "W2" | "W2p" | "W2d" | "W3" | "W3k" => "json",
        "W2a" => "avro",
        _ => "nexmark_events",
    };
    let chosen = std::env::var("WEIR_BENCH_WORKLOADS").unwrap_or_default();
    let workloads: Vec<&str> = WORKLOADS
        .into_iter()
        .filter(|w| *w == "C0" || chosen.is_empty() || chosen.split(',').any(|c| c.trim() == *w))
        .collect();
    let mut samples: Vec<Vec<Sample>> = workloads.iter().map(|_| vec![]).collect();
    for round in 0..=runs {
        for (i, workload) in workloads.iter().enumerate() {
            let sample = run_child(workload, &bootstrap, topic_of(workload), records);
            assert_eq!(sample.records, records, "{workload} read every record");
            if round > 0 {
                samples[i].push(sample);
            }
        }
        eprintln!(
            "round {round} of {runs} done{}",
            if round == 0 { " (warm-up)" } else { "" }
        );
    }

    let c0_cpu_per_record = median(
        samples[0]
            .iter()
            .map(|s| s.cpu / s.records as f64)
            .collect(),
    );
    println!(
        "\n| workload | records/s (median, min–max) | records per CPU-s (median) | efficiency vs C0 (median, min–max) |"
    );
    println!("|---|---|---|---|");
    for (workload, runs) in workloads.iter().zip(&samples) {
        let rates: Vec<f64> = runs.iter().map(|s| s.records as f64 / s.wall).collect();
        let per_cpu: Vec<f64> = runs.iter().map(|s| s.records as f64 / s.cpu).collect();
        let efficiency: Vec<f64> = runs
            .iter()
            .map(|s| c0_cpu_per_record / (s.cpu / s.records as f64))
            .collect();
        let lo = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
        let hi = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        println!(
            "| {workload} | {:.0} ({:.0}–{:.0}) | {:.0} | {:.2} ({:.2}–{:.2}) |",
            median(rates.clone()),
            lo(&rates),
            hi(&rates),
            median(per_cpu.clone()),
            median(efficiency.clone()),
            lo(&efficiency),
            hi(&efficiency)
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n{records} records per workload, {runs} runs, {} cores, load average {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn nexmark_table_sql() -> String {
    let setup = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sql/nexmark/setup.sql"
    ))
    .unwrap();
    let start = setup.find("CREATE EXTERNAL TABLE").unwrap();
    let end = setup.find("-- nexmark(events").unwrap();
    setup[start..end].to_string()
}

fn nexmark_views_sql() -> String {
    let setup = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sql/nexmark/setup.sql"
    ))
    .unwrap();
    setup[setup.find("CREATE VIEW person").unwrap()..].to_string()
}

/// Runs `insert` as an availableNow streaming query with a throw-away checkpoint; returns the
/// records it read.
async fn streaming(engine: &weir::Engine, insert: &str) -> u64 {
    let checkpoint = tempfile::tempdir().unwrap();
    let query = engine
        .start_query(
            "bench",
            insert,
            &[
                ("trigger".into(), "availableNow".into()),
                (
                    "checkpoint".into(),
                    checkpoint.path().join("cp").display().to_string(),
                ),
            ],
        )
        .await
        .unwrap();
    query.await_termination().await.unwrap();
    let progress = query.recent_progress();
    let late: u64 = progress.iter().map(|p| p.event_time.late_rows).sum();
    assert_eq!(late, 0, "the loaded events are in order per partition");
    progress.iter().map(|p| p.num_input_rows).sum()
}

// ---------------------------------------------------------------- child processes

fn child(workload: &str, bootstrap: &str, topic: &str, expected: u64) {
    let started = Instant::now();
    let records = match workload {
        "C0" | "C1" => bare_consumer(bootstrap, topic, expected, workload == "C1"),
        _ => weir_query(workload, bootstrap, topic),
    };
    println!(
        "{records} {} {}",
        started.elapsed().as_secs_f64(),
        cpu_seconds()
    );
}

/// C0 (and C1 with `to_arrow`): one assigned consumer counting messages and bytes.
fn bare_consumer(bootstrap: &str, topic: &str, expected: u64, to_arrow: bool) -> u64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let (mut count, mut bytes) = (0u64, 0usize);
    let mut keys = BinaryBuilder::with_capacity(8192, 8192 * 8);
    let mut values = BinaryBuilder::with_capacity(8192, 8192 * 128);
    while count < expected {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                count += 1;
                bytes += m.payload_len();
                if to_arrow {
                    keys.append_option(m.key());
                    values.append_option(m.payload());
                    if values.len() == 8192 {
                        std::hint::black_box((keys.finish(), values.finish()));
                    }
                }
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => panic!("no message within 10 s after {count}"),
        }
    }
    std::hint::black_box(bytes);
    count
}

/// weir: the workload's query over the topic, output discarded; returns records fetched.
fn weir_query(workload: &str, bootstrap: &str, topic: &str) -> u64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = weir::Engine::builder().bootstrap_servers(bootstrap).build().unwrap();
        let query = match workload {
            "W1" => {
                engine
                    .sql(&format!("CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' 'latest')"))
                    .await
                    .unwrap();
                "SELECT key, value, topic, partition, \"offset\", timestamp FROM t".to_string()
            }
            "W1k" => {
                engine
                    .sql(&format!(
                        "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' 'latest');
                         CREATE EXTERNAL TABLE sink STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' 'sink', 'kafka.linger.ms' '20')"
                    ))
                    .await
                    .unwrap();
                "INSERT INTO sink (key, value, partition) SELECT key, value, partition FROM t".to_string()
            }
            "W2" => {
                engine
                    .sql(&format!(
                        "CREATE EXTERNAL TABLE t ({W2_COLUMNS}) STORED AS KAFKA
                         OPTIONS ('subscribe' '{topic}', 'format' 'json', 'endingOffsets' 'latest')"
                    ))
                    .await
                    .unwrap();
                W2_QUERY.to_string()
            }
            "W2a" => {
                engine
                    .sql(&format!(
                        "CREATE EXTERNAL TABLE t ({W2_COLUMNS}) STORED AS KAFKA
                         OPTIONS ('subscribe' '{topic}', 'format' 'avro', 'avroSchema' '{AVRO_SCHEMA}', 'endingOffsets' 'latest')"
                    ))
                    .await
                    .unwrap();
                W2_QUERY.to_string()
            }
            "W2p" | "W2d" => {
                let lake = tempfile::tempdir().unwrap();
                let stored = if workload == "W2d" { "DELTA" } else { "PARQUET" };
                engine
                    .sql(&format!(
                        "CREATE EXTERNAL TABLE t ({W2_COLUMNS}) STORED AS KAFKA
                         OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '{STREAM_BATCH}')"
                    ))
                    .await
                    .unwrap();
                engine
                    .sql(&format!(
                        "CREATE EXTERNAL TABLE out (id BIGINT, name VARCHAR) STORED AS {stored} LOCATION '{}'",
                        lake.path().join("out").display()
                    ))
                    .await
                    .unwrap();
                return streaming(&engine, &format!("INSERT INTO out {W2_QUERY}")).await;
            }
            "W3" | "W3k" => {
                engine
                    .sql(&format!(
                        "CREATE EXTERNAL TABLE t (id BIGINT, name VARCHAR, v BIGINT, ts TIMESTAMP) STORED AS KAFKA
                         OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '{STREAM_BATCH}',
                                  'watermark' 'ts - INTERVAL ''1 second''')"
                    ))
                    .await
                    .unwrap();
                engine
                    .sql("CREATE EXTERNAL TABLE out (window_end TIMESTAMP, k VARCHAR, n BIGINT, total BIGINT, top BIGINT) STORED AS MEMORY")
                    .await
                    .unwrap();
                let key = if workload == "W3" { "CAST(v AS VARCHAR)" } else { "name" };
                return streaming(
                    &engine,
                    &format!(
                        "INSERT INTO out SELECT window_end, {key}, count(*), sum(id), max(v)
                         FROM tumble(t, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, {key}"
                    ),
                )
                .await;
            }
            "q5" | "q7" => {
                let setup = std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/sql/nexmark/setup-stream.sql"
                ))
                .unwrap();
                let setup = &setup[setup.find("CREATE EXTERNAL TABLE").unwrap()..];
                for statement in weir::statements::split_statements(&setup.replace(
                    "'format' 'json',",
                    &format!("'format' 'json', 'maxOffsetsPerTrigger' '{STREAM_BATCH}',"),
                ))
                .unwrap()
                {
                    engine.sql(&statement.text).await.unwrap();
                }
                let query = std::fs::read_to_string(format!(
                    "{}/sql/nexmark/{workload}.sql",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap();
                let sink = if workload == "q5" {
                    "auction BIGINT, num BIGINT, window_end TIMESTAMP"
                } else {
                    "auction BIGINT, price BIGINT, bidder BIGINT, \"dateTime\" TIMESTAMP, window_end TIMESTAMP"
                };
                engine
                    .sql(&format!("CREATE EXTERNAL TABLE out ({sink}) STORED AS MEMORY"))
                    .await
                    .unwrap();
                return streaming(&engine, &format!("INSERT INTO out {query}")).await;
            }
            nexmark => {
                engine.sql(&nexmark_table_sql()).await.unwrap();
                engine.sql(&nexmark_views_sql()).await.unwrap();
                match nexmark {
                    "q0" => "SELECT auction, bidder, price, \"dateTime\", extra FROM bid",
                    "q1" => "SELECT auction, bidder, 0.908 * price AS price, \"dateTime\", extra FROM bid",
                    _ => "SELECT auction, price FROM bid WHERE auction % 123 = 0",
                }
                .to_string()
            }
        };
        let frame = engine.session().sql(&query).await.unwrap();
        let plan = frame.create_physical_plan().await.unwrap();
        let mut stream = datafusion::physical_plan::execute_stream(Arc::clone(&plan), engine.session().task_ctx()).unwrap();
        while let Some(batch) = stream.next().await {
            std::hint::black_box(batch.unwrap());
        }
        weir::kafka::scan::sum_metric(&plan, weir::kafka::scan::metric::RECORDS_FETCHED) as u64
    })
}
