//! Decoding values into declared columns (JSON, CSV, raw), malformed records, and headers.

use super::common::{Broker, Record, fails, lines, produce, run, unique};

fn json_records(partition: i32, values: &[&'static str]) -> Vec<Record<'static>> {
    values.iter().map(|v| Record::value(partition, v)).collect()
}

#[tokio::test]
async fn json_values_decode_into_declared_columns_with_metadata_alongside() {
    let mut broker = Broker::for_test();
    let topic = unique("json");
    broker.create_topic(&topic, 1);
    produce(
        &broker.bootstrap(),
        &topic,
        &json_records(
            0,
            &[
                r#"{"auction": 1, "price": 100, "ts": "2024-01-01T00:00:00"}"#,
                r#"{"auction": 2, "price": 250, "ts": "2024-01-01T00:00:01", "ignored": true}"#,
                r#"{"auction": 3}"#,
            ],
        ),
    );
    let engine = broker.engine();
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP) STORED AS KAFKA
               OPTIONS ('subscribe' '{topic}', 'format' 'json', 'endingOffsets' 'latest');
             SELECT auction, price, ts, _partition, _offset, _topic = '{topic}' FROM bids ORDER BY _offset"
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec![
            "1|100|2024-01-01T00:00:00|0|0|true",
            "2|250|2024-01-01T00:00:01|0|1|true",
            "3|||0|2|true"
        ]
    );
}

#[tokio::test]
async fn a_bad_record_fails_the_query_naming_it_unless_the_mode_says_otherwise() {
    let mut broker = Broker::for_test();
    let topic = unique("badjson");
    broker.create_topic(&topic, 2);
    produce(
        &broker.bootstrap(),
        &topic,
        &json_records(0, &[r#"{"id": 1}"#, r#"{"id": 2}"#]),
    );
    produce(
        &broker.bootstrap(),
        &topic,
        &json_records(1, &[r#"{"id": 3}"#, r#"{"id": "three"#, r#"{"id": 5}"#]),
    );
    let engine = broker.engine();
    let create = |name: &str, mode: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} (id BIGINT) STORED AS KAFKA
               OPTIONS ('subscribe' '{topic}', 'format' 'json', 'endingOffsets' 'latest' {mode})"
        )
    };
    let e = fails(
        &engine,
        &format!("{}; SELECT * FROM strict", create("strict", "")),
    )
    .await;
    assert!(
        e.contains(&format!("topic '{topic}' partition 1 offset 1")) && e.contains("as json"),
        "{e}"
    );

    let result = run(
        &engine,
        &format!(
            "{}; SELECT id FROM dropping ORDER BY id",
            create("dropping", ", 'mode' 'DROPMALFORMED'")
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["1", "2", "3", "5"]);
    assert_eq!(result.kafka.malformed_records, 1);
    assert_eq!(result.kafka.records_fetched, 5);

    let result = run(
        &engine,
        &format!("{}; SELECT id, _partition, _offset, CAST(_value AS VARCHAR) FROM lenient ORDER BY _partition, _offset", create("lenient", ", 'mode' 'PERMISSIVE'")),
    )
    .await;
    assert_eq!(lines(&result.batches)[3], "|1|1|{\"id\": \"three");
    assert_eq!(result.kafka.malformed_records, 1);

    let result = run(
        &engine,
        &format!(
            "{}; SELECT count(*) FROM dropping2",
            create("dropping2", ", 'mode' 'DROPMALFORMED'")
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["4"],
        "a count sees the same records as a full read"
    );
}

#[tokio::test]
async fn csv_and_raw_values() {
    let mut broker = Broker::for_test();
    let topic = unique("csv");
    broker.create_topic(&topic, 1);
    produce(
        &broker.bootstrap(),
        &topic,
        &json_records(0, &["1;alice;2.5", "2;bob;", "3;\"c;d\";1"]),
    );
    let engine = broker.engine();
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE people (id INT, name VARCHAR, score DOUBLE) STORED AS KAFKA
               OPTIONS ('subscribe' '{topic}', 'format' 'csv', 'csv.delimiter' ';', 'endingOffsets' 'latest');
             SELECT id, name, score FROM people ORDER BY id"
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["1|alice|2.5", "2|bob|", "3|c;d|1.0"]
    );
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE lines (line VARCHAR) STORED AS KAFKA
               OPTIONS ('subscribe' '{topic}', 'format' 'raw', 'endingOffsets' 'latest');
             SELECT line FROM lines WHERE _offset = 1"
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["2;bob;"]);
    let e = fails(
        &engine,
        &format!("CREATE EXTERNAL TABLE two (a VARCHAR, b VARCHAR) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'raw')"),
    )
    .await;
    assert!(
        e.contains("'format' 'raw' needs exactly one declared column"),
        "{e}"
    );
}

#[tokio::test]
async fn headers_are_read_when_asked() {
    let mut broker = Broker::for_test();
    let topic = unique("headers");
    broker.create_topic(&topic, 1);
    let headers: &[(&str, Option<&[u8]>)] = &[("trace", Some(b"abc")), ("empty", None)];
    produce(
        &broker.bootstrap(),
        &topic,
        &[
            Record {
                partition: 0,
                key: Some(b"k"),
                value: Some(b"v"),
                headers,
            },
            Record::value(0, "no headers"),
        ],
    );
    let engine = broker.engine();
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE h STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'includeHeaders' 'true', 'endingOffsets' 'latest');
             SELECT \"offset\", cardinality(headers), headers[1]['key'], CAST(headers[1]['value'] AS VARCHAR),
                    headers[2]['key'], headers[2]['value'] IS NULL, headers IS NULL
             FROM h ORDER BY \"offset\""
        ),
    )
    .await;
    // A record without headers has NULL headers, as in Spark (not an empty list).
    assert_eq!(
        lines(&result.batches),
        vec!["0|2|trace|abc|empty|true|false", "1|||||true|true"]
    );
    let e = fails(&engine, &format!("CREATE EXTERNAL TABLE n STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}'); SELECT headers FROM n")).await;
    assert!(
        e.contains("headers"),
        "without includeHeaders there is no headers column: {e}"
    );
}
