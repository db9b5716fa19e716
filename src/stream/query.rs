//! One streaming query: its batch loop, and the [`QueryHandle`] that reports its progress and
//! stops it.
//!
//! Batch N: plan the slice (start = the previous batch's end; end = latest, clamped by the rate
//! options), write `offsets/N`, run the query over exactly that slice into the sink (which
//! commits batch N), write `commits/N`, report progress. On start, a batch planned but not
//! committed is run again with exactly its recorded slice.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::execute_stream;
use log::{info, warn};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::ordered::execute_in_order;
use super::planning::{
    Plan, analyse, check_plan, physical_plan, plan_error, slices_of, statement_input,
};
use super::progress::{
    Durations, EventTimeProgress, PartitionProgress, QueryProgress, SourceProgress, millis,
};
use super::slice::{clamp, plan_slice, should_wait};
use super::snapshots::Snapshots;
use super::stateful::{
    BatchSettings, OperatorState, OutputMode, SavedState, SiteState, emit, run_site_inputs,
};
use super::timing::{TimedStream, longest_read};
use super::trigger::Trigger;
use super::watermark::EventTime;
use crate::checkpoint::lock::QueryLock;
use crate::checkpoint::{
    Checkpoint, CommitEntry, OffsetsEntry, PartitionSlice, PartitionStart, QueryMetadata, Recovery,
    StartingOffsets, StateFile, now_ms,
};
use crate::error::{Error, Result};
use crate::kafka::client::BrokerClient;
use crate::kafka::offsets::resolve_stream_starts;
use crate::kafka::scan::{metric, scans};
use crate::kafka::{KafkaTableOptions, TopicPartition};
use crate::sinks::BatchContext;
use crate::storage::S3Settings;
use crate::window::exec::sum_metric as window_metric;
use crate::window::metric as window_metrics;

/// How a streaming query runs.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// When batches run.
    pub trigger: Trigger,
    /// Where its checkpoint lives.
    pub checkpoint: String,
    /// Also commit each batch's end offsets to a consumer group named after the query.
    pub commit_offsets_to_group: bool,
    /// How many batches' offsets and commits the checkpoint keeps.
    pub retention: u64,
    /// What aggregations emit each batch.
    pub output_mode: OutputMode,
    /// Stateful operators save their whole state after at most this many batches of changes
    /// (Spark's `spark.sql.streaming.stateStore.minDeltasForSnapshot`).
    pub deltas_per_snapshot: u64,
}

/// Where a query is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryStatus {
    /// Running batches (or waiting for data).
    Running,
    /// Its trigger is done (once, availableNow).
    Finished,
    /// Stopped on request, at a batch boundary.
    Stopped,
    /// Failed; the message says why.
    Failed(String),
}

impl QueryStatus {
    /// `running`, `finished`, `stopped` or `failed`.
    pub fn label(&self) -> &'static str {
        match self {
            QueryStatus::Running => "running",
            QueryStatus::Finished => "finished",
            QueryStatus::Stopped => "stopped",
            QueryStatus::Failed(_) => "failed",
        }
    }
}

/// Called with every batch's progress.
pub type ProgressListener = Arc<dyn Fn(&QueryProgress) + Send + Sync>;

/// How many progress reports a handle keeps.
const PROGRESS_KEPT: usize = 100;
/// How long a query without data waits before it looks again (Spark's
/// `spark.sql.streaming.pollingDelay`).
const IDLE_POLL: Duration = Duration::from_millis(10);

#[derive(Debug)]
struct Shared {
    status: Mutex<QueryStatus>,
    progress: Mutex<VecDeque<QueryProgress>>,
    /// The physical plan the latest batch ran (the one that read Kafka), with its metrics.
    latest_plan: Mutex<Option<Arc<dyn ExecutionPlan>>>,
}

