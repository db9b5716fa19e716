//! What differs between PostgreSQL, MySQL/MariaDB and SQLite as SQL text: quoting, the SQL type
//! each Arrow type is stored as, and the statements a JDBC table runs (create, probe, select,
//! insert, upsert, progress rows). Pure functions: they build strings and touch no connection.

use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use datafusion::error::{DataFusionError, Result};

use super::location::Database;
use super::options::Mode;

/// The column a PostgreSQL staging table numbers its rows with, so that upserts keep the last
/// row of each key.
pub const ROW_NUMBER: &str = "_weir_row";

/// The name of the temporary table PostgreSQL upserts stage their rows in.
pub const STAGE_TABLE: &str = "_weir_stage";

/// A table as a dialect writes it: declared columns, key, mode and quoted name.
#[derive(Debug, Clone)]
pub struct Target {
    /// Which database.
    pub database: Database,
    /// The table's name as the user gave it (`schema.table` allowed).
    pub name: String,
    /// The declared columns.
    pub columns: Fields,
    /// Indexes of the key columns.
    pub key: Vec<usize>,
    /// Append or upsert.
    pub mode: Mode,
}

/// How the bytes of a column reach and leave the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Signed integers, and unsigned ones that fit in an i64.
    Int,
    /// UInt64.
    UInt64,
    /// Float32.
    Float32,
    /// Float64.
    Float64,
    /// Decimals, as exact text.
    Decimal,
    /// Strings.
    Text,
    /// Byte strings.
    Binary,
    /// Booleans.
    Boolean,
    /// Dates.
    Date,
    /// Timestamps; `zoned` when the Arrow type has a time zone (stored as UTC).
    Timestamp {
        /// The Arrow unit.
        unit: TimeUnit,
        /// Has a time zone.
        zoned: bool,
    },
    /// Times of day.
    Time(TimeUnit),
    /// Lists, structs and maps, as JSON text.
    Json,
}

impl Kind {
    /// The kind of `data_type`, or `None` when a JDBC table cannot store it.
    pub fn of(data_type: &DataType) -> Option<Kind> {
        use DataType::*;
        Some(match data_type {
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => Kind::Int,
            UInt64 => Kind::UInt64,
            Float32 => Kind::Float32,
            Float64 => Kind::Float64,
            Decimal32(_, s) | Decimal64(_, s) | Decimal128(_, s) | Decimal256(_, s) if *s >= 0 => {
                Kind::Decimal
            }
            Utf8 | LargeUtf8 | Utf8View => Kind::Text,
            Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => Kind::Binary,
            Boolean => Kind::Boolean,
            Date32 | Date64 => Kind::Date,
            Timestamp(unit, tz) => Kind::Timestamp {
                unit: *unit,
                zoned: tz.is_some(),
            },
            Time32(unit) | Time64(unit) => Kind::Time(*unit),
            List(_) | LargeList(_) | FixedSizeList(_, _) | Struct(_) | Map(_, _) => Kind::Json,
            _ => return None,
        })
    }
}

/// Digits after the second a unit keeps in PostgreSQL and MySQL (which stop at microseconds).
pub fn fraction_digits(unit: TimeUnit) -> u8 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond | TimeUnit::Nanosecond => 6,
    }
}

