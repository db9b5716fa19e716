//! INSERT INTO Kafka tables: Spark's sink columns, JSON-encoded declared columns, headers.

use super::common::{Broker, fails, lines, run, unique};

#[tokio::test]
async fn insert_with_sparks_sink_columns_and_read_back() {
    let mut broker = Broker::for_test();
    let topic = unique("sink");
    let other = unique("sink-other");
    broker.create_topic(&topic, 3);
    broker.create_topic(&other, 1);
    let engine = broker.engine();
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE out STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'includeHeaders' 'true', 'endingOffsets' 'latest');
             INSERT INTO out SELECT 'k' || CAST(n AS VARCHAR) AS key, 'v' || CAST(n AS VARCHAR) AS value,
                                    CAST(n % 3 AS INT) AS partition
               FROM generate_series(0, 8) AS t(n);"
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["9"]);
    let result = run(
        &engine,
        "SELECT partition, count(*), min(CAST(key AS VARCHAR)), max(CAST(value AS VARCHAR)) FROM out GROUP BY partition ORDER BY partition",
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["0|3|k0|v6", "1|3|k1|v7", "2|3|k2|v8"]
    );

    // Headers, an explicit topic per row, a tombstone (null value) and a timestamp.
    run(
        &engine,
        &format!(
            "INSERT INTO out (key, value, topic, partition, headers, timestamp) VALUES
               ('h', 'with headers', NULL, 0, [named_struct('key', 'trace', 'value', arrow_cast('xyz', 'Binary'))], TIMESTAMP '2024-05-01T00:00:00Z'),
               ('t', NULL, '{other}', NULL, NULL, NULL)"
        ),
    )
    .await;
    let result = run(
        &engine,
        "SELECT CAST(value AS VARCHAR), headers[1]['key'], CAST(headers[1]['value'] AS VARCHAR), timestamp FROM out WHERE CAST(key AS VARCHAR) = 'h'",
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["with headers|trace|xyz|2024-05-01T00:00:00Z"]
    );
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE other STORED AS KAFKA OPTIONS ('subscribe' '{other}', 'endingOffsets' 'latest');
             SELECT CAST(key AS VARCHAR), value IS NULL FROM other"
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["t|true"]);
}

#[tokio::test]
async fn insert_encodes_declared_columns_as_json() {
    let mut broker = Broker::for_test();
    let topic = unique("jsonsink");
    broker.create_topic(&topic, 2);
    let engine = broker.engine();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE orders (id BIGINT, item VARCHAR) STORED AS KAFKA
               OPTIONS ('subscribe' '{topic}', 'format' 'json', 'endingOffsets' 'latest');
             INSERT INTO orders VALUES (1, 'apple'), (2, NULL);
             INSERT INTO orders (id, item, _key, _partition) VALUES (3, 'pear', CAST('k3' AS BYTEA), 1);"
        ),
    )
    .await;
    let result = run(
        &engine,
        "SELECT id, item, _partition, CAST(_key AS VARCHAR) FROM orders WHERE id = 3",
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["3|pear|1|k3"]);
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE raw STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' 'latest');
             SELECT CAST(value AS VARCHAR) AS v FROM raw ORDER BY v"
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec![
            r#"{"id":1,"item":"apple"}"#,
            r#"{"id":2}"#,
            r#"{"id":3,"item":"pear"}"#
        ]
    );
}

#[tokio::test]
async fn the_topic_option_and_compressed_producers() {
    let mut broker = Broker::for_test();
    let (a, b) = (unique("topic-a"), unique("topic-b"));
    broker.create_topic(&a, 1);
    broker.create_topic(&b, 1);
    let engine = broker.engine();
    for codec in ["zstd", "lz4", "snappy", "gzip"] {
        run(
            &engine,
            &format!(
                "CREATE OR REPLACE EXTERNAL TABLE both_topics STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{a},{b}', 'topic' '{b}',
                   'kafka.compression.type' '{codec}', 'kafka.linger.ms' '5');
                 INSERT INTO both_topics (value) SELECT repeat('{codec} ', 50) FROM generate_series(1, 20)"
            ),
        )
        .await;
    }
    let result = run(
        &engine,
        "SELECT topic, count(*) FROM both_topics GROUP BY topic",
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec![format!("{b}|80")],
        "every record went to the 'topic' option's topic"
    );
}

#[tokio::test]
async fn insert_errors_name_what_is_wrong() {
    let broker = Broker::for_test();
    let engine = broker.engine();
    let e = fails(
        &engine,
        "CREATE EXTERNAL TABLE two STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' 'a,b');
         INSERT INTO two (value) VALUES ('x')",
    )
    .await;
    assert!(e.contains("have no topic") && e.contains("'topic'"), "{e}");
    // A topic column that is null in some row is found when the row is written.
    let e = fails(
        &engine,
        "INSERT INTO two (value, topic) SELECT 'x', CASE WHEN value > 1 THEN 'a' END FROM generate_series(1, 2)",
    )
    .await;
    assert!(
        e.contains("row 1") && e.contains("has no topic") && e.contains("'topic'"),
        "{e}"
    );
    let e = fails(
        &engine,
        "CREATE EXTERNAL TABLE c (a INT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' 'c', 'format' 'csv');
         INSERT INTO c VALUES (1)",
    )
    .await;
    assert!(e.contains("'format' 'csv' is not supported"), "{e}");
    let e = fails(
        &engine,
        "CREATE EXTERNAL TABLE down STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' 'd', 'kafka.bootstrap.servers' '127.0.0.1:1', 'brokerTimeoutMs' '1000');
         INSERT INTO down (value) VALUES ('x')",
    )
    .await;
    assert!(
        e.contains("127.0.0.1:1") && e.contains("not delivered")
            || e.contains("did not acknowledge"),
        "{e}"
    );
}
