//! The `weir` schema: the session's streaming queries, their recent progress and their Kafka
//! lag as tables (`weir.queries`, `weir.query_progress`, `weir.kafka_lag`), read like any
//! other table from the REPL, the runner or the embedding API. Each scan takes a snapshot of
//! what the queries report at that moment.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::queries::QueryRegistry;
use crate::stream::QueryProgress;
use crate::stream::query::{QueryHandle, QueryStatus};

/// The schema's name.
pub const SCHEMA: &str = "weir";

/// The schema holding the system tables of the queries in `registry`.
pub fn schema(registry: &Arc<QueryRegistry>) -> Result<Arc<dyn SchemaProvider>> {
    let schema = MemorySchemaProvider::new();
    for kind in [Kind::Queries, Kind::QueryProgress, Kind::KafkaLag] {
        let table = SystemTable {
            kind,
            registry: Arc::clone(registry),
        };
        schema.register_table(kind.name().to_string(), Arc::new(table))?;
    }
    Ok(Arc::new(schema))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Queries,
    QueryProgress,
    KafkaLag,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Queries => "queries",
            Kind::QueryProgress => "query_progress",
            Kind::KafkaLag => "kafka_lag",
        }
    }

    fn schema(self) -> SchemaRef {
        let time = || DataType::Timestamp(TimeUnit::Millisecond, None);
        let fields = match self {
            Kind::Queries => vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("id", DataType::Utf8, false),
                Field::new("status", DataType::Utf8, false),
                Field::new("error", DataType::Utf8, true),
                Field::new("batch", DataType::UInt64, true),
                Field::new("input_rows_per_second", DataType::Float64, true),
                Field::new("processed_rows_per_second", DataType::Float64, true),
                Field::new("lag", DataType::Int64, true),
                Field::new("watermark", time(), true),
                Field::new("state_rows", DataType::UInt64, true),
                Field::new("sink", DataType::Utf8, false),
            ],
            Kind::QueryProgress => vec![
                Field::new("query", DataType::Utf8, false),
                Field::new("batch", DataType::UInt64, false),
                Field::new("started", time(), false),
                Field::new("input_rows", DataType::UInt64, false),
                Field::new("output_rows", DataType::UInt64, false),
                Field::new("input_rows_per_second", DataType::Float64, false),
                Field::new("processed_rows_per_second", DataType::Float64, false),
                Field::new("plan_ms", DataType::Float64, false),
                Field::new("read_ms", DataType::Float64, false),
                Field::new("execute_ms", DataType::Float64, false),
                Field::new("sink_ms", DataType::Float64, false),
                Field::new("commit_ms", DataType::Float64, false),
                Field::new("total_ms", DataType::Float64, false),
                Field::new("lag", DataType::Int64, false),
                Field::new("watermark", time(), true),
                Field::new("late_rows", DataType::UInt64, false),
                Field::new("state_rows", DataType::UInt64, false),
                Field::new("state_bytes", DataType::UInt64, false),
                Field::new("replayed", DataType::Boolean, false),
            ],
            Kind::KafkaLag => vec![
                Field::new("query", DataType::Utf8, false),
                Field::new("source", DataType::Utf8, false),
                Field::new("topic", DataType::Utf8, false),
                Field::new("partition", DataType::Int32, false),
                Field::new("committed_end", DataType::Int64, false),
                Field::new("latest", DataType::Int64, false),
                Field::new("lag", DataType::Int64, false),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

/// One system table: its rows are computed when it is scanned.
#[derive(Debug)]
struct SystemTable {
    kind: Kind,
    registry: Arc<QueryRegistry>,
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.kind.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let queries = self.registry.all();
        let rows = match self.kind {
            Kind::Queries => queries_rows(&queries)?,
            Kind::QueryProgress => progress_rows(&queries)?,
            Kind::KafkaLag => lag_rows(&queries)?,
        };
        let table = MemTable::try_new(self.schema(), vec![vec![rows]])?;
        table.scan(state, projection, filters, limit).await
    }
}

fn queries_rows(queries: &[Arc<QueryHandle>]) -> Result<RecordBatch> {
    let latest: Vec<Option<QueryProgress>> = queries.iter().map(|q| q.progress()).collect();
    let statuses: Vec<QueryStatus> = queries.iter().map(|q| q.status()).collect();
    let errors = statuses.iter().map(|s| match s {
        QueryStatus::Failed(message) => Some(message.as_str()),
        _ => None,
    });
    let of = |f: fn(&QueryProgress) -> f64| latest.iter().map(move |p| p.as_ref().map(f));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            queries.iter().map(|q| q.name()),
        )),
        Arc::new(StringArray::from_iter_values(
            queries.iter().map(|q| q.id()),
        )),
        Arc::new(StringArray::from_iter_values(
            statuses.iter().map(QueryStatus::label),
        )),
        Arc::new(StringArray::from_iter(errors)),
        Arc::new(UInt64Array::from_iter(
            latest.iter().map(|p| p.as_ref().map(|p| p.batch_id)),
        )),
        Arc::new(Float64Array::from_iter(of(|p| p.input_rows_per_second))),
        Arc::new(Float64Array::from_iter(of(|p| p.processed_rows_per_second))),
        Arc::new(Int64Array::from_iter(
            latest
                .iter()
                .map(|p| p.as_ref().map(QueryProgress::total_lag)),
        )),
        Arc::new(TimestampMillisecondArray::from_iter(latest.iter().map(
            |p| p.as_ref().and_then(|p| p.event_time.next_watermark_ms),
        ))),
        Arc::new(UInt64Array::from_iter(
            latest
                .iter()
                .map(|p| p.as_ref().map(|p| p.event_time.state_rows)),
        )),
        Arc::new(StringArray::from_iter_values(
            queries.iter().map(|q| q.sink()),
        )),
    ];
    Ok(RecordBatch::try_new(Kind::Queries.schema(), columns)?)
}

