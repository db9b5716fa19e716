//! Helpers: brokers (in process or as a child process), unique names, producing test records.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir::embedded::EmbeddedKafka;
use weir::{Engine, QueryResult};

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Starts `weir run script` against the brokers `bootstrap` in a quiet child process, with the
/// environment variables `env` (fault hooks) set.
pub fn spawn_run(bootstrap: &str, script: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(["--bootstrap-servers", bootstrap, "run"])
        .arg(script)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().expect("weir run starts")
}

/// A mock Kafka cluster, in this process or in a `weir broker` child process.
pub enum Broker {
    InProcess(EmbeddedKafka),
    Process {
        child: Child,
        stdin: ChildStdin,
        reader: BufReader<std::process::ChildStdout>,
        bootstrap: String,
    },
}

impl Broker {
    pub fn in_process() -> Broker {
        Broker::InProcess(EmbeddedKafka::start(1).expect("embedded broker starts"))
    }

    /// Starts `weir broker` and reads its address from its first line.
    pub fn process() -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("broker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weir broker starts");
        let stdin = child.stdin.take().expect("stdin");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("first line");
        let bootstrap = line
            .trim()
            .strip_prefix("bootstrap.servers=")
            .expect("address line")
            .to_string();
        Broker::Process {
            child,
            stdin,
            reader,
            bootstrap,
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::InProcess(kafka) => kafka.bootstrap_servers().to_string(),
            Broker::Process { bootstrap, .. } => bootstrap.clone(),
        }
    }

    pub fn create_topic(&mut self, name: &str, partitions: i32) {
        match self {
            Broker::InProcess(kafka) => {
                kafka.create_topic(name, partitions).expect("topic created")
            }
            Broker::Process { stdin, reader, .. } => {
                writeln!(stdin, "create-topic {name} {partitions}").expect("command sent");
                let mut answer = String::new();
                reader.read_line(&mut answer).expect("answer");
                assert_eq!(answer.trim(), "ok", "create-topic {name}");
            }
        }
    }

    /// An engine whose default brokers are this cluster.
    pub fn engine(&self) -> Engine {
        Engine::builder()
            .bootstrap_servers(self.bootstrap())
            .build()
            .expect("engine builds")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Process { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One record to produce.
pub struct Record<'a> {
    pub partition: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

impl<'a> Record<'a> {
    pub fn value(partition: i32, value: &'a str) -> Self {
        Record {
            partition,
            key: None,
            value: Some(value.as_bytes()),
            headers: &[],
        }
    }
}

/// Produces records with a plain rdkafka producer and waits for every acknowledgement.
pub fn produce(bootstrap: &str, topic: &str, records: &[Record<'_>]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for record in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(record.partition);
        if let Some(value) = record.value {
            r = r.payload(value);
        }
        if let Some(key) = record.key {
            r = r.key(key);
        }
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new();
            for (key, value) in record.headers {
                headers = headers.insert(Header { key, value: *value });
            }
            r = r.headers(headers);
        }
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, returned)) => {
                    r = returned;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("records acknowledged");
}

/// Produces `count` values "p{partition}-{i}" to each of `partitions` partitions.
pub fn fill(bootstrap: &str, topic: &str, partitions: i32, count: usize) {
    let values: Vec<(i32, String)> = (0..partitions)
        .flat_map(|p| (0..count).map(move |i| (p, format!("p{p}-{i}"))))
        .collect();
    let records: Vec<Record<'_>> = values.iter().map(|(p, v)| Record::value(*p, v)).collect();
    produce(bootstrap, topic, &records);
}

/// An in-process broker with a new topic of `partitions` partitions holding
/// `per_partition` records each (see [`fill`]), and an engine using the broker.
pub fn filled_topic(
    prefix: &str,
    partitions: i32,
    per_partition: usize,
) -> (Broker, String, Engine) {
    let mut broker = Broker::in_process();
    let topic = unique(prefix);
    broker.create_topic(&topic, partitions);
    fill(&broker.bootstrap(), &topic, partitions, per_partition);
    let engine = broker.engine();
    (broker, topic, engine)
}

/// Runs statements, panicking with the failing one.
pub async fn run(engine: &Engine, sql: &str) -> QueryResult {
    let mut last = None;
    for statement in weir::statements::split_statements(sql).expect("statements split") {
        let result = engine.execute(&statement.text).await;
        last = Some(result.unwrap_or_else(|e| panic!("{}: {e}", statement.text)));
    }
    last.expect("at least one statement")
}

/// Runs statements and returns the error of the last one, which must fail.
pub async fn fails(engine: &Engine, sql: &str) -> String {
    let statements = weir::statements::split_statements(sql).expect("statements split");
    let (last, before) = statements.split_last().expect("at least one statement");
    for statement in before {
        engine
            .execute(&statement.text)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", statement.text));
    }
    match engine.execute(&last.text).await {
        Ok(_) => panic!("expected an error from: {}", last.text),
        Err(e) => e.to_string(),
    }
}

/// The rows of `batches` as strings, one per row, columns joined with '|'.
pub fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = vec![];
    for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                    .expect("formatter")
            })
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = columns.iter().map(|f| f.value(row).to_string()).collect();
            out.push(cells.join("|"));
        }
    }
    out
}
