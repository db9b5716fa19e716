//! Protobuf values, framed for a schema registry (real Apicurio, `tests/registry/start.sh`) or
//! bare with a compiled descriptor file. The independent side is Google's protobuf runtime and
//! Confluent's `ProtobufSerializer` / `ProtobufDeserializer` (`tests/registry/serde.py`), over
//! `weir.test.Order` of `tests/registry/proto/weir/test/order.proto`.

use super::common::{Broker, Record, fails, lines, produce, run, unique};
use super::registry::{psql_rows, pyarrow_rows, registry, serde};

/// Orders in Protobuf's JSON mapping, by partition: nested messages, a repeated message, a
/// timestamp, an enum, a map, bytes, a repeated string, an optional field, an unsigned 64-bit
/// integer; a tombstone.
const ORDERS: [(i32, &str); 4] = [
    (
        0,
        r#"{"order_id": "1", "customer": {"id": "7", "name": "ada"}, "lines": [{"sku": "x-1", "qty": 3}, {"sku": "y-2", "qty": 1}], "placed_at": "2024-01-01T00:00:00.000000005Z", "amount": 99.5, "status": "PAID", "attrs": {"a": "1", "b": "-2"}, "raw": "AP8=", "paid": true, "weight": 1.5, "tags": ["t1", "t2"], "note": "ring twice", "big": "18446744073709551615"}"#,
    ),
    (
        1,
        r#"{"order_id": "2", "customer": {"id": "8", "name": "çé 😀"}, "placed_at": "1970-01-01T00:00:01Z", "amount": -0.25, "status": "SHIPPED"}"#,
    ),
    (0, "null"),
    (
        1,
        r#"{"order_id": "3000000000", "lines": [{"sku": "z", "qty": -5}], "note": "", "weight": 0.5}"#,
    ),
];

/// The columns of an order, in order.
const COLUMNS: &str = "order_id, customer, lines, placed_at, amount, status, attrs, raw, paid, weight, tags, note, big";

/// Produces the orders with Protobuf serialization: Confluent's, or bare with `plain`.
fn produce_orders(bootstrap: &str, registry: &str, topic: &str, plain: bool) {
    for partition in [0, 1] {
        let records: Vec<&str> = ORDERS
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, r)| *r)
            .collect();
        let partition = partition.to_string();
        let mut args = vec!["produce-proto", "--topic", topic, "--partition", &partition];
        if plain {
            args.push("--plain");
        }
        serde(bootstrap, registry, &args, &records.join("\n"));
    }
}

/// The orders of `topic` as Google's protobuf runtime reads them (through Confluent's
/// deserializer unless `plain`), in JSON, sorted.
fn consume_orders(
    bootstrap: &str,
    registry: &str,
    topic: &str,
    count: usize,
    plain: bool,
) -> Vec<String> {
    let count = count.to_string();
    let mut args = vec!["consume-proto", "--topic", topic, "--count", &count];
    if plain {
        args.push("--plain");
    }
    let mut records: Vec<String> = serde(bootstrap, registry, &args, "")
        .lines()
        .filter(|l| *l != "null")
        .map(str::to_string)
        .collect();
    records.sort();
    records
}

/// The compiled descriptor set of order.proto and its imports, written by protoc.
fn descriptor_set(dir: &std::path::Path, registry: &str) -> String {
    let path = dir.join("orders.desc").display().to_string();
    serde(
        "unused:9092",
        registry,
        &["descriptor-set", "--out", &path],
        "",
    );
    path
}

/// What weir reads from the orders, by partition and offset.
const READ: [&str; 4] = [
    "1|{id: 7, name: ada}|[{sku: x-1, qty: 3}, {sku: y-2, qty: 1}]|2024-01-01T00:00:00.000000005Z|99.5|PAID|{a: 1, b: -2}|00ff|true|1.5|[t1, t2]|ring twice|18446744073709551615",
    "||||||||||||",
    "2|{id: 8, name: çé 😀}|[]|1970-01-01T00:00:01Z|-0.25|SHIPPED|{}||||[]||",
    "3000000000||[{sku: z, qty: -5}]||||{}|||0.5|[]||",
];

