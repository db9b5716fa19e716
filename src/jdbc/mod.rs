//! JDBC tables: PostgreSQL, MySQL/MariaDB and SQLite tables declared with
//! `CREATE EXTERNAL TABLE t (…) STORED AS JDBC LOCATION 'postgres://…' OPTIONS (…)`.
//! Streaming queries write them exactly once (the batch's rows and a progress row commit in
//! one transaction, see `sink.rs`); `INSERT INTO` writes them in one transaction; `SELECT` reads
//! them with the declared columns. This module owns the factory and the table provider; the
//! database URL is in `location.rs`, the options in `options.rs`, per-database SQL and types in
//! `dialect.rs`, Arrow to database values in `encode.rs` and back in `decode.rs`, the
//! transaction protocol in `sink.rs`, scans in `scan.rs`, the drivers in `postgres.rs`,
//! `mysql.rs` and `sqlite.rs` behind the `Connection` trait of `backend.rs`.

mod backend;
mod decode;
mod dialect;
mod encode;
mod location;
mod mysql;
mod options;
mod postgres;
mod rows;
mod scan;
mod sink;
mod sqlite;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::datasource::TableType;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{CreateExternalTable, Expr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};

use crate::sinks::{SinkKind, StreamingSink};
use dialect::Target;
use location::Location;
pub use options::JDBC_TABLE_OPTIONS;
use options::JdbcOptions;
use scan::JdbcScan;
use sink::JdbcSink;

/// A table in a PostgreSQL, MySQL/MariaDB or SQLite database.
#[derive(Debug)]
pub struct JdbcTable {
    sink: Arc<JdbcSink>,
}

impl JdbcTable {
    /// The table's streaming sink.
    pub fn sink(&self) -> Arc<dyn StreamingSink> {
        Arc::clone(&self.sink) as Arc<dyn StreamingSink>
    }
}

/// JDBC tables as streaming sinks.
pub const SINK_KIND: SinkKind = SinkKind {
    tables: "JDBC tables",
    find: |provider, _| Ok(provider.downcast_ref::<JdbcTable>().map(JdbcTable::sink)),
};

#[async_trait]
impl TableProvider for JdbcTable {
    fn schema(&self) -> SchemaRef {
        StreamingSink::schema(self.sink.as_ref())
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let projected = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema,
        };
        let target = self.sink.target();
        let sql = dialect::select(target.database, &target.name, projected.fields(), limit)?;
        let scan = JdbcScan::new(
            self.sink.location().clone(),
            target.name.clone(),
            sql,
            Arc::clone(&projected),
        );
        Ok(Arc::new(StreamingTableExec::try_new(
            projected,
            vec![Arc::new(scan) as Arc<dyn PartitionStream>],
            None,
            vec![],
            false,
            limit,
        )?))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::Plan(format!(
                "JDBC table ({}) supports INSERT INTO only, not {insert_op}",
                self.sink.place()
            )));
        }
        Ok(Arc::new(DataSinkExec::new(
            input,
            Arc::clone(&self.sink) as Arc<dyn DataSink>,
            None,
        )))
    }
}

/// Builds `STORED AS JDBC` tables: checks the options and column types, connects (within 10 s),
/// creates the table unless `'createTable' 'false'`, and checks it has the declared columns.
#[derive(Debug, Default)]
pub struct JdbcTableFactory;

#[async_trait]
impl TableProviderFactory for JdbcTableFactory {
    async fn create(
        &self,
        _state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        let location = match cmd.locations.as_slice() {
            [url] if !url.trim().is_empty() => Location::parse(url)?,
            _ => {
                return Err(DataFusionError::Plan(
                    "a JDBC table needs one LOCATION: the database URL, as in \
                     LOCATION 'postgres://user@host:5432/db'"
                        .to_string(),
                ));
            }
        };
        if cmd.schema.fields().is_empty() {
            return Err(DataFusionError::Plan(
                "a JDBC table needs declared columns, as in CREATE EXTERNAL TABLE t (id BIGINT, \
                 name VARCHAR) STORED AS JDBC LOCATION '…'"
                    .to_string(),
            ));
        }
        let schema = Arc::clone(cmd.schema.inner());
        let options = JdbcOptions::parse(cmd.name.table(), &cmd.options, &schema)?;
        let target = Target {
            database: location.database,
            name: options.table.clone(),
            columns: schema.fields().clone(),
            key: options.key.clone(),
            mode: options.mode,
        };
        for (i, field) in target.columns.iter().enumerate() {
            dialect::sql_type(target.database, field, target.key.contains(&i))?;
        }
        let sink = JdbcSink::new(
            cmd.name.to_string(),
            location,
            target,
            options.progress_table.clone(),
        );
        sink.prepare(options.create_table).await?;
        Ok(Arc::new(JdbcTable {
            sink: Arc::new(sink),
        }))
    }
}
