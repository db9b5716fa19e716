//! A Delta table as weir writes it: its latest version (kept between writes and brought up to
//! date from the log), writing data files, and committing them. A write is its data files
//! followed by one Delta commit that adds them; a streaming batch's commit also carries the
//! query's `txn` (`appId` the query id, `version` the batch id), checked on the very snapshot
//! the commit is based on, so a batch whose version is committed is never committed again.
//! Files of an attempt that died before its commit are in no commit: readers never see them,
//! and `VACUUM` removes them.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, Transaction};
use deltalake_core::logstore::LogStoreRef;
use deltalake_core::protocol::DeltaOperation;
use deltalake_core::protocol::checkpoints::{cleanup_metadata, create_checkpoint};
use deltalake_core::table::config::TablePropertiesExt;
use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use log::warn;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::sync::Mutex;

use super::location::log_store;
use super::table::{Declaration, open};

/// How many times a commit that replaces the table's rows is tried against a newer version
/// before the write fails.
const REPLACE_ATTEMPTS: usize = 10;

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
    /// The version last read or written, brought up to date by `load`.
    pub latest: Mutex<Option<DeltaTable>>,
}

/// What one commit is.
pub struct Commit {
    /// The streaming batch it writes, recorded as the query's `txn` version.
    pub txn: Option<Transaction>,
    /// Whether it replaces every row (complete mode, INSERT OVERWRITE).
    pub replace: bool,
    /// How the log describes it.
    pub operation: DeltaOperation,
}

/// `WEIR_FAULT_DELTA_BEFORE_COMMIT=abort` ends the process after a batch's data files are
/// written and before its Delta commit, for the crash tests.
fn fault_before_commit() {
    if std::env::var("WEIR_FAULT_DELTA_BEFORE_COMMIT").as_deref() == Ok("abort") {
        eprintln!("WEIR_FAULT_DELTA_BEFORE_COMMIT: aborting before the Delta commit");
        std::process::abort();
    }
}

/// Whether a commit failed only because the table moved on since the version it was based on.
fn table_moved(error: &DeltaTableError) -> bool {
    matches!(
        error,
        DeltaTableError::Transaction {
            source: TransactionError::MaxCommitAttempts(_)
                | TransactionError::VersionAlreadyExists(_)
        }
    )
}

impl DeltaLake {
    /// Opens (or creates) the table `declared` names.
    pub async fn open(declared: &Declaration<'_>) -> Result<DeltaLake> {
        let table = open(declared, log_store(declared.location)?).await?;
        let unreadable = |e: &dyn std::fmt::Display| declared.error(format!("cannot read it: {e}"));
        let schema = table
            .table_provider()
            .await
            .map_err(|e| unreadable(&e))?
            .schema();
        let partition_columns = table
            .snapshot()
            .map_err(|e| unreadable(&e))?
            .metadata()
            .partition_columns()
            .to_vec();
        Ok(DeltaLake {
            name: declared.name.to_string(),
            display: declared.location.display.clone(),
            log_store: table.log_store(),
            schema,
            partition_columns,
            compression: declared.options.compression,
            target_file_bytes: declared.options.target_file_bytes,
            latest: Mutex::new(Some(table)),
        })
    }

