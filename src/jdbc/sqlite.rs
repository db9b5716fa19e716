//! SQLite through rusqlite: one prepared `INSERT` (with `ON CONFLICT … DO UPDATE` in upsert
//! mode) run for each row inside one `BEGIN IMMEDIATE` transaction, so a refused row is known
//! exactly. SQLite calls block: each operation runs on tokio's blocking pool, holding the
//! connection's lock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::error::{DataFusionError, Result};
use rusqlite::ErrorCode;
use rusqlite::types::{ToSqlOutput, ValueRef};
use tokio::sync::mpsc;

use super::backend::{Connection, DbError, ProgressRow};
use super::decode::RowDecoder;
use super::dialect::{self, Target};
use super::encode::{Cell, encode};
use super::location::{Database, Location};
use super::rows::Rows;

/// How long a statement waits for another connection's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A SQLite connection.
pub struct Sqlite {
    conn: Arc<Mutex<rusqlite::Connection>>,
    location: Location,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn open(location: &Location) -> Result<rusqlite::Connection, DbError> {
    let conn = rusqlite::Connection::open(location.connect_string())
        .map_err(|e| classify(location, &e, None))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(location, &e, None))?;
    Ok(conn)
}

/// Opens the database file (creating it if missing).
pub async fn connect(location: &Location) -> Result<Sqlite, DbError> {
    let opening = location.clone();
    let conn = tokio::task::spawn_blocking(move || open(&opening))
        .await
        .map_err(|e| DbError::Other(format!("opening the database stopped: {e}")))??;
    Ok(Sqlite {
        conn: Arc::new(Mutex::new(conn)),
        location: location.clone(),
    })
}

/// Sorts a rusqlite error: constraint violations, type mismatches and too-big values refuse a
/// row; a busy or locked database is retried.
fn classify(location: &Location, error: &rusqlite::Error, row: Option<usize>) -> DbError {
    let message = location.scrub(error);
    match error.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig) => {
            DbError::Rejected { message, row }
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbError::Connection(message),
        _ => DbError::Other(message),
    }
}

impl Sqlite {
    /// Runs `work` with the connection on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut rusqlite::Connection, &Location) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let conn = Arc::clone(&self.conn);
        let location = self.location.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| {
                DbError::Other("the SQLite connection's lock is poisoned".to_string())
            })?;
            work(&mut conn, &location)
        })
        .await
        .map_err(|e| DbError::Other(format!("a SQLite call stopped: {e}")))?
    }
}

/// A row's value as SQLite stores it; what SQLite cannot store is refused here.
fn value(cell: Cell<'_>) -> Result<ToSqlOutput<'_>, &'static str> {
    Ok(ToSqlOutput::Borrowed(match cell {
        Cell::Null => ValueRef::Null,
        Cell::Int(v) => ValueRef::Integer(v),
        Cell::UInt(v) => ValueRef::Integer(
            i64::try_from(v).map_err(|_| "SQLite integers stop at 9223372036854775807")?,
        ),
        Cell::F32(v) if v.is_nan() => return Err("SQLite stores NaN as NULL"),
        // The shortest decimal of the f32, so that SQLite holds 0.1 rather than 0.100000001…
        Cell::F32(v) => ValueRef::Real(v.to_string().parse().unwrap_or(f64::from(v))),
        Cell::F64(v) if v.is_nan() => return Err("SQLite stores NaN as NULL"),
        Cell::F64(v) => ValueRef::Real(v),
        Cell::Bool(v) => ValueRef::Integer(i64::from(v)),
        Cell::Text(text) => ValueRef::Text(text.as_bytes()),
        Cell::Bytes(bytes) => ValueRef::Blob(bytes),
    }))
}

fn insert_all(
    conn: &mut rusqlite::Connection,
    location: &Location,
    target: &Target,
    rows: &Rows,
) -> Result<(), DbError> {
    let mut statement = conn
        .prepare_cached(&dialect::insert_values(target, 1))
        .map_err(|e| classify(location, &e, None))?;
    let mut next = 0;
    for batch in rows.batches() {
        let columns = encode(batch, Database::Sqlite).map_err(|e| DbError::Rejected {
            message: e.message,
            row: Some(next + e.row),
        })?;
        for row in 0..batch.num_rows() {
            for (i, column) in columns.iter().enumerate() {
                let bound = value(column.get(row)).map_err(|message| DbError::Rejected {
                    message: message.to_string(),
                    row: Some(next),
                })?;
                statement
                    .raw_bind_parameter(i + 1, bound)
                    .map_err(|e| classify(location, &e, Some(next)))?;
            }
            statement
                .raw_execute()
                .map_err(|e| classify(location, &e, Some(next)))?;
            next += 1;
        }
    }
    Ok(())
}