fn progress_rows(queries: &[Arc<QueryHandle>]) -> Result<RecordBatch> {
    let reports: Vec<(String, QueryProgress)> = queries
        .iter()
        .flat_map(|q| {
            let name = q.name().to_string();
            q.recent_progress()
                .into_iter()
                .map(move |p| (name.clone(), p))
        })
        .collect();
    let column = |f: fn(&QueryProgress) -> f64| {
        Arc::new(Float64Array::from_iter_values(
            reports.iter().map(|(_, p)| f(p)),
        )) as ArrayRef
    };
    let count = |f: fn(&QueryProgress) -> u64| {
        Arc::new(UInt64Array::from_iter_values(
            reports.iter().map(|(_, p)| f(p)),
        )) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            reports.iter().map(|(q, _)| q),
        )),
        count(|p| p.batch_id),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            reports.iter().map(|(_, p)| p.timestamp_ms),
        )),
        count(|p| p.num_input_rows),
        count(|p| p.num_output_rows),
        column(|p| p.input_rows_per_second),
        column(|p| p.processed_rows_per_second),
        column(|p| p.durations.plan_ms),
        column(|p| p.durations.read_ms),
        column(|p| p.durations.execute_ms),
        column(|p| p.durations.sink_ms),
        column(|p| p.durations.commit_ms),
        column(|p| p.durations.total_ms),
        Arc::new(Int64Array::from_iter_values(
            reports.iter().map(|(_, p)| p.total_lag()),
        )),
        Arc::new(TimestampMillisecondArray::from_iter(
            reports.iter().map(|(_, p)| p.event_time.next_watermark_ms),
        )),
        count(|p| p.event_time.late_rows),
        count(|p| p.event_time.state_rows),
        count(|p| p.event_time.state_bytes),
        Arc::new(BooleanArray::from_iter(
            reports.iter().map(|(_, p)| Some(p.replayed)),
        )),
    ];
    Ok(RecordBatch::try_new(Kind::QueryProgress.schema(), columns)?)
}

fn lag_rows(queries: &[Arc<QueryHandle>]) -> Result<RecordBatch> {
    let mut query = vec![];
    let mut source = vec![];
    let mut topic = vec![];
    let mut partition = vec![];
    let mut end = vec![];
    let mut latest = vec![];
    let mut lag = vec![];
    for handle in queries {
        let Some(progress) = handle.progress() else {
            continue;
        };
        for table in &progress.sources {
            for p in &table.partitions {
                query.push(handle.name().to_string());
                source.push(table.table.clone());
                topic.push(p.topic.clone());
                partition.push(p.partition);
                end.push(p.end_offset);
                latest.push(p.latest_offset);
                lag.push(p.lag);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(query)),
        Arc::new(StringArray::from(source)),
        Arc::new(StringArray::from(topic)),
        Arc::new(Int32Array::from(partition)),
        Arc::new(Int64Array::from(end)),
        Arc::new(Int64Array::from(latest)),
        Arc::new(Int64Array::from(lag)),
    ];
    Ok(RecordBatch::try_new(Kind::KafkaLag.schema(), columns)?)
}
