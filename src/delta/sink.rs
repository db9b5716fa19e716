//! Writing a Delta table: a write is its data files followed by one Delta commit that adds
//! them. A streaming batch's commit also carries the query's transaction identifier (the `txn`
//! action: `appId` the query id, `version` the batch id), as Spark's Delta sink records it, so a
//! replayed batch finds its version committed and writes nothing. Files of an attempt that died
//! before its commit are in no commit: readers never see them, and `VACUUM` removes them.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use async_trait::async_trait;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use deltalake_core::DeltaTable;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Transaction};
use deltalake_core::logstore::LogStoreRef;
use deltalake_core::protocol::{DeltaOperation, OutputMode as DeltaOutputMode, SaveMode};
use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};
use futures::{StreamExt, TryStreamExt};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::sinks::{BatchContext, Capabilities, StreamingSink};
use crate::stream::stateful::OutputMode;

/// A Delta table as weir writes it.
#[derive(Debug)]
pub struct DeltaLake {
    /// The table's name in the session.
    pub name: String,
    /// Its location as the user gave it.
    pub display: String,
    /// Its log.
    pub log_store: LogStoreRef,
    /// Its columns.
    pub schema: SchemaRef,
    /// Its partition columns.
    pub partition_columns: Vec<String>,
    /// Data files' compression.
    pub compression: Compression,
    /// Data files' target size.
    pub target_file_bytes: u64,
}

/// What one commit is.
struct Commit {
    /// The streaming batch it writes, recorded as the query's `txn` version.
    txn: Option<Transaction>,
    /// Whether it replaces every row (complete mode, INSERT OVERWRITE).
    replace: bool,
    /// How the log describes it.
    operation: DeltaOperation,
}

/// `WEIR_FAULT_DELTA_BEFORE_COMMIT=abort` ends the process after a batch's data files are
/// written and before its Delta commit, for the crash tests.
fn fault_before_commit() {
    if std::env::var("WEIR_FAULT_DELTA_BEFORE_COMMIT").as_deref() == Ok("abort") {
        eprintln!("WEIR_FAULT_DELTA_BEFORE_COMMIT: aborting before the Delta commit");
        std::process::abort();
    }
}

impl DeltaLake {
    /// An error about this table.
    pub fn fail(&self, what: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!(
            "Delta table '{}' at {}: {what}",
            self.name, self.display
        ))
    }

    /// The table at its latest version.
    pub async fn load(&self) -> Result<DeltaTable> {
        let mut table = DeltaTable::new(Arc::clone(&self.log_store));
        table
            .load()
            .await
            .map_err(|e| self.fail(format!("cannot load its log: {e}")))?;
        Ok(table)
    }

    /// The last batch query `query_id` committed, from its `txn` action.
    async fn committed_batch(&self, table: &DeltaTable, query_id: &str) -> Result<Option<i64>> {
        let snapshot = table.snapshot().map_err(|e| self.fail(e))?;
        snapshot
            .transaction_version(self.log_store.as_ref(), query_id)
            .await
            .map_err(|e| self.fail(format!("cannot read the transactions in its log: {e}")))
    }

    async fn write_files(
        &self,
        table: &DeltaTable,
        mut data: SendableRecordBatchStream,
    ) -> Result<(Vec<Action>, u64)> {
        let properties = WriterProperties::builder()
            .set_compression(self.compression)
            .build();
        let mut writer = RecordBatchWriter::for_table(table)
            .map_err(|e| self.fail(e))?
            .with_writer_properties(properties)
            .with_target_file_size(self.target_file_bytes);
        let schema = writer.arrow_schema();
        let mut rows = 0u64;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            rows += batch.num_rows() as u64;
            let batch = fit(&batch, &schema)
                .map_err(|e| self.fail(format!("rows do not fit its columns: {e}")))?;
            writer
                .write(batch)
                .await
                .map_err(|e| self.fail(format!("cannot write a data file: {e}")))?;
        }
        let adds = writer
            .flush()
            .await
            .map_err(|e| self.fail(format!("cannot write a data file: {e}")))?;
        Ok((adds.into_iter().map(Action::Add).collect(), rows))
    }

    /// Removals of every file the table's current version has.
    async fn remove_all(&self, table: &DeltaTable) -> Result<Vec<Action>> {
        let snapshot = table.snapshot().map_err(|e| self.fail(e))?;
        snapshot
            .snapshot()
            .file_views(self.log_store.as_ref(), None)
            .map_ok(|file| Action::Remove(file.remove_action(true)))
            .try_collect()
            .await
            .map_err(|e| self.fail(format!("cannot list its files: {e}")))
    }

    async fn write(&self, data: SendableRecordBatchStream, commit: Commit) -> Result<u64> {
        let table = self.load().await?;
        let (mut actions, rows) = self.write_files(&table, data).await?;
        if commit.replace {
            actions.extend(self.remove_all(&table).await?);
        }
        fault_before_commit();
        let mut properties = CommitProperties::default();
        if let Some(txn) = commit.txn {
            properties = properties.with_application_transaction(txn);
        }
        let snapshot = table.snapshot().map_err(|e| self.fail(e))?;
        CommitBuilder::from(properties)
            .with_actions(actions)
            .build(
                Some(snapshot),
                Arc::clone(&self.log_store),
                commit.operation,
            )
            .await
            .map_err(|e| self.fail(format!("cannot commit: {e}")))?;
        Ok(rows)
    }
}

/// `batch` with the writer's schema: the scan's string views become the strings Delta's
/// writer takes.
fn fit(batch: &RecordBatch, schema: &SchemaRef) -> std::result::Result<RecordBatch, ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(
            |(column, field)| match column.data_type() == field.data_type() {
                true => Ok(Arc::clone(column)),
                false => cast(column, field.data_type()),
            },
        )
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

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
        if batch.replayed {
            let table = self.load().await?;
            if self
                .committed_batch(&table, &batch.query_id)
                .await?
                .is_some_and(|committed| committed >= version)
            {
                return Ok(0);
            }
        }
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
