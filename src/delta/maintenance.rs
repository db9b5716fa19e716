//! Housekeeping of Delta tables that streaming queries fill with small files:
//! `OPTIMIZE t` compacts them (one commit that removes small files and adds their rows in
//! larger ones, marked `dataChange: false`, so the table's rows do not change) and
//! `VACUUM t [RETAIN n HOURS] [DRY RUN]` deletes the files no version within the retention
//! needs, as Spark's VACUUM does: files removed longer ago than the retention (default and
//! minimum: the table's `delta.deletedFileRetentionDuration`, 7 days unless set), so a reader of
//! any younger version keeps its files, and files of attempts that never committed once they
//! are older than both the retention and a day, so a batch still writing keeps its files.

use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use deltalake_core::DeltaTable;
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::table::config::TablePropertiesExt;
use parquet::file::properties::WriterProperties;

use super::lake::DeltaLake;

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

/// Files of attempts that never committed are deleted only when older than this (or the
/// retention, when longer): a batch may still be writing them.
const UNCOMMITTED_FLOOR: Duration = Duration::from_secs(24 * 60 * 60);

/// Deletes files no version within `retain_hours` (default: the table's retention) needs;
/// with `dry_run`, only lists them. Files removed by a commit go once the retention has passed
/// since their removal; files no commit ever named (an attempt that died) once they are older
/// than both the retention and a day.
pub async fn vacuum(
    lake: &DeltaLake,
    retain_hours: Option<u64>,
    dry_run: bool,
) -> Result<RecordBatch> {
    let mut table = lake.load().await?;
    let retention = retention(lake, &table, retain_hours)?;
    let mut deleted = BTreeSet::new();
    for (mode, keep) in [
        (VacuumMode::Lite, retention),
        (VacuumMode::Full, retention.max(UNCOMMITTED_FLOOR)),
    ] {
        let keep =
            chrono::Duration::from_std(keep).map_err(|_| lake.fail("the retention is too long"))?;
        let (vacuumed, metrics) = table
            .vacuum()
            .with_mode(mode)
            .with_retention_period(keep)
            .with_dry_run(dry_run)
            .await
            .map_err(|e| lake.fail(format!("cannot vacuum it: {e}")))?;
        table = vacuumed;
        deleted.extend(metrics.files_deleted);
    }
    let schema = Schema::new(vec![Field::new("path", DataType::Utf8, false)]);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(StringArray::from_iter_values(deleted))],
    )?)
}

/// The retention `RETAIN n HOURS` asks for, or the table's; never shorter than the table's
/// `delta.deletedFileRetentionDuration`.
fn retention(lake: &DeltaLake, table: &DeltaTable, retain_hours: Option<u64>) -> Result<Duration> {
    let minimum = table
        .snapshot()
        .map_err(|e| lake.fail(e))?
        .table_config()
        .deleted_file_retention_duration();
    let Some(hours) = retain_hours else {
        return Ok(minimum);
    };
    let retention = hours
        .checked_mul(3600)
        .map(Duration::from_secs)
        .ok_or_else(|| lake.fail(format!("RETAIN {hours} HOURS is too long")))?;
    if retention < minimum {
        return Err(lake.fail(format!(
            "VACUUM RETAIN {hours} HOURS is shorter than the table's \
             delta.deletedFileRetentionDuration ({} s): files younger than that may still be \
             read by a reader of an older version, so VACUUM keeps them",
            minimum.as_secs()
        )));
    }
    Ok(retention)
}
