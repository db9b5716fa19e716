//! JDBC tables against real databases: PostgreSQL and MariaDB on their default local ports, and
//! SQLite files. A test whose database is not reachable prints a skip message and passes —
//! unless `WEIR_REQUIRE_DB` is set (CI sets it), then it fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use mysql_async::prelude::Queryable;
use weir::Engine;
use weir::checkpoint::{Checkpoint, OffsetsEntry};
use weir::jdbc::JdbcTable;
use weir::sinks::BatchContext;
use weir::storage::S3Settings;

use super::common::{Broker, Record, fails, lines, produce, run, unique};
use super::web::http_get;

/// The local PostgreSQL (trust authentication).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The local MariaDB (root without a password).
pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mysql,
    Sqlite,
}

/// A database for a test, with a direct driver connection to check what weir wrote.
pub struct TestDb {
    pub kind: Kind,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

/// Skips (returns `None`) when the database is unreachable, unless `WEIR_REQUIRE_DB` is set.
fn unavailable(what: &str, error: String) -> Option<TestDb> {
    if std::env::var_os("WEIR_REQUIRE_DB").is_some() {
        panic!("{what} is required (WEIR_REQUIRE_DB is set) but unreachable: {error}");
    }
    eprintln!("skipped: {what} is not reachable ({error}); set WEIR_REQUIRE_DB=1 to fail instead");
    None
}

impl TestDb {
    pub async fn postgres() -> Option<TestDb> {
        let db = TestDb {
            kind: Kind::Postgres,
            url: POSTGRES_URL.to_string(),
            _dir: None,
        };
        match tokio::time::timeout(Duration::from_secs(5), db.pg()).await {
            Ok(Ok(_)) => Some(db),
            Ok(Err(e)) => unavailable("PostgreSQL at 127.0.0.1:5432", e.to_string()),
            Err(_) => unavailable("PostgreSQL at 127.0.0.1:5432", "timeout".to_string()),
        }
    }

    pub async fn mysql() -> Option<TestDb> {
        let db = TestDb {
            kind: Kind::Mysql,
            url: MYSQL_URL.to_string(),
            _dir: None,
        };
        match tokio::time::timeout(Duration::from_secs(5), db.my()).await {
            Ok(Ok(conn)) => {
                let _ = conn.disconnect().await;
                Some(db)
            }
            Ok(Err(e)) => unavailable("MariaDB at 127.0.0.1:3306", e.to_string()),
            Err(_) => unavailable("MariaDB at 127.0.0.1:3306", "timeout".to_string()),
        }
    }

    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        TestDb {
            kind: Kind::Sqlite,
            url: format!("sqlite://{}", dir.path().join("test.db").display()),
            _dir: Some(dir),
        }
    }

    /// The same database under another URL (another PostgreSQL application name, another
    /// MariaDB database).
    pub fn with_url(&self, url: String) -> TestDb {
        TestDb {
            kind: self.kind,
            url,
            _dir: None,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn pg(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn my(&self) -> Result<mysql_async::Conn, mysql_async::Error> {
        mysql_async::Conn::new(mysql_async::Opts::from_url(&self.url).unwrap()).await
    }

    fn lite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.url.trim_start_matches("sqlite://")).unwrap()
    }

    /// Runs statements directly through the driver.
    pub async fn execute(&self, sql: &str) {
        match self.kind {
            Kind::Postgres => self.pg().await.unwrap().batch_execute(sql).await.unwrap(),
            Kind::Mysql => {
                let mut conn = self.my().await.unwrap();
                conn.query_drop(sql).await.unwrap();
                conn.disconnect().await.unwrap();
            }
            Kind::Sqlite => self.lite().execute_batch(sql).unwrap(),
        }
    }

    /// Rows of a query run directly through the driver, as text joined with '|'.
    pub async fn query(&self, sql: &str) -> Vec<String> {
        match self.kind {
            Kind::Postgres => {
                let messages = self.pg().await.unwrap().simple_query(sql).await.unwrap();
                messages
                    .iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).unwrap_or("NULL").to_string())
                                .collect::<Vec<_>>()
                                .join("|"),
                        ),
                        _ => None,
                    })
                    .collect()
            }
            Kind::Mysql => {
                let mut conn = self.my().await.unwrap();
                let rows: Vec<mysql_async::Row> = conn.query(sql).await.unwrap();
                conn.disconnect().await.unwrap();
                rows.iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| match row.as_ref(i) {
                                Some(mysql_async::Value::Bytes(b)) => {
                                    String::from_utf8_lossy(b).into_owned()
                                }
                                Some(mysql_async::Value::NULL) | None => "NULL".to_string(),
                                Some(other) => other.as_sql(true),
                            })
                            .collect::<Vec<_>>()
                            .join("|")
                    })
                    .collect()
            }
            Kind::Sqlite => {
                let conn = self.lite();
                let mut statement = conn.prepare(sql).unwrap();
                let width = statement.column_count();
                let mut rows = statement.query([]).unwrap();
                let mut out = vec![];
                while let Some(row) = rows.next().unwrap() {
                    let cells: Vec<String> = (0..width)
                        .map(|i| match row.get_ref(i).unwrap() {
                            rusqlite::types::ValueRef::Null => "NULL".to_string(),
                            rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                            rusqlite::types::ValueRef::Real(v) => v.to_string(),
                            rusqlite::types::ValueRef::Text(t)
                            | rusqlite::types::ValueRef::Blob(t) => {
                                String::from_utf8_lossy(t).into_owned()
                            }
                        })
                        .collect();
                    out.push(cells.join("|"));
                }
                out
            }
        }
    }

    /// `name` quoted for this database.
    pub fn quote(&self, name: &str) -> String {
        match self.kind {
            Kind::Mysql => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    /// Drops a table (a test's own, at its end).
    pub async fn drop_table(&self, name: &str) {
        self.execute(&format!("DROP TABLE IF EXISTS {}", self.quote(name)))
            .await;
    }

    /// Drops a table streaming queries wrote, and their progress rows.
    pub async fn drop_streamed_table(&self, name: &str) {
        self.execute(&format!(
            "DELETE FROM _weir_progress WHERE table_name = '{name}'"
        ))
        .await;
        self.drop_table(name).await;
    }
}

/// A table name no other test uses, valid unquoted in every database.
pub fn table_name(prefix: &str) -> String {
    unique(prefix).replace('-', "_")
}

/// Defines one test per database running `$body(db)`.
macro_rules! per_database {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                if let Some(db) = TestDb::postgres().await {
                    super::$name(db).await;
                }
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn mysql() {
                if let Some(db) = TestDb::mysql().await {
                    super::$name(db).await;
                }
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$name(TestDb::sqlite()).await;
            }
        }
    };
}

