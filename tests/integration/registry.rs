//! Avro framed for a schema registry, against real Apicurio registries (`tests/registry/
//! start.sh`) that speak Confluent's API. The independent side is Confluent's own Python
//! serializers (`tests/registry/serde.py`): they write what weir reads, and read what weir
//! writes. Also pyarrow for Parquet and psql for PostgreSQL.

use std::io::Write;
use std::process::{Command, Stdio};

use super::common::{Broker, fails, lines, run, unique};

/// Every Avro type family weir maps: primitives, a nullable union, logical types, an enum, a
/// nested record, an array and a map.
const ORDER_SCHEMA: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
 {"name": "id", "type": "long"},
 {"name": "customer", "type": "string"},
 {"name": "note", "type": ["null", "string"], "default": null},
 {"name": "qty", "type": "int"},
 {"name": "price", "type": "double"},
 {"name": "weight", "type": "float"},
 {"name": "paid", "type": "boolean"},
 {"name": "placed", "type": {"type": "long", "logicalType": "timestamp-millis"}},
 {"name": "shipped", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}], "default": null},
 {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
 {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
   {"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "string"], "default": null}]}},
 {"name": "tags", "type": {"type": "array", "items": "string"}},
 {"name": "attrs", "type": {"type": "map", "values": "long"}},
 {"name": "day", "type": {"type": "int", "logicalType": "date"}},
 {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
 {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
 {"name": "raw", "type": "bytes"}]}"#;

/// Orders as serde.py takes them (times in ms, dates in days, bytes in hex), by partition.
const ORDERS: [(i32, &str); 5] = [
    (
        0,
        r#"{"id": 1, "customer": "ann", "note": null, "qty": 3, "price": 9.5, "weight": 1.25, "paid": true, "placed": 1704067200000, "shipped": null, "status": "NEW", "address": {"city": "Paris", "zip": "75001"}, "tags": ["a", "b"], "attrs": {"x": 1}, "day": 19723, "amount": "12.34", "ref": "6f1c3a52-9f0e-4b3e-8f7a-1d2c3b4a5e6f", "raw": "00ff"}"#,
    ),
    (
        1,
        r#"{"id": 2, "customer": "bo", "note": "leave at the door", "qty": -7, "price": 0.25, "weight": 0.5, "paid": false, "placed": 1704067201500, "shipped": 1704153600123, "status": "SHIPPED", "address": {"city": "Lyon", "zip": null}, "tags": [], "attrs": {}, "day": 0, "amount": "-0.01", "ref": "00000000-0000-4000-8000-000000000000", "raw": ""}"#,
    ),
    (0, "null"),
    (
        1,
        r#"{"id": 3000000000, "customer": "çé 😀", "note": null, "qty": 2147483647, "price": -1e300, "weight": 3.5, "paid": true, "placed": 0, "shipped": null, "status": "PAID", "address": {"city": "Nice", "zip": "06000"}, "tags": ["x"], "attrs": {"k": -5, "m": 9007199254740993}, "day": -1, "amount": "99999999.99", "ref": "ffffffff-ffff-4fff-bfff-ffffffffffff", "raw": "0001"}"#,
    ),
    (
        0,
        r#"{"id": 4, "customer": "dee", "note": "", "qty": 0, "price": 1.0, "weight": 2.0, "paid": false, "placed": 1, "shipped": 0, "status": "NEW", "address": {"city": "Metz", "zip": ""}, "tags": ["p", "q", "r"], "attrs": {"z": 0}, "day": 20000, "amount": "0.00", "ref": "12345678-1234-4234-9234-123456789abc", "raw": "ff"}"#,
    ),
];

/// The registry of the tests, or `None` (the test is skipped) when none runs and
/// `WEIR_REQUIRE_REGISTRY` is not set.
pub fn registry(test: &str) -> Option<String> {
    match std::env::var("WEIR_TEST_SCHEMA_REGISTRY") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("WEIR_REQUIRE_REGISTRY").is_none(),
                "{test} needs a schema registry: eval \"$(bash tests/registry/start.sh)\""
            );
            eprintln!(
                "skipped {test}: start a registry with eval \"$(bash tests/registry/start.sh)\""
            );
            None
        }
    }
}

