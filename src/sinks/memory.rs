//! Memory and console tables: `STORED AS MEMORY` keeps each batch's rows (replaced on replay)
//! for SELECT; `STORED AS CONSOLE` prints each batch, as Spark's console sink does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{CreateExternalTable, Expr};
use datafusion::physical_plan::{ExecutionPlan, common::collect};

use super::{BatchContext, Capabilities, SinkKind, StreamingSink};
use crate::stream::stateful::OutputMode;

/// Where a memory-sink table's rows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kept for SELECT.
    Memory,
    /// Printed to standard output.
    Console,
}

#[derive(Debug)]
struct MemorySink {
    name: String,
    kind: Kind,
    schema: SchemaRef,
    batches: Mutex<BTreeMap<u64, Vec<RecordBatch>>>,
}

/// A `MEMORY` or `CONSOLE` table.
#[derive(Debug)]
pub struct MemorySinkTable {
    sink: Arc<MemorySink>,
}

impl MemorySinkTable {
    /// The table's streaming sink.
    pub fn sink(&self) -> Arc<dyn StreamingSink> {
        Arc::clone(&self.sink) as Arc<dyn StreamingSink>
    }
}

/// MEMORY and CONSOLE tables as streaming sinks.
pub const SINK_KIND: SinkKind = SinkKind {
    tables: "MEMORY tables, CONSOLE tables",
    find: |provider, _| {
        Ok(provider
            .downcast_ref::<MemorySinkTable>()
            .map(MemorySinkTable::sink))
    },
};

#[async_trait]
impl StreamingSink for MemorySink {
    async fn write_batch(
        &self,
        batch: &BatchContext,
        data: SendableRecordBatchStream,
    ) -> Result<u64> {
        let batch_id = batch.batch_id;
        let batches = collect(data).await?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if self.kind == Kind::Console {
            let table = arrow::util::pretty::pretty_format_batches_with_schema(
                Arc::clone(&self.schema),
                &batches,
            )?;
            println!(
                "-------------------------------------------\nBatch: {batch_id} ({} row(s) into {})\n-------------------------------------------\n{table}",
                rows, self.name
            );
        }
        let mut kept = self
            .batches
            .lock()
            .map_err(|_| DataFusionError::Internal("memory sink lock poisoned".to_string()))?;
        if batch.output_mode == OutputMode::Complete {
            // Each batch holds the whole result.
            kept.clear();
        }
        kept.insert(batch_id, batches);
        Ok(rows as u64)
    }

    fn describe(&self) -> String {
        match self.kind {
            Kind::Memory => format!("memory table {}", self.name),
            Kind::Console => format!("console table {}", self.name),
        }
    }

    async fn has_batch(&self, batch: &BatchContext) -> Result<bool> {
        let batch_id = batch.batch_id;
        Ok(self
            .batches
            .lock()
            .map(|b| b.contains_key(&batch_id))
            .unwrap_or(false))
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::any_mode(
            "a batch id already kept is replaced",
            "the session that holds the table",
        )
    }
}

#[async_trait]
impl TableProvider for MemorySinkTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.sink.schema)
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
        let batches: Vec<RecordBatch> = self
            .sink
            .batches
            .lock()
            .map_err(|_| DataFusionError::Internal("memory sink lock poisoned".to_string()))?
            .values()
            .flatten()
            .cloned()
            .collect();
        MemTable::try_new(Arc::clone(&self.sink.schema), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// Builds `STORED AS MEMORY` and `STORED AS CONSOLE` tables.
#[derive(Debug)]
pub struct MemorySinkFactory {
    kind: Kind,
}

impl MemorySinkFactory {
    /// A factory of tables of `kind`.
    pub fn new(kind: Kind) -> Self {
        Self { kind }
    }
}

#[async_trait]
impl TableProviderFactory for MemorySinkFactory {
    async fn create(
        &self,
        _state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        let kind = if self.kind == Kind::Memory {
            "MEMORY"
        } else {
            "CONSOLE"
        };
        if cmd.schema.fields().is_empty() {
            return Err(DataFusionError::Plan(format!(
                "a {kind} table needs declared columns, as in CREATE EXTERNAL TABLE t (id BIGINT) STORED AS {kind}"
            )));
        }
        if let Some(key) = cmd.options.keys().next() {
            return Err(DataFusionError::Plan(format!(
                "a {kind} table takes no options, not '{key}'"
            )));
        }
        Ok(Arc::new(MemorySinkTable {
            sink: Arc::new(MemorySink {
                name: cmd.name.to_string(),
                kind: self.kind,
                schema: Arc::clone(cmd.schema.inner()),
                batches: Mutex::default(),
            }),
        }))
    }
}
