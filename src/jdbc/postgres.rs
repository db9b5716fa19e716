//! PostgreSQL through tokio-postgres: rows go in with `COPY … FROM STDIN` in the text format,
//! built straight from the Arrow columns (one COPY per write, so a refused row is named by
//! the line number PostgreSQL reports); upserts COPY into a temporary staging table first and
//! move the last row of each key with `INSERT … SELECT DISTINCT ON … ON CONFLICT DO UPDATE`.
//! Scans read text through the simple query protocol.
//!
//! The text format rather than binary COPY: every type weir writes has an exact, documented
//! text form (numeric, timestamptz, jsonb, bytea's `\x…`), the same strings MySQL and SQLite
//! are given, and PostgreSQL converts them into whatever types an existing table has; binary
//! COPY would need weir to produce each column type's wire format, exactly matching the table.

use std::io::Cursor;
use std::pin::pin;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::error::{DataFusionError, Result};
use futures::{SinkExt, StreamExt};
use log::debug;
use regex::Regex;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

use super::backend::{Bisection, CONNECT_TIMEOUT, Connection, DbError, ProgressRow};
use super::decode::RowDecoder;
use super::dialect::{self, Target};
use super::encode::{Cell, encode};
use super::location::{Database, Location};
use super::options::Mode;
use super::rows::Rows;

/// The `application_name` weir's connections carry unless the URL sets one.
pub const APPLICATION_NAME: &str = "weir";

/// How many bytes of COPY data go to the server at a time.
const COPY_CHUNK: usize = 1 << 20;

/// A PostgreSQL connection.
pub struct Postgres {
    client: Client,
    location: Location,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

async fn open(location: &Location) -> Result<Client, DbError> {
    let mut config: Config = location.connect_string().parse().map_err(|e| {
        DbError::Other(location.scrub(format!("the URL is not a PostgreSQL URL: {e}")))
    })?;
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| classify(location, &e))?;
    let shown = location.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!("PostgreSQL connection to {shown} ended: {e}");
        }
    });
    // Text out of and into the session is read as UTC, ISO dates and exact floats.
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3",
        )
        .await
        .map_err(|e| classify(location, &e))?;
    Ok(client)
}

/// Opens a connection.
pub async fn connect(location: &Location) -> Result<Postgres, DbError> {
    Ok(Postgres {
        client: open(location).await?,
        location: location.clone(),
    })
}

static LINE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\bline (\d+)").ok());

/// Sorts a tokio-postgres error: SQLSTATE classes 22 (data) and 23 (integrity) refuse a row;
/// 08 (connection), 57P0x (the server ends the session), 40001 and 40P01 (serialization,
/// deadlock) and errors without a SQLSTATE (I/O, closed) are retried.
fn classify(location: &Location, error: &tokio_postgres::Error) -> DbError {
    let Some(db) = error.as_db_error() else {
        let message = if error.is_closed() {
            "the connection is closed".to_string()
        } else {
            location.scrub(error)
        };
        return DbError::Connection(message);
    };
    let code = db.code().code();
    let mut message = db.message().to_string();
    if let Some(detail) = db.detail() {
        message.push_str(&format!(" ({detail})"));
    }
    let message = location.scrub(format!("{message} [SQLSTATE {code}]"));
    if code.starts_with("08") || ["57P01", "57P02", "57P03", "40001", "40P01"].contains(&code) {
        DbError::Connection(message)
    } else if code.starts_with("22") || code.starts_with("23") {
        // COPY's context names the input line: line N is row N - 1.
        let row = db
            .where_()
            .and_then(|w| LINE.as_ref()?.captures(w))
            .and_then(|c| c[1].parse::<usize>().ok())
            .and_then(|line| line.checked_sub(1));
        DbError::Rejected { message, row }
    } else {
        DbError::Other(message)
    }
}

impl Postgres {
    fn fail(&self, error: &tokio_postgres::Error) -> DbError {
        classify(&self.location, error)
    }

