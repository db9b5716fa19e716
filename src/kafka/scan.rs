//! Reading exact offset ranges: [`KafkaScanExec`] is the DataFusion plan node with one output
//! partition per range, and each partition is read by an assigned (never subscribed) consumer
//! that stops at the range's end, tolerating gaps in offsets, and builds whole Arrow batches.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::array::{
    ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, Int32Array, Int64Array, ListBuilder,
    RecordBatch, RecordBatchOptions, StringArray, StringBuilder, StructBuilder,
    TimestampMillisecondArray,
};
use arrow::compute::{cast, filter};
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
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

use super::client::is_transient;
use super::consumers::{ConsumerPool, assign};
use super::layout::{Column, TableLayout, header_fields, timestamp_type};
use super::offsets::PartitionRange;
use super::options::{KafkaTableOptions, TopicPartition};
use super::read_progress::ReadProgress;
use crate::format::RecordDecoder;

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
    pub decoder: Option<RecordDecoder>,
    /// Each row's watermark candidate (the table's `watermark` option), over the declared
    /// columns.
    pub event_time: Option<Arc<dyn PhysicalExpr>>,
}

/// What a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// A bounded table's ranges.
    Bounded,
    /// A stream read up to its latest offsets at query start.
    Snapshot,
    /// One batch's slice of a streaming query: every partition of the slice is assigned to its
    /// reader, also those with nothing to read, so that a reader's consumer holds the same
    /// partitions batch after batch and can be kept ([`super::consumers`]).
    Slice,
}

/// The largest watermark candidate a scan read from each partition.
pub type EventTimes = Arc<Mutex<BTreeMap<TopicPartition, i64>>>;

/// Scans exact offset ranges of a Kafka table. Ranges are shared out among the output
/// partitions, and each output partition reads its ranges with one consumer.
#[derive(Debug)]
pub struct KafkaScanExec {
    source: Arc<ScanSource>,
    ranges: Vec<PartitionRange>,
    /// The ranges of each output partition.
    groups: Vec<Vec<PartitionRange>>,
    /// The table columns this plan outputs, in order.
    projection: Vec<Column>,
    schema: SchemaRef,
    /// At most this many rows per range (a pushed-down LIMIT).
    row_limit: Option<usize>,
    /// What it reads.
    kind: ScanKind,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
    event_times: EventTimes,
}

/// Names of the metrics a scan reports.
pub mod metric {
    /// Records fetched from Kafka.
    pub const RECORDS_FETCHED: &str = "records_fetched";
    /// Records whose value did not decode (dropped or nulled).
    pub const MALFORMED_RECORDS: &str = "malformed_records";
    /// Offsets of the ranges deleted from the broker while they were read (failOnDataLoss
    /// false skips them).
    pub const LOST_OFFSETS: &str = "lost_offsets";
    /// Time a reader spent fetching and decoding (not waiting for the query to take its rows).
    pub const READ_TIME: &str = "read_time";
}