fn json_records(
    partitions: i32,
    per_partition: usize,
    value: impl Fn(i32, usize) -> String,
) -> Vec<(i32, String)> {
    (0..partitions)
        .flat_map(|p| (0..per_partition).map(move |i| (p, i)))
        .map(|(p, i)| (p, value(p, i)))
        .collect()
}

fn produce_values(bootstrap: &str, topic: &str, values: &[(i32, String)]) {
    let records: Vec<Record<'_>> = values.iter().map(|(p, v)| Record::value(*p, v)).collect();
    produce(bootstrap, topic, &records);
}

/// An in-process broker with a new topic holding `values`, and an engine using it.
fn topic_with(prefix: &str, partitions: i32, values: &[(i32, String)]) -> (Broker, String, Engine) {
    let mut broker = Broker::for_test();
    let topic = unique(prefix);
    broker.create_topic(&topic, partitions);
    produce_values(&broker.bootstrap(), &topic, values);
    let engine = broker.engine();
    (broker, topic, engine)
}

async fn await_query(engine: &Engine, name: &str) -> Result<(), String> {
    let query = engine.query(name).unwrap();
    query.await_termination().await.map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Types

/// The columns of the type round trip: every type family a JDBC table stores.
const TYPED_COLUMNS: &str = "id BIGINT NOT NULL, i8 TINYINT, i16 SMALLINT, i32 INT, i64 BIGINT, \
    u8 TINYINT UNSIGNED, u16 SMALLINT UNSIGNED, u32 INT UNSIGNED, u64 BIGINT UNSIGNED, \
    f32 REAL, f64 DOUBLE, dec DECIMAL(20, 4), big DECIMAL(50, 10), s VARCHAR, b BYTEA, \
    flag BOOLEAN, d DATE, ts TIMESTAMP, ts_ms TIMESTAMP(3), tz TIMESTAMP WITH TIME ZONE, \
    t TIME, l INT[], st STRUCT<a INT, b VARCHAR>";

/// Rows with extremes, NULLs and awkward text. SQLite integers stop at 2^63 - 1.
fn typed_rows(kind: Kind) -> String {
    let u64_max = if kind == Kind::Sqlite {
        "9223372036854775807"
    } else {
        "18446744073709551615"
    };
    format!(
        "(1, -128, -32768, -2147483648, -9223372036854775807 - 1, 255, 65535, 4294967295, {u64_max},
          3.14, 0.1, CAST('12345678.9012' AS DECIMAL(20, 4)),
          CAST('1234567890123456789012345678901234567890.0123456789' AS DECIMAL(50, 10)),
          'héllo\tworld \"quoted\" back\\slash, comma; 日本', X'00FF10',
          true, DATE '2024-02-29', TIMESTAMP '2024-03-01T12:34:56.123456', TIMESTAMP '1969-07-20T20:17:40.5',
          TIMESTAMP '2024-03-01T12:34:56.654321Z', TIME '23:59:59.999999', [1, NULL, 3],
          named_struct('a', 7, 'b', 'x')),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL),
         (3, 127, 32767, 2147483647, 9223372036854775807, 0, 0, 0, 0,
          -1.5e30, -1e300, CAST('-0.0001' AS DECIMAL(20, 4)), CAST('-0.0000000001' AS DECIMAL(50, 10)), '', X'',
          false, DATE '1900-01-01', TIMESTAMP '1900-01-01T00:00:00', TIMESTAMP '2038-01-19T03:14:07.999',
          TIMESTAMP '1999-12-31T23:59:59Z', TIME '00:00:00', [], named_struct('a', NULL, 'b', 'line\nbreak'))"
    )
}

