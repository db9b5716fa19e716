//! Record keys as declared columns (`'key.format'`, `'key.fields'`, `'value.fields-include'`):
//! Avro and Protobuf keys framed for a real registry (Apicurio, `tests/registry/start.sh`),
//! string and JSON keys, written by Confluent's Python serializers and read back by them
//! (`tests/registry/serde.py`), and keys that do not decode under each mode.

use super::common::{Broker, Record, fails, lines, produce, run, unique};
use super::registry::{registry, serde};

const KEY_SCHEMA: &str = r#"{"type": "record", "name": "SaleKey", "namespace": "shop",
 "fields": [{"name": "region", "type": "string"}, {"name": "id", "type": "long"}]}"#;
const VALUE_SCHEMA: &str = r#"{"type": "record", "name": "Sale", "namespace": "shop",
 "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"},
  {"name": "qty", "type": ["null", "int"], "default": null}]}"#;

/// Sales as `[key, value]` by partition: a tombstone with a key, a record without a key.
const SALES: [(i32, &str); 5] = [
    (
        0,
        r#"[{"region": "eu", "id": 1}, {"id": 1, "item": "pen", "qty": 2}]"#,
    ),
    (0, r#"[{"region": "us", "id": 2}, null]"#),
    (
        1,
        r#"[{"region": "eu", "id": 3}, {"id": 3, "item": "ink", "qty": null}]"#,
    ),
    (1, r#"[null, {"id": 4, "item": "cap", "qty": 1}]"#),
    (
        1,
        r#"[{"region": "çé 😀", "id": 5000000000}, {"id": 5000000000, "item": "mug", "qty": -1}]"#,
    ),
];

/// `[key, value]` lines of `topic` as `serde.py consume` prints them with `args`, sorted.
fn consume(
    bootstrap: &str,
    registry: &str,
    topic: &str,
    count: usize,
    args: &[&str],
) -> Vec<String> {
    let count = count.to_string();
    let mut all = vec!["--topic", topic, "--count", &count];
    all.extend_from_slice(args);
    let mut records: Vec<String> = serde(bootstrap, registry, &all, "")
        .lines()
        .map(str::to_string)
        .collect();
    records.sort();
    records
}

#[tokio::test]
async fn avro_keys_and_values_from_pythons_serializers_round_trip_and_a_string_key_is_written() {
    let Some(registry) = registry("the Avro keys round trip") else {
        return;
    };
    let mut broker = Broker::for_test();
    let bootstrap = broker.bootstrap();
    let (input, output, by_region) = (unique("sales"), unique("sales-out"), unique("by-region"));
    broker.create_topic(&input, 2);
    broker.create_topic(&output, 2);
    broker.create_topic(&by_region, 1);
    for partition in [0, 1] {
        let records: Vec<&str> = SALES
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, r)| *r)
            .collect();
        let partition = partition.to_string();
        serde(
            &bootstrap,
            &registry,
            &[
                "produce",
                "--topic",
                &input,
                "--schema",
                VALUE_SCHEMA,
                "--key-schema",
                KEY_SCHEMA,
                "--partition",
                &partition,
            ],
            &records.join("\n"),
        );
    }
    let engine = broker.engine();
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE sales STORED AS KAFKA OPTIONS ('subscribe' '{input}',
               'startingOffsets' 'earliest', 'format' 'avro', 'key.format' 'avro',
               'schema.registry.url' '{registry}');
             CREATE EXTERNAL TABLE sales_now STORED AS KAFKA OPTIONS ('subscribe' '{input}',
               'startingOffsets' 'earliest', 'endingOffsets' 'latest', 'format' 'avro',
               'key.format' 'avro', 'schema.registry.url' '{registry}');
             CREATE EXTERNAL TABLE sales_out STORED AS KAFKA OPTIONS ('subscribe' '{output}',
               'format' 'avro', 'avroSchema' '{VALUE_SCHEMA}', 'key.format' 'avro',
               'key.avroSchema' '{KEY_SCHEMA}', 'schema.registry.url' '{registry}');
             CREATE EXTERNAL TABLE by_region (region VARCHAR, id BIGINT, item VARCHAR)
               STORED AS KAFKA OPTIONS ('subscribe' '{by_region}', 'startingOffsets' 'earliest',
               'format' 'json', 'key.format' 'string', 'key.fields' 'region',
               'value.fields-include' 'EXCEPT_KEY')"
        ),
    )
    .await;

    let columns = run(&engine, "SELECT * FROM sales_now LIMIT 0").await;
    let names: Vec<&str> = columns
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .take(4)
        .collect();
    assert_eq!(
        names,
        ["region", "id", "item", "qty"],
        "the key schema's fields, then the value schema's others"
    );
    let result = run(
        &engine,
        "SELECT region, id, item, qty FROM sales_now ORDER BY _partition, _offset",
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec![
            "eu|1|pen|2",
            "us|2||",
            "eu|3|ink|",
            "||cap|1",
            "çé 😀|5000000000|mug|-1",
        ],
        "key columns come from the key (a tombstone keeps them, a record without a key has \
         none); the others from the value"
    );

    let cp = |name: &str| dir.path().join(name).display().to_string();
    run(
        &engine,
        &format!(
            "CREATE STREAMING QUERY to_avro WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO sales_out SELECT region, id, item, qty FROM sales
                 WHERE region IS NOT NULL AND item IS NOT NULL;
             CREATE STREAMING QUERY to_json WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO by_region SELECT region, id, item FROM sales WHERE item IS NOT NULL",
            cp("to_avro"),
            cp("to_json")
        ),
    )
    .await;
    for name in ["to_avro", "to_json"] {
        let query = engine.query(name).unwrap();
        query
            .await_termination()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    let avro_keys = ["consume", "--key-format", "avro"];
    let written: Vec<String> = consume(&bootstrap, &registry, &input, 5, &avro_keys)
        .into_iter()
        .filter(|r| !r.starts_with("[null") && !r.ends_with("null]"))
        .collect();
    assert_eq!(written.len(), 3);
    assert_eq!(
        consume(&bootstrap, &registry, &output, 3, &avro_keys),
        written,
        "keys and values weir re-encoded read back, through Confluent's deserializers, as \
         Python wrote them"
    );
    assert_eq!(
        consume(&bootstrap, &registry, &by_region, 4, &["consume-raw"]),
        vec![
            r#"["\u00e7\u00e9 \ud83d\ude00", "{\"id\":5000000000,\"item\":\"mug\"}"]"#,
            r#"["eu", "{\"id\":1,\"item\":\"pen\"}"]"#,
            r#"["eu", "{\"id\":3,\"item\":\"ink\"}"]"#,
            r#"[null, "{\"item\":\"cap\"}"]"#,
        ],
        "a string key, and values without the key's column (EXCEPT_KEY); no key where the \
         key column is null"
    );
    let result = run(
        &engine,
        "SELECT region, id, item FROM by_region ORDER BY _offset",
    )
    .await;
    assert_eq!(
        lines(&result.batches).len(),
        4,
        "the string-keyed table reads back"
    );
    let result = run(
        &engine,
        "SELECT region, id, item FROM by_region WHERE region = 'eu' ORDER BY id",
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["eu|1|pen", "eu|3|ink"]);

    let e = fails(
        &engine,
        "INSERT INTO by_region (region, id, item, _key) VALUES ('eu', 9, 'x', 'k')",
    )
    .await;
    assert!(
        e.contains("column '_key' of Kafka table 'by_region' is read-only")
            && e.contains("'key.fields'"),
        "{e}"
    );
}