#[tokio::test]
async fn protobuf_from_pythons_serializer_is_queried_and_streamed_to_protobuf_parquet_and_postgres()
{
    let Some(registry) = registry("the Protobuf registry round trip") else {
        return;
    };
    let mut broker = Broker::for_test();
    let bootstrap = broker.bootstrap();
    let (input, output) = (unique("pb-orders"), unique("pb-orders-out"));
    broker.create_topic(&input, 2);
    broker.create_topic(&output, 2);
    produce_orders(&bootstrap, &registry, &input, false);
    let dir = tempfile::tempdir().unwrap();
    let descriptors = descriptor_set(dir.path(), &registry);
    let engine = broker.engine();
    let lake = dir.path().join("lake").display().to_string();
    let pg_table = unique("pb_orders_pg").replace('-', "_");
    let source = |name: &str, bounded: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} STORED AS KAFKA OPTIONS ('subscribe' '{input}',
               'startingOffsets' 'earliest', {bounded} 'format' 'protobuf',
               'schema.registry.url' '{registry}', 'protobuf.message' 'weir.test.Order')"
        )
    };
    run(
        &engine,
        &format!(
            "{}; {};
             CREATE EXTERNAL TABLE orders_out STORED AS KAFKA OPTIONS ('subscribe' '{output}',
               'format' 'protobuf', 'schema.registry.url' '{registry}',
               'protobuf.descriptorFile' '{descriptors}', 'protobuf.message' 'weir.test.Order');
             CREATE EXTERNAL TABLE lake (order_id BIGINT, customer VARCHAR, status VARCHAR,
               first_sku VARCHAR, big DECIMAL(20, 0))
               STORED AS PARQUET LOCATION '{lake}';
             CREATE EXTERNAL TABLE pg (order_id BIGINT, customer VARCHAR, amount DOUBLE,
               placed_at TIMESTAMP, status VARCHAR, lines INT)
               STORED AS JDBC LOCATION 'postgres://postgres@127.0.0.1:5432/test'
               OPTIONS ('table' '{pg_table}')",
            source("orders", ""),
            source("orders_now", "'endingOffsets' 'latest',")
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
        READ,
        "columns from the registry's file; absent fields null, absent lists and maps empty"
    );

    let cp = |name: &str| dir.path().join(name).display().to_string();
    run(
        &engine,
        &format!(
            "CREATE STREAMING QUERY to_pb WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO orders_out SELECT {COLUMNS} FROM orders WHERE order_id IS NOT NULL;
             CREATE STREAMING QUERY to_lake WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO lake SELECT order_id, customer['name'] AS customer, status,
                 lines[1]['sku'] AS first_sku, CAST(big AS DECIMAL(20, 0)) AS big
               FROM orders WHERE order_id IS NOT NULL;
             CREATE STREAMING QUERY to_pg WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO pg SELECT order_id, customer['name'] AS customer, amount,
                 placed_at, status, CAST(cardinality(lines) AS INT) AS lines
               FROM orders WHERE order_id IS NOT NULL",
            cp("to_pb"),
            cp("to_lake"),
            cp("to_pg")
        ),
    )
    .await;
    for name in ["to_pb", "to_lake", "to_pg"] {
        let query = engine.query(name).unwrap();
        query
            .await_termination()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    assert_eq!(
        consume_orders(&bootstrap, &registry, &output, 3, false),
        consume_orders(&bootstrap, &registry, &input, 4, false),
        "what weir re-encoded reads back, through Confluent's ProtobufDeserializer, exactly as \
         what Python wrote"
    );

    assert_eq!(
        pyarrow_rows(&lake, "order_id"),
        vec![
            r#"{"big": "18446744073709551615", "customer": "ada", "first_sku": "x-1", "order_id": 1, "status": "PAID"}"#,
            r#"{"big": null, "customer": "çé 😀", "first_sku": null, "order_id": 2, "status": "SHIPPED"}"#,
            r#"{"big": null, "customer": null, "first_sku": "z", "order_id": 3000000000, "status": null}"#,
        ],
        "the Parquet files as pyarrow reads them"
    );

    assert_eq!(
        psql_rows(&format!(
            "SELECT order_id, customer, amount, placed_at, status, lines FROM {pg_table} \
             ORDER BY order_id"
        )),
        vec![
            "1|ada|99.5|2024-01-01 00:00:00|PAID|2",
            "2|çé 😀|-0.25|1970-01-01 00:00:01|SHIPPED|0",
            "3000000000|||||1",
        ],
        "the PostgreSQL rows as psql reads them"
    );
}

#[tokio::test]
async fn bare_protobuf_with_a_descriptor_file_is_read_written_and_named_when_bad() {
    let Some(registry) = registry("the descriptor file test") else {
        return;
    };
    let mut broker = Broker::for_test();
    let bootstrap = broker.bootstrap();
    let (input, output) = (unique("pb-bare"), unique("pb-bare-out"));
    broker.create_topic(&input, 2);
    broker.create_topic(&output, 1);
    produce_orders(&bootstrap, &registry, &input, true);
    let dir = tempfile::tempdir().unwrap();
    let descriptors = descriptor_set(dir.path(), &registry);
    let engine = broker.engine();
    let table = |name: &str, topic: &str, mode: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
               'startingOffsets' 'earliest', 'endingOffsets' 'latest', 'format' 'protobuf',
               'protobuf.descriptorFile' '{descriptors}', 'protobuf.message' 'weir.test.Order',
               'mode' '{mode}')"
        )
    };
    run(&engine, &table("bare", &input, "FAILFAST")).await;
    let result = run(
        &engine,
        &format!("SELECT {COLUMNS} FROM bare ORDER BY _partition, _offset"),
    )
    .await;
    assert_eq!(lines(&result.batches), READ);
    run(
        &engine,
        &format!(
            "{};
             INSERT INTO bare_out SELECT {COLUMNS} FROM bare WHERE order_id IS NOT NULL",
            table("bare_out", &output, "FAILFAST")
        ),
    )
    .await;
    assert_eq!(
        consume_orders(&bootstrap, &registry, &output, 3, true),
        consume_orders(&bootstrap, &registry, &input, 4, true),
        "bare messages written by weir read back by Google's runtime as Python wrote them"
    );

    produce(
        &bootstrap,
        &input,
        &[Record {
            partition: 0,
            key: None,
            value: Some(b"\x0a\xff"),
            headers: &[],
        }],
    );
    let e = fails(&engine, "SELECT count(*) FROM bare").await;
    assert!(
        e.contains(&format!("topic '{input}' partition 0 offset 2"))
            && e.contains("is not a weir.test.Order message"),
        "{e}"
    );
    run(&engine, &table("dropping", &input, "DROPMALFORMED")).await;
    let result = run(&engine, "SELECT count(*) FROM dropping").await;
    assert_eq!(lines(&result.batches), vec!["4"]);
}

