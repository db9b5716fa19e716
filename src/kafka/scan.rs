//! Reading exact offset ranges: [`KafkaScanExec`] is the DataFusion plan node with one output
//! partition per range, and each partition is read by an assigned (never subscribed) consumer
//! that stops at the range's end, tolerating gaps in offsets, and builds whole Arrow batches.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, Int32Array, Int64Array, ListBuilder,
    RecordBatch, RecordBatchOptions, StringArray, StringBuilder, StructBuilder,
    TimestampMillisecondArray,
};
use arrow::compute::filter;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
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
use super::options::{KafkaTableOptions, TopicPartition};
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
                for (i, range) in self.ranges.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{range}")?;
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
            Err(DataFusionError::Internal(
                "KafkaScanExec has no children".to_string(),
            ))
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
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
            malformed: MetricBuilder::new(&self.metrics)
                .counter(metric::MALFORMED_RECORDS, partition),
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

/// What a range reader asks of its consumer, so that the reading rules (gaps, the end of a
/// range, lost offsets, timeouts) can be tested with records a test makes up.
pub(crate) trait RecordPoller {
    /// The messages it yields.
    type Message<'a>: Message
    where
        Self: 'a;
    /// The next message, an error or event, or `None` when nothing arrived within `timeout`.
    fn poll(&self, timeout: Duration) -> Option<Result<Self::Message<'_>, KafkaError>>;
    /// The earliest offset still on the broker.
    fn low_watermark(&self, tp: &TopicPartition, timeout: Duration) -> Result<i64, KafkaError>;
    /// Moves the read position.
    fn seek(&self, tp: &TopicPartition, offset: i64, timeout: Duration) -> Result<(), KafkaError>;
}

impl RecordPoller for BaseConsumer {
    type Message<'a> = BorrowedMessage<'a>;

    fn poll(&self, timeout: Duration) -> Option<Result<BorrowedMessage<'_>, KafkaError>> {
        BaseConsumer::poll(self, timeout)
    }

    fn low_watermark(&self, tp: &TopicPartition, timeout: Duration) -> Result<i64, KafkaError> {
        self.fetch_watermarks(&tp.topic, tp.partition, timeout)
            .map(|(low, _)| low)
    }

    fn seek(&self, tp: &TopicPartition, offset: i64, timeout: Duration) -> Result<(), KafkaError> {
        Consumer::seek(
            self,
            &tp.topic,
            tp.partition,
            Offset::Offset(offset),
            timeout,
        )
    }
}