/// Runs `tests/registry/serde.py` with `args` and `input`; its standard output.
pub fn serde(bootstrap: &str, registry: &str, args: &[&str], input: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry/serde.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .args(["--bootstrap", bootstrap, "--registry", registry])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "serde.py {args:?} failed (python3 -m pip install -r tests/registry/requirements.txt): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Produces `records` (JSON lines by partition) with Confluent's AvroSerializer.
fn produce_avro(
    bootstrap: &str,
    registry: &str,
    topic: &str,
    schema: &str,
    records: &[(i32, &str)],
) {
    for partition in [0, 1] {
        let lines: Vec<&str> = records
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, r)| *r)
            .collect();
        if lines.is_empty() {
            continue;
        }
        let partition = partition.to_string();
        serde(
            bootstrap,
            registry,
            &[
                "produce",
                "--topic",
                topic,
                "--schema",
                schema,
                "--partition",
                &partition,
            ],
            &lines.join("\n"),
        );
    }
}

/// The records of `topic` as Confluent's AvroDeserializer reads them, sorted.
fn consume_avro(bootstrap: &str, registry: &str, topic: &str, count: usize) -> Vec<String> {
    let count = count.to_string();
    let out = serde(
        bootstrap,
        registry,
        &["consume", "--topic", topic, "--count", &count],
        "",
    );
    let mut records: Vec<String> = out.lines().map(str::to_string).collect();
    records.sort();
    records
}

/// The rows of the Parquet files under `dir` as pyarrow reads them, sorted by column `key`, one
/// JSON object each (timestamps and decimals as Python prints them).
pub fn pyarrow_rows(dir: &str, key: &str) -> Vec<String> {
    let script = "import sys, json, pyarrow.parquet as pq
rows = sorted(pq.read_table(sys.argv[1]).to_pylist(), key=lambda r: r[sys.argv[2]])
for r in rows:
    print(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str))";
    let output = Command::new("python3")
        .args(["-c", script, dir, key])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The rows of `query` as psql prints them from the test database, fields joined by '|'.
