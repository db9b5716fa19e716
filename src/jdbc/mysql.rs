//! MySQL and MariaDB through mysql_async: rows go in as multi-row `INSERT … VALUES (…), (…)`
//! prepared statements, each sized under the server's `max_allowed_packet` and the protocol's
//! 65,535 placeholders (`ON DUPLICATE KEY UPDATE` in upsert mode, where a later row of the same
//! key updates an earlier one: the last row wins). A refused statement names its row when the
//! server says "at row N"; otherwise the statement's rows are bisected to find it. Scans read
//! the text protocol.

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::error::{DataFusionError, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Params, Value};
use regex::Regex;
use tokio::sync::mpsc;

use super::backend::{Bisection, CONNECT_TIMEOUT, Connection, DbError, ProgressRow};
use super::decode::RowDecoder;
use super::dialect::{self, Target};
use super::encode::{Cell, Cells, encode};
use super::location::{Database, Location};
use super::rows::Rows;

/// The most placeholders one prepared statement may have.
const MAX_PLACEHOLDERS: usize = 65_535;

/// A MySQL or MariaDB connection.
pub struct Mysql {
    conn: Conn,
    location: Location,
    /// The most bytes of values one INSERT carries (half the server's max_allowed_packet).
    statement_bytes: usize,
}

impl std::fmt::Debug for Mysql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mysql")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

async fn open(location: &Location) -> Result<Conn, DbError> {
    let opts = Opts::from_url(location.connect_string())
        .map_err(|e| DbError::Other(location.scrub(format!("the URL is not a MySQL URL: {e}"))))?;
    let mut conn = Conn::new(opts).await.map_err(|e| classify(location, e))?;
    // UTC for DATETIME text, and strict mode so that out-of-range values are refused, not cut.
    conn.query_drop(
        "SET time_zone = '+00:00', \
         sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')",
    )
    .await
    .map_err(|e| classify(location, e))?;
    Ok(conn)
}

/// Opens a connection.
pub async fn connect(location: &Location) -> Result<Mysql, DbError> {
    let mut conn = open(location).await?;
    let max_packet: Option<u64> = conn
        .query_first("SELECT @@max_allowed_packet")
        .await
        .map_err(|e| classify(location, e))?;
    Ok(Mysql {
        conn,
        location: location.clone(),
        statement_bytes: (max_packet.unwrap_or(4 << 20) / 2).max(64 << 10) as usize,
    })
}

static AT_ROW: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\bat row (\d+)").ok());

/// MariaDB's code for a killed connection, and deadlock, lock wait timeout, shutdown,
/// interrupted query: retried on a new connection.
const RETRIED: [u16; 5] = [1927, 1213, 1205, 1053, 1317];

/// Codes that refuse a row's value outside SQLSTATE classes 22 and 23 (incorrect value, data
/// truncated, CHECK constraint, invalid JSON).
const REFUSED: [u16; 5] = [1366, 1265, 3819, 3140, 4025];

/// Sorts a mysql_async error: server errors of SQLSTATE class 22 or 23 (and a few others)
/// refuse a row; I/O and driver errors, a killed connection, deadlocks and lock timeouts are
/// retried.
fn classify(location: &Location, error: mysql_async::Error) -> DbError {
    match error {
        mysql_async::Error::Server(e) => {
            let message = location.scrub(format!("{} [{} {}]", e.message, e.code, e.state));
            if RETRIED.contains(&e.code) {
                DbError::Connection(message)
            } else if e.state.starts_with("22")
                || e.state.starts_with("23")
                || REFUSED.contains(&e.code)
            {
                let row = AT_ROW
                    .as_ref()
                    .and_then(|r| r.captures(&e.message))
                    .and_then(|c| c[1].parse::<usize>().ok())
                    .and_then(|n| n.checked_sub(1));
                DbError::Rejected { message, row }
            } else {
                DbError::Other(message)
            }
        }
        mysql_async::Error::Url(e) => DbError::Other(location.scrub(e)),
        other => DbError::Connection(location.scrub(other)),
    }
}

/// A row's values as the server takes them; a value it cannot store is refused here.
fn push_values(values: &mut Vec<Value>, columns: &[Cells], row: usize) -> Result<usize, String> {
    let mut bytes = 0;
    for column in columns {
        let value = match column.get(row) {
            Cell::Null => Value::NULL,
            Cell::Int(v) => Value::Int(v),
            Cell::UInt(v) => Value::UInt(v),
            Cell::F32(v) if v.is_finite() => Value::Float(v),
            Cell::F64(v) if v.is_finite() => Value::Double(v),
            Cell::F32(_) | Cell::F64(_) => {
                return Err(
                    "MySQL and MariaDB cannot store NaN or infinite floating-point values"
                        .to_string(),
                );
            }
            Cell::Bool(v) => Value::Int(i64::from(v)),
            Cell::Text(text) => {
                bytes += text.len();
                Value::Bytes(text.as_bytes().to_vec())
            }
            Cell::Bytes(b) => {
                bytes += b.len();
                Value::Bytes(b.to_vec())
            }
        };
        bytes += 9;
        values.push(value);
    }
    Ok(bytes)
}

impl Mysql {
    fn fail(&self, error: mysql_async::Error) -> DbError {
        classify(&self.location, error)
    }

    /// Inserts the rows `first..first + count` whose values are `values`, as one statement.
    async fn insert_rows(
        &mut self,
        target: &Target,
        values: &[Value],
        first: usize,
    ) -> Result<(), DbError> {
        let width = target.columns.len();
        let count = values.len() / width;
        let sql = dialect::insert_values(target, count);
        let result = self
            .conn
            .exec_drop(sql, Params::Positional(values.to_vec()))
            .await;
        match result.map_err(|e| self.fail(e)) {
            Err(DbError::Rejected { message, row }) => Err(DbError::Rejected {
                message,
                row: row.filter(|r| *r < count).map(|r| first + r),
            }),
            other => other,
        }
    }

