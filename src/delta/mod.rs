//! Delta Lake tables: `CREATE EXTERNAL TABLE t (…) STORED AS DELTA LOCATION 'path' | 's3://…'`.
//! `SELECT` reads the table's latest version through deltalake's DataFusion provider;
//! `INSERT INTO` appends in one Delta commit; streaming queries write each batch as one commit
//! carrying the query's `txn` (query id, batch id), so every Delta reader sees each batch once.
//! This module owns the table provider and its factory; the options are in `options.rs`,
//! locations and log stores in `location.rs`, opening and creating tables in `table.rs`, the
//! latest version, data files and commits in `lake.rs`, the streaming and INSERT sinks in
//! `sink.rs`, and `OPTIMIZE` / `VACUUM` in `maintenance.rs`.

mod lake;
mod location;
mod maintenance;
mod options;
mod sink;
mod table;

use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::datasource::TableType;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{CreateExternalTable, Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use lake::DeltaLake;
pub use maintenance::Maintenance;
use options::DeltaOptions;
use sink::DeltaInsert;
use table::Declaration;

use crate::sinks::{SinkKind, StreamingSink};
use crate::storage::{S3Settings, resolve};

/// A Delta table in a session.
#[derive(Debug)]
pub struct DeltaLakeTable {
    lake: Arc<DeltaLake>,
}

/// Delta tables as streaming sinks.
pub const SINK_KIND: SinkKind = SinkKind {
    tables: "Delta tables",
    find: |provider, _| {
        Ok(provider
            .downcast_ref::<DeltaLakeTable>()
            .map(|table| Arc::clone(&table.lake) as Arc<dyn StreamingSink>))
    },
};

impl DeltaLakeTable {
    /// Runs `OPTIMIZE` (one row: the files removed and added) or `VACUUM` (one row per file
    /// deleted, or that would be with DRY RUN).
    pub async fn maintain(&self, work: Maintenance) -> Result<RecordBatch> {
        match work {
            Maintenance::Optimize => maintenance::optimize(&self.lake).await,
            Maintenance::Vacuum {
                retain_hours,
                dry_run,
            } => maintenance::vacuum(&self.lake, retain_hours, dry_run).await,
        }
    }

    async fn provider(&self, state: &dyn Session) -> Result<Arc<dyn TableProvider>> {
        let table = self.lake.load().await?;
        table
            .update_datafusion_session(state)
            .map_err(|e| self.lake.fail(e))?;
        table.table_provider().await
    }
}

#[async_trait]
impl TableProvider for DeltaLakeTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.lake.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.provider(state)
            .await?
            .scan(state, projection, filters, limit)
            .await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let overwrite = match insert_op {
            InsertOp::Append => false,
            InsertOp::Overwrite => true,
            InsertOp::Replace => {
                return Err(DataFusionError::Plan(format!(
                    "Delta table '{}' takes INSERT INTO and INSERT OVERWRITE, not REPLACE INTO",
                    self.lake.name
                )));
            }
        };
        let sink = DeltaInsert {
            lake: Arc::clone(&self.lake),
            overwrite,
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Builds Delta tables, resolving `s3://` locations with the session's S3 settings.
#[derive(Debug)]
pub struct DeltaTableFactory {
    s3: Arc<RwLock<S3Settings>>,
}

impl DeltaTableFactory {
    /// A factory resolving `s3://` locations with these settings.
    pub fn new(s3: Arc<RwLock<S3Settings>>) -> Self {
        Self { s3 }
    }
}

#[async_trait]
impl TableProviderFactory for DeltaTableFactory {
    async fn create(
        &self,
        _state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        let options = DeltaOptions::parse(&cmd.options, &cmd.table_partition_cols)?;
        let s3 = self.s3.read().map(|s| s.clone()).unwrap_or_default();
        let Some(given) = cmd.locations.first() else {
            return Err(DataFusionError::Plan(
                "a Delta table needs a LOCATION".to_string(),
            ));
        };
        let plan_error = |e: crate::error::Error| DataFusionError::Plan(e.to_string());
        let location = resolve(given, &s3).map_err(plan_error)?;
        location
            .check_create_only_once()
            .await
            .map_err(plan_error)?;
        let declared = Declaration {
            name: &cmd.name.to_string(),
            schema: cmd.schema.as_arrow(),
            options: &options,
            location: &location,
        };
        Ok(Arc::new(DeltaLakeTable {
            lake: Arc::new(DeltaLake::open(&declared).await?),
        }))
    }
}
