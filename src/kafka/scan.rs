//! Reading exact offset ranges: [`KafkaScanExec`] is the DataFusion plan node with one output
//! partition per range, and each partition is read by an assigned (never subscribed) consumer
//! that stops at the range's end, tolerating gaps in offsets, and builds whole Arrow batches.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, Int32Array, Int64Array,
    ListBuilder, RecordBatch, RecordBatchOptions, StringArray, StringBuilder, StructBuilder,
    TimestampMillisecondArray,
};
use arrow::compute::filter;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use log::warn;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message, Timestamp};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::Sender;

use super::layout::{Column, TableLayout, header_fields, timestamp_type};
use super::offsets::PartitionRange;
use super::options::KafkaTableOptions;
use crate::format::ValueDecoder;

/// What every reader of one table shares.
#[derive(Debug)]
pub struct ScanSource {
    /// The table's name, for messages.
    pub table: String,
    /// The table's options.
    pub options: Arc<KafkaTableOptions>,
    /// The table's columns.
    pub layout: TableLayout,
    /// The decoder of declared columns, when the table has them.
    pub decoder: Option<ValueDecoder>,
}

/// Scans exact offset ranges of a Kafka table: one output partition per range.
#[derive(Debug)]
pub struct KafkaScanExec {
    source: Arc<ScanSource>,
    ranges: Vec<PartitionRange>,
    /// The table columns this plan outputs, in order.
    projection: Vec<Column>,
    schema: SchemaRef,
    /// At most this many rows per range (a pushed-down LIMIT).
    row_limit: Option<usize>,
    /// True when the table is a stream read up to its latest offsets at query start.
    snapshot: bool,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

/// Names of the metrics a scan reports.
pub mod metric {
    /// Records fetched from Kafka.
    pub const RECORDS_FETCHED: &str = "records_fetched";
    /// Records whose value did not decode (dropped or nulled).
    pub const MALFORMED_RECORDS: &str = "malformed_records";
}

impl KafkaScanExec {
    /// A scan of `ranges` outputting the table columns numbered `projection` (all when `None`).
    pub fn new(
        source: Arc<ScanSource>,
        ranges: Vec<PartitionRange>,
        projection: Option<&Vec<usize>>,
        row_limit: Option<usize>,
        snapshot: bool,
    ) -> Result<Self> {
        let schema = match projection {
            Some(p) => Arc::new(source.layout.schema.project(p)?),
            None => Arc::clone(&source.layout.schema),
        };
        let projection: Vec<Column> = match projection {
            Some(p) => p.iter().map(|i| source.layout.columns[*i]).collect(),
            None => source.layout.columns.clone(),
        };
        let ranges: Vec<PartitionRange> = ranges.into_iter().filter(|r| !r.is_empty()).collect();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(ranges.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            source,
            ranges,
            projection,
            schema,
            row_limit,
            snapshot,
            metrics: ExecutionPlanMetricsSet::new(),
            properties,
        })
    }

    /// The ranges read, one per output partition.
    pub fn ranges(&self) -> &[PartitionRange] {
        &self.ranges
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.source.table
    }

    /// True when the scanned table is a stream read as a snapshot up to its latest offsets.
    pub fn is_snapshot(&self) -> bool {
        self.snapshot
    }
}