pub fn psql_rows(query: &str) -> Vec<String> {
    let output = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-tAF|",
            "-c",
            query,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The columns of the orders, in order.
const COLUMNS: &str = "id, customer, note, qty, price, weight, paid, placed, shipped, status, \
                       address, tags, attrs, day, amount, ref, raw";

#[tokio::test]
async fn avro_from_pythons_serializer_is_queried_and_streamed_to_avro_parquet_and_postgres() {
    let Some(registry) = registry("the registry round trip") else {
        return;
    };
    let mut broker = Broker::for_test();
    let bootstrap = broker.bootstrap();
    let (input, output) = (unique("orders"), unique("orders-out"));
    broker.create_topic(&input, 2);
    broker.create_topic(&output, 2);
    produce_avro(&bootstrap, &registry, &input, ORDER_SCHEMA, &ORDERS);
    let engine = broker.engine();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake").display().to_string();
    let pg_table = unique("orders_pg").replace('-', "_");
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE orders STORED AS KAFKA OPTIONS ('subscribe' '{input}',
               'startingOffsets' 'earliest', 'format' 'avro', 'schema.registry.url' '{registry}');
             CREATE EXTERNAL TABLE orders_now STORED AS KAFKA OPTIONS ('subscribe' '{input}',
               'startingOffsets' 'earliest', 'endingOffsets' 'latest', 'format' 'avro',
               'schema.registry.url' '{registry}');
             CREATE EXTERNAL TABLE orders_out STORED AS KAFKA OPTIONS ('subscribe' '{output}',
               'format' 'avro', 'schema.registry.url' '{registry}', 'avroSchema' '{ORDER_SCHEMA}');
             CREATE EXTERNAL TABLE lake (id BIGINT, customer VARCHAR, placed TIMESTAMP,
               status VARCHAR, city VARCHAR, tags VARCHAR[], amount DECIMAL(10, 2))
               STORED AS PARQUET LOCATION '{lake}';
             CREATE EXTERNAL TABLE pg (id BIGINT, customer VARCHAR, price DOUBLE,
               placed TIMESTAMP, status VARCHAR, city VARCHAR, day DATE)
               STORED AS JDBC LOCATION 'postgres://postgres@127.0.0.1:5432/test'
               OPTIONS ('table' '{pg_table}')"
        ),
    )
    .await;

    let result = run(
        &engine,
        &format!("SELECT {COLUMNS} FROM orders_now ORDER BY _partition, _offset"),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec![
            "1|ann||3|9.5|1.25|true|2024-01-01T00:00:00Z||NEW|{city: Paris, zip: 75001}|[a, b]|{x: 1}|2024-01-01|12.34|6f1c3a52-9f0e-4b3e-8f7a-1d2c3b4a5e6f|00ff",
            "||||||||||||||||",
            "4|dee||0|1.0|2.0|false|1970-01-01T00:00:00.001Z|1970-01-01T00:00:00Z|NEW|{city: Metz, zip: }|[p, q, r]|{z: 0}|2024-10-04|0.00|12345678-1234-4234-9234-123456789abc|ff",
            "2|bo|leave at the door|-7|0.25|0.5|false|2024-01-01T00:00:01.500Z|2024-01-02T00:00:00.123Z|SHIPPED|{city: Lyon, zip: }|[]|{}|1970-01-01|-0.01|00000000-0000-4000-8000-000000000000|",
            "3000000000|çé 😀||2147483647|-1e300|3.5|true|1970-01-01T00:00:00Z||PAID|{city: Nice, zip: 06000}|[x]|{k: -5, m: 9007199254740993}|1969-12-31|99999999.99|ffffffff-ffff-4fff-bfff-ffffffffffff|0001",
        ],
        "columns from the subject's latest schema; a tombstone is a row of nulls"
    );

    let cp = |name: &str| dir.path().join(name).display().to_string();
    run(
        &engine,
        &format!(
            "CREATE STREAMING QUERY to_avro WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO orders_out SELECT {COLUMNS} FROM orders WHERE id IS NOT NULL;
             CREATE STREAMING QUERY to_lake WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO lake SELECT id, customer, placed, status, address['city'] AS city,
                 tags, amount FROM orders WHERE id IS NOT NULL;
             CREATE STREAMING QUERY to_pg WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO pg SELECT id, customer, price, placed, status,
                 address['city'] AS city, day FROM orders WHERE id IS NOT NULL",
            cp("to_avro"),
            cp("to_lake"),
            cp("to_pg")
        ),
    )
    .await;
    for name in ["to_avro", "to_lake", "to_pg"] {
        let query = engine.query(name).unwrap();
        query
            .await_termination()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    let read_back = consume_avro(&bootstrap, &registry, &output, 4);
    let mut written: Vec<String> = consume_avro(&bootstrap, &registry, &input, 5)
        .into_iter()
        .filter(|r| r != "null")
        .collect();
    written.sort();
    assert_eq!(
        read_back, written,
        "what weir re-encoded reads back, through Confluent's deserializer, exactly as what \
         Python wrote"
    );

    assert_eq!(
        pyarrow_rows(&lake, "id"),
        vec![
            r#"{"amount": "12.34", "city": "Paris", "customer": "ann", "id": 1, "placed": "2024-01-01 00:00:00", "status": "NEW", "tags": ["a", "b"]}"#,
            r#"{"amount": "-0.01", "city": "Lyon", "customer": "bo", "id": 2, "placed": "2024-01-01 00:00:01.500000", "status": "SHIPPED", "tags": []}"#,
            r#"{"amount": "0.00", "city": "Metz", "customer": "dee", "id": 4, "placed": "1970-01-01 00:00:00.001000", "status": "NEW", "tags": ["p", "q", "r"]}"#,
            r#"{"amount": "99999999.99", "city": "Nice", "customer": "çé 😀", "id": 3000000000, "placed": "1970-01-01 00:00:00", "status": "PAID", "tags": ["x"]}"#,
        ],
        "the Parquet files as pyarrow reads them"
    );

    assert_eq!(
        psql_rows(&format!(
            "SELECT id, customer, price, placed, status, city, day FROM {pg_table} ORDER BY id"
        )),
        vec![
            "1|ann|9.5|2024-01-01 00:00:00|NEW|Paris|2024-01-01",
            "2|bo|0.25|2024-01-01 00:00:01.5|SHIPPED|Lyon|1970-01-01",
            "4|dee|1|1970-01-01 00:00:00.001|NEW|Metz|2024-10-04",
            "3000000000|çé 😀|-1e+300|1970-01-01 00:00:00|PAID|Nice|1969-12-31",
        ],
        "the PostgreSQL rows as psql reads them"
    );
}

/// Version 1 of an evolving subject, and version 2: `name` removed, `score` promoted from int
/// to long, `tier` added with a default (a BACKWARD-compatible change, which the registry
/// checks).
const V1: &str = r#"{"type": "record", "name": "Player", "fields": [
 {"name": "id", "type": "long"}, {"name": "name", "type": "string", "default": "?"},
 {"name": "score", "type": "int"}]}"#;