async fn type_round_trip(db: TestDb) {
    let engine = Engine::builder().build().unwrap();
    let table = table_name("types");
    run(&engine, "SET datafusion.execution.time_zone = 'UTC'").await;
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE typed ({TYPED_COLUMNS}) STORED AS JDBC LOCATION '{}'
               OPTIONS ('table' '{table}', 'key' 'id');
             CREATE TABLE expected ({TYPED_COLUMNS});
             INSERT INTO typed VALUES {rows};
             INSERT INTO expected VALUES {rows};",
            db.url(),
            rows = typed_rows(db.kind),
        ),
    )
    .await;
    let got = run(&engine, "SELECT * FROM typed ORDER BY id").await;
    let want = run(&engine, "SELECT * FROM expected ORDER BY id").await;
    assert_eq!(got.schema, want.schema, "the declared types come back");
    assert_eq!(lines(&got.batches), lines(&want.batches));
    assert_eq!(got.row_count(), 3);

    // Projection: only the asked columns are selected, and they read the same.
    let got = run(
        &engine,
        "SELECT tz, s, id FROM typed WHERE id <> 2 ORDER BY id",
    )
    .await;
    let want = run(
        &engine,
        "SELECT tz, s, id FROM expected WHERE id <> 2 ORDER BY id",
    )
    .await;
    assert_eq!(lines(&got.batches), lines(&want.batches));
    let plan = run(&engine, "EXPLAIN SELECT s FROM typed").await;
    let plan = lines(&plan.batches).join("\n");
    assert!(plan.contains("projection=[s]"), "{plan}");
    let counted = run(&engine, "SELECT count(*) FROM typed").await;
    assert_eq!(lines(&counted.batches), vec!["3"]);

    // In the database, the documented types.
    let types = match db.kind {
        Kind::Postgres => db.query(&format!(
            "SELECT data_type FROM information_schema.columns WHERE table_name = '{table}' \
             AND column_name IN ('u64', 'big', 'b', 'tz', 'l') ORDER BY column_name"
        )).await,
        Kind::Mysql => db.query(&format!(
            "SELECT LOWER(COLUMN_TYPE) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'test' \
             AND TABLE_NAME = '{table}' AND COLUMN_NAME IN ('u64', 'big', 'b', 'tz', 'l') ORDER BY COLUMN_NAME"
        )).await,
        Kind::Sqlite => db.query(&format!(
            "SELECT type FROM pragma_table_info('{table}') WHERE name IN ('u64', 'big', 'b', 'tz', 'l') ORDER BY name"
        )).await,
    };
    let expected: Vec<&str> = match db.kind {
        // b, big, l, tz, u64
        Kind::Postgres => vec![
            "bytea",
            "numeric",
            "jsonb",
            "timestamp with time zone",
            "numeric",
        ],
        Kind::Mysql => vec![
            "longblob",
            "decimal(50,10)",
            "longtext",
            "datetime(6)",
            "bigint(20) unsigned",
        ],
        Kind::Sqlite => vec!["BLOB", "TEXT", "TEXT", "TEXT", "INTEGER"],
    };
    assert_eq!(types, expected);
    db.drop_table(&table).await;
}
per_database!(type_round_trip);

