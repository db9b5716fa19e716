//! The few operations the exactly-once protocol needs from a database connection, one
//! implementation per database ([`super::postgres`], [`super::mysql`], [`super::sqlite`]),
//! and the errors they report, sorted by what the caller should do about them.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::error::Result;
use tokio::sync::mpsc;

use super::decode::RowDecoder;
use super::dialect::Target;
use super::location::{Database, Location};
use super::rows::Rows;
use arrow::array::RecordBatch;

/// How long connecting may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A failed database operation. Messages are the database's own, with secrets scrubbed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// The connection is broken, or the database asks to try again (deadlock, lock timeout,
    /// busy): reconnect and retry the whole transaction.
    Connection(String),
    /// The database refused a row (constraint, range, type): retrying would fail again.
    Rejected {
        /// The database's message.
        message: String,
        /// The refused row's number within the written rows, when known.
        row: Option<usize>,
    },
    /// Anything else (missing table, permissions, a bad URL).
    Other(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Connection(m) | DbError::Other(m) => f.write_str(m),
            DbError::Rejected { message, .. } => f.write_str(message),
        }
    }
}

/// A committed batch's row in the progress table.
#[derive(Debug, Clone)]
pub struct ProgressRow {
    /// The streaming query's id.
    pub query_id: String,
    /// The batch id.
    pub batch_id: i64,
    /// The query's name.
    pub query_name: String,
    /// The table the batch went to.
    pub table_name: String,
    /// The batch's source offsets, as JSON.
    pub offsets: String,
    /// Rows written.
    pub row_count: i64,
}

/// An open connection to the database of a JDBC table.
#[async_trait]
pub trait Connection: Send {
    /// Runs a statement and discards any rows.
    async fn execute(&mut self, sql: &str) -> Result<(), DbError>;

    /// Starts a transaction.
    async fn begin(&mut self) -> Result<(), DbError>;

    /// Commits the transaction.
    async fn commit(&mut self) -> Result<(), DbError> {
        self.execute("COMMIT").await
    }

    /// Rolls the transaction back.
    async fn rollback(&mut self) -> Result<(), DbError> {
        self.execute("ROLLBACK").await
    }

    /// Whether the progress table (`sql` is [`super::dialect::progress_lookup`]) has a row for
    /// batch `batch_id` of query `query_id`.
    async fn is_recorded(
        &mut self,
        sql: &str,
        query_id: &str,
        batch_id: i64,
    ) -> Result<bool, DbError>;

    /// Inserts a progress row (`sql` is [`super::dialect::progress_insert`]).
    async fn record(&mut self, sql: &str, row: &ProgressRow) -> Result<(), DbError>;

    /// Writes `rows` into `target` (appending or upserting) inside the open transaction. A
    /// refused row is reported with its number.
    async fn insert(&mut self, target: &Arc<Target>, rows: &Arc<Rows>) -> Result<(), DbError>;
}

/// Opens a connection to `location`.
pub async fn connect(location: &Location) -> Result<Box<dyn Connection>, DbError> {
    let connecting = async {
        match location.database {
            Database::Postgres => super::postgres::connect(location)
                .await
                .map(|c| Box::new(c) as Box<dyn Connection>),
            Database::Mysql => super::mysql::connect(location)
                .await
                .map(|c| Box::new(c) as Box<dyn Connection>),
            Database::Sqlite => super::sqlite::connect(location)
                .await
                .map(|c| Box::new(c) as Box<dyn Connection>),
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .unwrap_or_else(|_| {
            Err(DbError::Connection(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            )))
        })
}

/// Runs the scan `sql` on a connection of its own and sends its rows, `batch_size` at a time,
/// decoded by `decoder`.
pub async fn fetch(
    location: &Location,
    sql: &str,
    decoder: RowDecoder,
    batch_size: usize,
    batches: mpsc::Sender<Result<RecordBatch>>,
) -> Result<()> {
    match location.database {
        Database::Postgres => {
            super::postgres::fetch(location, sql, decoder, batch_size, batches).await
        }
        Database::Mysql => super::mysql::fetch(location, sql, decoder, batch_size, batches).await,
        Database::Sqlite => super::sqlite::fetch(location, sql, decoder, batch_size, batches).await,
    }
}

/// The search for the first row of a write the database refuses, given that writing them all
/// was refused. The writer asks [`Bisection::next`] for a range of rows to write as one atomic
/// step and reports with [`Bisection::written`] whether the database took it (a refused step
/// leaves nothing behind). Rows it took stay written, so each step sees the rows before it, as
/// the full write did: a row refused because of an earlier one (a duplicate key) is found too.
#[derive(Debug)]
pub struct Bisection {
    low: usize,
    high: usize,
    /// The last step was the single row `low`.
    checked_single: bool,
    found: Option<usize>,
}

impl Bisection {
    /// A search over `rows`.
    pub fn new(rows: Range<usize>) -> Self {
        Self {
            low: rows.start,
            high: rows.end,
            checked_single: false,
            found: None,
        }
    }

    /// The next range to write, or `None` when the search is over.
    pub fn next(&self) -> Option<Range<usize>> {
        if self.checked_single || self.low >= self.high {
            None
        } else if self.high - self.low == 1 {
            Some(self.low..self.high)
        } else {
            Some(self.low..self.low + (self.high - self.low) / 2)
        }
    }

    /// Whether the database took the range [`Bisection::next`] gave.
    pub fn written(&mut self, taken: bool) {
        let Some(range) = self.next() else { return };
        if self.high - self.low == 1 {
            self.checked_single = true;
            self.found = (!taken).then_some(self.low);
        } else if taken {
            self.low = range.end;
        } else {
            self.high = range.end;
        }
    }

    /// The refused row, once the search is over; `None` when no single row is refused on its
    /// own (the refusal came from rows together).
    pub fn found(&self) -> Option<usize> {
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table that refuses `bad` once `needs` (if any) is written before it or with it.
    fn locate(rows: usize, bad: usize, needs: Option<usize>) -> Option<usize> {
        let mut written: Vec<usize> = vec![];
        let mut search = Bisection::new(0..rows);
        let mut steps = 0;
        while let Some(range) = search.next() {
            let refused = range.contains(&bad)
                && needs.is_none_or(|n| written.contains(&n) || range.contains(&n));
            if !refused {
                written.extend(range);
            }
            search.written(!refused);
            steps += 1;
        }
        assert!(
            steps <= 2 + rows.ilog2() as usize,
            "{steps} steps for {rows} rows"
        );
        search.found()
    }

    #[test]
    fn bisection_finds_the_first_refused_row() {
        for rows in 1..40 {
            for bad in 0..rows {
                assert_eq!(locate(rows, bad, None), Some(bad), "{bad} of {rows}");
            }
        }
        // A row refused because of an earlier one (a duplicate key): the later row is named.
        assert_eq!(locate(20, 13, Some(4)), Some(13));
        // Refused only together with a later row: no single row to name.
        assert_eq!(locate(20, 3, Some(15)), None);
    }
}
