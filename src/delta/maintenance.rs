//! Housekeeping of Delta tables that streaming queries fill with small files:
//! `OPTIMIZE t` compacts them (one commit that removes small files and adds their rows in
//! larger ones, marked `dataChange: false`, so the table's rows do not change) and
//! `VACUUM t [RETAIN n HOURS] [DRY RUN]` deletes the files no version within the retention
//! needs, as Spark's VACUUM does: removed files and files of abandoned attempts older than the
//! retention (default and minimum: the table's `delta.deletedFileRetentionDuration`, 7 days
//! unless set), so a reader of any version younger than that keeps its files.

use std::num::NonZeroU64;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use deltalake_core::operations::vacuum::VacuumMode;
use parquet::file::properties::WriterProperties;

use super::sink::DeltaLake;

/// Housekeeping work on a Delta table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maintenance {
    /// `OPTIMIZE`.
    Optimize,
    /// `VACUUM [RETAIN n HOURS] [DRY RUN]`.
    Vacuum {
        /// Hours of removed files to keep (default: the table's retention).
        retain_hours: Option<u64>,
        /// Only list the files.
        dry_run: bool,
    },
}

impl Maintenance {
    /// The statement, for messages.
    pub fn statement(&self) -> &'static str {
        match self {
            Maintenance::Optimize => "OPTIMIZE",
            Maintenance::Vacuum { .. } => "VACUUM",
        }
    }
}

/// Compacts the table's small files into files of its target size.
pub async fn optimize(lake: &DeltaLake) -> Result<RecordBatch> {
    let table = lake.load().await?;
    let target = NonZeroU64::new(lake.target_file_bytes).unwrap_or(NonZeroU64::MIN);
    let (_, metrics) = table
        .optimize()
        .with_target_size(target)
        .with_writer_properties(
            WriterProperties::builder()
                .set_compression(lake.compression)
                .build(),
        )
        .await
        .map_err(|e| lake.fail(format!("cannot compact it: {e}")))?;
    let schema = Schema::new(vec![
        Field::new("files_removed", DataType::UInt64, false),
        Field::new("files_added", DataType::UInt64, false),
    ]);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(UInt64Array::from(vec![metrics.num_files_removed])),
            Arc::new(UInt64Array::from(vec![metrics.num_files_added])),
        ],
    )?)
}

/// Deletes files no version within `retain_hours` (default: the table's retention) needs;
/// with `dry_run`, only lists them.
pub async fn vacuum(
    lake: &DeltaLake,
    retain_hours: Option<u64>,
    dry_run: bool,
) -> Result<RecordBatch> {
    let table = lake.load().await?;
    let mut builder = table
        .vacuum()
        .with_mode(VacuumMode::Full)
        .with_dry_run(dry_run);
    if let Some(hours) = retain_hours {
        let hours = i64::try_from(hours).map_err(|_| lake.fail("RETAIN is too large"))?;
        builder = builder.with_retention_period(chrono::Duration::hours(hours));
    }
    let (_, metrics) = builder.await.map_err(|e| {
        lake.fail(format!(
            "cannot vacuum it: {e}; files younger than the table's \
             delta.deletedFileRetentionDuration may still be read, so VACUUM keeps them"
        ))
    })?;
    let schema = Schema::new(vec![Field::new("path", DataType::Utf8, false)]);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(StringArray::from(metrics.files_deleted))],
    )?)
}