#[tokio::test]
async fn keys_that_do_not_decode_follow_the_mode_and_are_named() {
    let mut broker = Broker::for_test();
    let bootstrap = broker.bootstrap();
    let topic = unique("bad-keys");
    broker.create_topic(&topic, 1);
    let record = |key: &'static [u8], value: &'static str| Record {
        partition: 0,
        key: Some(key),
        value: Some(value.as_bytes()),
        headers: &[],
    };
    produce(
        &bootstrap,
        &topic,
        &[
            record(br#"{"k": 1}"#, r#"{"v": "a"}"#),
            record(b"not json", r#"{"v": "b"}"#),
            record(br#"{"k": 3}"#, "not json either"),
            record(br#"{"k": 4}"#, r#"{"v": "d"}"#),
        ],
    );
    let engine = broker.engine();
    let table = |name: &str, mode: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} (k BIGINT, v VARCHAR) STORED AS KAFKA OPTIONS (
               'subscribe' '{topic}', 'startingOffsets' 'earliest', 'endingOffsets' 'latest',
               'format' 'json', 'key.format' 'json', 'key.fields' 'k', 'mode' '{mode}')"
        )
    };
    run(&engine, &table("failing", "FAILFAST")).await;
    let e = fails(&engine, "SELECT k, v FROM failing").await;
    assert!(
        e.contains(&format!(
            "cannot decode the key of topic '{topic}' partition 0 offset 1 as json"
        )),
        "{e}"
    );
    let e = fails(&engine, "SELECT k, v FROM failing WHERE _offset >= 2").await;
    assert!(
        e.contains(&format!(
            "cannot decode the value of topic '{topic}' partition 0 offset 2 as json"
        )),
        "{e}"
    );
    run(&engine, &table("dropping", "DROPMALFORMED")).await;
    let result = run(&engine, "SELECT _offset, k, v FROM dropping").await;
    assert_eq!(lines(&result.batches), vec!["0|1|a", "3|4|d"]);
    assert_eq!(
        result.kafka.malformed_records, 2,
        "both bad records are counted"
    );
    run(&engine, &table("keeping", "PERMISSIVE")).await;
    let result = run(&engine, "SELECT _offset, k, v FROM keeping").await;
    assert_eq!(
        lines(&result.batches),
        vec!["0|1|a", "1||b", "2|3|", "3|4|d"],
        "only the part that did not decode is null"
    );

    for (options, expected) in [
        (
            "'key.format' 'json', 'key.fields' 'nope'",
            "option 'key.fields' names column 'nope', which the table does not have; its \
             columns are k, v",
        ),
        (
            "'key.format' 'raw', 'key.fields' 'k'",
            "'key.format' 'raw' needs exactly one declared column, of a string or binary type",
        ),
        (
            "'key.format' 'json'",
            "'key.format' 'json' needs 'key.fields'",
        ),
    ] {
        let e = fails(
            &engine,
            &format!(
                "CREATE EXTERNAL TABLE refused (k BIGINT, v VARCHAR) STORED AS KAFKA OPTIONS (
                   'subscribe' '{topic}', 'format' 'json', {options})"
            ),
        )
        .await;
        assert!(e.contains(expected), "{options}: {e}");
    }

    let csv = unique("csv-keyed");
    broker.create_topic(&csv, 1);
    produce(
        &bootstrap,
        &csv,
        &[record(br#"{"k": 5}"#, "99,e"), record(br#"{"k": 6}"#, "f")],
    );
    let csv_table = |name: &str, include: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} (k BIGINT, v VARCHAR) STORED AS KAFKA OPTIONS (
               'subscribe' '{csv}', 'startingOffsets' 'earliest', 'endingOffsets' 'latest',
               'format' 'csv', 'key.format' 'json', 'key.fields' 'k',
               'value.fields-include' '{include}', 'mode' 'PERMISSIVE')"
        )
    };
    run(&engine, &csv_table("csv_all", "ALL")).await;
    run(&engine, &csv_table("csv_except", "EXCEPT_KEY")).await;
    let result = run(&engine, "SELECT k, v FROM csv_all").await;
    assert_eq!(
        lines(&result.batches),
        vec!["5|e", "6|"],
        "a csv value holds every column with ALL, read by position (its k not read)"
    );
    let result = run(&engine, "SELECT k, v FROM csv_except").await;
    assert_eq!(
        lines(&result.batches),
        vec!["5|", "6|f"],
        "and only the others with EXCEPT_KEY"
    );
}

