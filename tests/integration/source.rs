//! Reading Kafka tables: exact ranges, options, pushdown, errors, both broker kinds.

use super::common::{
    Broker, Record, admin, fails, fill, filled_topic, lines, produce, run, unique,
};
use datafusion::physical_plan::ExecutionPlan;

#[tokio::test]
async fn bounded_reads_return_exactly_the_range_of_each_partition() {
    let (_broker, topic, engine) = filled_topic("exact", 3, 20);
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
               'startingOffsets' '{{\"{topic}\":{{\"0\":5,\"1\":-2,\"2\":-2}}}}',
               'endingOffsets' '{{\"{topic}\":{{\"0\":12,\"1\":3,\"2\":-1}}}}');
             SELECT partition, count(*), min(\"offset\"), max(\"offset\"),
                    min(CAST(value AS VARCHAR)), max(CAST(value AS VARCHAR))
             FROM t GROUP BY partition ORDER BY partition"
        ),
    )
    .await;
    // p0: [5, 12); p1: earliest to 3; p2: earliest to latest (20). Spark requires offsets JSON
    // to name every partition; one left out is refused.
    assert_eq!(
        lines(&result.batches),
        vec![
            "0|7|5|11|p0-10|p0-9",
            "1|3|0|2|p1-0|p1-2",
            "2|20|0|19|p2-0|p2-9"
        ]
    );
    assert_eq!(result.kafka.records_fetched, 30);
    assert_eq!(result.kafka.ranges, 3);
    assert!(
        result.kafka.snapshot_tables.is_empty(),
        "a table with endingOffsets is bounded"
    );
    let e = fails(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE partial STORED AS KAFKA OPTIONS ('subscribe' '{topic}',
               'startingOffsets' '{{\"{topic}\":{{\"0\":5}}}}', 'endingOffsets' 'latest');
             SELECT count(*) FROM partial"
        ),
    )
    .await;
    assert!(
        e.contains(&format!("not for {topic}[1], {topic}[2]"))
            && e.contains("name every partition"),
        "{e}"
    );
}

#[tokio::test]
async fn many_partitions_and_min_partitions() {
    let (mut broker, topic, engine) = filled_topic("many", 48, 5);
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' 'latest');
             SELECT count(*), count(DISTINCT partition), count(DISTINCT value) FROM t"
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["240|48|240"]);
    assert_eq!(result.kafka.ranges, 48);

    let small = unique("split");
    broker.create_topic(&small, 1);
    fill(&broker.bootstrap(), &small, 1, 100);
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE s STORED AS KAFKA OPTIONS ('subscribe' '{small}', 'endingOffsets' 'latest', 'minPartitions' '4');
             SELECT count(*), count(DISTINCT \"offset\"), min(\"offset\"), max(\"offset\") FROM s"
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["100|100|0|99"]);
    assert_eq!(
        result.kafka.ranges, 4,
        "one partition split into minPartitions ranges"
    );
}

#[tokio::test]
async fn a_stream_is_read_as_a_snapshot_and_says_so() {
    let (broker, topic, engine) = filled_topic("snap", 2, 4);
    let result = run(
        &engine,
        &format!("CREATE EXTERNAL TABLE events STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}'); SELECT count(*) FROM events"),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["8"]);
    assert_eq!(result.kafka.snapshot_tables, vec!["events".to_string()]);
    fill(&broker.bootstrap(), &topic, 2, 1);
    let result = run(&engine, "SELECT count(*) FROM events").await;
    assert_eq!(
        lines(&result.batches),
        vec!["10"],
        "each query reads up to the latest offsets at its start"
    );
}

#[tokio::test]
async fn pushdown_narrows_what_is_fetched() {
    let (_broker, topic, engine) = filled_topic("push", 4, 100);
    run(&engine, &format!("CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' 'latest')")).await;

    let cases: &[(&str, &str, usize)] = &[
        ("SELECT count(*) FROM t WHERE partition = 2", "100", 100),
        (
            "SELECT count(*) FROM t WHERE partition IN (1, 3)",
            "200",
            200,
        ),
        ("SELECT count(*) FROM t WHERE \"offset\" >= 90", "40", 40),
        (
            "SELECT count(*) FROM t WHERE partition = 1 AND \"offset\" BETWEEN 10 AND 19",
            "10",
            10,
        ),
        (
            "SELECT count(*) FROM t WHERE \"offset\" = 7 AND CAST(value AS VARCHAR) = 'p3-7'",
            "1",
            4,
        ),
        (
            "SELECT count(*) FROM t WHERE \"offset\" < 5 OR \"offset\" > 94",
            "40",
            400,
        ),
    ];
    for (sql, expected, fetched) in cases {
        let result = run(&engine, sql).await;
        assert_eq!(lines(&result.batches), vec![expected.to_string()], "{sql}");
        assert_eq!(result.kafka.records_fetched, *fetched, "{sql}");
    }

    let result = run(&engine, "SELECT value FROM t LIMIT 5").await;
    assert_eq!(result.row_count(), 5);
    assert!(
        result.kafka.records_fetched <= 5 * 4,
        "LIMIT caps each range: {}",
        result.kafka.records_fetched
    );

    // The mock answers every timestamp lookup with the end offset; weir does not trust such an
    // answer, so the predicate still returns every matching record.
    let result = run(
        &engine,
        "SELECT count(*) FROM t WHERE timestamp >= TIMESTAMP '2000-01-01T00:00:00Z'",
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["400"]);
}