/// `name` quoted as an identifier.
pub fn quote(database: Database, name: &str) -> String {
    match database {
        Database::Mysql => format!("`{}`", name.replace('`', "``")),
        Database::Postgres | Database::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// A possibly schema-qualified table name (`sales.orders`) quoted part by part.
pub fn quote_table(database: Database, name: &str) -> String {
    name.split('.')
        .map(|part| quote(database, part))
        .collect::<Vec<_>>()
        .join(".")
}

fn column_list(database: Database, fields: &Fields) -> String {
    fields
        .iter()
        .map(|f| quote(database, f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The SQL type a column of `field`'s type is created with.
pub fn sql_type(database: Database, field: &Field, is_key: bool) -> Result<String> {
    let data_type = field.data_type();
    let unsupported = || {
        DataFusionError::Plan(format!(
            "column '{}' has the type {data_type}, which a JDBC table cannot store; JDBC tables \
             take integers, floats, decimals, strings, binaries, booleans, dates, timestamps, \
             times, lists, structs and maps",
            field.name()
        ))
    };
    let kind = Kind::of(data_type).ok_or_else(unsupported)?;
    if kind == Kind::Json {
        check_json_round_trip(field)?;
    }
    use DataType::*;
    let sql = match database {
        Database::Postgres => match data_type {
            Int8 | Int16 | UInt8 => "SMALLINT".to_string(),
            Int32 | UInt16 => "INTEGER".to_string(),
            Int64 | UInt32 => "BIGINT".to_string(),
            UInt64 => "NUMERIC(20)".to_string(),
            Float32 => "REAL".to_string(),
            Float64 => "DOUBLE PRECISION".to_string(),
            Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) => format!("NUMERIC({p}, {s})"),
            Decimal256(p, s) => format!("NUMERIC({p}, {s})"),
            Boolean => "BOOLEAN".to_string(),
            Date32 | Date64 => "DATE".to_string(),
            Timestamp(unit, tz) => format!(
                "TIMESTAMP({}) {}",
                fraction_digits(*unit),
                if tz.is_some() {
                    "WITH TIME ZONE"
                } else {
                    "WITHOUT TIME ZONE"
                }
            ),
            Time32(unit) | Time64(unit) => format!("TIME({})", fraction_digits(*unit)),
            _ => match kind {
                Kind::Text => "TEXT".to_string(),
                Kind::Binary => "BYTEA".to_string(),
                Kind::Json => "JSONB".to_string(),
                _ => return Err(unsupported()),
            },
        },
        Database::Mysql => match data_type {
            Int8 => "TINYINT".to_string(),
            Int16 => "SMALLINT".to_string(),
            Int32 => "INT".to_string(),
            Int64 => "BIGINT".to_string(),
            UInt8 => "TINYINT UNSIGNED".to_string(),
            UInt16 => "SMALLINT UNSIGNED".to_string(),
            UInt32 => "INT UNSIGNED".to_string(),
            UInt64 => "BIGINT UNSIGNED".to_string(),
            Float32 => "FLOAT".to_string(),
            Float64 => "DOUBLE".to_string(),
            Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => {
                if *p > 65 || *s > 30 {
                    return Err(DataFusionError::Plan(format!(
                        "column '{}' has the type {data_type}; MySQL and MariaDB decimals hold \
                         at most 65 digits, 30 of them after the point",
                        field.name()
                    )));
                }
                format!("DECIMAL({p}, {s})")
            }
            Boolean => "BOOLEAN".to_string(),
            Date32 | Date64 => "DATE".to_string(),
            Timestamp(unit, _) => with_fraction("DATETIME", *unit),
            Time32(unit) | Time64(unit) => with_fraction("TIME", *unit),
            _ => match (kind, is_key) {
                // MySQL cannot index TEXT and BLOB columns without a prefix length.
                (Kind::Text, true) => "VARCHAR(255)".to_string(),
                (Kind::Text, false) => "LONGTEXT".to_string(),
                (Kind::Binary, true) => "VARBINARY(255)".to_string(),
                (Kind::Binary, false) => "LONGBLOB".to_string(),
                (Kind::Json, _) => "JSON".to_string(),
                _ => return Err(unsupported()),
            },
        },
        Database::Sqlite => match kind {
            Kind::Int | Kind::UInt64 => "INTEGER",
            Kind::Float32 | Kind::Float64 => "REAL",
            Kind::Boolean => "BOOLEAN",
            Kind::Binary => "BLOB",
            // TEXT keeps decimals exact and dates as ISO 8601 text (NUMERIC affinity would not).
            Kind::Decimal
            | Kind::Text
            | Kind::Date
            | Kind::Timestamp { .. }
            | Kind::Time(_)
            | Kind::Json => "TEXT",
        }
        .to_string(),
    };
    Ok(sql)
}

fn with_fraction(base: &str, unit: TimeUnit) -> String {
    match fraction_digits(unit) {
        0 => base.to_string(),
        digits => format!("{base}({digits})"),
    }
}

/// Fails unless weir can both write a nested column as JSON and read it back.
fn check_json_round_trip(field: &Field) -> Result<()> {
    let schema = std::sync::Arc::new(Schema::new(vec![field.clone().with_name("v")]));
    arrow_json::ReaderBuilder::new(schema)
        .build_decoder()
        .map(|_| ())
        .map_err(|e| {
            DataFusionError::Plan(format!(
                "column '{}' has the type {}, which a JDBC table cannot read back from JSON: {e}",
                field.name(),
                field.data_type()
            ))
        })
}

/// `CREATE TABLE IF NOT EXISTS` for the target, with its key as PRIMARY KEY.
pub fn create_table(target: &Target) -> Result<String> {
    let db = target.database;
    let mut parts = vec![];
    for (i, field) in target.columns.iter().enumerate() {
        let is_key = target.key.contains(&i);
        let null = if field.is_nullable() && !is_key {
            ""
        } else {
            " NOT NULL"
        };
        parts.push(format!(
            "{} {}{null}",
            quote(db, field.name()),
            sql_type(db, field, is_key)?
        ));
    }
    if !target.key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", key_list(target)));
    }
    let suffix = if db == Database::Mysql {
        " DEFAULT CHARSET=utf8mb4"
    } else {
        ""
    };
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} ({}){suffix}",
        quote_table(db, &target.name),
        parts.join(", ")
    ))
}

