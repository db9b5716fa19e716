//! Avro values written by an independent encoder (Python's fastavro) and read by weir with
//! their writer schema ('format' 'avro', 'avroSchema'): types, nested records, schema evolution
//! by name, tombstones, and undecodable values under each 'mode'.

use std::io::Write;
use std::process::{Command, Stdio};

use super::common::{Broker, Record, fails, lines, produce, run, unique};

const SCHEMA: &str = r#"{"type": "record", "name": "Click", "namespace": "shop", "fields": [
  {"name": "id", "type": "long"},
  {"name": "page", "type": ["null", "string"], "default": null},
  {"name": "count", "type": "int"},
  {"name": "price", "type": "double"},
  {"name": "ok", "type": "boolean"},
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["VIEW", "BUY"]}},
  {"name": "geo", "type": {"type": "record", "name": "Geo", "fields": [
    {"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}]}},
  {"name": "only_in_the_writer", "type": "string"}]}"#;

const RECORDS: [&str; 3] = [
    r#"{"id": 1, "page": "home", "count": 3, "price": 9.5, "ok": true, "ts": 1704067200000, "kind": "VIEW", "geo": {"lat": 48.85, "lon": 2.35}, "only_in_the_writer": "x"}"#,
    r#"{"id": 2, "page": null, "count": -7, "price": 0.25, "ok": false, "ts": 1704067201500, "kind": "BUY", "geo": {"lat": -33.9, "lon": 151.2}, "only_in_the_writer": "y"}"#,
    r#"{"id": 3000000000, "page": "cart", "count": 2147483647, "price": -1e300, "ok": true, "ts": 0, "kind": "VIEW", "geo": {"lat": 0.0, "lon": 0.0}, "only_in_the_writer": "z"}"#,
];

/// The records encoded by fastavro, or `None` when Python's fastavro is missing and not required.
fn encoded_by_fastavro() -> Option<Vec<Vec<u8>>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/avro/encode.py");
    let child = Command::new("python3")
        .arg(script)
        .arg(SCHEMA)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(
            std::env::var("WEIR_REQUIRE_PYTHON_LIBS").is_err(),
            "python3 is missing: the Avro tests run Python's fastavro"
        );
        eprintln!("skipped: the Avro tests need python3 with fastavro");
        return None;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(RECORDS.join("\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            std::env::var("WEIR_REQUIRE_PYTHON_LIBS").is_err(),
            "fastavro failed (python3 -m pip install fastavro): {stderr}"
        );
        eprintln!(
            "skipped: the Avro tests need Python's fastavro (python3 -m pip install fastavro)"
        );
        return None;
    }
    let hex = String::from_utf8(output.stdout).unwrap();
    Some(
        hex.lines()
            .map(|line| {
                (0..line.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
                    .collect()
            })
            .collect(),
    )
}

/// A topic holding the encoded records, a tombstone, and `extra` values, in one partition.
fn topic_with(broker: &mut Broker, values: &[Vec<u8>], extra: &[&[u8]]) -> String {
    let topic = unique("avro");
    broker.create_topic(&topic, 1);
    let mut records: Vec<Record<'_>> = values
        .iter()
        .map(|v| Record {
            partition: 0,
            key: None,
            value: Some(v),
            headers: &[],
        })
        .collect();
    records.push(Record {
        partition: 0,
        key: None,
        value: None,
        headers: &[],
    });
    records.extend(extra.iter().map(|v| Record {
        partition: 0,
        key: None,
        value: Some(v),
        headers: &[],
    }));
    produce(&broker.bootstrap(), &topic, &records);
    topic
}

fn table(topic: &str, mode: &str) -> String {
    format!(
        "CREATE EXTERNAL TABLE clicks (
           id BIGINT, page VARCHAR, count BIGINT, price DOUBLE, ok BOOLEAN, ts TIMESTAMP,
           kind VARCHAR, geo STRUCT<lat DOUBLE, lon DOUBLE>, added_later VARCHAR)
         STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'format' 'avro', 'mode' '{mode}',
           'avroSchema' '{SCHEMA}')"
    )
}

#[tokio::test]
async fn avro_written_by_fastavro_is_read_into_the_declared_columns_by_name() {
    let Some(values) = encoded_by_fastavro() else {
        return;
    };
    let mut broker = Broker::for_test();
    let topic = topic_with(&mut broker, &values, &[]);
    let engine = broker.engine();
    let result = run(
        &engine,
        &format!(
            "{};
             SELECT id, page, count, price, ok, ts, kind, geo['lat'], geo['lon'], added_later, _offset
             FROM clicks ORDER BY _offset",
            table(&topic, "FAILFAST")
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec![
            "1|home|3|9.5|true|2024-01-01T00:00:00|VIEW|48.85|2.35||0",
            "2||-7|0.25|false|2024-01-01T00:00:01.500|BUY|-33.9|151.2||1",
            "3000000000|cart|2147483647|-1e300|true|1970-01-01T00:00:00|VIEW|0.0|0.0||2",
            "||||||||||3",
        ],
        "int promoted to BIGINT, enum as text, the writer's extra field ignored, a declared \
         field it lacks null, the tombstone a null row"
    );
}

#[tokio::test]
async fn undecodable_avro_fails_naming_the_record_or_follows_the_mode() {
    let Some(values) = encoded_by_fastavro() else {
        return;
    };
    let truncated = values[0][..values[0].len() - 3].to_vec();
    let mut broker = Broker::for_test();
    let topic = topic_with(&mut broker, &values, &[&truncated, b"\x02"]);
    let engine = broker.engine();
    run(&engine, &table(&topic, "FAILFAST")).await;
    let e = fails(&engine, "SELECT count(*) FROM clicks").await;
    assert!(
        e.contains(&format!(
            "cannot decode the value of topic '{topic}' partition 0 offset 4 as avro"
        )) && e.contains("ends before its Avro record does"),
        "{e}"
    );
    let permissive = format!("{topic}_permissive");
    run(
        &engine,
        &table(&topic, "PERMISSIVE").replace("TABLE clicks", &format!("TABLE \"{permissive}\"")),
    )
    .await;
    let result = run(
        &engine,
        &format!("SELECT _offset, id, page FROM \"{permissive}\" ORDER BY _offset"),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["0|1|home", "1|2|", "2|3000000000|cart", "3||", "4||", "5||"],
        "3 records, a tombstone and 2 bad values kept as null rows, each in its place"
    );
    run(
        &engine,
        &table(&topic, "DROPMALFORMED").replace("TABLE clicks", "TABLE dropping"),
    )
    .await;
    let result = run(&engine, "SELECT _offset, id FROM dropping ORDER BY _offset").await;
    assert_eq!(
        lines(&result.batches),
        vec!["0|1", "1|2", "2|3000000000", "3|"],
        "the 2 bad values dropped, the tombstone kept"
    );

    let e = fails(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE wrong (id BIGINT) STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
               'format' 'avro', 'avroSchema' '{{\"type\": \"record\", \"name\": \"R\"}}')"
        ),
    )
    .await;
    assert!(
        e.contains("option 'avroSchema' does not fit the table's columns: its record has no \"fields\" list"),
        "{e}"
    );
    let e = fails(
        &engine,
        &table(&topic, "FAILFAST")
            .replace("TABLE clicks", "TABLE mismatched")
            .replace("geo STRUCT<lat DOUBLE, lon DOUBLE>", "geo BIGINT"),
    )
    .await;
    assert!(
        e.contains("field 'geo' cannot be read as the declared Int64"),
        "a declared type the record's field cannot become fails at CREATE: {e}"
    );
}
