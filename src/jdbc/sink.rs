//! Writing a JDBC table, exactly once per streaming batch.
//!
//! A batch's rows are collected first (so that the write can be retried), then, in one
//! database transaction: look for the query's progress row for the batch — if it is there the
//! batch is already in the table, so roll back and write nothing; else write the rows, insert
//! the progress row, commit. The table holds the batch if and only if it holds its progress
//! row, whatever crashes when. A lost connection (not a refused row) is retried on a new
//! connection, the whole transaction again, a few times with backoff. A plain `INSERT INTO`
//! writes its rows in one transaction without a progress row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use log::warn;
use tokio::sync::Mutex;

use super::backend::{self, Connection, DbError, ProgressRow};
use super::dialect::{self, Target};
use super::location::Location;
use super::options::Mode;
use super::rows::Rows;
use crate::sinks::{BatchContext, Capabilities, StreamingSink};

/// How many times a transaction is tried when connections are lost.
const ATTEMPTS: u32 = 4;
/// The wait before the first retry; it doubles for each one after.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The sink of a JDBC table.
pub struct JdbcSink {
    /// The weir table's name.
    name: String,
    location: Location,
    target: Arc<Target>,
    progress_table: String,
    schema: SchemaRef,
    /// The connection kept across writes; `None` until connected or after it broke.
    connection: Mutex<Option<Box<dyn Connection>>>,
    /// The progress table is known to exist.
    progress_ready: AtomicBool,
}

impl std::fmt::Debug for JdbcSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JdbcSink")
            .field("name", &self.name)
            .field("location", &self.location)
            .field("table", &self.target.name)
            .finish()
    }
}

/// A failed step of a transaction.
struct Failure {
    error: DbError,
    /// It failed while committing: the transaction may have committed.
    committing: bool,
}

impl From<DbError> for Failure {
    fn from(error: DbError) -> Self {
        Failure {
            error,
            committing: false,
        }
    }
}

/// What a connection is asked to do; on a lost connection it is done again, as a whole, on a
/// new one.
enum Work<'a> {
    /// Write rows, with a streaming batch's progress row, in one transaction.
    Write {
        rows: &'a Arc<Rows>,
        progress: Option<&'a ProgressRow>,
    },
    /// Look for a batch's progress row.
    Lookup { query_id: &'a str, batch_id: i64 },
}

/// What the work did.
enum Done {
    /// It wrote this many rows.
    Written(u64),
    /// The batch's progress row was already there: nothing was written.
    AlreadyThere,
    /// The progress row was (or was not) found.
    Found(bool),
}

impl JdbcSink {
    /// A sink writing `target` at `location`; it connects when first used.
    pub fn new(name: String, location: Location, target: Target, progress_table: String) -> Self {
        let schema = Arc::new(arrow::datatypes::Schema::new(target.columns.clone()));
        JdbcSink {
            name,
            location,
            target: Arc::new(target),
            progress_table,
            schema,
            connection: Mutex::new(None),
            progress_ready: AtomicBool::new(false),
        }
    }

    /// The database and table, for messages: `postgres://…/db table orders`.
    pub fn place(&self) -> String {
        format!("{} table {}", self.location, self.target.name)
    }

    /// The table's declared columns.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The database URL.
    pub fn location(&self) -> &Location {
        &self.location
    }