const V2: &str = r#"{"type": "record", "name": "Player", "fields": [
 {"name": "id", "type": "long"}, {"name": "score", "type": "long"},
 {"name": "tier", "type": "string", "default": "basic"}]}"#;

/// A broker with a new topic of one partition holding one player of `V1`, written by Python's
/// AvroSerializer; the topic's name starts with `prefix`.
fn topic_with_a_player(registry: &str, prefix: &str) -> (Broker, String) {
    let mut broker = Broker::for_test();
    let topic = unique(prefix);
    broker.create_topic(&topic, 1);
    produce_avro(
        &broker.bootstrap(),
        registry,
        &topic,
        V1,
        &[(0, r#"{"id": 1, "name": "ann", "score": 7}"#)],
    );
    (broker, topic)
}

#[tokio::test]
async fn avro_schemas_evolve_both_ways_and_an_incompatible_one_is_named() {
    let Some(registry) = registry("the schema evolution test") else {
        return;
    };
    let (broker, topic) = topic_with_a_player(&registry, "players");
    let bootstrap = broker.bootstrap();
    produce_avro(
        &bootstrap,
        &registry,
        &topic,
        V2,
        &[(0, r#"{"id": 2, "score": 5000000000, "tier": "gold"}"#)],
    );
    let engine = broker.engine();
    let options = format!(
        "'subscribe' '{topic}', 'startingOffsets' 'earliest', 'endingOffsets' 'latest',
         'format' 'avro', 'schema.registry.url' '{registry}'"
    );
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE latest STORED AS KAFKA OPTIONS ({options});
             SELECT * EXCEPT (_key, _value, _topic, _partition, _timestamp, _timestampType) FROM latest"
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["1|7|basic|0", "2|5000000000|gold|1"],
        "the latest schema (v2) reads v1's record: name skipped, score promoted, tier defaulted"
    );
    let old_reader = V1.replace("\"int\"", "\"long\"");
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE old (id BIGINT, name VARCHAR) STORED AS KAFKA
               OPTIONS ({options}, 'avroSchema' '{old_reader}');
             SELECT id, name FROM old"
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["1|ann", "2|?"],
        "an older reader schema reads v2's record with name's default"
    );
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE players_sink (id BIGINT, score BIGINT, tier VARCHAR)
               STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'format' 'avro',
               'schema.registry.url' '{registry}');
             INSERT INTO players_sink VALUES (3, 12, 'silver')"
        ),
    )
    .await;
    let read_back = consume_avro(&bootstrap, &registry, &topic, 3);
    assert!(
        read_back.contains(&r#"{"id": 3, "score": 12, "tier": "silver"}"#.to_string()),
        "{read_back:?}"
    );
    let versions = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
            &format!("{registry}/subjects/{topic}-value/versions"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&versions.stdout).trim(),
        "[1,2]",
        "weir wrote with the subject's latest schema (v2) and registered nothing new"
    );
    let e = fails(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE narrow (id BIGINT) STORED AS KAFKA
               OPTIONS ({options}, 'avroSchema' '{V1}');
             SELECT id FROM narrow"
        ),
    )
    .await;
    assert!(
        e.contains("values written with schema id")
            && e.contains("cannot be read with the table's reader schema, option 'avroSchema': field 'score': ")
            && e.contains("Illegal promotion Long to Int"),
        "a long cannot be read as an int: the error names the schema id and the field: {e}"
    );
}

/// A record as Kafka holds it, produced without any serializer.
fn raw(partition: i32, value: &[u8]) -> super::common::Record<'_> {
    super::common::Record {
        partition,
        key: None,
        value: Some(value),
        headers: &[],
    }
}