fn key_list(target: &Target) -> String {
    target
        .key
        .iter()
        .map(|i| quote(target.database, target.columns[*i].name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The non-key columns.
fn value_columns(target: &Target) -> Vec<&Field> {
    target
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !target.key.contains(i))
        .map(|(_, f)| f.as_ref())
        .collect()
}

/// A statement that fails unless the table exists with every declared column.
pub fn probe(target: &Target) -> String {
    format!(
        "SELECT {} FROM {} WHERE 1 = 0",
        column_list(target.database, &target.columns),
        quote_table(target.database, &target.name)
    )
}

/// The `SELECT` a scan runs: `columns` (already projected) of the table, each as text the
/// decoder reads, at most `limit` rows.
pub fn select(
    database: Database,
    table: &str,
    columns: &Fields,
    limit: Option<usize>,
) -> Result<String> {
    let mut exprs = vec![];
    for field in columns {
        let column = quote(database, field.name());
        let kind = Kind::of(field.data_type()).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "column '{}' has the type {}, which a JDBC table cannot read",
                field.name(),
                field.data_type()
            ))
        })?;
        exprs.push(match (database, kind) {
            (Database::Postgres, Kind::Binary) => format!("encode({column}::bytea, 'hex')"),
            (Database::Postgres, Kind::Timestamp { zoned: true, .. }) => {
                format!("({column}::timestamptz AT TIME ZONE 'UTC')::text")
            }
            (Database::Postgres, Kind::Timestamp { zoned: false, .. }) => {
                format!("{column}::timestamp::text")
            }
            (Database::Postgres, _) => format!("{column}::text"),
            _ => column,
        });
    }
    // A scan that needs no columns (count(*)) still needs one per row.
    let list = if exprs.is_empty() {
        "1".to_string()
    } else {
        exprs.join(", ")
    };
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    Ok(format!(
        "SELECT {list} FROM {}{limit}",
        quote_table(database, table)
    ))
}

/// PostgreSQL: `COPY table (columns) FROM STDIN` in the text format.
pub fn copy_in(target: &Target, staged: bool) -> String {
    let db = target.database;
    if staged {
        format!(
            "COPY {} ({}, {}) FROM STDIN",
            quote(db, STAGE_TABLE),
            column_list(db, &target.columns),
            quote(db, ROW_NUMBER)
        )
    } else {
        format!(
            "COPY {} ({}) FROM STDIN",
            quote_table(db, &target.name),
            column_list(db, &target.columns)
        )
    }
}

/// PostgreSQL: the temporary staging table of an upsert, with the target's column types plus a
/// row number, emptied at each commit.
pub fn create_stage(target: &Target) -> String {
    let db = target.database;
    format!(
        "CREATE TEMPORARY TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS SELECT {}, 0::bigint AS {} FROM {} WITH NO DATA",
        quote(db, STAGE_TABLE),
        column_list(db, &target.columns),
        quote(db, ROW_NUMBER),
        quote_table(db, &target.name)
    )
}

