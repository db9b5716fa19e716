//! Helpers: brokers, unique names, producing test records.
//!
//! Tests run against the real Apache Kafka broker that `tests/kafka/start.sh` starts (its
//! address in `WEIR_TEST_KAFKA`). Without it, tests that a mock cluster can serve run against
//! librdkafka's mock cluster, and tests of what only a real broker shows are skipped with a
//! message; `WEIR_REQUIRE_KAFKA=1` (set by `.ci/run`) makes a missing broker fail them instead.

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

/// A name no other test uses, in this run or an earlier one on the same broker.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static RUN: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 100_000_000)
            .unwrap_or_default()
    });
    format!(
        "{prefix}-{}-{run}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The real broker's address, when `tests/kafka/start.sh` started one for this run.
pub fn real_kafka() -> Option<String> {
    match std::env::var("WEIR_TEST_KAFKA") {
        Ok(address) if !address.is_empty() => Some(address),
        _ => {
            assert!(
                std::env::var("WEIR_REQUIRE_KAFKA").is_err(),
                "WEIR_REQUIRE_KAFKA is set but WEIR_TEST_KAFKA is not: start the broker with \
                 eval \"$(bash tests/kafka/start.sh)\""
            );
            None
        }
    }
}

/// The real broker, or `None` with a message saying the test is skipped and how to run it.
pub fn real_broker_or_skip(test: &str) -> Option<Broker> {
    let found = real_kafka().map(|bootstrap| Broker::Real { bootstrap });
    if found.is_none() {
        eprintln!(
            "skipped {test}: it needs a real Kafka broker; start one with \
             eval \"$(bash tests/kafka/start.sh)\" (needs Java 17 and Maven)"
        );
    }
    found
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

/// The Kafka cluster of a test: the real broker, or a mock cluster in this process or in a
/// `weir broker` child process.
pub enum Broker {
    Real {
        bootstrap: String,
    },
    InProcess(EmbeddedKafka),
    Process {
        child: Child,
        stdin: ChildStdin,
        reader: BufReader<std::process::ChildStdout>,
        bootstrap: String,
    },
}

impl Broker {
    /// The real broker, else a mock cluster in this process.
    pub fn for_test() -> Broker {
        match real_kafka() {
            Some(bootstrap) => Broker::Real { bootstrap },
            None => Broker::in_process(),
        }
    }

    /// A broker in a process of its own, which outlives an engine a test kills: the real
    /// broker, else `weir broker`.
    pub fn outliving() -> Broker {
        match real_kafka() {
            Some(bootstrap) => Broker::Real { bootstrap },
            None => Broker::process(),
        }
    }

    /// librdkafka's mock cluster in this process (for tests about it).
    pub fn in_process() -> Broker {
        Broker::InProcess(EmbeddedKafka::start(1).expect("embedded broker starts"))
    }

    /// Whether this is the real broker.
    pub fn is_real(&self) -> bool {
        matches!(self, Broker::Real { .. })
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
            Broker::Real { bootstrap } => bootstrap.clone(),
            Broker::InProcess(kafka) => kafka.bootstrap_servers().to_string(),
            Broker::Process { bootstrap, .. } => bootstrap.clone(),
        }
    }

    pub fn create_topic(&mut self, name: &str, partitions: i32) {
        match self {
            Broker::Real { bootstrap } => {
                admin::create_topic(bootstrap, name, partitions, &[]);
            }
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

/// Admin calls on the real broker, for the tests' own set-up.
pub mod admin {
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::{Offset, TopicPartitionList};

    fn client(bootstrap: &str) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("admin client")
    }

    fn options() -> AdminOptions {
        AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
    }

    /// Creates a topic with these topic configs and waits until it has leaders.
    pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let results =
            futures::executor::block_on(client(bootstrap).create_topics([&topic], &options()))
                .expect("create topics");
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
        wait_for_partitions(bootstrap, name, partitions);
    }

    /// Grows a topic to `partitions` partitions.
    pub fn create_partitions(bootstrap: &str, name: &str, partitions: usize) {
        let grow = NewPartitions::new(name, partitions);
        let results =
            futures::executor::block_on(client(bootstrap).create_partitions([&grow], &options()))
                .expect("create partitions");
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("growing topic {t}: {e}"));
        }
        wait_for_partitions(bootstrap, name, partitions as i32);
    }

    /// Deletes the records of `partition` before `offset`.
    pub fn delete_records(bootstrap: &str, name: &str, partition: i32, offset: i64) {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(name, partition, Offset::Offset(offset))
            .expect("partition");
        let result =
            futures::executor::block_on(client(bootstrap).delete_records(&list, &options()))
                .expect("delete records");
        for element in result.elements() {
            element.error().expect("records deleted");
        }
    }

    fn wait_for_partitions(bootstrap: &str, name: &str, partitions: i32) {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("consumer");
        for _ in 0..100 {
            if let Ok(metadata) = consumer.fetch_metadata(Some(name), Duration::from_secs(5))
                && let Some(topic) = metadata.topics().iter().find(|t| t.name() == name)
                && topic.error().is_none()
                && topic.partitions().len() == partitions as usize
                && topic.partitions().iter().all(|p| p.leader() >= 0)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("topic {name} did not get {partitions} partitions with leaders");
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

/// JSON values `{"n": from}` … `{"n": from + count - 1}` for each of `partitions` partitions.
pub fn json_records(partitions: i32, count: usize, from: usize) -> Vec<(i32, String)> {
    (0..partitions)
        .flat_map(|p| (0..count).map(move |i| (p, format!("{{\"n\": {}}}", from + i))))
        .collect()
}

/// Produces `(partition, value)` pairs.
pub fn produce_json(bootstrap: &str, topic: &str, values: &[(i32, String)]) {
    let records: Vec<Record<'_>> = values.iter().map(|(p, v)| Record::value(*p, v)).collect();
    produce(bootstrap, topic, &records);
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
    let mut broker = Broker::for_test();
    let topic = unique(prefix);
    broker.create_topic(&topic, partitions);
    fill(&broker.bootstrap(), &topic, partitions, per_partition);
    let engine = broker.engine();
    (broker, topic, engine)
}

/// Waits until `check` holds, for at most 30 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records a query has read so far, over all its batches.
pub fn rows_read(query: &weir::stream::QueryHandle) -> u64 {
    query
        .recent_progress()
        .iter()
        .map(|p| p.num_input_rows)
        .sum()
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