#[async_trait]
impl Connection for Sqlite {
    async fn execute(&mut self, sql: &str) -> Result<(), DbError> {
        let sql = sql.to_string();
        self.run(move |conn, location| {
            conn.execute_batch(&sql)
                .map_err(|e| classify(location, &e, None))
        })
        .await
    }

    async fn begin(&mut self) -> Result<(), DbError> {
        self.execute("BEGIN IMMEDIATE").await
    }

    async fn rollback(&mut self) -> Result<(), DbError> {
        self.run(|conn, location| {
            if conn.is_autocommit() {
                return Ok(());
            }
            conn.execute_batch("ROLLBACK")
                .map_err(|e| classify(location, &e, None))
        })
        .await
    }

    async fn is_recorded(
        &mut self,
        sql: &str,
        query_id: &str,
        batch_id: i64,
    ) -> Result<bool, DbError> {
        let (sql, query_id) = (sql.to_string(), query_id.to_string());
        self.run(move |conn, location| {
            let mut statement = conn
                .prepare_cached(&sql)
                .map_err(|e| classify(location, &e, None))?;
            statement
                .exists(rusqlite::params![query_id, batch_id])
                .map_err(|e| classify(location, &e, None))
        })
        .await
    }

    async fn record(&mut self, sql: &str, row: &ProgressRow) -> Result<(), DbError> {
        let (sql, row) = (sql.to_string(), row.clone());
        self.run(move |conn, location| {
            conn.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        row.query_id,
                        row.batch_id,
                        row.query_name,
                        row.table_name,
                        row.offsets,
                        row.row_count
                    ])
                })
                .map(|_| ())
                .map_err(|e| classify(location, &e, None))
        })
        .await
    }

    async fn insert(&mut self, target: &Arc<Target>, rows: &Arc<Rows>) -> Result<(), DbError> {
        let (target, rows) = (Arc::clone(target), Arc::clone(rows));
        self.run(move |conn, location| insert_all(conn, location, &target, &rows))
            .await
    }
}

/// Runs a scan on a connection of its own.
pub async fn fetch(
    location: &Location,
    sql: &str,
    mut decoder: RowDecoder,
    batch_size: usize,
    batches: mpsc::Sender<Result<RecordBatch>>,
) -> Result<()> {
    let (location, sql) = (location.clone(), sql.to_string());
    let reading = tokio::task::spawn_blocking(move || -> Result<()> {
        let failed =
            |e: DbError| DataFusionError::Execution(format!("cannot read from {location}: {e}"));
        let conn = open(&location).map_err(failed)?;
        let mut statement = conn
            .prepare(&sql)
            .map_err(|e| failed(classify(&location, &e, None)))?;
        let columns = decoder.schema().fields().len();
        let mut rows = statement
            .query([])
            .map_err(|e| failed(classify(&location, &e, None)))?;
        let mut text = String::new();
        while let Some(row) = rows
            .next()
            .map_err(|e| failed(classify(&location, &e, None)))?
        {
            for column in 0..columns {
                let value = row
                    .get_ref(column)
                    .map_err(|e| failed(classify(&location, &e, None)))?;
                text.clear();
                let bytes: Option<&[u8]> = match value {
                    ValueRef::Null => None,
                    ValueRef::Integer(v) => {
                        text.push_str(&v.to_string());
                        Some(text.as_bytes())
                    }
                    ValueRef::Real(v) => {
                        text.push_str(&format!("{v:?}"));
                        Some(text.as_bytes())
                    }
                    ValueRef::Text(t) | ValueRef::Blob(t) => Some(t),
                };
                decoder.push(column, bytes)?;
            }
            decoder.end_row();
            if decoder.rows() >= batch_size && batches.blocking_send(decoder.finish()).is_err() {
                return Ok(());
            }
        }
        if decoder.rows() > 0 {
            let _ = batches.blocking_send(decoder.finish());
        }
        Ok(())
    });
    reading
        .await
        .map_err(|e| DataFusionError::Execution(format!("reading SQLite stopped: {e}")))?
}
