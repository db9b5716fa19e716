//! [`WindowedTable`]: the table a window function returns, an inner table's columns plus
//! `window_start` and `window_end`. Its scan reads the inner table (always with the time column
//! and session keys) and assigns windows with a [`WindowAssignExec`]. The streaming runner
//! rebinds it to another inner table per micro-batch ([`WindowedTable::with_inner`]) and sets
//! the watermark ([`WindowedTable::with_watermark`]).

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::exec::{WindowAssignExec, WindowColumns};
use super::{WINDOW_END, WINDOW_START, WindowKind};

/// An inner table's rows with their windows: the inner columns, then `window_start` and
/// `window_end` (the time column's type and time zone). Hopping windows repeat a row once per
/// window; rows with a NULL time are left out.
#[derive(Debug, Clone)]
pub struct WindowedTable {
    inner: Arc<dyn TableProvider>,
    kind: WindowKind,
    time_column: String,
    columns: WindowColumns,
    watermark: Option<i64>,
    schema: SchemaRef,
}

impl WindowedTable {
    /// Windows of `kind` over the timestamp column `time_column` of `inner`.
    pub fn try_new(
        inner: Arc<dyn TableProvider>,
        kind: WindowKind,
        time_column: &str,
    ) -> Result<Self> {
        let inner_schema = inner.schema();
        let columns = WindowColumns::resolve(&inner_schema, &kind, time_column)?;
        for name in [WINDOW_START, WINDOW_END] {
            if inner_schema.index_of(name).is_ok() {
                return Err(DataFusionError::Plan(format!(
                    "{}: the table already has a column named '{name}', which the window \
                     columns would hide; rename it in a view first",
                    kind.function_name()
                )));
            }
        }
        let mut fields: Vec<Field> = inner_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(columns.fields());
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            inner_schema.metadata().clone(),
        ));
        Ok(Self {
            inner,
            kind,
            time_column: time_column.to_string(),
            columns,
            watermark: None,
            schema,
        })
    }

    /// The table whose rows get windows.
    pub fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    /// The same windows over another inner table with the same columns (e.g. the same Kafka
    /// table bound to another offset range).
    pub fn with_inner(&self, inner: Arc<dyn TableProvider>) -> Result<WindowedTable> {
        if inner.schema().fields() != self.inner.schema().fields() {
            return Err(DataFusionError::Plan(format!(
                "{}: the new inner table's columns ({}) differ from the old one's ({}); a \
                 windowed table can only be rebound to a table with the same columns",
                self.kind.function_name(),
                inner.schema(),
                self.inner.schema()
            )));
        }
        Ok(WindowedTable {
            inner,
            ..self.clone()
        })
    }

    /// The windows assigned.
    pub fn kind(&self) -> &WindowKind {
        &self.kind
    }

    /// The time column the windows are over.
    pub fn time_column(&self) -> &str {
        &self.time_column
    }

    /// The watermark (epoch milliseconds) at or before which windows are dropped as late.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// The same table, dropping each (row, window) whose window ends at or before
    /// `watermark_ms` (epoch milliseconds; `None`: drop nothing).
    pub fn with_watermark(&self, watermark_ms: Option<i64>) -> WindowedTable {
        WindowedTable {
            watermark: watermark_ms,
            ..self.clone()
        }
    }
}