#[tokio::test]
async fn values_that_are_not_registry_avro_follow_the_mode_and_are_named() {
    let Some(registry) = registry("the bad values test") else {
        return;
    };
    let (broker, topic) = topic_with_a_player(&registry, "bad-avro");
    let bootstrap = broker.bootstrap();
    let engine = broker.engine();
    let good = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE probe STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
               'startingOffsets' 'earliest', 'endingOffsets' 'latest');
             SELECT value FROM probe"
        ),
    )
    .await;
    let good = good.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::BinaryArray>()
        .unwrap()
        .value(0)
        .to_vec();
    let mut wrong_magic = good.clone();
    wrong_magic[0] = 1;
    let truncated = good[..good.len() - 1].to_vec();
    let mut unknown_id = good.clone();
    unknown_id[1..5].copy_from_slice(&987_654_321u32.to_be_bytes());
    super::common::produce(
        &bootstrap,
        &topic,
        &[
            raw(0, &wrong_magic),
            raw(0, &truncated),
            raw(0, &unknown_id),
            raw(0, b"\0\0"),
            raw(0, &good),
        ],
    );
    let table = |name: &str, mode: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
               'startingOffsets' 'earliest', 'endingOffsets' 'latest', 'format' 'avro',
               'schema.registry.url' '{registry}', 'mode' '{mode}')"
        )
    };
    run(&engine, &table("failing", "FAILFAST")).await;
    for (offset, problem) in [
        (1, "not the registry's magic byte 0"),
        (2, "is not one Avro record of its schema"),
        (3, "schema id 987654321 is unknown"),
        (4, "shorter than the registry's 5-byte frame"),
    ] {
        let e = fails(
            &engine,
            &format!("SELECT id FROM failing WHERE _offset >= {offset}"),
        )
        .await;
        assert!(
            e.contains(&format!("topic '{topic}' partition 0 offset {offset}"))
                && e.contains(problem),
            "offset {offset}: {e}"
        );
    }
    run(&engine, &table("dropping", "DROPMALFORMED")).await;
    let result = run(&engine, "SELECT _offset, id, name FROM dropping").await;
    assert_eq!(lines(&result.batches), vec!["0|1|ann", "5|1|ann"]);
    run(&engine, &table("keeping", "PERMISSIVE")).await;
    let result = run(&engine, "SELECT _offset, id FROM keeping").await;
    assert_eq!(
        lines(&result.batches),
        vec!["0|1", "1|", "2|", "3|", "4|", "5|1"]
    );
}

#[tokio::test]
async fn a_registry_that_cannot_be_used_fails_at_create_without_showing_secrets() {
    let Some(registry) = registry("the registry access test") else {
        return;
    };
    let broker = Broker::for_test();
    let engine = broker.engine();
    let create = |name: &str, url: &str, extra: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} STORED AS KAFKA OPTIONS ('subscribe' 't-{name}',
               'format' 'avro', 'schema.registry.url' '{url}' {extra})"
        )
    };
    let e = fails(
        &engine,
        &create(
            "unreachable",
            "http://weir:hunter2@127.0.0.1:1/apis/ccompat/v7",
            ", 'schema.registry.max.retries' '1'",
        ),
    )
    .await;
    assert!(
        e.contains("http://weir:********@127.0.0.1:1/apis/ccompat/v7") && !e.contains("hunter2"),
        "the URL is named, its password is not: {e}"
    );
    let e = fails(&engine, &create("nosubject", &registry, "")).await;
    assert!(
        e.contains("the subject 't-nosubject-value' has no schema")
            && e.contains("declare the columns"),
        "{e}"
    );
    let e = fails(
        &engine,
        &create("notaurl", "weir:hunter2@registry:8081", ""),
    )
    .await;
    assert!(
        e.contains("must start with http:// or https://") && !e.contains("hunter2"),
        "{e}"
    );
    let root = registry.trim_end_matches("/apis/ccompat/v7");
    let e = fails(&engine, &create("wrongpath", root, "")).await;
    assert!(
        e.contains("(HTTP 404): is 'schema.registry.url' the registry's API"),
        "a 404 from a server that is not a registry is not an empty subject: {e}"
    );
    let e = fails(
        &engine,
        &create("stray", &registry, ", 'csv.delimiter' ';'")
            .replace("'format' 'avro'", "'format' 'json'"),
    )
    .await;
    assert!(e.contains("only applies to 'format' 'csv'"), "{e}");
    let e = fails(
        &engine,
        "CREATE EXTERNAL TABLE orphan (id BIGINT) STORED AS KAFKA OPTIONS ('subscribe' 't',
           'format' 'avro', 'avroSchema' '{\"type\": \"record\", \"name\": \"R\", \"fields\": []}',
           'subject' 's')",
    )
    .await;
    assert!(
        e.contains("option 'subject' needs 'schema.registry.url'"),
        "{e}"
    );

    let (Ok(secured), Ok(user_info)) = (
        std::env::var("WEIR_TEST_SCHEMA_REGISTRY_AUTH"),
        std::env::var("WEIR_TEST_SCHEMA_REGISTRY_USER_INFO"),
    ) else {
        assert!(
            std::env::var_os("WEIR_REQUIRE_REGISTRY").is_none(),
            "the basic-auth registry is required: eval \"$(bash tests/registry/start.sh)\""
        );
        return;
    };
    let e = fails(&engine, &create("anonymous", &secured, "")).await;
    assert!(
        e.contains("HTTP 401") && e.contains("schema.registry.basic.auth.user.info"),
        "{e}"
    );
    let wrong = format!(", 'schema.registry.basic.auth.user.info' 'weir:not-{user_info}'");
    let e = fails(&engine, &create("wrong", &secured, &wrong)).await;
    assert!(e.contains("HTTP 401") && !e.contains("not-weir"), "{e}");

    let mut broker = broker;
    let bootstrap = broker.bootstrap();
    let topic = unique("secured");
    broker.create_topic(&topic, 1);
    serde(
        &bootstrap,
        &secured,
        &[
            "produce",
            "--topic",
            &topic,
            "--schema",
            V1,
            "--user-info",
            &user_info,
        ],
        r#"{"id": 9, "name": "zed", "score": 1}"#,
    );
    let (_, password) = user_info.split_once(':').unwrap();
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE secured STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
               'startingOffsets' 'earliest', 'endingOffsets' 'latest', 'format' 'avro',
               'schema.registry.url' '{secured}',
               'schema.registry.basic.auth.user.info' '{user_info}');
             SELECT id, name, score FROM secured"
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["9|zed|1"]);
    let (_, options) = engine.describe("secured").await.unwrap();
    let described = format!("{options:?}");
    assert!(
        described.contains("schema.registry.basic.auth.user.info") && !described.contains(password),
        "\\d shows the option, not its value: {described}"
    );
}

