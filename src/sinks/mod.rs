//! Sinks of streaming queries: a [`StreamingSink`] takes batch N's rows and commits them so
//! that writing batch N again (a replay after a crash) replaces the earlier attempt instead of
//! adding to it. Parquet, memory and console tables are streaming sinks.

pub mod memory;
pub mod parquet;

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;

/// A table a streaming query can write to, exactly once per batch id.
#[async_trait]
pub trait StreamingSink: Debug + Send + Sync {
    /// Writes and commits the rows of batch `batch_id`; returns how many were written. Writing
    /// the same id again replaces what an earlier, uncommitted or committed, attempt wrote.
    async fn write_batch(&self, batch_id: u64, data: SendableRecordBatchStream) -> Result<u64>;

    /// What the sink is, for checkpoint metadata and progress (`parquet file:///lake/out`).
    fn describe(&self) -> String;

    /// Whether batch `batch_id` is already in the sink (it was committed, but perhaps not yet
    /// recorded in the checkpoint).
    async fn has_batch(&self, batch_id: u64) -> Result<bool>;

    /// The schema of the rows it takes.
    fn schema(&self) -> SchemaRef;
}

/// The streaming sink behind a table, if it is one.
pub fn streaming_sink(provider: &Arc<dyn TableProvider>) -> Option<Arc<dyn StreamingSink>> {
    if let Some(table) = provider.downcast_ref::<parquet::ParquetTable>() {
        return Some(table.sink());
    }
    if let Some(table) = provider.downcast_ref::<memory::MemorySinkTable>() {
        return Some(table.sink());
    }
    None
}