impl RangeReader {
    fn run(self, tx: &Sender<Result<RecordBatch>>) -> Result<()> {
        let tp = &self.range.tp;
        let consumer: BaseConsumer =
            self.source
                .options
                .consumer_config()
                .create()
                .map_err(|e| {
                    DataFusionError::Execution(format!(
                        "cannot create a Kafka consumer for {tp}: {e}"
                    ))
                })?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(self.range.start))
            .and_then(|()| consumer.assign(&assignment))
            .map_err(|e| {
                DataFusionError::Execution(format!("cannot assign {tp} to a consumer: {e}"))
            })?;
        self.read(&consumer, tx)
    }

    /// Reads the range from `poller`, which is positioned at its start. The range ends at the
    /// first record at or past its end, or when the partition has no more records (its end may
    /// fall in a gap of offsets, such as a transaction marker or compacted records).
    fn read<P: RecordPoller>(&self, poller: &P, tx: &Sender<Result<RecordBatch>>) -> Result<()> {
        let options = &self.source.options;
        let tp = &self.range.tp;
        // A table with declared columns decodes every record, even for count(*), so that every
        // query sees the same records under the table's 'mode'.
        let needs_value = self.source.decoder.is_some() || self.projection.contains(&Column::Value);
        let mut batch = BatchBuilder::new(&self.projection, needs_value, self.batch_size);
        let mut next = self.range.start;
        let mut rows_sent = 0usize;
        let mut last_progress = Instant::now();
        let row_limit = self.row_limit.unwrap_or(usize::MAX);

        while next < self.range.end && rows_sent + batch.len() < row_limit {
            match poller.poll(POLL_SLICE) {
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
                Some(Err(e))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange) =>
                {
                    next = self.recover_lost_offsets(poller, next)?;
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
    fn recover_lost_offsets<P: RecordPoller>(&self, poller: &P, next: i64) -> Result<i64> {
        let options = &self.source.options;
        let tp = &self.range.tp;
        let low = poller
            .low_watermark(tp, options.broker_timeout)
            .map_err(|e| {
                DataFusionError::Execution(format!("cannot look up the watermarks of {tp}: {e}"))
            })?;
        if options.fail_on_data_loss || low <= next {
            return Err(DataFusionError::Execution(format!(
                "data loss: offsets {next} to {} of {tp} were deleted from the broker while the \
                 query read them; set failOnDataLoss to false to skip such records",
                low - 1
            )));
        }
        warn!(
            "data loss: offsets {next} to {} of {tp} were deleted while being read; skipping them",
            low - 1
        );
        poller.seek(tp, low, options.broker_timeout).map_err(|e| {
            DataFusionError::Execution(format!("cannot seek {tp} to offset {low}: {e}"))
        })?;
        Ok(low)
    }

    /// Sends the rows built so far; returns how many were sent.
    fn send(&self, batch: &mut BatchBuilder, tx: &Sender<Result<RecordBatch>>) -> Result<usize> {
        let built = batch.finish(&self.source, &self.range, &self.projection, &self.schema)?;
        self.malformed.add(built.malformed);
        let rows = built.batch.num_rows();
        if tx.blocking_send(Ok(built.batch)).is_err() {
            return Err(DataFusionError::ResourcesExhausted(
                "the query stopped reading".to_string(),
            ));
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
                ListBuilder::new(StructBuilder::from_fields(header_fields(), capacity)).with_field(
                    match super::layout::headers_type() {
                        arrow::datatypes::DataType::List(field) => field,
                        _ => unreachable!("headers are a list"),
                    },
                )
            }),
        }
    }

    fn len(&self) -> usize {
        self.offsets.len()
    }

    fn append<M: Message>(&mut self, message: &M) {
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
                format!(
                    "topic '{}' partition {} offset {}",
                    range.tp.topic,
                    range.tp.partition,
                    offsets.value(i)
                )
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
                Column::Key => Arc::new(self.keys.as_mut().map(BinaryBuilder::finish).ok_or_else(
                    || DataFusionError::Internal("key column without a builder".to_string()),
                )?),
                Column::Value => Arc::new(values.clone().ok_or_else(|| {
                    DataFusionError::Internal("value column without a builder".to_string())
                })?),
                Column::Topic => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    range.tp.topic.as_str(),
                    rows,
                ))),
                Column::Partition => Arc::new(Int32Array::from(vec![range.tp.partition; rows])),
                Column::Offset => Arc::new(offsets.clone()),
                Column::Timestamp => Arc::new(
                    TimestampMillisecondArray::from(
                        self.timestamps
                            .as_mut()
                            .map(std::mem::take)
                            .unwrap_or_default(),
                    )
                    .with_data_type(timestamp_type()),
                ),
                Column::TimestampType => Arc::new(Int32Array::from(
                    self.timestamp_types
                        .as_mut()
                        .map(std::mem::take)
                        .unwrap_or_default(),
                )),
                Column::Headers => Arc::new(
                    self.headers
                        .as_mut()
                        .map(ListBuilder::finish)
                        .ok_or_else(|| {
                            DataFusionError::Internal(
                                "headers column without a builder".to_string(),
                            )
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
        Ok(BuiltBatch {
            batch,
            malformed: decoded.map_or(0, |d| d.malformed),
        })
    }
}

/// Sums a metric over every [`KafkaScanExec`] in a plan.
pub fn sum_metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    let own = plan
        .downcast_ref::<KafkaScanExec>()
        .and_then(|scan| scan.metrics())
        .and_then(|m| m.sum_by_name(name))
        .map_or(0, |v| v.as_usize());
    own + plan
        .children()
        .iter()
        .map(|c| sum_metric(c, name))
        .sum::<usize>()
}