    /// Inserts one statement's rows; if refused without a row number, bisects them to find it.
    async fn flush(
        &mut self,
        target: &Target,
        values: &[Value],
        first: usize,
    ) -> Result<(), DbError> {
        let width = target.columns.len();
        let mut message = match self.insert_rows(target, values, first).await {
            Err(DbError::Rejected { message, row: None }) => message,
            other => return other,
        };
        // A refused statement left nothing behind (statements are atomic in InnoDB).
        let mut search = Bisection::new(0..values.len() / width);
        while let Some(range) = search.next() {
            let slice = &values[range.start * width..range.end * width];
            let taken = match self.insert_rows(target, slice, first + range.start).await {
                Ok(()) => true,
                Err(DbError::Rejected {
                    message: refusal, ..
                }) => {
                    message = refusal;
                    false
                }
                Err(other) => return Err(other),
            };
            search.written(taken);
        }
        Err(DbError::Rejected {
            message,
            row: search.found().map(|r| first + r),
        })
    }
}

#[async_trait]
impl Connection for Mysql {
    async fn execute(&mut self, sql: &str) -> Result<(), DbError> {
        let result = self.conn.query_drop(sql).await;
        result.map_err(|e| self.fail(e))
    }

    async fn begin(&mut self) -> Result<(), DbError> {
        self.execute("START TRANSACTION").await
    }

    async fn is_recorded(
        &mut self,
        sql: &str,
        query_id: &str,
        batch_id: i64,
    ) -> Result<bool, DbError> {
        let found: Result<Option<i64>, _> = self
            .conn
            .exec_first(sql, (query_id.to_string(), batch_id))
            .await;
        Ok(found.map_err(|e| self.fail(e))?.is_some())
    }

    async fn record(&mut self, sql: &str, row: &ProgressRow) -> Result<(), DbError> {
        let params = Params::Positional(vec![
            Value::from(row.query_id.as_str()),
            Value::Int(row.batch_id),
            Value::from(row.query_name.as_str()),
            Value::from(row.table_name.as_str()),
            Value::from(row.offsets.as_str()),
            Value::Int(row.row_count),
        ]);
        let result = self.conn.exec_drop(sql, params).await;
        result.map_err(|e| self.fail(e))
    }

    async fn insert(&mut self, target: &Arc<Target>, rows: &Arc<Rows>) -> Result<(), DbError> {
        let width = target.columns.len();
        let rows_per_statement = (MAX_PLACEHOLDERS / width).max(1);
        let mut values: Vec<Value> = Vec::new();
        let mut bytes = 0;
        let mut first = 0;
        let mut next = 0;
        for batch in rows.batches() {
            let columns = encode(batch, Database::Mysql).map_err(|e| DbError::Rejected {
                message: e.message,
                row: Some(next + e.row),
            })?;
            for row in 0..batch.num_rows() {
                bytes += push_values(&mut values, &columns, row).map_err(|message| {
                    DbError::Rejected {
                        message,
                        row: Some(next),
                    }
                })?;
                next += 1;
                if next - first >= rows_per_statement || bytes >= self.statement_bytes {
                    self.flush(target, &values, first).await?;
                    values.clear();
                    bytes = 0;
                    first = next;
                }
            }
        }
        if !values.is_empty() {
            self.flush(target, &values, first).await?;
        }
        Ok(())
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
    let failed =
        |e: DbError| DataFusionError::Execution(format!("cannot read from {location}: {e}"));
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, open(location))
        .await
        .map_err(|_| {
            failed(DbError::Connection(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            )))
        })?
        .map_err(failed)?;
    let columns = decoder.schema().fields().len();
    {
        let mut result = conn
            .query_iter(sql)
            .await
            .map_err(|e| failed(classify(location, e)))?;
        while let Some(row) = result
            .next()
            .await
            .map_err(|e| failed(classify(location, e)))?
        {
            for column in 0..columns {
                match row.as_ref(column) {
                    None | Some(Value::NULL) => decoder.push(column, None)?,
                    Some(Value::Bytes(bytes)) => decoder.push(column, Some(bytes))?,
                    // The text protocol sends every value as bytes; other forms as their text.
                    Some(other) => {
                        let text = other.as_sql(true);
                        decoder.push(column, Some(text.trim_matches('\'').as_bytes()))?
                    }
                }
            }
            decoder.end_row();
            if decoder.rows() >= batch_size && batches.send(decoder.finish()).await.is_err() {
                return Ok(());
            }
        }
    }
    if decoder.rows() > 0 {
        let _ = batches.send(decoder.finish()).await;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_sorted() {
        let location = Location::parse("mysql://root:pw@127.0.0.1:3306/test").unwrap();
        let server = |code, state: &str, message: &str| {
            classify(
                &location,
                mysql_async::Error::Server(mysql_async::ServerError {
                    code,
                    state: state.to_string(),
                    message: message.to_string(),
                }),
            )
        };
        assert_eq!(
            server(1264, "22003", "Out of range value for column 'n' at row 3"),
            DbError::Rejected {
                message: "Out of range value for column 'n' at row 3 [1264 22003]".to_string(),
                row: Some(2)
            }
        );
        assert!(matches!(
            server(1048, "23000", "Column 'n' cannot be null"),
            DbError::Rejected { row: None, .. }
        ));
        assert!(matches!(
            server(1927, "70100", "Connection was killed"),
            DbError::Connection(_)
        ));
        assert!(matches!(
            server(1146, "42S02", "Table 'test.nope' doesn't exist"),
            DbError::Other(_)
        ));
    }
}
