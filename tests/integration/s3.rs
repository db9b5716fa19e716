//! Checkpoints and Parquet output on a real S3 API: moto's server on loopback. `.ci/run`
//! installs moto and sets WEIR_REQUIRE_S3, so CI never skips these; elsewhere they are skipped,
//! saying so, when `moto_server` is not installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{Broker, Record, fails, lines, produce, run, unique};

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto_server on a free loopback port, or returns None (skipping) when it is missing.
fn moto() -> Option<Moto> {
    let found = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("WEIR_REQUIRE_S3").is_none(),
            "WEIR_REQUIRE_S3 is set but moto_server is not installed"
        );
        eprintln!(
            "skipped: moto_server is not installed (pip install 'moto[server]'); .ci/run installs it"
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto_server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    })
}

/// Creates a bucket with a plain S3 PUT (moto accepts unsigned requests).
fn create_bucket(endpoint: &str, bucket: &str) {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// moto with a new bucket, and a topic of 2 partitions holding `{"n": 0}` … `{"n": count - 1}`
/// alternately; `None` (skipping) without moto.
fn bucket_and_topic(prefix: &str, count: usize) -> Option<(Moto, String, Broker, String)> {
    let moto = moto()?;
    let bucket = unique(prefix).replace('_', "-");
    create_bucket(&moto.endpoint, &bucket);
    let mut broker = Broker::for_test();
    let topic = unique(prefix);
    broker.create_topic(&topic, 2);
    let values: Vec<String> = (0..count).map(|i| format!("{{\"n\": {i}}}")).collect();
    let records: Vec<Record<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record::value(i as i32 % 2, v))
        .collect();
    produce(&broker.bootstrap(), &topic, &records);
    Some((moto, bucket, broker, topic))
}

/// The statements pointing a session at moto's endpoint, with moto's test credentials.
fn session_settings(endpoint: &str) -> String {
    format!(
        "SET weir.s3.endpoint = '{endpoint}';
         SET weir.s3.allow_http = 'true';
         SET weir.s3.region = 'us-east-1';
         SET weir.s3.access_key_id = 'testing';
         SET weir.s3.secret_access_key = 'testing';"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_and_parquet_on_an_s3_api() {
    let Some((moto, bucket, broker, topic)) = bucket_and_topic("weir", 40) else {
        return;
    };
    let engine = broker.engine();
    let create = format!(
        "{}
         CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '15');
         CREATE EXTERNAL TABLE lake (n BIGINT, o BIGINT) STORED AS PARQUET LOCATION 's3://{bucket}/lake';
         CREATE STREAMING QUERY up WITH ('trigger' 'availableNow', 'checkpoint' 's3://{bucket}/cp/up')
           AS INSERT INTO lake SELECT n, _offset FROM src",
        session_settings(&moto.endpoint)
    );
    run(&engine, &create).await;
    let query = engine.query("up").unwrap();
    query.await_termination().await.unwrap();
    assert_eq!(
        query.recent_progress().len(),
        3,
        "40 offsets in batches of at most 15"
    );
    let result = run(&engine, "SELECT count(*), count(DISTINCT n) FROM lake").await;
    assert_eq!(lines(&result.batches), vec!["40|40"]);

    // A restart on the S3 checkpoint continues after the last batch.
    let more: Vec<String> = (40..50).map(|i| format!("{{\"n\": {i}}}")).collect();
    let records: Vec<Record<'_>> = more.iter().map(|v| Record::value(0, v)).collect();
    produce(&broker.bootstrap(), &topic, &records);
    run(&engine, &format!("CREATE STREAMING QUERY up WITH ('trigger' 'availableNow', 'checkpoint' 's3://{bucket}/cp/up') AS INSERT INTO lake SELECT n, _offset FROM src")).await;
    let again = engine.query("up").unwrap();
    again.await_termination().await.unwrap();
    assert_eq!(again.recent_progress()[0].batch_id, 3);
    let result = run(&engine, "SELECT count(*), count(DISTINCT n) FROM lake").await;
    assert_eq!(lines(&result.batches), vec!["50|50"]);

    // The checkpoint belongs to that query: another one is refused, and the secret never shows.
    run(&engine, &format!("CREATE EXTERNAL TABLE other (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{}', 'format' 'json')", unique("x"))).await;
    let e = fails(&engine, &format!("CREATE STREAMING QUERY up2 WITH ('checkpoint' 's3://{bucket}/cp/up') AS INSERT INTO lake SELECT n, 0 AS o FROM other")).await;
    assert!(
        e.contains("belongs to query 'up'") && !e.contains("testing"),
        "{e}"
    );

    // Put-if-absent on S3: a second writer of the same batch is refused.
    let settings = weir::storage::S3Settings {
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        allow_http: Some(true),
    };
    let checkpoint =
        weir::checkpoint::Checkpoint::open(&format!("s3://{bucket}/cp/race"), &settings).unwrap();
    let entry = weir::checkpoint::OffsetsEntry {
        batch_id: 7,
        trigger_time_ms: 1,
        sources: Default::default(),
        event_time: None,
    };
    checkpoint.write_offsets(&entry).await.unwrap();
    let e = checkpoint
        .write_offsets(&entry)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("offsets/7 already exists: another instance"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_table_on_an_s3_api() {
    let Some((moto, bucket, broker, topic)) = bucket_and_topic("delta", 30) else {
        return;
    };
    let engine = broker.engine();
    run(
        &engine,
        &format!(
            "{}
             CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '12');
             CREATE EXTERNAL TABLE lake (n BIGINT, p INT) STORED AS DELTA LOCATION 's3://{bucket}/lake' OPTIONS ('partitionBy' 'p');
             CREATE STREAMING QUERY to_delta WITH ('trigger' 'availableNow', 'checkpoint' 's3://{bucket}/cp/to_delta')
               AS INSERT INTO lake SELECT n, _partition FROM src",
            session_settings(&moto.endpoint)
        ),
    )
    .await;
    let query = engine.query("to_delta").unwrap();
    query.await_termination().await.unwrap();
    let result = run(
        &engine,
        "SELECT p, count(*), count(DISTINCT n) FROM lake GROUP BY p ORDER BY p",
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["0|15|15", "1|15|15"]);
    run(&engine, "OPTIMIZE lake").await;
    let again = run(&engine, "SELECT count(*), count(DISTINCT n) FROM lake").await;
    assert_eq!(
        lines(&again.batches),
        vec!["30|30"],
        "compaction keeps the rows"
    );

    let options = serde_json::json!({
        "AWS_ENDPOINT_URL": moto.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    });
    let uri = format!("s3://{bucket}/lake");
    if let Some(read) = super::delta::read_with_deltalake(&uri, &options.to_string(), &[query.id()])
    {
        assert_eq!(read["rows"].as_array().unwrap().len(), 30);
        let last = query.recent_progress().last().unwrap().batch_id;
        assert_eq!(read["txn"][query.id()], last);
    }

    // An endpoint nobody answers on: the table is refused, naming it, without the secret.
    let e = fails(
        &engine,
        &format!(
            "SET weir.s3.endpoint = 'http://127.0.0.1:9';
             SET weir.s3.secret_access_key = 'do-not-show-this';
             CREATE EXTERNAL TABLE gone (n BIGINT) STORED AS DELTA LOCATION 's3://{bucket}/gone'"
        ),
    )
    .await;
    assert!(
        e.contains("location s3://") && e.contains("/gone") && !e.contains("do-not-show-this"),
        "{e}"
    );
}