    fn error(&self, message: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!(
            "JDBC table '{}' ({}): {message}",
            self.name,
            self.place()
        ))
    }

    /// At CREATE: connects (within the connect timeout), creates the table if asked, and
    /// checks that it has every declared column. The connection is kept for the first write.
    pub async fn prepare(&self, create_table: bool) -> Result<()> {
        let plan = |message: String| DataFusionError::Plan(message);
        let mut conn = backend::connect(&self.location)
            .await
            .map_err(|e| plan(format!("cannot connect to {}: {e}", self.location)))?;
        if create_table {
            let sql = dialect::create_table(&self.target)?;
            if let Err(e) = conn.execute(&sql).await {
                // Another writer may have created it at the same moment; the probe decides.
                if conn.execute(&dialect::probe(&self.target)).await.is_err() {
                    return Err(plan(format!(
                        "cannot create table {} in {}: {e}",
                        self.target.name, self.location
                    )));
                }
            }
        }
        if let Err(e) = conn.execute(&dialect::probe(&self.target)).await {
            let hint = if create_table {
                "; its columns must have the declared names"
            } else {
                "; create it, or set 'createTable' 'true' to let weir create it"
            };
            return Err(plan(format!(
                "table {} in {} cannot be read with the declared columns ({}): {e}{hint}",
                self.target.name,
                self.location,
                self.target
                    .columns
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        *self.connection.lock().await = Some(conn);
        Ok(())
    }

    /// Creates the progress table once per sink (a concurrent creation by another writer is
    /// fine: the lookup afterwards decides).
    async fn ensure_progress_table(&self, conn: &mut dyn Connection) -> Result<(), Failure> {
        if self.progress_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let db = self.target.database;
        if let Err(e) = conn
            .execute(&dialect::create_progress_table(db, &self.progress_table))
            .await
        {
            if matches!(e, DbError::Connection(_)) {
                return Err(e.into());
            }
            let lookup = dialect::progress_lookup(db, &self.progress_table);
            if conn.is_recorded(&lookup, "", -1).await.is_err() {
                return Err(DbError::Other(format!(
                    "cannot create the progress table {}: {e}",
                    self.progress_table
                ))
                .into());
            }
        }
        self.progress_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// One try of the transaction.
    async fn transaction(
        &self,
        conn: &mut dyn Connection,
        rows: &Arc<Rows>,
        progress: Option<&ProgressRow>,
    ) -> Result<Done, Failure> {
        let db = self.target.database;
        if progress.is_some() {
            self.ensure_progress_table(conn).await?;
        }
        conn.begin().await?;
        let steps = async {
            if let Some(p) = progress {
                let lookup = dialect::progress_lookup(db, &self.progress_table);
                if conn.is_recorded(&lookup, &p.query_id, p.batch_id).await? {
                    return Ok(false);
                }
            }
            conn.insert(&self.target, rows).await?;
            if let Some(p) = progress {
                conn.record(&dialect::progress_insert(db, &self.progress_table), p)
                    .await?;
            }
            Ok::<_, DbError>(true)
        };
        match steps.await {
            Ok(true) => {
                conn.commit().await.map_err(|error| Failure {
                    error,
                    committing: true,
                })?;
                Ok(Done::Written(rows.len() as u64))
            }
            Ok(false) => {
                conn.rollback().await?;
                Ok(Done::AlreadyThere)
            }
            Err(error) => {
                if !matches!(error, DbError::Connection(_))
                    && let Err(e) = conn.rollback().await
                {
                    // The connection is of no use any more; report the first error.
                    return Err(
                        DbError::Connection(format!("{error} (and rollback failed: {e})")).into(),
                    );
                }
                Err(error.into())
            }
        }
    }

    /// Does `work` on the connection.
    async fn run(&self, conn: &mut dyn Connection, work: &Work<'_>) -> Result<Done, Failure> {
        match work {
            Work::Write { rows, progress } => self.transaction(conn, rows, *progress).await,
            Work::Lookup { query_id, batch_id } => {
                self.ensure_progress_table(conn).await?;
                let lookup = dialect::progress_lookup(self.target.database, &self.progress_table);
                Ok(Done::Found(
                    conn.is_recorded(&lookup, query_id, *batch_id).await?,
                ))
            }
        }
    }

    /// Does `work` on the kept connection (connecting first when there is none), and again on
    /// a new connection when a connection is lost, up to [`ATTEMPTS`] times. `what` names the
    /// work for messages. A commit whose outcome is unknown is tried again only for streaming
    /// batches, whose progress row tells whether it happened. A failure that is not a lost
    /// connection comes back as `Ok(Err(…))`, for the caller to explain.
    async fn with_retries(&self, what: &str, work: Work<'_>) -> Result<Result<Done, DbError>> {
        let retry_after_commit = !matches!(work, Work::Write { progress: None, .. });
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let mut slot = self.connection.lock().await;
            let result = match slot.as_mut() {
                Some(conn) => self.run(conn.as_mut(), &work).await,
                None => match backend::connect(&self.location).await {
                    Ok(conn) => self.run(slot.insert(conn).as_mut(), &work).await,
                    Err(error) => Err(error.into()),
                },
            };
            let failure = match result {
                Ok(done) => return Ok(Ok(done)),
                Err(failure) => failure,
            };
            let DbError::Connection(message) = &failure.error else {
                return Ok(Err(failure.error));
            };
            *slot = None;
            drop(slot);
            if failure.committing && !retry_after_commit {
                return Err(self.error(format!(
                    "{what}: the connection was lost while committing ({message}); the rows \
                     may or may not be in the table"
                )));
            }
            if attempt == ATTEMPTS {
                return Err(self.error(format!(
                    "{what}: lost the connection to the database {ATTEMPTS} times; the last \
                     error was: {message}. Is the database up and reachable?"
                )));
            }
            warn!(
                "JDBC table '{}' ({}): {what}: connection lost ({message}); retrying on a new \
                 connection in {} ms (attempt {} of {ATTEMPTS})",
                self.name,
                self.place(),
                backoff.as_millis(),
                attempt + 1
            );
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    /// Writes `rows` in one transaction, with `progress` when a streaming batch: the rows
    /// written, or 0 when the batch was already there. `what` names the write for messages
    /// ("batch 3 of query 'q'", "the INSERT").
    async fn write(&self, what: &str, rows: Rows, progress: Option<ProgressRow>) -> Result<u64> {
        let rows = Arc::new(rows);
        let work = Work::Write {
            rows: &rows,
            progress: progress.as_ref(),
        };
        match self.with_retries(what, work).await? {
            Ok(Done::Written(count)) => Ok(count),
            Ok(Done::AlreadyThere | Done::Found(_)) => Ok(0),
            Err(DbError::Rejected { message, row }) => Err(self.error(format!(
                "{what} was rolled back and nothing of it was written: {} was refused: {message}",
                self.describe_row(&rows, row)
            ))),
            Err(other) => Err(self.error(format!("{what} failed: {other}"))),
        }
    }

    /// A refused row for messages: its key in upsert mode, else its number in the write and
    /// its key columns (or first columns).
    fn describe_row(&self, rows: &Rows, row: Option<usize>) -> String {
        let Some(row) = row.filter(|r| *r < rows.len()) else {
            return "a row".to_string();
        };
        let key = &self.target.key;
        if self.target.mode == Mode::Upsert {
            return format!("the row with key ({})", rows.show(row, key));
        }
        let columns: Vec<usize> = if key.is_empty() {
            (0..self.target.columns.len().min(3)).collect()
        } else {
            key.clone()
        };
        format!(
            "row {} of {} ({})",
            row + 1,
            rows.len(),
            rows.show(row, &columns)
        )
    }
}

#[async_trait]
impl StreamingSink for JdbcSink {
    async fn write_batch(
        &self,
        batch: &BatchContext,
        data: SendableRecordBatchStream,
    ) -> Result<u64> {
        let rows = Rows::collect(data).await?;
        let offsets = serde_json::to_string(&batch.offsets).map_err(|e| {
            self.error(format!(
                "cannot write batch {}'s offsets as JSON: {e}",
                batch.batch_id
            ))
        })?;
        let progress = ProgressRow {
            query_id: batch.query_id.clone(),
            batch_id: batch_id(batch)?,
            query_name: batch.query_name.clone(),
            table_name: self.target.name.clone(),
            offsets,
            row_count: rows.len() as i64,
        };
        let what = format!("batch {} of query '{}'", batch.batch_id, batch.query_name);
        self.write(&what, rows, Some(progress)).await
    }

    fn describe(&self) -> String {
        format!("jdbc {}", self.place())
    }

    async fn has_batch(&self, batch: &BatchContext) -> Result<bool> {
        let what = format!(
            "looking for batch {} of query '{}'",
            batch.batch_id, batch.query_name
        );
        let work = Work::Lookup {
            query_id: &batch.query_id,
            batch_id: batch_id(batch)?,
        };
        match self.with_retries(&what, work).await? {
            Ok(done) => Ok(matches!(done, Done::Found(true))),
            Err(e) => Err(self.error(format!("{what} failed: {e}"))),
        }
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn capabilities(&self) -> Capabilities {
        let replay = "a batch's rows and its progress row commit in one database transaction; \
                      a batch already recorded is skipped";
        let whole = "every reader of the database";
        match self.target.mode {
            Mode::Upsert => Capabilities::any_mode(replay, whole),
            Mode::Append => Capabilities::append_only(
                &format!(
                    "JDBC table '{}' appends rows; create it with 'mode' 'upsert' and a 'key' \
                     (the group columns) to keep one row per group",
                    self.name
                ),
                replay,
                whole,
            ),
        }
    }
}

fn batch_id(batch: &BatchContext) -> Result<i64> {
    i64::try_from(batch.batch_id).map_err(|_| {
        DataFusionError::Execution(format!(
            "batch id {} does not fit a BIGINT column",
            batch.batch_id
        ))
    })
}

impl DisplayAs for JdbcSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "JdbcSink: {}", self.place())
    }
}

#[async_trait]
impl DataSink for JdbcSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let rows = Rows::collect(data).await?;
        self.write("the INSERT", rows, None).await
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Fields, Schema};

    use super::*;
    use crate::jdbc::location::Database;

    fn sink(mode: Mode, key: Vec<usize>) -> JdbcSink {
        let columns = Fields::from(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Utf8, true),
        ]);
        let target = Target {
            database: Database::Sqlite,
            name: "t".to_string(),
            columns,
            key,
            mode,
        };
        let location = Location::parse("sqlite:///tmp/never-opened.db").unwrap();
        JdbcSink::new(
            "t".to_string(),
            location,
            target,
            "_weir_progress".to_string(),
        )
    }

    fn rows() -> Rows {
        let schema = Arc::new(Schema::new(
            sink(Mode::Append, vec![]).target.columns.clone(),
        ));
        let text = |v: &str| Arc::new(StringArray::from(vec![v, v])) as _;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![7, 8])),
                text("x"),
                text("y"),
                text("z"),
            ],
        )
        .unwrap();
        Rows::from_batches(vec![batch])
    }

    #[test]
    fn refused_rows_are_named_by_key_or_number() {
        let rows = rows();
        assert_eq!(
            sink(Mode::Upsert, vec![0, 2]).describe_row(&rows, Some(1)),
            "the row with key (id=8, b=y)"
        );
        assert_eq!(
            sink(Mode::Append, vec![0]).describe_row(&rows, Some(1)),
            "row 2 of 2 (id=8)"
        );
        assert_eq!(
            sink(Mode::Append, vec![]).describe_row(&rows, Some(0)),
            "row 1 of 2 (id=7, a=x, b=y)"
        );
        assert_eq!(
            sink(Mode::Append, vec![]).describe_row(&rows, None),
            "a row"
        );
        assert_eq!(
            sink(Mode::Append, vec![]).describe_row(&rows, Some(5)),
            "a row"
        );
    }

    #[test]
    fn descriptions_hide_the_password() {
        let columns = Fields::from(vec![Field::new("id", DataType::Int64, false)]);
        let target = Target {
            database: Database::Postgres,
            name: "orders".to_string(),
            columns,
            key: vec![],
            mode: Mode::Append,
        };
        let location = Location::parse("postgres://app:hunter2@db:5432/shop").unwrap();
        let sink = JdbcSink::new("o".to_string(), location, target, "p".to_string());
        assert_eq!(
            StreamingSink::describe(&sink),
            "jdbc postgres://app:********@db:5432/shop table orders"
        );
        assert!(!format!("{sink:?}").contains("hunter2"));
    }
}
