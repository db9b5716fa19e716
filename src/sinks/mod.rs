//! Sinks of streaming queries: a [`StreamingSink`] takes batch N's rows and commits them so
//! that writing batch N again (a replay after a crash) does not add to what an earlier attempt
//! wrote, and declares what it supports ([`Capabilities`]), checked in one place when a query
//! starts. Each kind of table that can be a sink declares a [`SinkKind`] beside its table type
//! (Parquet, memory and console here; Kafka and JDBC in their modules); the engine registers
//! them, and queries find their sink through the session's [`SinkKinds`].

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

/// How the streaming sink behind a table of one kind is found; each kind of table that can
/// take a streaming query's output declares one beside its table type, and the engine
/// registers it with the kind's table factory.
#[derive(Debug, Clone, Copy)]
pub struct SinkKind {
    /// The kind's tables, in words, for the message that lists what can be a sink.
    pub tables: &'static str,
    /// Finds the sink of a table of this kind.
    pub find: FindSink,
}

/// The sink of a table written by an INSERT whose input plan is the second argument;
/// `Ok(None)` when the table is of another kind, an error when it is of this kind but cannot be
/// a sink as it is.
pub type FindSink =
    fn(&Arc<dyn TableProvider>, &LogicalPlan) -> Result<Option<Arc<dyn StreamingSink>>>;

/// The sink kinds a session knows: a session extension that streaming queries find their
/// sinks through.
#[derive(Debug, Default)]
pub struct SinkKinds(Vec<SinkKind>);

impl SinkKinds {
    /// These kinds.
    pub fn new(kinds: Vec<SinkKind>) -> Self {
        SinkKinds(kinds)
    }

    /// The streaming sink behind `provider`, for an INSERT whose input plan is `input`:
    /// `Ok(None)` when no kind has it.
    pub fn find(
        &self,
        provider: &Arc<dyn TableProvider>,
        input: &LogicalPlan,
    ) -> Result<Option<Arc<dyn StreamingSink>>> {
        for kind in &self.0 {
            if let Some(sink) = (kind.find)(provider, input)? {
                return Ok(Some(sink));
            }
        }
        Ok(None)
    }

    /// The kinds' tables, in words (`Kafka tables, JDBC tables, …`).
    pub fn describe(&self) -> String {
        let tables: Vec<&str> = self.0.iter().map(|k| k.tables).collect();
        tables.join(", ")
    }
}