#[async_trait]
impl TableProvider for WindowedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner_count = self.inner.schema().fields().len();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..inner_count + 2).collect(),
        };
        // The inner columns read: the wanted ones plus the time column and session keys.
        let mut read: Vec<usize> = wanted
            .iter()
            .copied()
            .filter(|i| *i < inner_count)
            .chain([self.columns.time])
            .chain(self.columns.keys.iter().copied())
            .collect();
        read.sort_unstable();
        read.dedup();
        // Limits and filters stay above: windows may repeat or drop rows.
        let input = self.inner.scan(state, Some(&read), &[], None).await?;
        if input.schema().fields().len() != read.len() {
            return Err(DataFusionError::Internal(format!(
                "the inner table's scan returned {} columns for a projection of {}",
                input.schema().fields().len(),
                read.len()
            )));
        }
        let output: Vec<usize> = wanted
            .iter()
            .map(|&i| {
                if i < inner_count {
                    read.binary_search(&i)
                        .map_err(|_| DataFusionError::Internal(format!("column {i} was not read")))
                } else if i < inner_count + 2 {
                    Ok(read.len() + (i - inner_count))
                } else {
                    Err(DataFusionError::Internal(format!(
                        "projection asks for column {i} of a {}-column windowed table",
                        inner_count + 2
                    )))
                }
            })
            .collect::<Result<_>>()?;
        Ok(Arc::new(WindowAssignExec::try_new(
            input,
            self.kind.clone(),
            &self.time_column,
            self.watermark,
            Some(output),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn table(columns: &[&str]) -> Arc<dyn TableProvider> {
        let mut fields = vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        )];
        fields.extend(
            columns
                .iter()
                .map(|c| Field::new(*c, DataType::Int64, false)),
        );
        let schema = Arc::new(Schema::new(fields));
        let mut arrays: Vec<arrow::array::ArrayRef> = vec![Arc::new(
            TimestampMillisecondArray::from(vec![1_000, 12_000]).with_timezone("UTC"),
        )];
        arrays.extend(
            columns
                .iter()
                .map(|_| Arc::new(Int64Array::from(vec![1, 2])) as _),
        );
        let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).unwrap();
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
    }

    fn tumble() -> WindowKind {
        WindowKind::Tumble {
            size: Duration::from_secs(10),
        }
    }

    #[test]
    fn schema_appends_window_columns_of_the_time_type() {
        let t = WindowedTable::try_new(table(&["v"]), tumble(), "ts").unwrap();
        let schema = t.schema();
        assert_eq!(schema.fields().len(), 4);
        assert_eq!(schema.field(2).name(), WINDOW_START);
        assert_eq!(schema.field(3).data_type(), schema.field(0).data_type());
        assert_eq!(t.time_column(), "ts");
        assert_eq!(t.kind(), &tumble());
    }

    #[test]
    fn refuses_a_table_that_has_window_columns_already() {
        let err = WindowedTable::try_new(table(&["window_end"]), tumble(), "ts").unwrap_err();
        assert!(
            err.to_string()
                .contains("already has a column named 'window_end'")
        );
    }

    #[test]
    fn rebinding_keeps_the_windows_and_needs_the_same_columns() {
        let t = WindowedTable::try_new(table(&["v"]), tumble(), "ts")
            .unwrap()
            .with_watermark(Some(5));
        let other = table(&["v"]);
        let rebound = t.with_inner(Arc::clone(&other)).unwrap();
        assert!(Arc::ptr_eq(rebound.inner(), &other));
        assert_eq!(rebound.watermark(), Some(5));
        let err = t.with_inner(table(&["w"])).unwrap_err();
        assert!(err.to_string().contains("differ"), "{err}");
    }

    #[tokio::test]
    async fn scan_reads_the_time_column_even_when_not_projected() {
        let t = WindowedTable::try_new(table(&["v"]), tumble(), "ts").unwrap();
        let ctx = SessionContext::new();
        let state = ctx.state();
        // Only v and window_end.
        let plan = t.scan(&state, Some(&vec![1, 3]), &[], None).await.unwrap();
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        let out = &batches[0];
        assert_eq!(out.num_columns(), 2);
        assert_eq!(out.schema().field(0).name(), "v");
        assert_eq!(out.schema().field(1).name(), WINDOW_END);
        // No columns at all (count(*)): still one row per window.
        let plan = t.scan(&state, Some(&vec![]), &[], None).await.unwrap();
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 2);
    }
}