/// The columns of an order's value, in order.
const COLUMNS: &str = "order_id, customer, lines, placed_at, amount, status, attrs, raw, paid, weight, tags, note, big";

/// Orders keyed by their customer (`weir.test.Customer`), as `[key, value]`.
const KEYED_ORDERS: [&str; 3] = [
    r#"[{"id": "7", "name": "ada"}, {"order_id": "1", "amount": 9.5, "status": "PAID"}]"#,
    r#"[{"id": "8"}, {"order_id": "2", "amount": -1, "tags": ["x"]}]"#,
    r#"[{"id": "9", "name": "bo"}, null]"#,
];

#[tokio::test]
async fn protobuf_keys_from_pythons_serializer_round_trip() {
    let Some(registry) = registry("the Protobuf keys round trip") else {
        return;
    };
    let mut broker = Broker::for_test();
    let bootstrap = broker.bootstrap();
    let (input, output) = (unique("keyed-orders"), unique("keyed-orders-out"));
    broker.create_topic(&input, 1);
    broker.create_topic(&output, 1);
    let proto_keys = ["--key-format", "proto"];
    let mut args = vec!["produce-proto", "--topic", &input];
    args.extend_from_slice(&proto_keys);
    serde(&bootstrap, &registry, &args, &KEYED_ORDERS.join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let descriptors = dir.path().join("orders.desc").display().to_string();
    serde(
        &bootstrap,
        &registry,
        &["descriptor-set", "--out", &descriptors],
        "",
    );
    let engine = broker.engine();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE orders STORED AS KAFKA OPTIONS ('subscribe' '{input}',
               'startingOffsets' 'earliest', 'format' 'protobuf',
               'protobuf.message' 'weir.test.Order', 'key.format' 'protobuf',
               'schema.registry.url' '{registry}');
             CREATE EXTERNAL TABLE orders_now STORED AS KAFKA OPTIONS ('subscribe' '{input}',
               'startingOffsets' 'earliest', 'endingOffsets' 'latest', 'format' 'protobuf',
               'protobuf.message' 'weir.test.Order', 'key.format' 'protobuf',
               'schema.registry.url' '{registry}');
             CREATE EXTERNAL TABLE orders_out STORED AS KAFKA OPTIONS ('subscribe' '{output}',
               'format' 'protobuf', 'protobuf.descriptorFile' '{descriptors}',
               'protobuf.message' 'weir.test.Order', 'key.format' 'protobuf',
               'key.protobuf.descriptorFile' '{descriptors}',
               'key.protobuf.message' 'weir.test.Customer', 'schema.registry.url' '{registry}')"
        ),
    )
    .await;
    let result = run(
        &engine,
        "SELECT id, name, order_id, amount, status FROM orders_now ORDER BY _offset",
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["7|ada|1|9.5|PAID", "8||2|-1.0|", "9|bo|||"],
        "the key message's fields, then the value message's"
    );
    let cp = dir.path().join("cp").display().to_string();
    run(
        &engine,
        &format!(
            "CREATE STREAMING QUERY keyed WITH ('trigger' 'availableNow', 'checkpoint' '{cp}')
               AS INSERT INTO orders_out SELECT id, name, {COLUMNS} FROM orders
                 WHERE order_id IS NOT NULL"
        ),
    )
    .await;
    engine
        .query("keyed")
        .unwrap()
        .await_termination()
        .await
        .unwrap();
    let mut args = vec!["consume-proto"];
    args.extend_from_slice(&proto_keys);
    let written: Vec<String> = consume(&bootstrap, &registry, &input, 3, &args)
        .into_iter()
        .filter(|r| !r.ends_with("null]"))
        .collect();
    assert_eq!(written.len(), 2);
    assert_eq!(
        consume(&bootstrap, &registry, &output, 2, &args),
        written,
        "keys and values weir re-encoded read back, through Confluent's deserializers, as \
         Python wrote them"
    );
}