/// PostgreSQL and SQLite store infinities (MySQL refuses them); PostgreSQL stores NaN.
#[tokio::test(flavor = "multi_thread")]
async fn non_finite_floats() {
    let mut databases = vec![TestDb::sqlite()];
    databases.extend(TestDb::postgres().await);
    databases.extend(TestDb::mysql().await);
    for db in databases {
        let engine = Engine::builder().build().unwrap();
        let table = table_name("floats");
        run(
            &engine,
            &format!(
                "CREATE EXTERNAL TABLE f (id INT, x DOUBLE) STORED AS JDBC LOCATION '{}' OPTIONS ('table' '{table}')",
                db.url()
            ),
        )
        .await;
        let insert = "INSERT INTO f VALUES (1, 'inf'), (2, '-inf')";
        if db.kind == Kind::Mysql {
            let e = fails(&engine, insert).await;
            assert!(
                e.contains("cannot store NaN or infinite") && e.contains("row 1 of 2"),
                "{e}"
            );
            db.drop_table(&table).await;
            continue;
        }
        run(&engine, insert).await;
        if db.kind == Kind::Postgres {
            run(&engine, "INSERT INTO f VALUES (3, 'NaN')").await;
        } else {
            let e = fails(&engine, "INSERT INTO f VALUES (3, 'NaN')").await;
            assert!(e.contains("SQLite stores NaN as NULL"), "{e}");
        }
        let result = run(&engine, "SELECT id, x FROM f ORDER BY id").await;
        let mut want = vec!["1|inf", "2|-inf"];
        if db.kind == Kind::Postgres {
            want.push("3|NaN");
        }
        assert_eq!(lines(&result.batches), want, "{:?}", db.kind);
        db.drop_table(&table).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming, exactly once

async fn streaming_exactly_once(db: TestDb) {
    let values = json_records(3, 100, |p, i| {
        format!("{{\"n\": {}}}", p as usize * 1000 + i)
    });
    let (broker, topic, engine) = topic_with("jdbc-eo", 3, &values);
    let table = table_name("eo");
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp").display().to_string();
    let create_query = format!(
        "CREATE STREAMING QUERY eo WITH ('trigger' 'availableNow', 'checkpoint' '{cp}')
           AS INSERT INTO out SELECT n, _partition, _offset FROM src"
    );
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA
               OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '70');
             CREATE EXTERNAL TABLE out (n BIGINT, p INT, o BIGINT) STORED AS JDBC
               LOCATION '{}' OPTIONS ('table' '{table}');
             {create_query}",
            db.url()
        ),
    )
    .await;
    await_query(&engine, "eo").await.unwrap();
    let query = engine.query("eo").unwrap();
    let query_id = query.id().to_string();
    let batches = query.recent_progress().len();
    assert_eq!(batches, 5, "300 offsets in batches of at most 70");
    assert!(query.sink().starts_with("jdbc ") && query.sink().contains(&table));
    let counts = format!(
        "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM {}",
        db.quote(&table)
    );
    assert_eq!(db.query(&counts).await, vec!["300|300|0|2099"]);
    // One progress row per batch, recording its rows and its offsets.
    let progress = db
        .query(&format!(
            "SELECT count(*), sum(row_count), min(batch_id), max(batch_id) FROM _weir_progress WHERE query_id = '{query_id}'"
        ))
        .await;
    assert_eq!(progress, vec!["5|300|0|4"]);
    let offsets = db
        .query(&format!(
            "SELECT offsets, query_name, table_name FROM _weir_progress WHERE query_id = '{query_id}' AND batch_id = 0"
        ))
        .await;
    let fields: Vec<&str> = offsets[0].rsplitn(3, '|').collect();
    assert_eq!(fields[0], table);
    assert_eq!(fields[1], "eo");
    let recorded: serde_json::Value = serde_json::from_str(fields[2]).unwrap();
    assert_eq!(recorded["batchId"], 0);
    assert_eq!(recorded["sources"]["src"].as_array().unwrap().len(), 3);

    // The sink, asked again for a recorded batch, writes nothing.
    let provider = engine.session().table_provider("out").await.unwrap();
    let sink = provider.downcast_ref::<JdbcTable>().unwrap().sink();
    let context = |batch_id: u64| BatchContext {
        query_id: query_id.clone(),
        query_name: "eo".to_string(),
        batch_id,
        offsets: OffsetsEntry {
            batch_id,
            trigger_time_ms: 0,
            sources: Default::default(),
            event_time: None,
        },
        checkpoint: Checkpoint::open(&cp, &S3Settings::default()).unwrap(),
        output_mode: weir::stream::stateful::OutputMode::Append,
        stateful: false,
        replayed: true,
        replay_deterministic: true,
    };
    assert!(sink.has_batch(&context(2)).await.unwrap());
    assert!(!sink.has_batch(&context(99)).await.unwrap());
    let written = sink
        .write_batch(&context(2), rows(&[7, 8, 9]))
        .await
        .unwrap();
    assert_eq!(written, 0, "batch 2 is already in the table");
    assert_eq!(db.query(&counts).await, vec!["300|300|0|2099"]);
    // A batch the table has not seen is written, once.
    assert_eq!(
        sink.write_batch(&context(5), rows(&[-1, -2]))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        sink.write_batch(&context(5), rows(&[-1, -2]))
            .await
            .unwrap(),
        0
    );
    db.execute(&format!("DELETE FROM {} WHERE n < 0", db.quote(&table)))
        .await;
    db.execute(&format!(
        "DELETE FROM _weir_progress WHERE query_id = '{query_id}' AND batch_id = 5"
    ))
    .await;

    // A restart that finds the last batch uncommitted in the checkpoint replays it: the
    // table already has it, so nothing is written twice.
    std::fs::remove_file(dir.path().join("cp/commits/4")).unwrap();
    run(&engine, &create_query).await;
    await_query(&engine, "eo").await.unwrap();
    let replay = engine.query("eo").unwrap().recent_progress();
    assert_eq!(replay.len(), 1);
    assert!(replay[0].replayed);
    assert_eq!((replay[0].batch_id, replay[0].num_output_rows), (4, 0));
    assert_eq!(db.query(&counts).await, vec!["300|300|0|2099"]);

    // New records land once more, exactly once.
    produce_values(
        &broker.bootstrap(),
        &topic,
        &json_records(3, 10, |p, i| {
            format!("{{\"n\": {}}}", 5000 + p as usize * 100 + i)
        }),
    );
    run(&engine, &create_query).await;
    await_query(&engine, "eo").await.unwrap();
    assert_eq!(db.query(&counts).await, vec!["330|330|0|5209"]);
    let read = run(&engine, "SELECT count(*), count(DISTINCT (p, o)) FROM out").await;
    assert_eq!(lines(&read.batches), vec!["330|330"]);
    db.drop_streamed_table(&table).await;
}
per_database!(streaming_exactly_once);

/// A stream of (n BIGINT, p INT, o BIGINT) rows with the given n.
fn rows(ns: &[i64]) -> datafusion::execution::SendableRecordBatchStream {
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, true),
        Field::new("p", DataType::Int32, true),
        Field::new("o", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(ns.to_vec())),
            Arc::new(arrow::array::Int32Array::from(vec![9; ns.len()])),
            Arc::new(Int64Array::from(ns.to_vec())),
        ],
    )
    .unwrap();
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        futures::stream::iter(vec![Ok(batch)]),
    ))
}

// ---------------------------------------------------------------------------------------------
// Upsert