impl DisplayAs for KafkaScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let records: i64 = self.ranges.iter().map(PartitionRange::len).sum();
        match t {
            DisplayFormatType::Default | DisplayFormatType::TreeRender => write!(
                f,
                "KafkaScanExec: table={}, ranges={}, offsets={records}",
                self.source.table,
                self.ranges.len()
            )?,
            DisplayFormatType::Verbose => {
                write!(f, "KafkaScanExec: table={}, ranges=[", self.source.table)?;
                for (i, r) in self.ranges.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{}:[{}, {})", r.tp, r.start, r.end)?;
                }
                write!(f, "]")?;
            }
        }
        if let Some(limit) = self.row_limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for KafkaScanExec {
    fn name(&self) -> &str {
        "KafkaScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("KafkaScanExec has no children".to_string()))
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let mut builder = RecordBatchReceiverStreamBuilder::new(Arc::clone(&self.schema), 2);
        let Some(range) = self.ranges.get(partition).cloned() else {
            return Ok(builder.build());
        };
        let reader = RangeReader {
            source: Arc::clone(&self.source),
            range,
            projection: self.projection.clone(),
            schema: Arc::clone(&self.schema),
            row_limit: self.row_limit,
            batch_size: context.session_config().batch_size(),
            fetched: MetricBuilder::new(&self.metrics).counter(metric::RECORDS_FETCHED, partition),
            malformed: MetricBuilder::new(&self.metrics).counter(metric::MALFORMED_RECORDS, partition),
        };
        let tx = builder.tx();
        builder.spawn_blocking(move || reader.run(&tx));
        Ok(builder.build())
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Reads one range on a blocking thread and sends its batches.
struct RangeReader {
    source: Arc<ScanSource>,
    range: PartitionRange,
    projection: Vec<Column>,
    schema: SchemaRef,
    row_limit: Option<usize>,
    batch_size: usize,
    fetched: Count,
    malformed: Count,
}

/// How often a reader wakes up to check its deadline while the broker is silent.
const POLL_SLICE: Duration = Duration::from_millis(200);

impl RangeReader {
    fn run(self, tx: &Sender<Result<RecordBatch>>) -> Result<()> {
        let options = &self.source.options;
        let tp = &self.range.tp;
        let consumer: BaseConsumer = options
            .consumer_config()
            .create()
            .map_err(|e| DataFusionError::Execution(format!("cannot create a Kafka consumer for {tp}: {e}")))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(self.range.start))
            .and_then(|()| consumer.assign(&assignment))
            .map_err(|e| DataFusionError::Execution(format!("cannot assign {tp} to a consumer: {e}")))?;

        let needs_value = self.source.decoder.is_some()
            && self.projection.iter().any(|c| matches!(c, Column::Declared(_)))
            || self.projection.contains(&Column::Value);
        let mut batch = BatchBuilder::new(&self.projection, needs_value, self.batch_size);
        let mut next = self.range.start;
        let mut rows_sent = 0usize;
        let mut last_progress = Instant::now();
        let row_limit = self.row_limit.unwrap_or(usize::MAX);

        while next < self.range.end && rows_sent + batch.len() < row_limit {
            match consumer.poll(POLL_SLICE) {
                None => {
                    if last_progress.elapsed() >= options.poll_timeout {
                        return Err(DataFusionError::Execution(format!(
                            "no record of {tp} arrived within {} ms (kafkaConsumer.pollTimeoutMs) \
                             while reading offset {next} of the range [{}, {}) from Kafka \
                             broker(s) {}",
                            options.poll_timeout.as_millis(),
                            self.range.start,
                            self.range.end,
                            options.bootstrap_servers()
                        )));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange) => {
                    next = self.recover_lost_offsets(&consumer, next)?;
                    last_progress = Instant::now();
                }
                Some(Err(e)) => {
                    return Err(DataFusionError::Execution(format!(
                        "reading {tp} at offset {next} from Kafka broker(s) {} failed: {e}",
                        options.bootstrap_servers()
                    )));
                }
                Some(Ok(message)) => {
                    last_progress = Instant::now();
                    let offset = message.offset();
                    if offset >= self.range.end {
                        break;
                    }
                    if offset < next {
                        continue;
                    }
                    batch.append(&message);
                    self.fetched.add(1);
                    next = offset + 1;
                    if batch.len() >= self.batch_size {
                        rows_sent += self.send(&mut batch, tx)?;
                    }
                }
            }
        }
        if batch.len() > 0 {
            self.send(&mut batch, tx)?;
        }
        Ok(())
    }

    /// Handles offsets deleted while the range was read, as failOnDataLoss says.
    fn recover_lost_offsets(&self, consumer: &BaseConsumer, next: i64) -> Result<i64> {
        let options = &self.source.options;
        let tp = &self.range.tp;
        let (low, _) = consumer
            .fetch_watermarks(&tp.topic, tp.partition, options.broker_timeout)
            .map_err(|e| DataFusionError::Execution(format!("cannot look up the watermarks of {tp}: {e}")))?;
        if options.fail_on_data_loss || low <= next {
            return Err(DataFusionError::Execution(format!(
                "data loss: offsets {next} to {} of {tp} were deleted from the broker while the \
                 query read them; set failOnDataLoss to false to skip such records",
                low - 1
            )));
        }
        warn!("data loss: offsets {next} to {} of {tp} were deleted while being read; skipping them", low - 1);
        consumer
            .seek(&tp.topic, tp.partition, Offset::Offset(low), options.broker_timeout)
            .map_err(|e| DataFusionError::Execution(format!("cannot seek {tp} to offset {low}: {e}")))?;
        Ok(low)
    }

    /// Sends the rows built so far; returns how many were sent.
    fn send(&self, batch: &mut BatchBuilder, tx: &Sender<Result<RecordBatch>>) -> Result<usize> {
        let built = batch.finish(&self.source, &self.range, &self.projection, &self.schema)?;
        self.malformed.add(built.malformed);
        let rows = built.batch.num_rows();
        if tx.blocking_send(Ok(built.batch)).is_err() {
            return Err(DataFusionError::ResourcesExhausted("the query stopped reading".to_string()));
        }
        Ok(rows)
    }
}

/// A batch of rows and how many of its records did not decode.
struct BuiltBatch {
    batch: RecordBatch,
    malformed: usize,
}

/// Accumulates the columns a scan needs from consecutive records of one partition.
struct BatchBuilder {
    keys: Option<BinaryBuilder>,
    values: Option<BinaryBuilder>,
    offsets: Vec<i64>,
    timestamps: Option<Vec<Option<i64>>>,
    timestamp_types: Option<Vec<i32>>,
    headers: Option<ListBuilder<StructBuilder>>,
}

impl BatchBuilder {
    fn new(projection: &[Column], needs_value: bool, capacity: usize) -> Self {
        let wants = |c: Column| projection.contains(&c);
        Self {
            keys: wants(Column::Key).then(|| BinaryBuilder::with_capacity(capacity, capacity * 16)),
            values: needs_value.then(|| BinaryBuilder::with_capacity(capacity, capacity * 128)),
            offsets: Vec::with_capacity(capacity),
            timestamps: wants(Column::Timestamp).then(|| Vec::with_capacity(capacity)),
            timestamp_types: wants(Column::TimestampType).then(|| Vec::with_capacity(capacity)),
            headers: wants(Column::Headers).then(|| {
                ListBuilder::new(StructBuilder::from_fields(header_fields(), capacity))
                    .with_field(match super::layout::headers_type() {
                        arrow::datatypes::DataType::List(field) => field,
                        _ => unreachable!("headers are a list"),
                    })
            }),
        }
    }

    fn len(&self) -> usize {
        self.offsets.len()
    }

    fn append(&mut self, message: &BorrowedMessage<'_>) {
        self.offsets.push(message.offset());
        if let Some(keys) = &mut self.keys {
            keys.append_option(message.key());
        }
        if let Some(values) = &mut self.values {
            values.append_option(message.payload());
        }
        let (timestamp, kind) = match message.timestamp() {
            Timestamp::NotAvailable => (None, -1),
            Timestamp::CreateTime(t) => (Some(t), 0),
            Timestamp::LogAppendTime(t) => (Some(t), 1),
        };
        if let Some(timestamps) = &mut self.timestamps {
            timestamps.push(timestamp);
        }
        if let Some(kinds) = &mut self.timestamp_types {
            kinds.push(kind);
        }
        if let Some(list) = &mut self.headers {
            if let Some(headers) = message.headers() {
                let entries = list.values();
                for header in headers.iter() {
                    entries
                        .field_builder::<StringBuilder>(0)
                        .expect("header key builder")
                        .append_value(header.key);
                    entries
                        .field_builder::<BinaryBuilder>(1)
                        .expect("header value builder")
                        .append_option(header.value);
                    entries.append(true);
                }
            }
            list.append(true);
        }
    }

    /// Builds the projected columns of the records appended since the last call.
    fn finish(
        &mut self,
        source: &ScanSource,
        range: &PartitionRange,
        projection: &[Column],
        schema: &SchemaRef,
    ) -> Result<BuiltBatch> {
        let offsets = Int64Array::from(std::mem::take(&mut self.offsets));
        let values: Option<BinaryArray> = self.values.as_mut().map(BinaryBuilder::finish);
        let rows = offsets.len();

        let mut decoded = None;
        if let (Some(decoder), Some(values)) = (&source.decoder, &values) {
            let locate = |i: usize| {
                format!("topic '{}' partition {} offset {}", range.tp.topic, range.tp.partition, offsets.value(i))
            };
            decoded = Some(decoder.decode(values, &locate)?);
        }
        let kept: Option<&BooleanArray> = decoded.as_ref().and_then(|d| d.kept.as_ref());

        let mut columns: Vec<ArrayRef> = Vec::with_capacity(projection.len());
        for column in projection {
            let array: ArrayRef = match column {
                Column::Declared(i) => {
                    let decoded = decoded.as_ref().ok_or_else(|| {
                        DataFusionError::Internal("declared column without a decoder".to_string())
                    })?;
                    columns.push(Arc::clone(decoded.batch.column(*i)));
                    continue;
                }
                Column::Key => Arc::new(self.keys.as_mut().map(BinaryBuilder::finish).ok_or_else(|| {
                    DataFusionError::Internal("key column without a builder".to_string())
                })?),
                Column::Value => Arc::new(values.clone().ok_or_else(|| {
                    DataFusionError::Internal("value column without a builder".to_string())
                })?),
                Column::Topic => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(range.tp.topic.as_str(), rows))),
                Column::Partition => Arc::new(Int32Array::from(vec![range.tp.partition; rows])),
                Column::Offset => Arc::new(offsets.clone()),
                Column::Timestamp => Arc::new(
                    TimestampMillisecondArray::from(self.timestamps.as_mut().map(std::mem::take).unwrap_or_default())
                        .with_data_type(timestamp_type()),
                ),
                Column::TimestampType => {
                    Arc::new(Int32Array::from(self.timestamp_types.as_mut().map(std::mem::take).unwrap_or_default()))
                }
                Column::Headers => Arc::new(
                    self.headers.as_mut().map(ListBuilder::finish).ok_or_else(|| {
                        DataFusionError::Internal("headers column without a builder".to_string())
                    })?,
                ),
            };
            columns.push(match kept {
                Some(kept) => filter(&array, kept)?,
                None => array,
            });
        }
        let kept_rows = kept.map_or(rows, |k| k.true_count());
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(kept_rows)),
        )?;
        Ok(BuiltBatch { batch, malformed: decoded.map_or(0, |d| d.malformed) })
    }
}

/// Sums a metric over every [`KafkaScanExec`] in a plan.
pub fn sum_metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    let own = plan
        .downcast_ref::<KafkaScanExec>()
        .and_then(|scan| scan.metrics())
        .and_then(|m| m.sum_by_name(name))
        .map_or(0, |v| v.as_usize());
    own + plan.children().iter().map(|c| sum_metric(c, name)).sum::<usize>()
}

/// Every [`KafkaScanExec`] in a plan.
pub fn scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<&KafkaScanExec> {
    let mut out: Vec<&KafkaScanExec> = plan.downcast_ref::<KafkaScanExec>().into_iter().collect();
    for child in plan.children() {
        out.extend(scans(child));
    }
    out
}

impl fmt::Display for PartitionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:[{}, {})", self.tp, self.start, self.end)
    }
}