#[tokio::test]
async fn subjects_are_named_by_confluents_strategies_both_ways() {
    let Some(registry) = registry("the subject name strategies test") else {
        return;
    };
    let mut broker = Broker::for_test();
    let bootstrap = broker.bootstrap();
    let (by_record, by_topic_record, pythons, relayed) = (
        unique("by-record"),
        unique("by-topic-record"),
        unique("pythons"),
        unique("relayed"),
    );
    for topic in [&by_record, &by_topic_record, &pythons, &relayed] {
        broker.create_topic(topic, 1);
    }
    let namespace = unique("ns").replace('-', "_");
    let schema = format!(
        r#"{{"type": "record", "name": "Sale", "namespace": "{namespace}",
           "fields": [{{"name": "id", "type": "long"}}, {{"name": "item", "type": "string"}}]}}"#
    );
    let engine = broker.engine();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE by_record STORED AS KAFKA OPTIONS ('subscribe' '{by_record}',
               'format' 'avro', 'avroSchema' '{schema}', 'schema.registry.url' '{registry}',
               'value.subject.name.strategy' 'RecordNameStrategy');
             CREATE EXTERNAL TABLE by_topic_record (id BIGINT, item VARCHAR) STORED AS KAFKA
               OPTIONS ('subscribe' '{by_topic_record}', 'format' 'avro',
               'schema.registry.url' '{registry}',
               'value.subject.name.strategy'
                 'io.confluent.kafka.serializers.subject.TopicRecordNameStrategy');
             INSERT INTO by_record (id, item) VALUES (1, 'pen'), (2, 'ink');
             INSERT INTO by_topic_record (id, item) VALUES (3, 'cap')"
        ),
    )
    .await;
    let subjects = serde(&bootstrap, &registry, &["subjects"], "");
    let subjects: Vec<&str> = subjects.lines().collect();
    for expected in [
        format!("{namespace}.Sale"),
        format!("{by_topic_record}-by_topic_record"),
    ] {
        assert!(
            subjects.contains(&expected.as_str()),
            "no subject {expected} among {subjects:?}"
        );
    }
    for unexpected in [
        format!("{by_record}-value"),
        format!("{by_topic_record}-value"),
    ] {
        assert!(!subjects.contains(&unexpected.as_str()), "{unexpected}");
    }
    assert_eq!(
        consume_avro(&bootstrap, &registry, &by_record, 2),
        vec![
            r#"{"id": 1, "item": "pen"}"#.to_string(),
            r#"{"id": 2, "item": "ink"}"#.to_string()
        ],
        "Confluent's deserializer reads what weir wrote under the record's subject"
    );
    assert_eq!(
        consume_avro(&bootstrap, &registry, &by_topic_record, 1),
        vec![r#"{"id": 3, "item": "cap"}"#.to_string()]
    );

    serde(
        &bootstrap,
        &registry,
        &["produce-proto", "--topic", &pythons, "--strategy", "record"],
        r#"{"order_id": "41", "amount": 2.5}"#,
    );
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE pythons STORED AS KAFKA OPTIONS ('subscribe' '{pythons}',
               'startingOffsets' 'earliest', 'endingOffsets' 'latest', 'format' 'protobuf',
               'protobuf.message' 'weir.test.Order', 'schema.registry.url' '{registry}',
               'value.subject.name.strategy' 'RecordNameStrategy');
             SELECT order_id, amount FROM pythons"
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["41|2.5"],
        "the message type is read from the subject named after it"
    );
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE relay STORED AS KAFKA OPTIONS ('subscribe' '{pythons}',
               'topic' '{relayed}', 'format' 'protobuf', 'protobuf.message' 'weir.test.Order',
               'schema.registry.url' '{registry}',
               'value.subject.name.strategy' 'RecordNameStrategy');
             INSERT INTO relay SELECT * EXCLUDE (_key, _value, _topic, _partition, _offset,
               _timestamp, _timestampType) FROM pythons"
        ),
    )
    .await;
    assert_eq!(
        serde(
            &bootstrap,
            &registry,
            &["consume-proto", "--topic", &relayed, "--count", "1"],
            ""
        )
        .trim(),
        r#"{"amount": 2.5, "order_id": "41"}"#,
        "written under the subject named after the message, read back by Confluent's \
         deserializer"
    );
}