async fn upsert(db: TestDb) {
    // Bounded INSERTs: the last row of a key in one INSERT wins; a later INSERT updates.
    let engine = Engine::builder().build().unwrap();
    let table = table_name("upsert");
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE kv (id BIGINT, name VARCHAR, v INT) STORED AS JDBC LOCATION '{}'
               OPTIONS ('table' '{table}', 'mode' 'upsert', 'key' 'id');
             INSERT INTO kv VALUES (1, 'a', 1), (2, 'b', 2), (1, 'c', 3);",
            db.url()
        ),
    )
    .await;
    let all = "SELECT id, name, v FROM kv ORDER BY id";
    assert_eq!(
        lines(&run(&engine, all).await.batches),
        vec!["1|c|3", "2|b|2"]
    );
    run(
        &engine,
        "INSERT INTO kv VALUES (2, 'z', 9), (3, NULL, NULL)",
    )
    .await;
    assert_eq!(
        lines(&run(&engine, all).await.batches),
        vec!["1|c|3", "2|z|9", "3||"]
    );

    // A composite key, every column a key column: a repeated row is kept once.
    let pairs = table_name("pairs");
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE pairs (a VARCHAR, b BIGINT) STORED AS JDBC LOCATION '{}'
               OPTIONS ('table' '{pairs}', 'mode' 'upsert', 'key' 'a,b');
             INSERT INTO pairs VALUES ('x', 1), ('x', 1), ('x', 2);
             INSERT INTO pairs VALUES ('x', 2), ('y', 1);",
            db.url()
        ),
    )
    .await;
    assert_eq!(
        lines(
            &run(&engine, "SELECT a, b FROM pairs ORDER BY a, b")
                .await
                .batches
        ),
        vec!["x|1", "x|2", "y|1"]
    );

    // Streaming: ids repeat within and across batches; each id ends with its last record.
    let values = json_records(1, 50, |_, i| format!("{{\"id\": {}, \"v\": {i}}}", i % 10));
    let (_broker, topic, engine) = topic_with("jdbc-upsert", 1, &values);
    let streamed = table_name("latest");
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (id BIGINT, v BIGINT) STORED AS KAFKA
               OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '15');
             CREATE EXTERNAL TABLE latest (id BIGINT, v BIGINT, o BIGINT) STORED AS JDBC
               LOCATION '{}' OPTIONS ('table' '{streamed}', 'mode' 'upsert', 'key' 'id');
             CREATE STREAMING QUERY up WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO latest SELECT id, v, _offset FROM src",
            db.url(),
            dir.path().display()
        ),
    )
    .await;
    await_query(&engine, "up").await.unwrap();
    assert_eq!(engine.query("up").unwrap().recent_progress().len(), 4);
    let result = run(&engine, "SELECT id, v, o FROM latest ORDER BY id").await;
    let want: Vec<String> = (0..10)
        .map(|k| format!("{k}|{}|{}", 40 + k, 40 + k))
        .collect();
    assert_eq!(lines(&result.batches), want);
    db.drop_table(&table).await;
    db.drop_table(&pairs).await;
    db.drop_streamed_table(&streamed).await;
}
per_database!(upsert);

// ---------------------------------------------------------------------------------------------
// Rejected rows

async fn rejected_rows(db: TestDb) {
    // A CHECK constraint refuses the 16th record, in the second batch of 10.
    let table = table_name("checked");
    db.execute(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, qty INT NOT NULL CHECK (qty >= 0))"
    ))
    .await;
    let values = json_records(1, 30, |_, i| {
        format!(
            "{{\"id\": {i}, \"qty\": {}}}",
            if i == 15 { -5 } else { i as i64 }
        )
    });
    let (_broker, topic, engine) = topic_with("jdbc-reject", 1, &values);
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (id BIGINT, qty INT) STORED AS KAFKA
               OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '10');
             CREATE EXTERNAL TABLE checked (id BIGINT, qty INT) STORED AS JDBC LOCATION '{}'
               OPTIONS ('table' '{table}', 'createTable' 'false', 'key' 'id');
             CREATE STREAMING QUERY rej WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO checked SELECT id, qty FROM src",
            db.url(),
            dir.path().display()
        ),
    )
    .await;
    let e = await_query(&engine, "rej").await.unwrap_err();
    let db_message = match db.kind {
        Kind::Postgres => "violates check constraint",
        Kind::Mysql => "CONSTRAINT",
        Kind::Sqlite => "CHECK constraint failed",
    };
    assert!(e.contains(db_message), "the database's message: {e}");
    assert!(e.contains("row 6 of 10 (id=15)"), "the row: {e}");
    assert!(e.contains("batch 1") && e.contains("rolled back"), "{e}");
    assert_eq!(
        db.query(&format!("SELECT count(*), max(id) FROM {table}"))
            .await,
        vec!["10|9"],
        "batch 0 and nothing of batch 1"
    );

    // Upsert mode names the row by its key: a NULL in a NOT NULL column.
    let e = fails(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE up (id BIGINT, qty INT) STORED AS JDBC LOCATION '{}'
               OPTIONS ('table' '{table}', 'createTable' 'false', 'mode' 'upsert', 'key' 'id');
             INSERT INTO up VALUES (100, 1), (101, 2), (102, NULL), (103, 4)",
            db.url()
        ),
    )
    .await;
    let db_message = match db.kind {
        Kind::Postgres => "null value in column \"qty\"",
        Kind::Mysql => "cannot be null",
        Kind::Sqlite => "NOT NULL constraint failed",
    };
    assert!(e.contains(db_message), "the database's message: {e}");
    assert!(
        e.contains("the row with key (id=102)"),
        "the row's key: {e}"
    );
    assert!(e.contains("the INSERT was rolled back"), "{e}");

    // A duplicate key in append mode: the later row is named.
    let e = fails(
        &engine,
        "INSERT INTO checked VALUES (200, 1), (201, 1), (200, 2)",
    )
    .await;
    assert!(e.contains("row 3 of 3 (id=200) was refused"), "{e}");
    // The kept connection is fine after a rollback.
    run(&engine, "INSERT INTO checked VALUES (200, 1)").await;

    // A value weir cannot write (a timestamp past chrono's range) is refused the same way.
    let times = table_name("times");
    let e = fails(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE times (id BIGINT, ts TIMESTAMP(0)) STORED AS JDBC LOCATION '{}'
               OPTIONS ('table' '{times}', 'key' 'id');
             INSERT INTO times VALUES (1, TIMESTAMP '2024-01-01T00:00:00'),
               (2, arrow_cast(9223372036854775807, 'Timestamp(Second, None)'))",
            db.url()
        ),
    )
    .await;
    assert!(
        e.contains("row 2 of 2 (id=2) was refused") && e.contains("out of the range"),
        "{e}"
    );
    run(
        &engine,
        "INSERT INTO times VALUES (3, TIMESTAMP '2024-01-01T00:00:00')",
    )
    .await;
    assert_eq!(
        lines(&run(&engine, "SELECT id, ts FROM times").await.batches),
        vec!["3|2024-01-01T00:00:00"]
    );
    db.drop_table(&times).await;

    // An overflow (SQLite has no column sizes).
    if db.kind != Kind::Sqlite {
        let e = fails(
            &engine,
            &format!(
                "CREATE EXTERNAL TABLE wide (id BIGINT, qty BIGINT) STORED AS JDBC LOCATION '{}'
                   OPTIONS ('table' '{table}', 'createTable' 'false');
                 INSERT INTO wide VALUES (300, 1), (301, 10000000000)",
                db.url()
            ),
        )
        .await;
        assert!(
            e.contains("out of range") || e.contains("Out of range"),
            "{e}"
        );
        assert!(e.contains("row 2 of 2 (id=301, qty=10000000000)"), "{e}");
    }
    assert_eq!(
        db.query(&format!("SELECT count(*) FROM {table}")).await,
        vec!["11"],
        "no refused INSERT left a row"
    );
    db.drop_streamed_table(&table).await;
}
per_database!(rejected_rows);