/// Every [`KafkaScanExec`] in a plan.
pub fn scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<&KafkaScanExec> {
    let mut out: Vec<&KafkaScanExec> = plan.downcast_ref::<KafkaScanExec>().into_iter().collect();
    for child in plan.children() {
        out.extend(scans(child));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{HashMap, VecDeque};

    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use rdkafka::message::OwnedMessage;

    use super::*;

    /// Plays back a scripted sequence of poll answers; `None` once the script runs out.
    struct ScriptedPoller {
        script: RefCell<VecDeque<Result<OwnedMessage, KafkaError>>>,
        low: i64,
        seeks: RefCell<Vec<i64>>,
    }

    impl ScriptedPoller {
        fn new(offsets: &[i64]) -> Self {
            let script = offsets.iter().map(|o| Ok(record(*o))).collect();
            Self {
                script: RefCell::new(script),
                low: 0,
                seeks: RefCell::new(vec![]),
            }
        }
        fn then(self, answer: Result<OwnedMessage, KafkaError>) -> Self {
            self.script.borrow_mut().push_back(answer);
            self
        }
    }

    fn record(offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(format!("v{offset}").into_bytes()),
            None,
            "t".to_string(),
            Timestamp::CreateTime(1_000 + offset),
            0,
            offset,
            None,
        )
    }

    impl RecordPoller for ScriptedPoller {
        type Message<'a> = OwnedMessage;
        fn poll(&self, _timeout: Duration) -> Option<Result<OwnedMessage, KafkaError>> {
            self.script.borrow_mut().pop_front()
        }
        fn low_watermark(
            &self,
            _tp: &TopicPartition,
            _timeout: Duration,
        ) -> Result<i64, KafkaError> {
            Ok(self.low)
        }
        fn seek(
            &self,
            _tp: &TopicPartition,
            offset: i64,
            _timeout: Duration,
        ) -> Result<(), KafkaError> {
            self.seeks.borrow_mut().push(offset);
            Ok(())
        }
    }

    fn reader(
        start: i64,
        end: i64,
        extra: &[(&str, &str)],
        row_limit: Option<usize>,
    ) -> RangeReader {
        let mut map: HashMap<String, String> = HashMap::from([("subscribe".into(), "t".into())]);
        map.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let options = KafkaTableOptions::parse(&map, false, Some("fake:9092")).unwrap();
        let layout = TableLayout::new(None, false).unwrap();
        let metrics = ExecutionPlanMetricsSet::new();
        let projection = vec![Column::Offset, Column::Value];
        RangeReader {
            schema: Arc::new(layout.schema.project(&[4, 1]).unwrap()),
            source: Arc::new(ScanSource {
                table: "t".into(),
                options: Arc::new(options),
                layout,
                decoder: None,
            }),
            range: PartitionRange {
                tp: TopicPartition::new("t", 0),
                start,
                end,
            },
            projection,
            row_limit,
            batch_size: 2,
            fetched: MetricBuilder::new(&metrics).counter(metric::RECORDS_FETCHED, 0),
            malformed: MetricBuilder::new(&metrics).counter(metric::MALFORMED_RECORDS, 0),
        }
    }

    /// Reads with `poller` and returns the offsets of the rows produced.
    fn read(reader: &RangeReader, poller: &ScriptedPoller) -> Result<Vec<i64>> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        reader.read(poller, &tx)?;
        drop(tx);
        let mut offsets = vec![];
        while let Ok(batch) = rx.try_recv() {
            let batch = batch?;
            assert!(batch.num_rows() <= 2, "batches respect the batch size");
            offsets.extend(
                batch
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        Ok(offsets)
    }

    fn eof() -> Result<OwnedMessage, KafkaError> {
        Err(KafkaError::PartitionEOF(0))
    }

    #[test]
    fn reads_exactly_the_range() {
        let r = reader(3, 6, &[], None);
        let p = ScriptedPoller::new(&[3, 4, 5, 6, 7]);
        assert_eq!(read(&r, &p).unwrap(), vec![3, 4, 5]);
        assert_eq!(r.fetched.value(), 3);
    }

    #[test]
    fn gaps_inside_and_at_the_end_of_a_range() {
        // A compacted partition: offsets 0, 1, 5, 9 remain; the range [0, 7) ends in a gap.
        let r = reader(0, 7, &[], None);
        assert_eq!(
            read(&r, &ScriptedPoller::new(&[0, 1, 5, 9])).unwrap(),
            vec![0, 1, 5]
        );
        // A transaction marker at offset 4 is the last offset: the partition ends (EOF) at 5.
        let r = reader(2, 5, &[], None);
        assert_eq!(
            read(&r, &ScriptedPoller::new(&[2, 3]).then(eof())).unwrap(),
            vec![2, 3]
        );
    }

    #[test]
    fn row_limit_stops_early() {
        let r = reader(0, 100, &[], Some(3));
        let p = ScriptedPoller::new(&[0, 1, 2, 3, 4, 5]);
        assert_eq!(read(&r, &p).unwrap(), vec![0, 1, 2]);
        assert_eq!(
            p.script.borrow().len(),
            3,
            "nothing past the limit is consumed"
        );
    }

    #[test]
    fn silence_times_out_with_the_range_named() {
        let r = reader(0, 5, &[("kafkaConsumer.pollTimeoutMs", "1")], None);
        let e = read(&r, &ScriptedPoller::new(&[0, 1]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no record of t[0] arrived within 1 ms")
                && e.contains("offset 2 of the range [0, 5)"),
            "{e}"
        );
    }

    #[test]
    fn offsets_lost_while_reading() {
        let lost = || {
            Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OffsetOutOfRange,
            ))
        };
        let r = reader(0, 10, &[], None);
        let e = read(&r, &ScriptedPoller::new(&[0]).then(lost()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data loss") && e.contains("failOnDataLoss"),
            "{e}"
        );

        let r = reader(0, 10, &[("failOnDataLoss", "false")], None);
        let mut p = ScriptedPoller::new(&[0]).then(lost());
        p.low = 6;
        for o in [6, 7, 8, 9] {
            p = p.then(Ok(record(o)));
        }
        assert_eq!(read(&r, &p).unwrap(), vec![0, 6, 7, 8, 9]);
        assert_eq!(*p.seeks.borrow(), vec![6]);
    }

    #[test]
    fn other_errors_name_the_partition_and_offset() {
        let r = reader(0, 10, &[], None);
        let p = ScriptedPoller::new(&[0]).then(Err(KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure,
        )));
        let e = read(&r, &p).unwrap_err().to_string();
        assert!(
            e.contains("reading t[0] at offset 1 from Kafka broker(s) fake:9092 failed"),
            "{e}"
        );
    }
}