    /// An error about this table.
    pub fn fail(&self, what: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!(
            "Delta table '{}' at {}: {what}",
            self.name, self.display
        ))
    }

    /// The table at its latest version.
    pub async fn load(&self) -> Result<DeltaTable> {
        let mut latest = self.latest.lock().await;
        let mut table = match latest.take() {
            Some(table) => table,
            None => DeltaTable::new(Arc::clone(&self.log_store)),
        };
        let loaded = match table.version() {
            Some(_) => table.update_incremental(None).await,
            None => table.load().await,
        };
        loaded.map_err(|e| self.fail(format!("cannot read its log: {e}")))?;
        *latest = Some(table.clone());
        Ok(table)
    }

    /// The last batch query `query_id` committed as of `table`'s version, from its `txn`.
    pub async fn committed_batch(&self, table: &DeltaTable, query_id: &str) -> Result<Option<i64>> {
        let snapshot = table.snapshot().map_err(|e| self.fail(e))?;
        snapshot
            .transaction_version(self.log_store.as_ref(), query_id)
            .await
            .map_err(|e| self.fail(format!("cannot read the transactions in its log: {e}")))
    }

    /// Whether `commit`'s batch is already in `table`.
    async fn holds(&self, table: &DeltaTable, commit: &Commit) -> Result<bool> {
        let Some(txn) = &commit.txn else {
            return Ok(false);
        };
        let committed = self.committed_batch(table, &txn.app_id).await?;
        Ok(committed.is_some_and(|c| c >= txn.version))
    }

    /// Writes `data` as data files and commits them; returns the rows written (0 when the
    /// commit's batch was already in the table).
    pub async fn write(&self, data: SendableRecordBatchStream, commit: Commit) -> Result<u64> {
        let mut table = self.load().await?;
        if self.holds(&table, &commit).await? {
            return Ok(0);
        }
        let (adds, rows) = self.write_files(&table, data).await?;
        fault_before_commit();
        for _ in 0..REPLACE_ATTEMPTS {
            let mut actions = adds.clone();
            if commit.replace {
                actions.extend(self.remove_all(&table).await?);
            }
            match self.commit(&mut table, actions, &commit).await {
                Err(e) if commit.replace && table_moved(&e) => {
                    table = self.load().await?;
                    if self.holds(&table, &commit).await? {
                        return Ok(0);
                    }
                }
                result => {
                    return result
                        .map(|()| rows)
                        .map_err(|e| self.fail(format!("cannot commit: {e}")));
                }
            }
        }
        Err(self.fail(format!(
            "cannot commit: the table changed under each of {REPLACE_ATTEMPTS} attempts to \
             replace its rows"
        )))
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
            let batch = fit(&batch, &schema).map_err(|e| {
                self.fail(format!(
                    "rows do not fit the table's columns (did another writer change them \
                     since the table was declared?): {e}"
                ))
            })?;
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

    /// Commits `actions` on `table`'s version. Appends let Delta rebase them on newer versions
    /// after its conflict checks; a replacing commit is tried once, since its removals name
    /// the files of the version it read. Once the log entry is written, a failure of the
    /// housekeeping after it is only logged: the write is done.
    async fn commit(
        &self,
        table: &mut DeltaTable,
        actions: Vec<Action>,
        commit: &Commit,
    ) -> std::result::Result<(), DeltaTableError> {
        let mut properties = CommitProperties::default()
            .with_create_checkpoint(false)
            .with_cleanup_expired_logs(Some(false));
        if commit.replace {
            properties = properties.with_max_retries(0);
        }
        if let Some(txn) = &commit.txn {
            properties = properties.with_application_transaction(txn.clone());
        }
        let committed = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(
                Some(table.snapshot()?),
                Arc::clone(&self.log_store),
                commit.operation.clone(),
            )
            .into_prepared_commit_future()
            .await?
            .await?;
        let version = committed.version;
        match committed.await {
            Ok(finalized) => {
                table.state = Some(finalized.snapshot());
                self.tidy_log(table, version).await;
                *self.latest.lock().await = Some(table.clone());
            }
            Err(e) => warn!(
                "Delta table '{}': version {version} is committed, but reading it back failed: {e}",
                self.name
            ),
        }
        Ok(())
    }

    /// At every `delta.checkpointInterval`-th version (as Delta counts them), writes a
    /// checkpoint of the log and removes log entries older than `delta.logRetentionDuration`.
    async fn tidy_log(&self, table: &DeltaTable, version: u64) {
        let Ok(state) = table.snapshot() else { return };
        let config = state.table_config();
        if !(version + 1).is_multiple_of(config.checkpoint_interval().get()) {
            return;
        }
        if let Err(e) = create_checkpoint(table, None).await {
            warn!(
                "Delta table '{}': cannot write a checkpoint of version {version}: {e}",
                self.name
            );
            return;
        }
        if config.enable_expired_log_cleanup()
            && let Err(e) = cleanup_metadata(table, None).await
        {
            warn!(
                "Delta table '{}': cannot remove expired log entries: {e}",
                self.name
            );
        }
    }
}