// ---------------------------------------------------------------------------------------------
// Connection loss

/// A streaming query into `db` (whose URL identifies weir's connections), runs, then loses its
/// connection to `kill`, and must land the next batches exactly once.
async fn survives_a_lost_connection(db: &TestDb, kill: impl AsyncFn() -> usize) {
    let values = json_records(2, 40, |p, i| {
        format!("{{\"n\": {}}}", p as usize * 1000 + i)
    });
    let (broker, topic, engine) = topic_with("jdbc-kill", 2, &values);
    let table = table_name("killed");
    let dir = tempfile::tempdir().unwrap();
    let create_query = format!(
        "CREATE STREAMING QUERY k WITH ('trigger' 'availableNow', 'checkpoint' '{}')
           AS INSERT INTO out SELECT n FROM src",
        dir.path().display()
    );
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA
               OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '30');
             CREATE EXTERNAL TABLE out (n BIGINT) STORED AS JDBC LOCATION '{}' OPTIONS ('table' '{table}');
             {create_query}",
            db.url()
        ),
    )
    .await;
    await_query(&engine, "k").await.unwrap();
    assert!(kill().await >= 1, "weir's kept connection was killed");
    produce_values(
        &broker.bootstrap(),
        &topic,
        &json_records(2, 40, |p, i| {
            format!("{{\"n\": {}}}", 5000 + p as usize * 1000 + i)
        }),
    );
    run(&engine, &create_query).await;
    await_query(&engine, "k").await.unwrap();
    let progress = engine.query("k").unwrap().recent_progress();
    assert!(progress.len() >= 3 && progress.iter().all(|p| !p.replayed));
    assert_eq!(
        db.query(&format!(
            "SELECT count(*), count(DISTINCT n) FROM {}",
            db.quote(&table)
        ))
        .await,
        vec!["160|160"]
    );
    db.drop_streamed_table(&table).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_connection_loss_is_retried() {
    let Some(admin) = TestDb::postgres().await else {
        return;
    };
    let application = table_name("weir_kill");
    let db = admin.with_url(format!("{POSTGRES_URL}?application_name={application}"));
    let kill = async || {
        admin
            .query(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'test' \
                 AND pid <> pg_backend_pid() AND application_name = '{application}'"
            ))
            .await
            .iter()
            .filter(|killed| *killed == "t")
            .count()
    };
    survives_a_lost_connection(&db, kill).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_connection_loss_in_the_middle_of_a_batch_is_retried() {
    let Some(admin) = TestDb::postgres().await else {
        return;
    };
    let application = table_name("weir_midkill");
    let db = admin.with_url(format!("{POSTGRES_URL}?application_name={application}"));
    // A table whose rows take 20 ms each to insert: a batch's transaction lasts about a second.
    let table = table_name("midkill");
    admin
        .execute(&format!(
            "CREATE TABLE {table} (n BIGINT);
             CREATE FUNCTION {table}_slow() RETURNS trigger AS $$
               BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER {table}_slow BEFORE INSERT ON {table}
               FOR EACH ROW EXECUTE FUNCTION {table}_slow();"
        ))
        .await;
    let values = json_records(2, 40, |p, i| {
        format!("{{\"n\": {}}}", p as usize * 1000 + i)
    });
    let (_broker, topic, engine) = topic_with("jdbc-midkill", 2, &values);
    let dir = tempfile::tempdir().unwrap();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA
               OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '40');
             CREATE EXTERNAL TABLE out (n BIGINT) STORED AS JDBC LOCATION '{}' OPTIONS ('table' '{table}');
             CREATE STREAMING QUERY mk WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO out SELECT n FROM src",
            db.url(),
            dir.path().display()
        ),
    )
    .await;
    // Kill weir's connection once while it is inside a batch's transaction.
    let started = std::time::Instant::now();
    let killed = loop {
        let killed = admin
            .query(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'test' \
                 AND application_name = '{application}' AND state = 'active' \
                 AND query ILIKE 'COPY%'"
            ))
            .await
            .iter()
            .filter(|k| *k == "t")
            .count();
        if killed > 0 || started.elapsed() > std::time::Duration::from_secs(20) {
            break killed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(killed, 1, "a batch's COPY was interrupted");
    await_query(&engine, "mk").await.unwrap();
    assert_eq!(
        db.query(&format!("SELECT count(*), count(DISTINCT n) FROM {table}"))
            .await,
        vec!["80|80"],
        "the interrupted batch was written again, once"
    );
    db.drop_streamed_table(&table).await;
    admin
        .execute(&format!("DROP FUNCTION {table}_slow();"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_connection_loss_is_retried() {
    let Some(admin) = TestDb::mysql().await else {
        return;
    };
    // A database of its own, so that the test kills weir's connections and no one else's.
    let database = table_name("weir_kill");
    admin.execute(&format!("CREATE DATABASE {database}")).await;
    let db = admin.with_url(format!("mysql://root@127.0.0.1:3306/{database}"));
    let kill = async || {
        let ids = admin
            .query(&format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{database}' AND ID <> CONNECTION_ID()"
            ))
            .await;
        for id in &ids {
            admin.execute(&format!("KILL {id}")).await;
        }
        ids.len()
    };
    survives_a_lost_connection(&db, kill).await;
    admin.execute(&format!("DROP DATABASE {database}")).await;
}

// ---------------------------------------------------------------------------------------------
// Bad input, secrets

#[tokio::test(flavor = "multi_thread")]
async fn bad_tables_are_refused_at_create() {
    let engine = Engine::builder().build().unwrap();
    let sqlite = TestDb::sqlite();
    let url = sqlite.url();
    let create = |columns: &str, options: &str| {
        format!(
            "CREATE EXTERNAL TABLE bad {columns} STORED AS JDBC LOCATION '{url}' OPTIONS ({options})"
        )
    };
    let cases = [
        (create("(id BIGINT)", "'nope' '1'"), "unknown JDBC table option 'nope'"),
        (create("(id BIGINT)", "'mode' 'upsert'"), "needs option 'key'"),
        (create("(id BIGINT)", "'mode' 'merge'"), "option 'mode' has the value 'merge'"),
        (create("(id BIGINT)", "'key' 'idd'"), "option 'key' names 'idd'"),
        (create("(id BIGINT)", "'createTable' 'maybe'"), "option 'createTable'"),
        (create("(id BIGINT, d INTERVAL)", "'key' 'id'"), "column 'd' has the type Interval"),
        (create("(id BIGINT)", "'table' 'missing', 'createTable' 'false'"), "table missing in"),
        (
            format!("CREATE EXTERNAL TABLE bad STORED AS JDBC LOCATION '{url}'"),
            "needs declared columns",
        ),
        (
            "CREATE EXTERNAL TABLE bad (id INT) STORED AS JDBC LOCATION 'oracle://scott:tiger@db/x'".to_string(),
            "a JDBC table's LOCATION is a database URL",
        ),
    ];
    for (sql, expected) in cases {
        let e = fails(&engine, &sql).await;
        assert!(e.contains(expected), "{sql}\n  gave: {e}");
        assert!(!e.contains("tiger"), "{e}");
    }
    let e = fails(
        &engine,
        &create("(id BIGINT)", "'table' 'missing', 'createTable' 'false'"),
    )
    .await;
    assert!(e.contains("'createTable' 'true'"), "the way out: {e}");

    // Unreachable databases fail at CREATE, quickly, naming the URL without its password.
    for url in [
        "postgres://app:hunter2@127.0.0.1:1/test",
        "mysql://app:hunter2@127.0.0.1:1/test",
    ] {
        let started = Instant::now();
        let e = fails(
            &engine,
            &format!("CREATE EXTERNAL TABLE gone (id INT) STORED AS JDBC LOCATION '{url}'"),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(12));
        assert!(
            e.contains("cannot connect to") && e.contains("app:********@127.0.0.1:1"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_stay_secret() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // Trust authentication accepts (and ignores) the password.
    let url = "postgres://postgres:hunter2@127.0.0.1:5432/test";
    let values = json_records(1, 5, |_, i| format!("{{\"n\": {i}}}"));
    let (broker, topic, _) = topic_with("jdbc-secret", 1, &values);
    let engine = Engine::builder()
        .bootstrap_servers(broker.bootstrap())
        .ui("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    let table = table_name("secret");
    let dir = tempfile::tempdir().unwrap();
    let started = run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE src (n BIGINT) STORED AS KAFKA OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json');
             CREATE EXTERNAL TABLE out (n BIGINT) STORED AS JDBC LOCATION '{url}' OPTIONS ('table' '{table}', 'key' 'n');
             CREATE STREAMING QUERY s WITH ('trigger' 'availableNow', 'checkpoint' '{}')
               AS INSERT INTO out SELECT n FROM src",
            dir.path().display()
        ),
    )
    .await;
    let message = started.message.unwrap();
    assert!(
        message.contains("postgres:********@127.0.0.1:5432/test"),
        "{message}"
    );
    await_query(&engine, "s").await.unwrap();
    for listing in ["SHOW QUERIES", "SELECT * FROM weir.queries"] {
        let shown = lines(&run(&engine, listing).await.batches).join("\n");
        assert!(
            shown.contains("jdbc postgres://postgres:********@") && !shown.contains("hunter2"),
            "{listing}: {shown}"
        );
    }
    let ui = engine.ui_address().unwrap();
    for path in [
        "/api/queries",
        "/api/queries/s",
        "/api/queries/s/progress",
        "/metrics",
    ] {
        let (status, _, served) = http_get(ui, path);
        assert_eq!(status, 200, "{path}");
        assert!(!served.contains("hunter2"), "{path}: {served}");
    }
    let (_, _, listed) = http_get(ui, "/api/queries");
    assert!(listed.contains("postgres:********@"), "{listed}");
    let (_, options) = engine.describe("out").await.unwrap();
    let described = format!("{options:?}");
    assert!(
        described.contains("postgres://postgres:********@127.0.0.1:5432/test")
            && !described.contains("hunter2"),
        "\\d shows where the table lives, without the password: {described}"
    );
    let metadata = std::fs::read_to_string(dir.path().join("metadata")).unwrap();
    assert!(!metadata.contains("hunter2"), "{metadata}");
    let e = fails(&engine, "INSERT INTO out VALUES (NULL)").await;
    assert!(e.contains("********") && !e.contains("hunter2"), "{e}");
    assert_eq!(
        db.query(&format!("SELECT count(*) FROM {table}")).await,
        vec!["5"]
    );
    db.drop_streamed_table(&table).await;
}

// ---------------------------------------------------------------------------------------------
// Reading: a reference table joined with a stream

async fn joined_with_a_stream(db: TestDb) {
    let values = json_records(2, 30, |p, i| {
        format!(
            "{{\"order_id\": {}, \"region\": {}}}",
            p as usize * 100 + i,
            i % 3
        )
    });
    let (_broker, topic, engine) = topic_with("jdbc-join", 2, &values);
    let regions = table_name("regions");
    let out = table_name("enriched");
    let dir = tempfile::tempdir().unwrap();
    db.execute(&format!(
        "CREATE TABLE {regions} (id BIGINT PRIMARY KEY, name VARCHAR(20));
         INSERT INTO {regions} VALUES (0, 'north'), (1, 'south'), (2, 'east')"
    ))
    .await;
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE orders (order_id BIGINT, region BIGINT) STORED AS KAFKA
               OPTIONS ('startingOffsets' 'earliest', 'subscribe' '{topic}', 'format' 'json', 'maxOffsetsPerTrigger' '25');
             CREATE EXTERNAL TABLE regions (id BIGINT, name VARCHAR) STORED AS JDBC LOCATION '{url}'
               OPTIONS ('table' '{regions}', 'createTable' 'false');
             CREATE EXTERNAL TABLE enriched (order_id BIGINT, region VARCHAR) STORED AS JDBC LOCATION '{url}'
               OPTIONS ('table' '{out}', 'mode' 'upsert', 'key' 'order_id');
             CREATE STREAMING QUERY j WITH ('trigger' 'availableNow', 'checkpoint' '{cp}')
               AS INSERT INTO enriched
                  SELECT o.order_id, r.name FROM orders o JOIN regions r ON o.region = r.id",
            url = db.url(),
            cp = dir.path().display()
        ),
    )
    .await;
    await_query(&engine, "j").await.unwrap();
    assert_eq!(engine.query("j").unwrap().recent_progress().len(), 3);
    let result = run(
        &engine,
        "SELECT region, count(*), min(order_id), max(order_id) FROM enriched GROUP BY region ORDER BY region",
    )
    .await;
    assert_eq!(
        lines(&result.batches),
        vec!["east|20|2|129", "north|20|0|127", "south|20|1|128"]
    );
    db.drop_table(&regions).await;
    db.drop_streamed_table(&out).await;
}
per_database!(joined_with_a_stream);

// ---------------------------------------------------------------------------------------------
// The example

#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_example_runs() {
    if TestDb::postgres().await.is_none() {
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sql/examples/kafka-to-postgres.sql"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--embedded-kafka", "run", script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for batch in 0..3 {
        assert!(
            stderr.contains(&format!("query orders_to_postgres batch {batch}: ")),
            "{stderr}"
        );
    }
    for region in [
        "| east   | 250    | 12625.0 |",
        "| north  | 250    | 12125.0 |",
        "| south  | 250    | 12375.0 |",
        "| west   | 250    | 12875.0 |",
    ] {
        assert!(stdout.contains(region), "{region} in\n{stdout}");
    }
}

#[test]
fn every_jdbc_option_is_documented_with_its_default() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/jdbc.md")).unwrap();
    let options = doc
        .split("## Options")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap();
    let rows: Vec<Vec<String>> = options
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), weir::jdbc::JDBC_TABLE_OPTIONS.len());
    for (name, default) in weir::jdbc::JDBC_TABLE_OPTIONS {
        let row = rows
            .iter()
            .find(|r| r[0] == format!("`{name}`"))
            .unwrap_or_else(|| panic!("docs/jdbc.md has no row for `{name}`"));
        assert_eq!(row[1], *default, "default of {name}");
    }
}