/// `tests/registry/tls_proxy.py`: an HTTPS front for the registry, stopped when dropped.
struct HttpsRegistry {
    process: std::process::Child,
    url: String,
}

impl HttpsRegistry {
    fn start(upstream: &str, dir: &std::path::Path) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry/tls_proxy.py");
        let mut process = Command::new("python3")
            .args([script, "--upstream", upstream, "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut url = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(process.stdout.take().unwrap()),
            &mut url,
        )
        .unwrap();
        assert!(url.starts_with("https://"), "tls_proxy.py printed {url:?}");
        HttpsRegistry {
            process,
            url: url.trim().to_string(),
        }
    }
}

impl Drop for HttpsRegistry {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn a_registry_over_https_is_trusted_through_its_ca_file_only() {
    let Some(registry) = registry("the registry TLS test") else {
        return;
    };
    let (broker, topic) = topic_with_a_player(&registry, "over-tls");
    let dir = tempfile::tempdir().unwrap();
    let https = HttpsRegistry::start(&registry, dir.path());
    let url = &https.url;
    let file = |name: &str| dir.path().join(name).display().to_string();
    let not_pem = file("not.pem");
    std::fs::write(&not_pem, "no certificate here").unwrap();
    let table = |name: &str, ca: Option<&str>| {
        let ca = ca
            .map(|path| format!(", 'schema.registry.ssl.ca.location' '{path}'"))
            .unwrap_or_default();
        format!(
            "CREATE EXTERNAL TABLE {name} STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
               'startingOffsets' 'earliest', 'endingOffsets' 'latest', 'format' 'avro',
               'schema.registry.url' '{url}'{ca})"
        )
    };
    let engine = broker.engine();
    let result = run(
        &engine,
        &format!(
            "{}; SELECT id, name, score FROM trusted",
            table("trusted", Some(&file("ca.pem")))
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["1|ann|7"]);
    for (name, ca, expected) in [
        ("untrusted", None, "certificate"),
        ("other_ca", Some(file("other-ca.pem")), "certificate"),
        (
            "missing_ca",
            Some(file("missing.pem")),
            "cannot read 'schema.registry.ssl.ca.location'",
        ),
        ("not_pem", Some(not_pem.clone()), "holds no PEM certificate"),
    ] {
        let e = fails(&engine, &table(name, ca.as_deref())).await;
        assert!(e.contains(expected), "{name}: {e}");
        if ca.is_none() || name == "other_ca" {
            assert!(e.contains(url.as_str()), "{name} names the registry: {e}");
        }
    }
}