/// PostgreSQL: moves the staged rows numbered `[from, to)` into the target, one row per key
/// (the last one staged), updating rows whose key exists.
pub fn upsert_from_stage(target: &Target, from: usize, to: usize) -> String {
    let db = target.database;
    let keys = key_list(target);
    format!(
        "INSERT INTO {} ({columns}) SELECT DISTINCT ON ({keys}) {columns} FROM {} \
         WHERE {row} >= {from} AND {row} < {to} ORDER BY {keys}, {row} DESC \
         ON CONFLICT ({keys}) {}",
        quote_table(db, &target.name),
        quote(db, STAGE_TABLE),
        on_conflict_update(target, "EXCLUDED"),
        columns = column_list(db, &target.columns),
        row = quote(db, ROW_NUMBER),
    )
}

/// `DO UPDATE SET c = <excluded>.c, …`, or `DO NOTHING` when every column is a key column.
fn on_conflict_update(target: &Target, excluded: &str) -> String {
    let db = target.database;
    let values = value_columns(target);
    if values.is_empty() {
        return "DO NOTHING".to_string();
    }
    let sets: Vec<String> = values
        .iter()
        .map(|f| {
            let c = quote(db, f.name());
            format!("{c} = {excluded}.{c}")
        })
        .collect();
    format!("DO UPDATE SET {}", sets.join(", "))
}

/// MySQL and SQLite: an `INSERT` of `rows` rows of placeholders (upserting in upsert mode).
pub fn insert_values(target: &Target, rows: usize) -> String {
    let db = target.database;
    let width = target.columns.len();
    let row = format!("({})", vec!["?"; width].join(", "));
    let values = vec![row; rows].join(", ");
    let insert = format!(
        "INSERT INTO {} ({}) VALUES {values}",
        quote_table(db, &target.name),
        column_list(db, &target.columns)
    );
    if target.mode == Mode::Append {
        return insert;
    }
    match db {
        Database::Mysql => {
            let values = value_columns(target);
            // A key column set to itself: the row stays as it is.
            let sets: Vec<String> = if values.is_empty() {
                let k = quote(db, target.columns[target.key[0]].name());
                vec![format!("{k} = {k}")]
            } else {
                values
                    .iter()
                    .map(|f| {
                        let c = quote(db, f.name());
                        format!("{c} = VALUES({c})")
                    })
                    .collect()
            };
            format!("{insert} ON DUPLICATE KEY UPDATE {}", sets.join(", "))
        }
        Database::Sqlite | Database::Postgres => format!(
            "{insert} ON CONFLICT ({}) {}",
            key_list(target),
            on_conflict_update(target, "excluded")
        ),
    }
}

/// The progress table: one row per committed batch of each streaming query.
pub fn create_progress_table(database: Database, name: &str) -> String {
    let table = quote_table(database, name);
    let (id, text, time) = match database {
        Database::Postgres => ("TEXT", "TEXT", "TIMESTAMP WITH TIME ZONE"),
        Database::Mysql => ("VARCHAR(64)", "LONGTEXT", "DATETIME(6)"),
        Database::Sqlite => ("TEXT", "TEXT", "TEXT"),
    };
    let suffix = if database == Database::Mysql {
        " DEFAULT CHARSET=utf8mb4"
    } else {
        ""
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (query_id {id} NOT NULL, batch_id BIGINT NOT NULL, \
         query_name {text} NOT NULL, table_name {text} NOT NULL, offsets {text} NOT NULL, \
         row_count BIGINT NOT NULL, committed_at {time} NOT NULL, \
         PRIMARY KEY (query_id, batch_id)){suffix}"
    )
}

/// Whether batch ($1) of query ($2) is recorded.
pub fn progress_lookup(database: Database, name: &str) -> String {
    let (a, b) = placeholders2(database);
    format!(
        "SELECT row_count FROM {} WHERE query_id = {a} AND batch_id = {b}",
        quote_table(database, name)
    )
}

/// Records a committed batch: query id, batch id, query name, table name, offsets, row count.
pub fn progress_insert(database: Database, name: &str) -> String {
    let (params, now) = match database {
        Database::Postgres => ("$1, $2, $3, $4, $5, $6", "now()"),
        Database::Mysql => ("?, ?, ?, ?, ?, ?", "UTC_TIMESTAMP(6)"),
        Database::Sqlite => (
            "?1, ?2, ?3, ?4, ?5, ?6",
            "strftime('%Y-%m-%d %H:%M:%f', 'now')",
        ),
    };
    format!(
        "INSERT INTO {} (query_id, batch_id, query_name, table_name, offsets, row_count, committed_at) \
         VALUES ({params}, {now})",
        quote_table(database, name)
    )
}