#[tokio::test]
async fn protobuf_tables_that_cannot_be_made_are_refused_naming_why() {
    let Some(registry) = registry("the Protobuf option test") else {
        return;
    };
    let broker = Broker::for_test();
    let bootstrap = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let descriptors = descriptor_set(dir.path(), &registry);
    let engine = broker.engine();
    let create = |options: &str| {
        format!("CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' 'pb-t', {options})")
    };
    let not_a_set = dir.path().join("order.proto");
    std::fs::write(&not_a_set, "syntax = \"proto3\";").unwrap();
    for (options, expected) in [
        (
            "'format' 'protobuf'".to_string(),
            "needs the option 'protobuf.descriptorFile'".to_string(),
        ),
        (
            "'format' 'protobuf', 'protobuf.descriptorFile' '/no/such.desc', 'protobuf.message' 'a.B'"
                .to_string(),
            "cannot read 'protobuf.descriptorFile' ('/no/such.desc')".to_string(),
        ),
        (
            format!(
                "'format' 'protobuf', 'protobuf.descriptorFile' '{}', 'protobuf.message' 'a.B'",
                not_a_set.display()
            ),
            "is not a compiled descriptor set".to_string(),
        ),
        (
            format!("'format' 'protobuf', 'protobuf.descriptorFile' '{descriptors}', 'protobuf.message' 'weir.test.Nope'"),
            "has no message 'weir.test.Nope'; it has ".to_string(),
        ),
        (
            format!("'format' 'protobuf', 'protobuf.descriptorFile' '{descriptors}'"),
            "needs 'protobuf.message'".to_string(),
        ),
        (
            format!("'format' 'avro', 'schema.registry.url' '{registry}', 'protobuf.message' 'x'"),
            "option 'protobuf.message' only applies to 'format' 'protobuf'".to_string(),
        ),
        (
            format!("'format' 'protobuf', 'protobuf.descriptorFile' '{descriptors}', 'protobuf.message' 'weir.test.Order', 'avroSchema' '{{}}'"),
            "option 'avroSchema' only applies to 'format' 'avro'".to_string(),
        ),
    ] {
        let e = fails(&engine, &create(&options)).await;
        assert!(e.contains(&expected), "{options}: {e}");
    }

    let mut broker = broker;
    let topic = unique("pb-two");
    broker.create_topic(&topic, 1);
    serde(
        &bootstrap,
        &registry,
        &["produce-proto", "--topic", &topic],
        r#"{"order_id": "1"}"#,
    );
    let e = fails(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE two STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
               'format' 'protobuf', 'schema.registry.url' '{registry}')"
        ),
    )
    .await;
    assert!(
        e.contains(
            "has several messages (weir.test.Ping, weir.test.Order); set 'protobuf.message'"
        ),
        "{e}"
    );
}