/// A running (or ended) streaming query.
#[derive(Debug)]
pub struct QueryHandle {
    name: String,
    trigger: Trigger,
    id: String,
    run_id: String,
    sink: String,
    sql: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl QueryHandle {
    /// The query's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The query's id, kept in its checkpoint across restarts.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// This run's id: new at every start, as Spark's `runId`.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// When its batches run.
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    /// What it writes to.
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// The statement it runs, as planned (the INSERT, with the session's defaults applied).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The physical plan of the latest batch with each operator's metrics, indented; `None`
    /// before the first batch.
    pub fn latest_plan(&self) -> Option<String> {
        let plan = self.shared.latest_plan.lock().ok()?.clone()?;
        Some(
            DisplayableExecutionPlan::with_metrics(plan.as_ref())
                .indent(true)
                .to_string(),
        )
    }

    /// Where it is in its life.
    pub fn status(&self) -> QueryStatus {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or(QueryStatus::Failed("status lock poisoned".into()))
    }

    /// The progress of the latest batch.
    pub fn progress(&self) -> Option<QueryProgress> {
        self.shared
            .progress
            .lock()
            .ok()
            .and_then(|p| p.back().cloned())
    }

    /// The progress of the latest batches, oldest first.
    pub fn recent_progress(&self) -> Vec<QueryProgress> {
        self.shared
            .progress
            .lock()
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until the query ends; an error if it failed.
    pub async fn await_termination(&self) -> Result<()> {
        if let Some(task) = self.task.lock().await.take() {
            task.await
                .map_err(|e| Error::Streaming(format!("query '{}' panicked: {e}", self.name)))?;
        }
        match self.status() {
            QueryStatus::Failed(message) => Err(Error::Streaming(message)),
            _ => Ok(()),
        }
    }

    /// Stops the query at the next batch boundary (a running batch completes and commits) and
    /// waits for it.
    pub async fn stop(&self) -> Result<()> {
        let _ = self.stop.send(true);
        self.await_termination().await
    }
}

pub use super::planning::reads_stream;

/// Starts a streaming query: checks it, opens (or creates) its checkpoint, and runs its batch
/// loop in the background.
pub async fn start(
    ctx: SessionContext,
    name: &str,
    insert_sql: &str,
    options: QueryOptions,
    s3: &S3Settings,
    listener: Option<ProgressListener>,
) -> Result<QueryHandle> {
    let plan = analyse(&ctx, insert_sql).await?;
    let statement = statement_input(&ctx, insert_sql).await?;
    check_plan(&ctx, &statement, &plan, options.output_mode).await?;
    let checkpoint = Checkpoint::open(&options.checkpoint, s3)?;
    let wanted = QueryMetadata {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_string(),
        created_ms: now_ms(),
        sources: plan
            .sources
            .iter()
            .map(|(table, kafka)| format!("{table}: {}", kafka.options().topics_description()))
            .collect(),
        sink: plan.sink.describe(),
    };
    let metadata = checkpoint.start(&wanted).await?;
    let lock = QueryLock::acquire(&checkpoint, name).await?;
    let recovery = checkpoint.recover().await?;
    let shared = Arc::new(Shared {
        status: Mutex::new(QueryStatus::Running),
        progress: Mutex::default(),
        latest_plan: Mutex::default(),
    });
    let (stop, stop_rx) = watch::channel(false);
    let sink_description = plan.sink.describe();
    let stream_tables: HashSet<String> = plan.sources.keys().cloned().collect();
    let idle_timeouts = plan
        .sources
        .iter()
        .map(|(table, kafka)| (table.clone(), kafka.options().watermark_idle_timeout))
        .collect();
    let trigger = options.trigger;
    let snapshots = Snapshots::new(options.deltas_per_snapshot);
    let runner = Runner {
        ctx,
        name: name.to_string(),
        id: metadata.id.clone(),
        statement,
        options,
        plan,
        checkpoint,
        shared: Arc::clone(&shared),
        stop: stop_rx,
        listener,
        fault: FaultHook::from_env(),
        last_batch_started: None,
        lock,
        stream_tables,
        idle_timeouts,
        event_time: EventTime::default(),
        operator_state: OperatorState::default(),
        snapshots,
        purging: None,
        broker_clients: Mutex::default(),
    };
    let task = tokio::spawn(runner.run(recovery));
    Ok(QueryHandle {
        name: name.to_string(),
        trigger,
        id: metadata.id,
        run_id: uuid::Uuid::new_v4().to_string(),
        sink: sink_description,
        sql: insert_sql.to_string(),
        shared,
        stop,
        task: tokio::sync::Mutex::new(Some(task)),
    })
}

/// A failure injected between the sink's commit and `commits/N`, for crash tests:
/// `WEIR_FAULT_AFTER_SINK_COMMIT=abort` ends the process there, `=sleep:MS` pauses there.
#[derive(Debug, Clone, Copy)]
enum FaultHook {
    None,
    Abort,
    Sleep(Duration),
}

impl FaultHook {
    fn from_env() -> Self {
        match std::env::var("WEIR_FAULT_AFTER_SINK_COMMIT")
            .ok()
            .as_deref()
        {
            Some("abort") => FaultHook::Abort,
            Some(other) => other
                .strip_prefix("sleep:")
                .and_then(|ms| ms.parse().ok())
                .map_or(FaultHook::None, |ms| {
                    FaultHook::Sleep(Duration::from_millis(ms))
                }),
            None => FaultHook::None,
        }
    }
}

/// The ends of each source's partitions after a batch.
type Ends = BTreeMap<String, BTreeMap<TopicPartition, i64>>;

fn ends_of(entry: &OffsetsEntry) -> Ends {
    entry
        .sources
        .iter()
        .map(|(table, slices)| {
            let ends = slices
                .iter()
                .map(|s| (TopicPartition::new(&s.topic, s.partition), s.end))
                .collect();
            (table.clone(), ends)
        })
        .collect()
}

/// A planned batch: the slice, plus each partition's latest offset, for progress.
struct Planned {
    /// When planning the slice began: the batch's start.
    started: Instant,
    entry: OffsetsEntry,
    latest: BTreeMap<(String, TopicPartition), i64>,
    lost: BTreeMap<String, i64>,
}

struct Runner {
    ctx: SessionContext,
    name: String,
    id: String,
    /// The INSERT's input, planned from its SQL once; each batch binds its slice to it.
    statement: LogicalPlan,
    options: QueryOptions,
    plan: Plan,
    checkpoint: Checkpoint,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    listener: Option<ProgressListener>,
    fault: FaultHook,
    last_batch_started: Option<Instant>,
    lock: QueryLock,
    /// The stream tables, by name.
    stream_tables: HashSet<String>,
    /// Each stream table's `watermarkIdleTimeout`.
    idle_timeouts: BTreeMap<String, Option<Duration>>,
    /// The event time after the latest batch.
    event_time: EventTime,
    /// The stateful operators' state after the latest batch.
    operator_state: OperatorState,
    /// When the operators' state is saved whole, and which saved state is no longer needed.
    snapshots: Snapshots,
    /// The latest purge of old checkpoint entries, running in the background.
    purging: Option<tokio::task::JoinHandle<()>>,
    /// Each source's metadata client, kept across batches.
    broker_clients: Mutex<BTreeMap<String, Arc<BrokerClient>>>,
}

impl Runner {
    async fn run(mut self, recovery: Recovery) {
        let status = match self.run_batches(recovery).await {
            Ok(status) => status,
            Err(e) => {
                let message = format!("streaming query '{}' failed: {e}", self.name);
                warn!("{message}");
                QueryStatus::Failed(message)
            }
        };
        // The last purge finishes while this instance still holds the checkpoint.
        if let Some(purging) = self.purging.take() {
            let _ = purging.await;
        }
        if let Err(e) = self.lock.release().await {
            warn!("query {}: {e}", self.name);
        }
        if let Ok(mut s) = self.shared.status.lock() {
            *s = status;
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `duration`, or less if a stop is asked for.
    async fn pause(&mut self, duration: Duration) {
        let _ = tokio::time::timeout(duration, self.stop.wait_for(|stop| *stop)).await;
    }

    async fn run_batches(&mut self, recovery: Recovery) -> Result<QueryStatus> {
        let (mut next_id, mut previous) = match recovery {
            Recovery::Fresh => (0, self.starting_offsets().await?),
            Recovery::Resume { last } => {
                let commit = self.checkpoint.commit(last.batch_id).await?;
                self.event_time = commit.event_time.unwrap_or_default();
                self.operator_state = self.load_state(last.batch_id).await?;
                (last.batch_id + 1, ends_of(&last))
            }
            Recovery::Replay { entry, previous } => {
                self.event_time = entry.event_time.clone().unwrap_or_default();
                if let Some(previous) = &previous {
                    self.operator_state = self.load_state(previous.batch_id).await?;
                }
                info!(
                    "query {}: replaying uncommitted batch {} with its recorded slice",
                    self.name, entry.batch_id
                );
                let planned = Planned {
                    started: Instant::now(),
                    latest: BTreeMap::new(),
                    lost: BTreeMap::new(),
                    entry,
                };
                self.run_batch(&planned, true).await?;
                (planned.entry.batch_id + 1, ends_of(&planned.entry))
            }
        };
        let mut available_now_target: Option<Ends> = None;
        loop {
            if self.stopping() {
                return Ok(QueryStatus::Stopped);
            }
            if let (Trigger::ProcessingTime(interval), Some(started)) =
                (self.options.trigger, self.last_batch_started)
            {
                let next_tick = started + interval;
                let now = Instant::now();
                if next_tick > now {
                    self.pause(next_tick - now).await;
                    continue;
                }
            }
            let mut planned = self.plan_batch(next_id, &previous).await?;
            if self.options.trigger == Trigger::AvailableNow {
                let target = available_now_target.get_or_insert_with(|| latest_ends(&planned));
                cut_to(&mut planned.entry, target);
            }
            let offsets: i64 = planned
                .entry
                .sources
                .values()
                .flatten()
                .map(|s| s.end - s.start)
                .sum();
            let since_last = self
                .last_batch_started
                .map_or(Duration::MAX, |t| t.elapsed());
            // Trigger.Once reads everything available, ignoring the read limits (as in Spark).
            let waits = offsets == 0
                || (self.options.trigger != Trigger::Once
                    && self
                        .plan
                        .sources
                        .values()
                        .any(|t| should_wait(offsets, &t.options().rate, since_last)));
            if waits {
                if matches!(self.options.trigger, Trigger::Once | Trigger::AvailableNow)
                    && offsets == 0
                {
                    return Ok(QueryStatus::Finished);
                }
                self.pause(IDLE_POLL).await;
                continue;
            }
            self.lock.check_held().await?;
            self.checkpoint.write_offsets(&planned.entry).await?;
            self.run_batch(&planned, false).await?;
            previous = ends_of(&planned.entry);
            next_id += 1;
            let done = match self.options.trigger {
                Trigger::Once => true,
                Trigger::AvailableNow => available_now_target
                    .as_ref()
                    .is_some_and(|t| reached(&previous, t)),
                _ => false,
            };
            if done {
                return Ok(QueryStatus::Finished);
            }
        }
    }

    /// Where each source starts: resolved from its `startingOffsets` when the query first
    /// starts and recorded in the checkpoint before any data is read, so that a restart before
    /// the first batch starts from the same offsets.
    async fn starting_offsets(&self) -> Result<Ends> {
        let recorded = match self.checkpoint.starting_offsets().await? {
            Some(recorded) => recorded,
            None => {
                let mut sources = BTreeMap::new();
                for (table, kafka) in &self.plan.sources {
                    let options = Arc::new(kafka.options().clone());
                    let starts = tokio::task::spawn_blocking(move || {
                        let client = BrokerClient::new(&options)?;
                        resolve_stream_starts(&options, &client)
                    })
                    .await
                    .map_err(|e| Error::Streaming(format!("resolving the starts stopped: {e}")))?
                    .map_err(Error::DataFusion)?;
                    let starts = starts
                        .into_iter()
                        .map(|(tp, offset)| PartitionStart {
                            topic: tp.topic,
                            partition: tp.partition,
                            offset,
                        })
                        .collect();
                    sources.insert(table.clone(), starts);
                }
                let resolved = StartingOffsets {
                    resolved_ms: now_ms(),
                    sources,
                };
                self.lock.check_held().await?;
                self.checkpoint.record_starting_offsets(&resolved).await?
            }
        };
        Ok(recorded
            .sources
            .into_iter()
            .map(|(table, starts)| {
                let starts = starts
                    .into_iter()
                    .map(|s| (TopicPartition::new(s.topic, s.partition), s.offset))
                    .collect();
                (table, starts)
            })
            .collect())
    }

    /// The metadata client of source `table`, made on first use and kept across batches.
    fn broker_client(&self, table: &str, options: &KafkaTableOptions) -> Result<Arc<BrokerClient>> {
        let mut clients = self
            .broker_clients
            .lock()
            .map_err(|_| Error::Streaming("the Kafka clients' lock is poisoned".to_string()))?;
        if let Some(client) = clients.get(table) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(BrokerClient::new(options).map_err(Error::DataFusion)?);
        clients.insert(table.to_string(), Arc::clone(&client));
        Ok(client)
    }

    fn drop_broker_client(&self, table: &str) {
        if let Ok(mut clients) = self.broker_clients.lock() {
            clients.remove(table);
        }
    }

    async fn plan_batch(&self, batch_id: u64, previous: &Ends) -> Result<Planned> {
        let started = Instant::now();
        let mut entry = OffsetsEntry {
            batch_id,
            trigger_time_ms: now_ms(),
            sources: BTreeMap::new(),
            event_time: Some(self.event_time.clone()),
        };
        let mut latest = BTreeMap::new();
        let mut lost = BTreeMap::new();
        for (table, kafka) in &self.plan.sources {
            let options = Arc::new(kafka.options().clone());
            let before = previous.get(table).cloned().unwrap_or_default();
            let client = self.broker_client(table, &options)?;
            let planning = Arc::clone(&client);
            let planned = tokio::task::spawn_blocking(move || {
                let slice = plan_slice(&options, planning.as_ref(), &before)?;
                Ok::<_, DataFusionError>((slice, options))
            })
            .await
            .map_err(|e| Error::Streaming(format!("planning stopped: {e}")))?;
            let (slice, options) = match planned {
                Ok(planned) => planned,
                Err(e) => {
                    // A client that failed is not asked again: the next batch makes a new one.
                    self.drop_broker_client(table);
                    return Err(Error::DataFusion(e));
                }
            };
            for range in &slice.ranges {
                latest.insert((table.clone(), range.tp.clone()), range.end);
            }
            lost.insert(table.clone(), slice.lost_offsets);
            let clamped = if self.options.trigger == Trigger::Once {
                slice.ranges.clone()
            } else {
                clamp(&slice.ranges, &options.rate)
            };
            let slices = clamped
                .into_iter()
                .map(|r| PartitionSlice {
                    topic: r.tp.topic,
                    partition: r.tp.partition,
                    start: r.start,
                    end: r.end,
                })
                .collect();
            entry.sources.insert(table.clone(), slices);
        }
        Ok(Planned {
            started,
            entry,
            latest,
            lost,
        })
    }

    async fn run_batch(&mut self, planned: &Planned, replayed: bool) -> Result<()> {
        let started = planned.started;
        let previous_start = self.last_batch_started.replace(started);
        let entry = &planned.entry;
        let keep_order = self.plan.sink.capabilities().keeps_input_order;
        let watermark_ms = entry.event_time.as_ref().and_then(|t| t.watermark_ms);
        let (state, physical) = physical_plan(
            &self.ctx,
            &self.statement,
            &self.plan.sources,
            &slices_of(entry),
            watermark_ms,
            keep_order,
        )
        .await?;
        let plan_ms = millis(started.elapsed());

        let executing = Instant::now();
        let mut context = BatchContext {
            query_id: self.id.clone(),
            query_name: self.name.clone(),
            batch_id: entry.batch_id,
            replayed,
            offsets: entry.clone(),
            checkpoint: self.checkpoint.clone(),
            output_mode: self.options.output_mode,
            stateful: false,
            replay_deterministic: self.plan.replay_deterministic,
        };
        self.lock.check_lease()?;
        let task = Arc::new(TaskContext::from(&state));
        let sites = run_site_inputs(
            &physical,
            &self.stream_tables,
            self.options.output_mode,
            Arc::clone(&task),
        )
        .await
        .map_err(plan_error)?;
        let mut event_time = entry.event_time.clone().unwrap_or_default();
        let mut executed = sites.executed.clone();
        let stateful = sites.is_stateful();
        context.stateful = stateful;
        let final_plan = if stateful {
            event_time.advance(
                &observed_event_times(&executed),
                &slice_partitions(entry),
                entry.trigger_time_ms,
                &self.idle_timeouts,
            );
            let settings = BatchSettings {
                mode: self.options.output_mode,
                watermark_ms,
                next_watermark_ms: event_time.watermark_ms,
                snapshot: self.snapshots.is_snapshot(entry.batch_id),
                parts: state.config().target_partitions(),
            };
            let emitted =
                emit(&physical, sites, &mut self.operator_state, settings).map_err(plan_error)?;
            self.save_state(entry.batch_id, emitted.saved, replayed)
                .await?;
            if settings.snapshot {
                self.snapshots.saved(entry.batch_id);
            }
            emitted.plan
        } else {
            Arc::clone(&physical)
        };
        let mut sink_time = Duration::ZERO;
        let (rows_in, rows_out) = if !stateful
            && replayed
            && self
                .plan
                .sink
                .has_batch(&context)
                .await
                .map_err(plan_error)?
        {
            info!(
                "query {}: batch {} is already in the sink; recording its commit",
                self.name, entry.batch_id
            );
            (0, 0)
        } else {
            self.lock.check_lease()?;
            let stream = if keep_order {
                execute_in_order(&final_plan, Arc::clone(&task))
            } else {
                execute_stream(Arc::clone(&final_plan), Arc::clone(&task))
            }
            .map_err(plan_error)?;
            let (stream, producing_nanos) = TimedStream::new(stream);
            let writing = Instant::now();
            let written = self
                .plan
                .sink
                .write_batch(&context, Box::pin(stream))
                .await
                .map_err(plan_error)?;
            let producing = Duration::from_nanos(producing_nanos.load(Ordering::Relaxed));
            sink_time = writing.elapsed().saturating_sub(producing);
            executed.push(Arc::clone(&final_plan));
            if !stateful {
                event_time.advance(
                    &observed_event_times(&executed),
                    &slice_partitions(entry),
                    entry.trigger_time_ms,
                    &self.idle_timeouts,
                );
            }
            (records_read(&executed), written)
        };
        // Kept, and rendered only when asked: rendering takes about 0.2 ms (debug build).
        if let Ok(mut latest) = self.shared.latest_plan.lock() {
            *latest = Some(Arc::clone(&physical));
        }
        let lost_while_reading = per_table_metric(&executed, metric::LOST_OFFSETS);
        let late_rows: usize = executed
            .iter()
            .map(|p| window_metric(p, window_metrics::LATE_RECORDS))
            .sum();
        match self.fault {
            FaultHook::Abort => std::process::abort(),
            FaultHook::Sleep(d) => tokio::time::sleep(d).await,
            FaultHook::None => {}
        }
        let read_time = longest_read(&executed);
        let execute_time = executing
            .elapsed()
            .saturating_sub(read_time)
            .saturating_sub(sink_time);

        let committing = Instant::now();
        self.lock.check_lease()?;
        self.checkpoint
            .write_commit(&CommitEntry {
                batch_id: entry.batch_id,
                committed_ms: now_ms(),
                rows: rows_out,
                event_time: Some(event_time.clone()),
            })
            .await?;
        let event_time_progress = EventTimeProgress {
            watermark_ms: entry.event_time.as_ref().and_then(|t| t.watermark_ms),
            next_watermark_ms: event_time.watermark_ms,
            late_rows: late_rows as u64,
            state_rows: self.operator_state.rows() as u64,
            state_bytes: self.operator_state.bytes() as u64,
        };
        self.event_time = event_time;
        if self.options.commit_offsets_to_group {
            self.commit_to_group(entry).await?;
        }
        self.purge(entry.batch_id).await;
        let commit_ms = millis(committing.elapsed());

        let total = started.elapsed();
        let since_previous = previous_start.map_or(total, |t| t.elapsed());
        let per_second = |rows: u64, d: Duration| {
            if d.is_zero() {
                0.0
            } else {
                rows as f64 / d.as_secs_f64()
            }
        };
        let progress = QueryProgress {
            id: self.id.clone(),
            name: self.name.clone(),
            batch_id: entry.batch_id,
            timestamp_ms: entry.trigger_time_ms,
            num_input_rows: rows_in,
            num_output_rows: rows_out,
            input_rows_per_second: per_second(rows_in, since_previous),
            processed_rows_per_second: per_second(rows_in, total),
            durations: Durations {
                plan_ms,
                read_ms: millis(read_time),
                execute_ms: millis(execute_time),
                sink_ms: millis(sink_time),
                commit_ms,
                total_ms: millis(total),
            },
            sources: entry
                .sources
                .iter()
                .map(|(table, slices)| SourceProgress {
                    table: table.clone(),
                    partitions: slices
                        .iter()
                        .map(|s| {
                            let key = (table.clone(), TopicPartition::new(&s.topic, s.partition));
                            let latest = planned.latest.get(&key).copied().unwrap_or(s.end);
                            PartitionProgress {
                                topic: s.topic.clone(),
                                partition: s.partition,
                                start_offset: s.start,
                                end_offset: s.end,
                                latest_offset: latest,
                                lag: (latest - s.end).max(0),
                            }
                        })
                        .collect(),
                    lost_offsets: planned.lost.get(table).copied().unwrap_or(0)
                        + lost_while_reading.get(table).copied().unwrap_or(0) as i64,
                })
                .collect(),
            sink: self.plan.sink.describe(),
            replayed,
            event_time: event_time_progress,
        };
        info!("{}", progress.summary());
        if let Some(listener) = &self.listener {
            listener(&progress);
        }
        if let Ok(mut kept) = self.shared.progress.lock() {
            if kept.len() == PROGRESS_KEPT {
                kept.pop_front();
            }
            kept.push_back(progress);
        }
        Ok(())
    }

    /// Writes the stateful operators' state after batch `batch_id` to `state/N`.
    async fn save_state(
        &self,
        batch_id: u64,
        saved: BTreeMap<usize, SavedState>,
        replayed: bool,
    ) -> Result<()> {
        self.lock.check_lease()?;
        for (site, state) in saved {
            let (file, rows) = match state {
                SavedState::Snapshot(rows) => (StateFile::Snapshot, rows),
                SavedState::Changes(rows) => (StateFile::Changes, rows),
            };
            let bytes = crate::state::codec::encode(&rows.schema(), std::slice::from_ref(&rows))
                .map_err(plan_error)?;
            self.checkpoint
                .write_state(batch_id, site, file, bytes, replayed)
                .await?;
        }
        Ok(())
    }

    /// The stateful operators' state after batch `batch_id`, from `state/`.
    async fn load_state(&mut self, batch_id: u64) -> Result<OperatorState> {
        let saved = self.checkpoint.read_state(batch_id).await?;
        if let Some(snapshot) = saved.snapshot_id {
            self.snapshots.restored_from(snapshot);
        }
        let mut state = OperatorState::default();
        for (site, files) in saved.sites {
            let decode = |bytes: &[u8]| {
                crate::state::codec::decode(bytes)
                    .map(|(_, batches)| batches)
                    .map_err(|e| {
                        Error::Checkpoint(format!(
                            "checkpoint {}: the state of operator {site} after batch {batch_id} \
                             is not readable Arrow IPC ({e}); it may be truncated or written by \
                             another program",
                            self.checkpoint.display()
                        ))
                    })
            };
            let snapshot = decode(&files.snapshot)?;
            let changes = files
                .changes
                .iter()
                .map(|bytes| decode(bytes))
                .collect::<Result<Vec<_>>>()?
                .concat();
            state
                .sites
                .insert(site, SiteState::Saved { snapshot, changes });
        }
        Ok(state)
    }

    /// Deletes checkpoint entries older than `checkpointRetention` batches before `latest`,
    /// and saved state no kept batch needs, in the background (the previous purge finishes
    /// first); a purge that fails is logged, and its leftovers go at the next listing purge.
    async fn purge(&mut self, latest: u64) {
        let retention = self.options.retention;
        let oldest_kept = latest.saturating_sub(retention.saturating_sub(1));
        let state_floor = self.snapshots.floor(oldest_kept);
        let expired_state = self.snapshots.purgeable(oldest_kept);
        // The first purge of a run lists the checkpoint, for what earlier runs left.
        let list_all = self.purging.is_none();
        if let Some(previous) = self.purging.take() {
            let _ = previous.await;
        }
        let checkpoint = self.checkpoint.clone();
        let name = self.name.clone();
        self.purging = Some(tokio::spawn(async move {
            let purged = async {
                checkpoint
                    .purge(retention, latest, state_floor, list_all)
                    .await?;
                checkpoint.purge_state(expired_state).await
            };
            if let Err(e) = purged.await {
                warn!("query {name}: could not purge old checkpoint entries: {e}");
            }
        }));
    }

    /// Commits the batch's end offsets to the consumer group named after the query, so that
    /// lag tools see it. The checkpoint stays the source of truth.
    async fn commit_to_group(&self, entry: &OffsetsEntry) -> Result<()> {
        for (table, slices) in &entry.sources {
            let Some(kafka) = self.plan.sources.get(table) else {
                continue;
            };
            let mut config = kafka.options().consumer_config();
            config.set("group.id", &self.name);
            let slices = slices.clone();
            tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = config.create()?;
                let mut list = TopicPartitionList::new();
                for s in &slices {
                    list.add_partition_offset(&s.topic, s.partition, Offset::Offset(s.end))?;
                }
                consumer.commit(&list, CommitMode::Sync)
            })
            .await
            .map_err(|e| Error::Streaming(format!("committing offsets stopped: {e}")))?
            .map_err(|e| {
                Error::Kafka(format!(
                    "cannot commit offsets to consumer group '{}': {e}",
                    self.name
                ))
            })?;
        }
        Ok(())
    }
}

/// Every (source table, partition) of a batch's slice.
fn slice_partitions(entry: &OffsetsEntry) -> Vec<(String, TopicPartition)> {
    entry
        .sources
        .iter()
        .flat_map(|(table, slices)| {
            slices
                .iter()
                .map(|s| (table.clone(), TopicPartition::new(&s.topic, s.partition)))
        })
        .collect()
}

/// A scan metric per table over the plans that ran; a table read twice (as by a self-join)
/// counts once.
fn per_table_metric(plans: &[Arc<dyn ExecutionPlan>], name: &str) -> BTreeMap<String, usize> {
    let mut per_table: BTreeMap<String, usize> = BTreeMap::new();
    for scan in plans.iter().flat_map(scans) {
        let value = scan
            .metrics()
            .and_then(|m| m.sum_by_name(name))
            .map_or(0, |v| v.as_usize());
        let seen = per_table.entry(scan.table().to_string()).or_default();
        *seen = (*seen).max(value);
    }
    per_table
}

/// Records the batch read from Kafka, over all tables.
fn records_read(plans: &[Arc<dyn ExecutionPlan>]) -> u64 {
    per_table_metric(plans, metric::RECORDS_FETCHED)
        .values()
        .sum::<usize>() as u64
}

/// The largest watermark candidate each stream partition brought in the plans that ran.
fn observed_event_times(
    plans: &[Arc<dyn ExecutionPlan>],
) -> BTreeMap<(String, TopicPartition), i64> {
    let mut observed: BTreeMap<(String, TopicPartition), i64> = BTreeMap::new();
    for plan in plans {
        for scan in scans(plan) {
            for (tp, max) in scan.max_event_times() {
                let seen = observed
                    .entry((scan.table().to_string(), tp))
                    .or_insert(max);
                *seen = (*seen).max(max);
            }
        }
    }
    observed
}

/// Each partition's latest offset in a plan: what availableNow drains.
fn latest_ends(planned: &Planned) -> Ends {
    let mut out: Ends = BTreeMap::new();
    for ((table, tp), latest) in &planned.latest {
        out.entry(table.clone())
            .or_default()
            .insert(tp.clone(), *latest);
    }
    out
}

/// Cuts a batch's ends at `target` (availableNow never reads past what existed at its start).
fn cut_to(entry: &mut OffsetsEntry, target: &Ends) {
    for (table, slices) in &mut entry.sources {
        for s in slices.iter_mut() {
            let limit = target
                .get(table)
                .and_then(|t| t.get(&TopicPartition::new(&s.topic, s.partition)));
            // Partitions that appeared after the start are not part of availableNow's work.
            let limit = limit.copied().unwrap_or(s.start);
            s.end = s.end.min(limit.max(s.start));
        }
    }
}

/// Whether every partition of `target` is read up to its target.
fn reached(ends: &Ends, target: &Ends) -> bool {
    target.iter().all(|(table, partitions)| {
        partitions.iter().all(|(tp, goal)| {
            ends.get(table)
                .and_then(|e| e.get(tp))
                .is_some_and(|end| end >= goal)
        })
    })
}