fn placeholders2(database: Database) -> (&'static str, &'static str) {
    match database {
        Database::Postgres => ("$1", "$2"),
        Database::Mysql => ("?", "?"),
        Database::Sqlite => ("?1", "?2"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn target(database: Database, mode: Mode, key: Vec<usize>) -> Target {
        Target {
            database,
            name: "shop.orders".to_string(),
            columns: Fields::from(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8View, true),
                Field::new("amount", DataType::Decimal128(12, 2), true),
            ]),
            key,
            mode,
        }
    }

    #[test]
    fn create_table_per_database() {
        assert_eq!(
            create_table(&target(Database::Postgres, Mode::Upsert, vec![0])).unwrap(),
            "CREATE TABLE IF NOT EXISTS \"shop\".\"orders\" (\"id\" BIGINT NOT NULL, \"name\" TEXT, \
             \"amount\" NUMERIC(12, 2), PRIMARY KEY (\"id\"))"
        );
        assert_eq!(
            create_table(&target(Database::Mysql, Mode::Upsert, vec![0, 1])).unwrap(),
            "CREATE TABLE IF NOT EXISTS `shop`.`orders` (`id` BIGINT NOT NULL, `name` VARCHAR(255) NOT NULL, \
             `amount` DECIMAL(12, 2), PRIMARY KEY (`id`, `name`)) DEFAULT CHARSET=utf8mb4"
        );
        assert_eq!(
            create_table(&target(Database::Sqlite, Mode::Append, vec![])).unwrap(),
            "CREATE TABLE IF NOT EXISTS \"shop\".\"orders\" (\"id\" INTEGER NOT NULL, \"name\" TEXT, \"amount\" TEXT)"
        );
    }

    #[test]
    fn upserts_per_database() {
        let pg = target(Database::Postgres, Mode::Upsert, vec![0]);
        assert_eq!(
            upsert_from_stage(&pg, 0, 10),
            "INSERT INTO \"shop\".\"orders\" (\"id\", \"name\", \"amount\") SELECT DISTINCT ON (\"id\") \
             \"id\", \"name\", \"amount\" FROM \"_weir_stage\" WHERE \"_weir_row\" >= 0 AND \"_weir_row\" < 10 \
             ORDER BY \"id\", \"_weir_row\" DESC ON CONFLICT (\"id\") DO UPDATE SET \
             \"name\" = EXCLUDED.\"name\", \"amount\" = EXCLUDED.\"amount\""
        );
        assert_eq!(
            copy_in(&pg, true),
            "COPY \"_weir_stage\" (\"id\", \"name\", \"amount\", \"_weir_row\") FROM STDIN"
        );
        assert_eq!(
            create_stage(&pg),
            "CREATE TEMPORARY TABLE IF NOT EXISTS \"_weir_stage\" ON COMMIT DELETE ROWS AS SELECT \
             \"id\", \"name\", \"amount\", 0::bigint AS \"_weir_row\" FROM \"shop\".\"orders\" WITH NO DATA"
        );
        assert_eq!(
            insert_values(&target(Database::Mysql, Mode::Upsert, vec![0]), 2),
            "INSERT INTO `shop`.`orders` (`id`, `name`, `amount`) VALUES (?, ?, ?), (?, ?, ?) \
             ON DUPLICATE KEY UPDATE `name` = VALUES(`name`), `amount` = VALUES(`amount`)"
        );
        assert_eq!(
            insert_values(&target(Database::Sqlite, Mode::Upsert, vec![0]), 1),
            "INSERT INTO \"shop\".\"orders\" (\"id\", \"name\", \"amount\") VALUES (?, ?, ?) \
             ON CONFLICT (\"id\") DO UPDATE SET \"name\" = excluded.\"name\", \"amount\" = excluded.\"amount\""
        );
        let all_key = target(Database::Sqlite, Mode::Upsert, vec![0, 1, 2]);
        assert!(insert_values(&all_key, 1).ends_with("DO NOTHING"));
        let all_key = target(Database::Mysql, Mode::Upsert, vec![0, 1, 2]);
        assert!(insert_values(&all_key, 1).ends_with("ON DUPLICATE KEY UPDATE `id` = `id`"));
        assert_eq!(
            insert_values(&target(Database::Mysql, Mode::Append, vec![0]), 1),
            "INSERT INTO `shop`.`orders` (`id`, `name`, `amount`) VALUES (?, ?, ?)"
        );
    }

    #[test]
    fn quoting_escapes_quotes() {
        assert_eq!(quote(Database::Postgres, "a\"b"), "\"a\"\"b\"");
        assert_eq!(quote(Database::Mysql, "a`b"), "`a``b`");
        assert_eq!(quote_table(Database::Sqlite, "t"), "\"t\"");
    }

    #[test]
    fn selects_read_text_the_decoder_understands() {
        let columns = Fields::from(vec![
            Field::new("b", DataType::Binary, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
                true,
            ),
            Field::new("n", DataType::Int32, true),
        ]);
        assert_eq!(
            select(Database::Postgres, "t", &columns, Some(5)).unwrap(),
            "SELECT encode(\"b\"::bytea, 'hex'), (\"ts\"::timestamptz AT TIME ZONE 'UTC')::text, \"n\"::text FROM \"t\" LIMIT 5"
        );
        assert_eq!(
            select(Database::Mysql, "t", &columns, None).unwrap(),
            "SELECT `b`, `ts`, `n` FROM `t`"
        );
        assert_eq!(
            select(Database::Sqlite, "t", &Fields::empty(), None).unwrap(),
            "SELECT 1 FROM \"t\""
        );
    }

    #[test]
    fn progress_statements() {
        assert_eq!(
            progress_lookup(Database::Postgres, "_weir_progress"),
            "SELECT row_count FROM \"_weir_progress\" WHERE query_id = $1 AND batch_id = $2"
        );
        assert!(
            create_progress_table(Database::Mysql, "p").contains("query_id VARCHAR(64) NOT NULL")
        );
        assert!(progress_insert(Database::Sqlite, "p").contains("?6, strftime("));
    }

    #[test]
    fn type_mapping() {
        let tz = Some(Arc::from("Europe/Paris"));
        let cases: Vec<(DataType, [&str; 3])> = vec![
            (DataType::Int8, ["SMALLINT", "TINYINT", "INTEGER"]),
            (DataType::UInt32, ["BIGINT", "INT UNSIGNED", "INTEGER"]),
            (
                DataType::UInt64,
                ["NUMERIC(20)", "BIGINT UNSIGNED", "INTEGER"],
            ),
            (DataType::Float32, ["REAL", "FLOAT", "REAL"]),
            (DataType::Float64, ["DOUBLE PRECISION", "DOUBLE", "REAL"]),
            (
                DataType::Decimal256(50, 4),
                ["NUMERIC(50, 4)", "DECIMAL(50, 4)", "TEXT"],
            ),
            (DataType::LargeUtf8, ["TEXT", "LONGTEXT", "TEXT"]),
            (DataType::BinaryView, ["BYTEA", "LONGBLOB", "BLOB"]),
            (DataType::Boolean, ["BOOLEAN", "BOOLEAN", "BOOLEAN"]),
            (DataType::Date32, ["DATE", "DATE", "TEXT"]),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                ["TIMESTAMP(6) WITHOUT TIME ZONE", "DATETIME(6)", "TEXT"],
            ),
            (
                DataType::Timestamp(TimeUnit::Millisecond, tz),
                ["TIMESTAMP(3) WITH TIME ZONE", "DATETIME(3)", "TEXT"],
            ),
            (
                DataType::Time32(TimeUnit::Second),
                ["TIME(0)", "TIME", "TEXT"],
            ),
            (
                DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
                ["JSONB", "JSON", "TEXT"],
            ),
        ];
        for (data_type, expected) in cases {
            let field = Field::new("c", data_type.clone(), true);
            for (db, want) in [Database::Postgres, Database::Mysql, Database::Sqlite]
                .into_iter()
                .zip(expected)
            {
                assert_eq!(
                    sql_type(db, &field, false).unwrap(),
                    want,
                    "{data_type} on {db:?}"
                );
            }
        }
        let e = sql_type(
            Database::Postgres,
            &Field::new("d", DataType::Duration(TimeUnit::Second), true),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("column 'd'") && e.contains("Duration"), "{e}");
        let e = sql_type(
            Database::Mysql,
            &Field::new("big", DataType::Decimal256(70, 2), true),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("column 'big'") && e.contains("65 digits"), "{e}");
    }
}
