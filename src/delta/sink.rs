//! Delta tables as sinks: a streaming query's batch is one commit carrying the query's
//! transaction identifier (the `txn` action: `appId` the query id, `version` the batch id), as
//! Spark's Delta sink records it, so a replayed batch finds its version committed and writes
//! nothing; `INSERT INTO` and `INSERT OVERWRITE` are one commit each.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::datasource::sink::DataSink;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use deltalake_core::kernel::Transaction;
use deltalake_core::protocol::{DeltaOperation, OutputMode as DeltaOutputMode, SaveMode};

use super::lake::{Commit, DeltaLake};
use crate::sinks::{BatchContext, Capabilities, StreamingSink};
use crate::stream::stateful::OutputMode;

fn delta_output_mode(mode: OutputMode) -> DeltaOutputMode {
    match mode {
        OutputMode::Append => DeltaOutputMode::Append,
        OutputMode::Update => DeltaOutputMode::Update,
        OutputMode::Complete => DeltaOutputMode::Complete,
    }
}

#[async_trait]
impl StreamingSink for DeltaLake {
    async fn write_batch(
        &self,
        batch: &BatchContext,
        data: SendableRecordBatchStream,
    ) -> Result<u64> {
        let version = i64::try_from(batch.batch_id)
            .map_err(|_| self.fail(format!("batch id {} is too large", batch.batch_id)))?;
        let commit = Commit {
            txn: Some(Transaction::new(&batch.query_id, version)),
            replace: batch.output_mode == OutputMode::Complete,
            operation: DeltaOperation::StreamingUpdate {
                output_mode: delta_output_mode(batch.output_mode),
                query_id: batch.query_id.clone(),
                epoch_id: version,
            },
        };
        self.write(data, commit).await
    }

    fn describe(&self) -> String {
        format!("delta {}", self.display)
    }

    async fn has_batch(&self, batch: &BatchContext) -> Result<bool> {
        let table = self.load().await?;
        let committed = self.committed_batch(&table, &batch.query_id).await?;
        Ok(committed.is_some_and(|c| u64::try_from(c).is_ok_and(|c| c >= batch.batch_id)))
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            output_modes: vec![OutputMode::Append, OutputMode::Complete],
            other_modes_hint: format!(
                "Delta table '{}' takes append and complete modes, as Spark's Delta sink does \
                 (complete replaces the table's rows in each batch's commit); for update mode \
                 write into a JDBC table with 'mode' 'upsert'",
                self.name
            ),
            keeps_input_order: false,
            replay: "each batch is one Delta commit carrying the query's txn (appId = query id, \
                     version = batch id); a batch whose version is committed is skipped",
            whole_batches: "every Delta reader: a batch's files become visible in one commit",
        }
    }
}

impl DisplayAs for DeltaLake {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "DeltaSink: {}", self.display)
    }
}

/// The sink of `INSERT INTO` (append) and `INSERT OVERWRITE` (replace): one commit, no `txn`.
#[derive(Debug)]
pub struct DeltaInsert {
    /// The table.
    pub lake: Arc<DeltaLake>,
    /// Whether it replaces the table's rows.
    pub overwrite: bool,
}

impl DisplayAs for DeltaInsert {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.lake.fmt_as(t, f)
    }
}

#[async_trait]
impl DataSink for DeltaInsert {
    fn schema(&self) -> &SchemaRef {
        &self.lake.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let mode = if self.overwrite {
            SaveMode::Overwrite
        } else {
            SaveMode::Append
        };
        let commit = Commit {
            txn: None,
            replace: self.overwrite,
            operation: DeltaOperation::Write {
                mode,
                partition_by: Some(self.lake.partition_columns.clone())
                    .filter(|columns| !columns.is_empty()),
                predicate: None,
            },
        };
        self.lake.write(data, commit).await
    }
}