    /// COPYs every row into the target, or into the staging table with row numbers.
    async fn copy(&self, target: &Target, rows: &Rows, staged: bool) -> Result<(), DbError> {
        let sink = self
            .client
            .copy_in::<_, Cursor<Vec<u8>>>(&dialect::copy_in(target, staged))
            .await
            .map_err(|e| self.fail(&e))?;
        let mut sink = pin!(sink);
        let mut buffer = Vec::with_capacity(COPY_CHUNK + 4096);
        let mut first_row = 0;
        for batch in rows.batches() {
            write_batch(&mut buffer, batch, first_row, staged)?;
            first_row += batch.num_rows();
            if buffer.len() >= COPY_CHUNK {
                let chunk = std::mem::replace(&mut buffer, Vec::with_capacity(COPY_CHUNK + 4096));
                sink.send(Cursor::new(chunk))
                    .await
                    .map_err(|e| self.fail(&e))?;
            }
        }
        if !buffer.is_empty() {
            sink.send(Cursor::new(buffer))
                .await
                .map_err(|e| self.fail(&e))?;
        }
        sink.as_mut().finish().await.map_err(|e| self.fail(&e))?;
        Ok(())
    }

    /// Moves staged rows `range` into the target inside a savepoint: `Err(message)` (and
    /// nothing of them kept) if the database refused them.
    async fn upsert_range(
        &mut self,
        target: &Target,
        range: std::ops::Range<usize>,
    ) -> Result<Result<(), String>, DbError> {
        self.execute("SAVEPOINT weir_rows").await?;
        match self
            .execute(&dialect::upsert_from_stage(target, range.start, range.end))
            .await
        {
            Ok(()) => {
                self.execute("RELEASE SAVEPOINT weir_rows").await?;
                Ok(Ok(()))
            }
            Err(DbError::Rejected { message, .. }) => {
                self.execute("ROLLBACK TO SAVEPOINT weir_rows").await?;
                Ok(Err(message))
            }
            Err(other) => Err(other),
        }
    }
}

/// Appends a record batch's rows to `out` in COPY's text format; a staged row ends with its
/// number within the write.
fn write_batch(
    out: &mut Vec<u8>,
    batch: &RecordBatch,
    first_row: usize,
    staged: bool,
) -> Result<(), DbError> {
    let columns = encode(batch, Database::Postgres).map_err(|e| DbError::Rejected {
        message: e.message,
        row: Some(first_row + e.row),
    })?;
    for row in 0..batch.num_rows() {
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            write_cell(out, column.get(row));
        }
        if staged {
            out.push(b'\t');
            out.extend_from_slice((first_row + row).to_string().as_bytes());
        }
        out.push(b'\n');
    }
    Ok(())
}