/// `batch` with the writer's schema: the scan's string views become the strings Delta's
/// writer takes; a value that does not convert is an error, never a silent null.
fn fit(batch: &RecordBatch, schema: &SchemaRef) -> std::result::Result<RecordBatch, ArrowError> {
    if batch.num_columns() != schema.fields().len() {
        return Err(ArrowError::SchemaError(format!(
            "{} columns given, the table has {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(
            |(column, field)| match column.data_type() == field.data_type() {
                true => Ok(Arc::clone(column)),
                false => cast_with_options(column, field.data_type(), &strict),
            },
        )
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use deltalake_core::protocol::SaveMode;

    use super::*;
    use crate::delta::options::DeltaOptions;
    use crate::storage::{S3Settings, resolve};

    async fn lake_at(dir: &std::path::Path) -> DeltaLake {
        let location = resolve(&dir.display().to_string(), &S3Settings::default()).unwrap();
        let schema = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
        let options = DeltaOptions::parse(&HashMap::new(), &[]).unwrap();
        let declared = Declaration {
            name: "t",
            schema: &schema,
            options: &options,
            location: &location,
        };
        DeltaLake::open(&declared).await.unwrap()
    }

    fn rows(lake: &DeltaLake, values: &[i64]) -> SendableRecordBatchStream {
        let batch = RecordBatch::try_new(
            Arc::clone(&lake.schema),
            vec![Arc::new(Int64Array::from(values.to_vec()))],
        )
        .unwrap();
        let batches = futures::stream::iter(vec![Ok(batch)]);
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&lake.schema),
            batches,
        ))
    }

    fn overwrite() -> Commit {
        Commit {
            txn: None,
            replace: true,
            operation: DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: None,
                predicate: None,
            },
        }
    }

    fn append(txn: Option<Transaction>) -> Commit {
        Commit {
            txn,
            replace: false,
            operation: DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            },
        }
    }

    async fn files(lake: &DeltaLake) -> usize {
        let table = lake.load().await.unwrap();
        table.snapshot().unwrap().snapshot().log_data().num_files()
    }

    #[tokio::test]
    async fn a_replacing_commit_on_an_old_version_is_not_rebased_over_newer_files() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_at(dir.path()).await;
        lake.write(rows(&lake, &[1, 2]), append(None))
            .await
            .unwrap();
        let mut stale = lake.load().await.unwrap();
        lake.write(rows(&lake, &[3]), append(None)).await.unwrap();

        // As if a complete-mode batch had read version 1 and another writer had then added a
        // file: its removals name version 1's files only, so committing it over version 2
        // would keep row 3 beside the new result.
        let (mut actions, _) = lake.write_files(&stale, rows(&lake, &[9])).await.unwrap();
        actions.extend(lake.remove_all(&stale).await.unwrap());
        let error = lake
            .commit(&mut stale, actions, &overwrite())
            .await
            .unwrap_err();
        assert!(table_moved(&error), "{error}");

        // The write itself reads the latest version again and replaces every row.
        lake.write(rows(&lake, &[9]), overwrite()).await.unwrap();
        assert_eq!(files(&lake).await, 1);
    }

    #[tokio::test]
    async fn a_batch_whose_txn_is_committed_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_at(dir.path()).await;
        let batch = |version| append(Some(Transaction::new("query-1", version)));
        assert_eq!(lake.write(rows(&lake, &[1, 2]), batch(0)).await.unwrap(), 2);
        assert_eq!(lake.write(rows(&lake, &[1, 2]), batch(0)).await.unwrap(), 0);
        assert_eq!(lake.write(rows(&lake, &[3]), batch(1)).await.unwrap(), 1);
        let table = lake.load().await.unwrap();
        assert_eq!(
            lake.committed_batch(&table, "query-1").await.unwrap(),
            Some(1)
        );
        assert_eq!(lake.committed_batch(&table, "query-2").await.unwrap(), None);
        assert_eq!(files(&lake).await, 2);
    }
}
