//! Sinks of streaming queries: a [`StreamingSink`] takes batch N's rows and commits them so
//! that writing batch N again (a replay after a crash) does not add to what an earlier attempt
//! wrote. Parquet, memory, console and Kafka tables are streaming sinks.

pub mod memory;
pub mod parquet;

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;

use crate::checkpoint::{Checkpoint, OffsetsEntry};
use crate::kafka::KafkaTable;
use crate::stream::stateful::OutputMode;

/// What a sink is told about the batch it writes.
#[derive(Debug, Clone)]
pub struct BatchContext {
    /// The query's id, kept in its checkpoint across restarts.
    pub query_id: String,
    /// The query's name.
    pub query_name: String,
    /// The batch id.
    pub batch_id: u64,
    /// Whether an earlier attempt of the batch may have written part of it (the query was
    /// restarted before `commits/N`).
    pub replayed: bool,
    /// The batch's slice of every source (`offsets/N`), for sinks that record it with the rows.
    pub offsets: OffsetsEntry,
    /// The query's checkpoint, for sinks that keep per-batch records of their own there.
    pub checkpoint: Checkpoint,
    /// What the batch holds: in complete mode, the whole result, replacing earlier batches'.
    pub output_mode: OutputMode,
    /// Whether the rows come from stateful operators (aggregations): a replay recomputes them
    /// from state, and floating-point results may then differ in their last bits.
    pub stateful: bool,
    /// Whether a replay of the batch computes the same rows: false when the query reads tables
    /// besides its stream slices (lookup tables may change between attempts) or calls volatile
    /// functions (`now()`, `random()`).
    pub replay_deterministic: bool,
}

/// What a sink supports, declared by the sink and checked in one place when a query starts.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// The output modes it takes for aggregations.
    pub output_modes: Vec<OutputMode>,
    /// What to do instead when another mode is asked for.
    pub other_modes_hint: String,
    /// Whether it needs rows in the order the query produced them (records of one key keep
    /// their order): the batch's partitions are then read out in order.
    pub keeps_input_order: bool,
    /// How a replayed batch is made harmless, in words.
    pub replay: &'static str,
    /// Which readers never see part of a batch, in words.
    pub whole_batches: &'static str,
}

impl Capabilities {
    /// An append-only sink: each batch adds rows, so update and complete modes would add a new
    /// copy of every group each batch.
    pub fn append_only(hint: &str, replay: &'static str, whole_batches: &'static str) -> Self {
        Capabilities {
            output_modes: vec![OutputMode::Append],
            other_modes_hint: hint.to_string(),
            keeps_input_order: false,
            replay,
            whole_batches,
        }
    }

    /// A sink that takes every output mode.
    pub fn any_mode(replay: &'static str, whole_batches: &'static str) -> Self {
        Capabilities {
            output_modes: vec![OutputMode::Append, OutputMode::Update, OutputMode::Complete],
            other_modes_hint: String::new(),
            keeps_input_order: false,
            replay,
            whole_batches,
        }
    }
}

/// A table a streaming query can write to, exactly once per batch id.
#[async_trait]
pub trait StreamingSink: Debug + Send + Sync {
    /// Writes and commits the rows of batch `batch.batch_id`; returns how many were written.
    /// Writing the same id again must not duplicate what an earlier attempt wrote.
    async fn write_batch(
        &self,
        batch: &BatchContext,
        data: SendableRecordBatchStream,
    ) -> Result<u64>;

    /// What the sink is, for checkpoint metadata and progress (`parquet file:///lake/out`).
    fn describe(&self) -> String;

    /// Whether batch `batch_id` is already in the sink (it was committed, but perhaps not yet
    /// recorded in the checkpoint).
    async fn has_batch(&self, batch: &BatchContext) -> Result<bool>;

    /// The schema of the rows it takes.
    fn schema(&self) -> SchemaRef;

    /// What it supports.
    fn capabilities(&self) -> Capabilities;
}

/// The streaming sink behind a table, for an INSERT whose input plan is `input`: `Ok(None)`
/// when the table cannot be one, an error when it could but is misconfigured.
pub fn streaming_sink(
    provider: &Arc<dyn TableProvider>,
    input: &LogicalPlan,
) -> Result<Option<Arc<dyn StreamingSink>>> {
    if let Some(table) = provider.downcast_ref::<parquet::ParquetTable>() {
        return Ok(Some(table.sink()));
    }
    if let Some(table) = provider.downcast_ref::<memory::MemorySinkTable>() {
        return Ok(Some(table.sink()));
    }
    if let Some(table) = provider.downcast_ref::<crate::jdbc::JdbcTable>() {
        return Ok(Some(table.sink()));
    }
    if let Some(table) = provider.downcast_ref::<KafkaTable>() {
        return Ok(Some(Arc::new(table.streaming_sink(input)?)));
    }
    Ok(None)
}