impl KafkaScanExec {
    /// A scan of `ranges` by up to `readers` consumers, outputting the table columns numbered
    /// `projection` (all when `None`).
    pub fn new(
        source: Arc<ScanSource>,
        ranges: Vec<PartitionRange>,
        readers: usize,
        projection: Option<&Vec<usize>>,
        row_limit: Option<usize>,
        kind: ScanKind,
    ) -> Result<Self> {
        let schema = match projection {
            Some(p) => Arc::new(source.layout.schema.project(p)?),
            None => Arc::clone(&source.layout.schema),
        };
        let projection: Vec<Column> = match projection {
            Some(p) => p.iter().map(|i| source.layout.columns[*i]).collect(),
            None => source.layout.columns.clone(),
        };
        let ranges: Vec<PartitionRange> = ranges
            .into_iter()
            .filter(|r| kind == ScanKind::Slice || !r.is_empty())
            .collect();
        let groups = group_ranges(&ranges, readers);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(groups.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            source,
            ranges,
            groups,
            projection,
            schema,
            row_limit,
            kind,
            metrics: ExecutionPlanMetricsSet::new(),
            properties,
            event_times: EventTimes::default(),
        })
    }

    /// The largest watermark candidate read from each partition so far (tables with a
    /// `watermark` option).
    pub fn max_event_times(&self) -> BTreeMap<TopicPartition, i64> {
        self.event_times
            .lock()
            .map(|times| times.clone())
            .unwrap_or_default()
    }

    /// The ranges read.
    pub fn ranges(&self) -> &[PartitionRange] {
        &self.ranges
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.source.table
    }

    /// What it reads.
    pub fn kind(&self) -> ScanKind {
        self.kind
    }

    /// Whether the table has a `watermark` option.
    pub fn has_watermark(&self) -> bool {
        self.source.event_time.is_some()
    }

    /// True when the scanned table is a stream read as a snapshot up to its latest offsets.
    pub fn is_snapshot(&self) -> bool {
        self.kind == ScanKind::Snapshot
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
        let Some(ranges) = self.groups.get(partition).cloned() else {
            return Ok(builder.build());
        };
        let reader = RangeReader {
            source: Arc::clone(&self.source),
            ranges,
            projection: self.projection.clone(),
            schema: Arc::clone(&self.schema),
            row_limit: self.row_limit,
            batch_size: context.session_config().batch_size(),
            fetched: MetricBuilder::new(&self.metrics).counter(metric::RECORDS_FETCHED, partition),
            malformed: MetricBuilder::new(&self.metrics)
                .counter(metric::MALFORMED_RECORDS, partition),
            lost: MetricBuilder::new(&self.metrics).counter(metric::LOST_OFFSETS, partition),
            read_time: MetricBuilder::new(&self.metrics).subset_time(metric::READ_TIME, partition),
            send_wait: Cell::default(),
            event_times: Arc::clone(&self.event_times),
            pool: context.session_config().get_extension::<ConsumerPool>(),
            progress: self.bounded_progress(&context),
        };
        if let Some(progress) = &reader.progress {
            progress.plan(reader.ranges.iter().map(|r| r.len() as u64).sum());
        }
        let tx = builder.tx();
        builder.spawn_blocking(move || reader.run(&tx));
        Ok(builder.build())
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

impl KafkaScanExec {
    /// Where a bounded scan reports how far it has read; streaming slices report per batch.
    fn bounded_progress(&self, context: &TaskContext) -> Option<Arc<ReadProgress>> {
        match self.kind {
            ScanKind::Slice => None,
            ScanKind::Bounded | ScanKind::Snapshot => {
                context.session_config().get_extension::<ReadProgress>()
            }
        }
    }
}

/// Shares `ranges` out among at most `readers` groups, round robin, so that no group holds two
/// ranges of one partition (a consumer reads a partition from one position): the ranges of one
/// partition (split by minPartitions) are consecutive, and there are at least as many groups as
/// the most any partition has.
pub fn group_ranges(ranges: &[PartitionRange], readers: usize) -> Vec<Vec<PartitionRange>> {
    let most_of_one = ranges
        .chunk_by(|a, b| a.tp == b.tp)
        .map(<[PartitionRange]>::len)
        .max()
        .unwrap_or(0);
    let count = readers.max(most_of_one).min(ranges.len()).max(1);
    let mut groups = vec![vec![]; count];
    for (i, range) in ranges.iter().enumerate() {
        groups[i % count].push(range.clone());
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// Reads a group of ranges with one consumer on a blocking thread and sends their batches.
struct RangeReader {
    source: Arc<ScanSource>,
    ranges: Vec<PartitionRange>,
    projection: Vec<Column>,
    schema: SchemaRef,
    row_limit: Option<usize>,
    batch_size: usize,
    fetched: Count,
    malformed: Count,
    lost: Count,
    read_time: Time,
    /// Time spent waiting for the query to take a batch, left out of `read_time`.
    send_wait: Cell<Duration>,
    event_times: EventTimes,
    /// Consumers kept across batches, when the session has a pool.
    pool: Option<Arc<ConsumerPool>>,
    /// Where a bounded read reports the offsets it moved past.
    progress: Option<Arc<ReadProgress>>,
}

/// How often a reader wakes up to check its deadline while the broker is silent.
const POLL_SLICE: Duration = Duration::from_millis(200);
/// After this long without a record of an open range, its partition's fetching is restarted
/// (resumed and sought to the next offset), and again after as long: a reused consumer was
/// seen, rarely and under load, never to deliver a partition it had paused at an earlier range's
/// end.
const STALL_RESTART: Duration = Duration::from_secs(5);

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
    /// Moves the read position of a partition.
    fn seek(&self, tp: &TopicPartition, offset: i64, timeout: Duration) -> Result<(), KafkaError>;
    /// The next offset the consumer will fetch of a partition.
    fn position(&self, tp: &TopicPartition) -> Option<i64>;
    /// Stops fetching a partition whose range is done.
    fn pause(&self, tp: &TopicPartition);
    /// Resumes a partition and seeks it to `offset`: its fetching starts again from there.
    fn restart(
        &self,
        tp: &TopicPartition,
        offset: i64,
        timeout: Duration,
    ) -> Result<(), KafkaError>;
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

    fn position(&self, tp: &TopicPartition) -> Option<i64> {
        let positions = Consumer::position(self).ok()?;
        match positions.find_partition(&tp.topic, tp.partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    fn pause(&self, tp: &TopicPartition) {
        let mut list = TopicPartitionList::new();
        list.add_partition(&tp.topic, tp.partition);
        if let Err(e) = Consumer::pause(self, &list) {
            warn!("could not pause {tp} after its range: {e}");
        }
    }

    fn restart(
        &self,
        tp: &TopicPartition,
        offset: i64,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let mut list = TopicPartitionList::new();
        list.add_partition(&tp.topic, tp.partition);
        Consumer::resume(self, &list)?;
        RecordPoller::seek(self, tp, offset, timeout)
    }
}

/// The progress of one range in a reader.
struct RangeState {
    range: PartitionRange,
    next: i64,
    /// Offsets up to here were reported to the session's read progress.
    reported: i64,
    rows_sent: usize,
    batch: BatchBuilder,
    done: bool,
}

impl RangeReader {
    fn run(self, tx: &Sender<Result<RecordBatch>>) -> Result<()> {
        let create = || -> Result<BaseConsumer> {
            self.source.options.consumer_config().create().map_err(|e| {
                DataFusionError::Execution(format!(
                    "cannot create a Kafka consumer for {}: {e}",
                    self.describe()
                ))
            })
        };
        let started = Instant::now();
        let read = match &self.pool {
            None => {
                let consumer = create()?;
                assign(&consumer, &self.ranges)?;
                self.read(&consumer, tx)
            }
            Some(pool) => {
                let taken = pool.take(&self.source.options.group_id, &self.ranges, create)?;
                let read = self.read(&taken.consumer, tx);
                // A consumer that failed is dropped, never given back.
                if read.is_ok() {
                    pool.give_back(taken, &self.ranges);
                }
                read
            }
        };
        self.read_time
            .add_duration(started.elapsed().saturating_sub(self.send_wait.get()));
        read
    }

    /// Reports the offsets of its range `state` moved past since it last reported, up to `to`.
    fn report_progress(&self, state: &mut RangeState, to: i64) {
        if let Some(progress) = &self.progress {
            let to = to.min(state.range.end);
            progress.advance((to - state.reported).max(0) as u64);
            state.reported = state.reported.max(to);
        }
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self.ranges.iter().map(|r| r.tp.to_string()).collect();
        names.join(", ")
    }

    /// Reads the ranges from `poller`, which is positioned at their starts. A range ends at the
    /// first record at or past its end, or when its partition has no more records (its end may
    /// fall in a gap of offsets, such as a transaction marker or compacted records).
    fn read<P: RecordPoller>(&self, poller: &P, tx: &Sender<Result<RecordBatch>>) -> Result<()> {
        let options = &self.source.options;
        // A table with declared columns decodes every record, even for count(*), so that every
        // query sees the same records under the table's 'mode'.
        let needs_value = self.source.decoder.is_some() || self.projection.contains(&Column::Value);
        let needs_key = self
            .source
            .decoder
            .as_ref()
            .is_some_and(RecordDecoder::needs_keys)
            || self.projection.contains(&Column::Key);
        let mut states: Vec<RangeState> = self
            .ranges
            .iter()
            .map(|range| RangeState {
                range: range.clone(),
                next: range.start,
                reported: range.start,
                rows_sent: 0,
                batch: BatchBuilder::new(
                    &self.projection,
                    needs_key,
                    needs_value,
                    self.batch_size.min(range.len() as usize),
                ),
                done: range.is_empty(),
            })
            .collect();
        let mut by_partition: HashMap<i32, Vec<usize>> = HashMap::new();
        for (i, state) in states.iter().enumerate() {
            by_partition
                .entry(state.range.tp.partition)
                .or_default()
                .push(i);
        }
        for state in states.iter().filter(|s| s.done) {
            poller.pause(&state.range.tp);
        }
        let row_limit = self.row_limit.unwrap_or(usize::MAX);
        let mut last_progress = Instant::now();
        let mut restarted = Duration::ZERO;

        while let Some(open) = states.iter().position(|s| !s.done) {
            match poller.poll(POLL_SLICE) {
                None => {
                    let silent = last_progress.elapsed();
                    if silent >= restarted + STALL_RESTART && silent < options.poll_timeout {
                        let s = &states[open];
                        warn!(
                            "no record of {} for {} ms; restarting its fetching at offset {}",
                            s.range.tp,
                            silent.as_millis(),
                            s.next
                        );
                        poller
                            .restart(&s.range.tp, s.next, options.broker_timeout)
                            .map_err(|e| {
                                DataFusionError::Execution(format!(
                                    "cannot restart reading {}: {e}",
                                    s.range.tp
                                ))
                            })?;
                        restarted = silent;
                    }
                    if silent >= options.poll_timeout {
                        let s = &states[open];
                        return Err(DataFusionError::Execution(format!(
                            "no record of {} arrived within {} ms (kafkaConsumer.pollTimeoutMs) \
                             while reading offset {} of the range [{}, {}) from Kafka broker(s) {}",
                            s.range.tp,
                            options.poll_timeout.as_millis(),
                            s.next,
                            s.range.start,
                            s.range.end,
                            options.bootstrap_servers()
                        )));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    let candidates = by_partition.get(&partition).cloned().unwrap_or_default();
                    for i in candidates {
                        let state = &states[i];
                        let at_end = match poller.position(&state.range.tp) {
                            Some(position) => position >= state.range.end,
                            None => by_partition[&partition].len() == 1,
                        };
                        if !state.done && at_end {
                            self.finish(&mut states[i], poller, tx)?;
                        }
                    }
                }
                Some(Err(e))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange) =>
                {
                    for state in states.iter_mut().filter(|s| !s.done) {
                        self.recover_lost_offsets(poller, state)?;
                    }
                    last_progress = Instant::now();
                }
                Some(Err(e)) if is_transient(&e) => {
                    warn!("reading {}: {e}; librdkafka retries", self.describe());
                }
                Some(Err(e)) => {
                    return Err(DataFusionError::Execution(format!(
                        "reading {} from Kafka broker(s) {} failed: {e}",
                        self.describe(),
                        options.bootstrap_servers()
                    )));
                }
                Some(Ok(message)) => {
                    last_progress = Instant::now();
                    restarted = Duration::ZERO;
                    let Some(i) = by_partition.get(&message.partition()).and_then(|c| {
                        c.iter()
                            .copied()
                            .find(|i| states[*i].range.tp.topic == message.topic())
                    }) else {
                        continue;
                    };
                    let state = &mut states[i];
                    let offset = message.offset();
                    if state.done || offset < state.next {
                        continue;
                    }
                    if offset >= state.range.end {
                        self.finish(state, poller, tx)?;
                        continue;
                    }
                    state.batch.append(&message);
                    state.next = offset + 1;
                    if state.batch.len() >= self.batch_size {
                        state.rows_sent += self.send(state, tx)?;
                    }
                    if state.next >= state.range.end
                        || state.rows_sent + state.batch.len() >= row_limit
                    {
                        self.finish(state, poller, tx)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends what is left of a range and stops fetching its partition.
    fn finish<P: RecordPoller>(
        &self,
        state: &mut RangeState,
        poller: &P,
        tx: &Sender<Result<RecordBatch>>,
    ) -> Result<()> {
        if !state.batch.is_empty() {
            state.rows_sent += self.send(state, tx)?;
        }
        state.done = true;
        let end = state.range.end;
        self.report_progress(state, end);
        poller.pause(&state.range.tp);
        Ok(())
    }

    /// Handles offsets of a range deleted while it was read, as failOnDataLoss says.
    fn recover_lost_offsets<P: RecordPoller>(
        &self,
        poller: &P,
        state: &mut RangeState,
    ) -> Result<()> {
        let options = &self.source.options;
        let tp = &state.range.tp;
        let low = poller
            .low_watermark(tp, options.broker_timeout)
            .map_err(|e| {
                DataFusionError::Execution(format!("cannot look up the watermarks of {tp}: {e}"))
            })?;
        if low <= state.next {
            return Ok(());
        }
        if options.fail_on_data_loss {
            return Err(DataFusionError::Execution(format!(
                "data loss: offsets {} to {} of {tp} were deleted from the broker while the \
                 query read them; set failOnDataLoss to false to skip such records",
                state.next,
                low - 1
            )));
        }
        warn!(
            "data loss: offsets {} to {} of {tp} were deleted while being read; skipping them",
            state.next,
            low - 1
        );
        poller.seek(tp, low, options.broker_timeout).map_err(|e| {
            DataFusionError::Execution(format!("cannot seek {tp} to offset {low}: {e}"))
        })?;
        self.lost
            .add((low.min(state.range.end) - state.next).max(0) as usize);
        state.next = low;
        Ok(())
    }

    /// Sends the rows a range built so far; returns how many were sent.
    fn send(&self, state: &mut RangeState, tx: &Sender<Result<RecordBatch>>) -> Result<usize> {
        let records = state.batch.len();
        let built =
            state
                .batch
                .finish(&self.source, &state.range, &self.projection, &self.schema)?;
        self.fetched.add(records);
        self.malformed.add(built.malformed);
        if let Some(latest) = built.max_event_time
            && let Ok(mut times) = self.event_times.lock()
        {
            let seen = times.entry(state.range.tp.clone()).or_insert(latest);
            *seen = (*seen).max(latest);
        }
        let rows = built.batch.num_rows();
        self.report_progress(state, state.next);
        let waiting = Instant::now();
        let sent = tx.blocking_send(Ok(built.batch));
        self.send_wait.set(self.send_wait.get() + waiting.elapsed());
        if sent.is_err() {
            return Err(DataFusionError::ResourcesExhausted(
                "the query stopped reading".to_string(),
            ));
        }
        Ok(rows)
    }
}

/// A batch of rows and how many of its records did not decode.
#[derive(Debug)]
pub struct BuiltBatch {
    /// The rows.
    pub batch: RecordBatch,
    /// Records whose value did not decode (dropped or nulled, as the table's mode says).
    pub malformed: usize,
    /// The largest watermark candidate among the rows (tables with a `watermark` option).
    pub max_event_time: Option<i64>,
}

/// Accumulates the columns a scan needs from consecutive records of one partition: the
/// message → Arrow kernel of the scan.
#[derive(Debug)]
pub struct BatchBuilder {
    keys: Option<BinaryBuilder>,
    values: Option<BinaryBuilder>,
    offsets: Vec<i64>,
    timestamps: Option<Vec<Option<i64>>>,
    timestamp_types: Option<Vec<i32>>,
    headers: Option<ListBuilder<StructBuilder>>,
}

impl BatchBuilder {
    /// A builder of the `projection` columns (plus keys and values, when `needs_key` and
    /// `needs_value`, for decoding), with room for `capacity` records.
    pub fn new(projection: &[Column], needs_key: bool, needs_value: bool, capacity: usize) -> Self {
        let wants = |c: Column| projection.contains(&c);
        Self {
            keys: needs_key.then(|| BinaryBuilder::with_capacity(capacity, capacity * 16)),
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

    /// Records appended since the last [`BatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// True when no record waits.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Appends one record.
    pub fn append<M: Message>(&mut self, message: &M) {
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
            // A record without headers has NULL headers, as in Spark.
            let mut any = false;
            if let Some(headers) = message.headers() {
                let entries = list.values();
                for header in headers.iter() {
                    any = true;
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
            list.append(any);
        }
    }

    /// Builds the projected columns of the records appended since the last call.
    pub fn finish(
        &mut self,
        source: &ScanSource,
        range: &PartitionRange,
        projection: &[Column],
        schema: &SchemaRef,
    ) -> Result<BuiltBatch> {
        let offsets = Int64Array::from(std::mem::take(&mut self.offsets));
        let keys: Option<BinaryArray> = self.keys.as_mut().map(BinaryBuilder::finish);
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
            decoded = Some(decoder.decode(keys.as_ref(), values, &locate)?);
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
                Column::Key => Arc::new(keys.clone().ok_or_else(|| {
                    DataFusionError::Internal("key column without a builder".to_string())
                })?),
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
        let max_event_time = match (&source.event_time, &decoded) {
            (Some(expr), Some(decoded)) => max_timestamp_ms(expr, &decoded.batch)?,
            _ => None,
        };
        let kept_rows = kept.map_or(rows, |k| k.true_count());
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(kept_rows)),
        )?;
        Ok(BuiltBatch {
            batch,
            malformed: decoded.map_or(0, |d| d.malformed),
            max_event_time,
        })
    }
}

/// The largest value of timestamp expression `expr` over `batch`, in ms.
fn max_timestamp_ms(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<Option<i64>> {
    let values = expr.evaluate(batch)?.into_array(batch.num_rows())?;
    let millis = cast(
        &values,
        &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
    )?;
    Ok(arrow::compute::max(
        millis.as_primitive::<arrow::datatypes::TimestampMillisecondType>(),
    ))
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
        paused: RefCell<Vec<TopicPartition>>,
        /// What a restarted partition delivers.
        after_restart: RefCell<Vec<i64>>,
    }

    impl ScriptedPoller {
        fn new(offsets: &[i64]) -> Self {
            let script = offsets.iter().map(|o| Ok(record(0, *o))).collect();
            Self {
                script: RefCell::new(script),
                low: 0,
                seeks: RefCell::default(),
                paused: RefCell::default(),
                after_restart: RefCell::default(),
            }
        }
        fn then(self, answer: Result<OwnedMessage, KafkaError>) -> Self {
            self.script.borrow_mut().push_back(answer);
            self
        }
    }

    fn record(partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(format!("v{offset}").into_bytes()),
            None,
            "t".to_string(),
            Timestamp::CreateTime(1_000 + offset),
            partition,
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
        fn position(&self, _tp: &TopicPartition) -> Option<i64> {
            None
        }
        fn pause(&self, tp: &TopicPartition) {
            self.paused.borrow_mut().push(tp.clone());
        }
        fn restart(
            &self,
            tp: &TopicPartition,
            offset: i64,
            timeout: Duration,
        ) -> Result<(), KafkaError> {
            let delivered = self.after_restart.take();
            let mut script = self.script.borrow_mut();
            script.extend(delivered.into_iter().map(|o| Ok(record(tp.partition, o))));
            drop(script);
            self.seek(tp, offset, timeout)
        }
    }

    fn range(partition: i32, start: i64, end: i64) -> PartitionRange {
        PartitionRange {
            tp: TopicPartition::new("t", partition),
            start,
            end,
        }
    }

    fn reader(
        ranges: Vec<PartitionRange>,
        extra: &[(&str, &str)],
        row_limit: Option<usize>,
    ) -> RangeReader {
        let mut map: HashMap<String, String> = HashMap::from([("subscribe".into(), "t".into())]);
        map.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let options = KafkaTableOptions::parse(&map, false, Some("fake:9092")).unwrap();
        let layout = TableLayout::new(None, false).unwrap();
        let metrics = ExecutionPlanMetricsSet::new();
        RangeReader {
            schema: Arc::new(layout.schema.project(&[3, 4]).unwrap()),
            source: Arc::new(ScanSource {
                table: "t".into(),
                options: Arc::new(options),
                layout,
                decoder: None,
                event_time: None,
            }),
            ranges,
            projection: vec![Column::Partition, Column::Offset],
            row_limit,
            batch_size: 2,
            fetched: MetricBuilder::new(&metrics).counter(metric::RECORDS_FETCHED, 0),
            malformed: MetricBuilder::new(&metrics).counter(metric::MALFORMED_RECORDS, 0),
            lost: MetricBuilder::new(&metrics).counter(metric::LOST_OFFSETS, 0),
            read_time: MetricBuilder::new(&metrics).subset_time(metric::READ_TIME, 0),
            send_wait: Cell::default(),
            event_times: EventTimes::default(),
            pool: None,
            progress: None,
        }
    }

    /// Reads with `poller` and returns the (partition, offset) of the rows produced.
    fn read(reader: &RangeReader, poller: &ScriptedPoller) -> Result<Vec<(i32, i64)>> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        reader.read(poller, &tx)?;
        drop(tx);
        let mut rows = vec![];
        while let Ok(batch) = rx.try_recv() {
            let batch = batch?;
            assert!(batch.num_rows() <= 2, "batches respect the batch size");
            let partitions = batch
                .column(0)
                .as_primitive::<arrow::datatypes::Int32Type>();
            let offsets = batch.column(1).as_primitive::<Int64Type>();
            rows.extend(
                partitions
                    .values()
                    .iter()
                    .copied()
                    .zip(offsets.values().iter().copied()),
            );
        }
        rows.sort_unstable();
        Ok(rows)
    }

    fn offsets(rows: Vec<(i32, i64)>) -> Vec<i64> {
        rows.into_iter().map(|(_, o)| o).collect()
    }

    fn eof(partition: i32) -> Result<OwnedMessage, KafkaError> {
        Err(KafkaError::PartitionEOF(partition))
    }

    #[test]
    fn reads_exactly_the_range() {
        let r = reader(vec![range(0, 3, 6)], &[], None);
        let p = ScriptedPoller::new(&[3, 4, 5, 6, 7]);
        assert_eq!(offsets(read(&r, &p).unwrap()), vec![3, 4, 5]);
        assert_eq!(r.fetched.value(), 3);
        assert_eq!(
            *p.paused.borrow(),
            vec![TopicPartition::new("t", 0)],
            "a finished partition is paused"
        );
    }

    #[test]
    fn gaps_inside_and_at_the_end_of_a_range() {
        // A compacted partition: offsets 0, 1, 5, 9 remain; the range [0, 7) ends in a gap.
        let r = reader(vec![range(0, 0, 7)], &[], None);
        assert_eq!(
            offsets(read(&r, &ScriptedPoller::new(&[0, 1, 5, 9])).unwrap()),
            vec![0, 1, 5]
        );
        // A transaction marker at offset 4 is the last offset: the partition ends (EOF) at 5.
        let r = reader(vec![range(0, 2, 5)], &[], None);
        assert_eq!(
            offsets(read(&r, &ScriptedPoller::new(&[2, 3]).then(eof(0))).unwrap()),
            vec![2, 3]
        );
    }

    #[test]
    fn one_consumer_reads_several_ranges() {
        let r = reader(vec![range(0, 0, 3), range(1, 10, 12)], &[], None);
        let p = ScriptedPoller::new(&[0])
            .then(Ok(record(1, 10)))
            .then(Ok(record(0, 1)))
            .then(eof(1))
            .then(Ok(record(0, 2)));
        assert_eq!(read(&r, &p).unwrap(), vec![(0, 0), (0, 1), (0, 2), (1, 10)]);
        assert_eq!(p.paused.borrow().len(), 2);
    }

    #[test]
    fn row_limit_stops_early() {
        let r = reader(vec![range(0, 0, 100)], &[], Some(3));
        let p = ScriptedPoller::new(&[0, 1, 2, 3, 4, 5]);
        assert_eq!(offsets(read(&r, &p).unwrap()), vec![0, 1, 2]);
        assert_eq!(
            p.script.borrow().len(),
            3,
            "nothing past the limit is consumed"
        );
    }

    #[test]
    fn silence_times_out_with_the_range_named() {
        let r = reader(
            vec![range(0, 0, 5)],
            &[("kafkaConsumer.pollTimeoutMs", "1")],
            None,
        );
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
    fn a_partition_silent_for_seconds_is_restarted_where_it_stopped() {
        let r = reader(vec![range(0, 0, 5)], &[], None);
        let poller = ScriptedPoller::new(&[0, 1]);
        poller.after_restart.replace(vec![2, 3, 4]);
        assert_eq!(offsets(read(&r, &poller).unwrap()), vec![0, 1, 2, 3, 4]);
        assert_eq!(*poller.seeks.borrow(), vec![2]);
    }

    #[test]
    fn offsets_lost_while_reading() {
        let lost = || {
            Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OffsetOutOfRange,
            ))
        };
        let r = reader(vec![range(0, 0, 10)], &[], None);
        let mut p = ScriptedPoller::new(&[0]).then(lost());
        p.low = 4;
        let e = read(&r, &p).unwrap_err().to_string();
        assert!(
            e.contains("data loss: offsets 1 to 3 of t[0]") && e.contains("failOnDataLoss"),
            "{e}"
        );

        let r = reader(vec![range(0, 0, 10)], &[("failOnDataLoss", "false")], None);
        let mut p = ScriptedPoller::new(&[0]).then(lost());
        p.low = 6;
        for o in [6, 7, 8, 9] {
            p = p.then(Ok(record(0, o)));
        }
        assert_eq!(offsets(read(&r, &p).unwrap()), vec![0, 6, 7, 8, 9]);
        assert_eq!(*p.seeks.borrow(), vec![6]);
    }

    #[test]
    fn other_errors_name_the_partitions() {
        let r = reader(vec![range(0, 0, 10)], &[], None);
        let p = ScriptedPoller::new(&[0]).then(Err(KafkaError::MessageConsumption(
            RDKafkaErrorCode::TopicAuthorizationFailed,
        )));
        let e = read(&r, &p).unwrap_err().to_string();
        assert!(
            e.contains("reading t[0] from Kafka broker(s) fake:9092 failed"),
            "{e}"
        );
    }

    #[test]
    fn connections_that_drop_are_waited_out() {
        let r = reader(vec![range(0, 0, 3)], &[], None);
        let p = ScriptedPoller::new(&[0])
            .then(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::AllBrokersDown,
            )))
            .then(Ok(record(0, 1)))
            .then(Ok(record(0, 2)));
        assert_eq!(offsets(read(&r, &p).unwrap()), vec![0, 1, 2]);
    }

    #[test]
    fn ranges_are_grouped_without_two_of_one_partition() {
        let ranges: Vec<PartitionRange> = vec![
            range(0, 0, 10),
            range(0, 10, 20),
            range(0, 20, 30),
            range(1, 0, 5),
            range(2, 0, 5),
        ];
        let groups = group_ranges(&ranges, 2);
        assert_eq!(
            groups.len(),
            3,
            "three ranges of one partition need three readers"
        );
        for group in &groups {
            let mut partitions: Vec<i32> = group.iter().map(|r| r.tp.partition).collect();
            partitions.dedup();
            assert_eq!(partitions.len(), group.len(), "{group:?}");
        }
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 5);
        assert_eq!(
            group_ranges(&ranges[3..], 8).len(),
            2,
            "never more readers than ranges"
        );
    }
}