/// One value in COPY's text format: `\N` for NULL; backslash, tab, newline and carriage
/// return escaped; bytea as `\\x` and hex digits.
fn write_cell(out: &mut Vec<u8>, cell: Cell<'_>) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = match cell {
        Cell::Null => {
            out.extend_from_slice(b"\\N");
            Ok(())
        }
        Cell::Int(v) => write!(out, "{v}"),
        Cell::UInt(v) => write!(out, "{v}"),
        Cell::F32(v) => write_float(out, f64::from(v), format!("{v:?}")),
        Cell::F64(v) => write_float(out, v, format!("{v:?}")),
        Cell::Bool(v) => {
            out.push(if v { b't' } else { b'f' });
            Ok(())
        }
        Cell::Text(text) => {
            escape(out, text.as_bytes());
            Ok(())
        }
        Cell::Bytes(bytes) => {
            out.extend_from_slice(b"\\\\x");
            for byte in bytes {
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            Ok(())
        }
    };
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_float(out: &mut Vec<u8>, value: f64, finite: String) -> std::io::Result<()> {
    let text = if value.is_nan() {
        "NaN"
    } else if value == f64::INFINITY {
        "Infinity"
    } else if value == f64::NEG_INFINITY {
        "-Infinity"
    } else {
        finite.as_str()
    };
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn escape(out: &mut Vec<u8>, text: &[u8]) {
    if !text
        .iter()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(text);
        return;
    }
    for &byte in text {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
}

#[async_trait]
impl Connection for Postgres {
    async fn execute(&mut self, sql: &str) -> Result<(), DbError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| self.fail(&e))
    }

    async fn begin(&mut self) -> Result<(), DbError> {
        self.execute("BEGIN").await
    }

    async fn is_recorded(
        &mut self,
        sql: &str,
        query_id: &str,
        batch_id: i64,
    ) -> Result<bool, DbError> {
        let found = self
            .client
            .query_opt(sql, &[&query_id, &batch_id])
            .await
            .map_err(|e| self.fail(&e))?;
        Ok(found.is_some())
    }

    async fn record(&mut self, sql: &str, row: &ProgressRow) -> Result<(), DbError> {
        self.client
            .execute(
                sql,
                &[
                    &row.query_id,
                    &row.batch_id,
                    &row.query_name,
                    &row.table_name,
                    &row.offsets,
                    &row.row_count,
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| self.fail(&e))
    }

    async fn insert(&mut self, target: &Arc<Target>, rows: &Arc<Rows>) -> Result<(), DbError> {
        if rows.is_empty() {
            return Ok(());
        }
        if target.mode == Mode::Append {
            return self.copy(target, rows, false).await;
        }
        self.execute(&dialect::create_stage(target)).await?;
        self.copy(target, rows, true).await?;
        let Err(mut message) = self.upsert_range(target, 0..rows.len()).await? else {
            return Ok(());
        };
        // Refused: find the row, for the message; the last refusal is that row's.
        let mut search = Bisection::new(0..rows.len());
        while let Some(range) = search.next() {
            let result = self.upsert_range(target, range).await?;
            if let Err(refusal) = &result {
                message = refusal.clone();
            }
            search.written(result.is_ok());
        }
        let row = search.found();
        Err(DbError::Rejected { message, row })
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
    let client = tokio::time::timeout(CONNECT_TIMEOUT, open(location))
        .await
        .map_err(|_| {
            failed(DbError::Connection(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            )))
        })?
        .map_err(failed)?;
    let binary: Vec<bool> = decoder
        .schema()
        .fields()
        .iter()
        .map(|f| dialect::Kind::of(f.data_type()) == Some(dialect::Kind::Binary))
        .collect();
    let stream = client
        .simple_query_raw(sql)
        .await
        .map_err(|e| failed(classify(location, &e)))?;
    let mut stream = pin!(stream);
    while let Some(message) = stream.next().await {
        let SimpleQueryMessage::Row(row) = message.map_err(|e| failed(classify(location, &e)))?
        else {
            continue;
        };
        for (column, is_binary) in binary.iter().enumerate() {
            let text = row
                .try_get(column)
                .map_err(|e| failed(classify(location, &e)))?;
            match (text, is_binary) {
                (Some(hex), true) => {
                    let bytes = decode_hex(hex).ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "{location}: column {} is not hex-encoded bytea",
                            column + 1
                        ))
                    })?;
                    decoder.push(column, Some(&bytes))?
                }
                (text, _) => decoder.push(column, text.map(str::as_bytes))?,
            }
        }
        decoder.end_row();
        if decoder.rows() >= batch_size && batches.send(decoder.finish()).await.is_err() {
            return Ok(());
        }
    }
    if decoder.rows() > 0 {
        let _ = batches.send(decoder.finish()).await;
    }
    Ok(())
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let value = |d: u8| (d as char).to_digit(16).map(|v| v as u8);
    digits
        .chunks(2)
        .map(|pair| Some(value(pair[0])? << 4 | value(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{BinaryArray, Float64Array, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn copy_text_format() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("f", DataType::Float64, true),
            Field::new("b", DataType::Binary, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a\tb\\c\nd"), None])),
                Arc::new(Float64Array::from(vec![Some(f64::NEG_INFINITY), Some(0.1)])),
                Arc::new(BinaryArray::from(vec![Some(&[0u8, 0xff][..]), None])),
            ],
        )
        .unwrap();
        let mut out = vec![];
        write_batch(&mut out, &batch, 10, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1\ta\\tb\\\\c\\nd\t-Infinity\t\\\\x00ff\t10\n\\N\t\\N\t0.1\t\\N\t11\n"
        );
    }

    #[test]
    fn hex_and_sqlstates() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
        let captures = LINE
            .as_ref()
            .unwrap()
            .captures("COPY orders, line 17, column amount: \"x\"")
            .unwrap();
        assert_eq!(&captures[1], "17");
    }
}