#[tokio::test]
async fn projection_builds_only_the_columns_read() {
    let (_broker, topic, engine) = filled_topic("proj", 1, 3);
    run(&engine, &format!("CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'includeHeaders' 'true')")).await;
    let frame = engine
        .session()
        .sql("SELECT \"offset\" FROM t WHERE partition = 0")
        .await
        .unwrap();
    let plan = frame.create_physical_plan().await.unwrap();
    let scan = weir::kafka::scan::scans(&plan)
        .into_iter()
        .next()
        .map(|s| s.schema())
        .expect("a Kafka scan");
    let names: Vec<&str> = scan.fields().iter().map(|f| f.name().as_str()).collect();
    assert!(
        !names.contains(&"key") && !names.contains(&"headers") && !names.contains(&"value"),
        "{names:?}"
    );
    assert!(names.contains(&"offset"));
}

#[tokio::test]
async fn topic_selection_by_pattern_and_assign() {
    let mut broker = Broker::for_test();
    let prefix = unique("pat");
    for (suffix, partitions) in [("a", 2), ("b", 1)] {
        broker.create_topic(&format!("{prefix}.{suffix}"), partitions);
        fill(
            &broker.bootstrap(),
            &format!("{prefix}.{suffix}"),
            partitions,
            3,
        );
    }
    broker.create_topic(&format!("x{prefix}.c"), 1);
    fill(&broker.bootstrap(), &format!("x{prefix}.c"), 1, 3);
    let engine = broker.engine();
    let pattern = format!("{}\\..*", regex_escape(&prefix));
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE p STORED AS KAFKA OPTIONS ('subscribePattern' '{pattern}', 'endingOffsets' 'latest');
             SELECT topic, count(*) FROM p GROUP BY topic ORDER BY topic"
        ),
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec![format!("{prefix}.a|6"), format!("{prefix}.b|3")]
    );
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE a STORED AS KAFKA OPTIONS ('assign' '{{\"{prefix}.a\":[1]}}', 'endingOffsets' 'latest');
             SELECT DISTINCT partition FROM a"
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["1"]);
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_alphanumeric() {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

#[tokio::test]
async fn bad_options_fail_at_create_naming_the_option() {
    let broker = Broker::for_test();
    let engine = broker.engine();
    let cases = [
        (
            "'subscribe' 't', 'startingOfsets' 'earliest'",
            "unknown Kafka table option 'startingofsets'",
        ),
        (
            "'subscribe' 't', 'assign' '{\"t\":[0]}'",
            "subscribe and assign are given",
        ),
        (
            "'endingOffsets' 'latest'",
            "exactly one of the options subscribe, subscribePattern and assign",
        ),
        (
            "'subscribe' 't', 'endingOffsets' 'earliest'",
            "'endingOffsets' cannot be 'earliest'",
        ),
        (
            "'subscribe' 't', 'startingOffsets' '{\"t\":{\"0\":-3}}'",
            "offsets are 0 or more",
        ),
        (
            "'subscribe' 't', 'includeHeaders' 'yes'",
            "'includeheaders' has the value 'yes'",
        ),
        (
            "'subscribe' 't', 'kafka.bogus.key' '1'",
            "'kafka.bogus.key' is refused by librdkafka",
        ),
        (
            "'subscribe' 't', 'kafka.auto.offset.reset' 'earliest'",
            "use startingOffsets",
        ),
    ];
    for (options, expected) in cases {
        let e = fails(
            &engine,
            &format!("CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ({options})"),
        )
        .await;
        assert!(
            e.to_lowercase().contains(&expected.to_lowercase()),
            "{options}: {e}"
        );
    }
    let e = fails(
        &engine,
        "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' 't') LOCATION 'x'",
    )
    .await;
    assert!(e.contains("a Kafka table has no LOCATION"), "{e}");
    let e = fails(
        &engine,
        "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' 't' 'x')",
    )
    .await;
    assert!(e.starts_with("syntax error at line 1, column "), "{e}");
}

#[tokio::test]
async fn missing_topics_and_partitions_fail_at_query_start() {
    let mut broker = Broker::for_test();
    let topic = unique("exists");
    broker.create_topic(&topic, 2);
    let engine = broker.engine();
    let e = fails(&engine, "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' 'no-such-topic'); SELECT * FROM t").await;
    assert!(
        e.contains("topic 'no-such-topic' does not exist") && e.contains(&broker.bootstrap()),
        "{e}"
    );
    let e = fails(
        &engine,
        &format!("CREATE EXTERNAL TABLE u STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' '{{\"{topic}\":{{\"5\":1}}}}'); SELECT * FROM u"),
    )
    .await;
    assert!(e.contains(&format!("{topic}[5]")), "{e}");
    let e = fails(&engine, &format!("CREATE EXTERNAL TABLE v STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'assign' '{{\"{topic}\":[2]}}'); SELECT * FROM v")).await;
    assert!(e.contains("partition 2 of topic"), "{e}");
    let e = fails(
        &engine,
        &format!("CREATE EXTERNAL TABLE w STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' '{{\"{topic}\":{{\"0\":9,\"1\":-1}}}}'); SELECT * FROM w"),
    )
    .await;
    assert!(
        e.contains("up to offset 9, but its latest offset is 0"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unreachable_broker_fails_within_the_timeout_and_is_named() {
    let engine = weir::Engine::builder().build().unwrap();
    let e = fails(
        &engine,
        "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' 't',
           'kafka.bootstrap.servers' '127.0.0.1:1', 'brokerTimeoutMs' '1500');
         SELECT * FROM t",
    )
    .await;
    assert!(
        e.contains("127.0.0.1:1") && e.contains("brokerTimeoutMs"),
        "{e}"
    );
}

#[tokio::test]
async fn the_session_default_broker() {
    let mut broker = Broker::for_test();
    let topic = unique("default");
    broker.create_topic(&topic, 1);
    fill(&broker.bootstrap(), &topic, 1, 2);
    let engine = weir::Engine::builder().build().unwrap();
    if std::env::var(weir::engine::BOOTSTRAP_ENV).is_err() {
        let e = fails(
            &engine,
            &format!("CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}')"),
        )
        .await;
        assert!(
            e.contains("no Kafka broker given") && e.contains("SET weir.kafka.bootstrap.servers"),
            "{e}"
        );
    }
    let result = run(
        &engine,
        &format!(
            "SET weir.kafka.bootstrap.servers = '{}';
             CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}');
             SELECT count(*) FROM t",
            broker.bootstrap()
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["2"]);
    let e = fails(&engine, "SET weir.no_such_setting = 1").await;
    assert!(e.contains("unknown setting 'weir.no_such_setting'"), "{e}");
}

#[tokio::test]
async fn offsets_lost_to_retention_fail_or_are_skipped() {
    let mut broker = Broker::for_test();
    let topic = unique("retention");
    broker.create_topic(&topic, 1);
    let big = "x".repeat(64 * 1024);
    let records: Vec<Record<'_>> = (0..112).map(|_| Record::value(0, &big)).collect();
    produce(&broker.bootstrap(), &topic, &records);
    if broker.is_real() {
        // Records deleted as retention would (DeleteRecords moves the log start offset).
        admin::delete_records(&broker.bootstrap(), &topic, 0, 40);
    }
    // (The mock keeps about 5 MiB per partition: 7 MiB of records pushed the first ones out.)
    let engine = broker.engine();
    let start = format!("'{{\"{topic}\":{{\"0\":0}}}}'");
    let e = fails(
        &engine,
        &format!("CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'startingOffsets' {start}, 'endingOffsets' 'latest'); SELECT count(*) FROM t"),
    )
    .await;
    assert!(
        e.contains("data loss: offsets 0 to") && e.contains(&format!("{topic}[0]")),
        "{e}"
    );
    if broker.is_real() {
        assert!(e.contains("offsets 0 to 39"), "{e}");
    }
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE u STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'startingOffsets' {start},
               'endingOffsets' 'latest', 'failOnDataLoss' 'false');
             SELECT count(*), min(\"offset\"), max(\"offset\") FROM u"
        ),
    )
    .await;
    let row = &lines(&result.batches)[0];
    let parts: Vec<i64> = row.split('|').map(|p| p.parse().unwrap()).collect();
    assert!(parts[1] > 0, "the lost offsets were skipped: {row}");
    assert_eq!(parts[2], 111);
    assert_eq!(parts[0], 112 - parts[1]);
}

#[tokio::test]
async fn read_committed_and_security_keys_pass_through() {
    let (_broker, topic, engine) = filled_topic("rc", 2, 5);
    let result = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'kafka.isolation.level' 'read_committed',
               'kafka.client.id' 'weir-test', 'kafka.group.id' 'explicit-group');
             SELECT count(*) FROM t"
        ),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["10"]);
}

#[tokio::test]
async fn a_broker_in_its_own_process() {
    let mut broker = Broker::process();
    let topic = unique("proc");
    broker.create_topic(&topic, 3);
    fill(&broker.bootstrap(), &topic, 3, 7);
    let engine = broker.engine();
    let result = run(
        &engine,
        &format!("CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' 'latest'); SELECT count(*) FROM t"),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["21"]);
    drop(engine);
    // A new engine (as after a restart) sees the same records: the broker outlived the first.
    let engine = broker.engine();
    let result = run(
        &engine,
        &format!("CREATE EXTERNAL TABLE t STORED AS KAFKA OPTIONS ('subscribe' '{topic}', 'endingOffsets' 'latest'); SELECT count(*) FROM t"),
    )
    .await;
    assert_eq!(lines(&result.batches), vec!["21"]);
}
