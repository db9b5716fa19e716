//! The stateful parts of a streaming query's plan, run batch by batch.
//!
//! A batch's physical plan is searched for **sites**, bottom-up:
//! - an aggregation (the aggregate that produces final values) over windowed stream rows
//!   (`tumble`, `hop`, `session`) or over raw stream rows (an unwindowed `GROUP BY`);
//! - windowed stream rows that reach a join or the top of the plan without being aggregated
//!   (a window-aligned join, as Nexmark q7): a **buffer** at the window assignment.
//!
//! Each site keeps state between batches as Arrow batches: an aggregation its groups' partial
//! aggregate states (DataFusion's Partial stage output, merged batch by batch), a buffer its
//! rows. Per batch, each site's input is run, merged with its state, and what the output mode
//! lets out is emitted: in append mode the groups (or rows) of windows the watermark has passed,
//! once; in update mode the groups the batch changed; in complete mode every group. The site is
//! then replaced in the plan by its emitted rows, and the rest of the plan (projections, later
//! aggregations, joins, the sink's casts) runs on them as on any rows.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::{SortColumn, cast, concat_batches, lexsort_to_indices};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning, collect};

use crate::kafka::KafkaScanExec;
use crate::state::codec::state_bytes;
use crate::state::groups::split_batch;
use crate::state::spec::{AggregateSpec, partial_input};
use crate::state::table::{GroupTable, WindowEnd};
use crate::window::exec::WindowAssignExec;
use crate::window::{WINDOW_END, WINDOW_START, WindowKind};

/// What a streaming query with aggregations emits each batch (Spark's output modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Each window's result once, after the watermark passes its end.
    Append,
    /// The groups a batch changed.
    Update,
    /// Every group, every batch.
    Complete,
}

impl OutputMode {
    /// Parses `append`, `update` or `complete` (any case).
    pub fn parse(text: &str) -> Option<OutputMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "append" => Some(OutputMode::Append),
            "update" => Some(OutputMode::Update),
            "complete" => Some(OutputMode::Complete),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            OutputMode::Append => "append",
            OutputMode::Update => "update",
            OutputMode::Complete => "complete",
        }
    }
}

/// The state of every site of a query, by site number (sites are numbered in plan order).
#[derive(Debug, Default)]
pub struct OperatorState {
    /// Each site's state.
    pub sites: BTreeMap<usize, SiteState>,
}

/// The state of one stateful site.
#[derive(Debug)]
pub enum SiteState {
    /// Read from the checkpoint and not used yet: a snapshot, then the changes saved after it.
    Saved {
        /// The whole state after some batch.
        snapshot: Vec<RecordBatch>,
        /// What each later batch changed, oldest first.
        changes: Vec<RecordBatch>,
    },
    /// An aggregation's groups.
    Groups(GroupTable),
    /// Rows held whole: a buffer's windowed rows, or the partial states of session windows.
    Rows(Vec<RecordBatch>),
}

impl SiteState {
    fn rows(&self) -> usize {
        let count =
            |batches: &[RecordBatch]| -> usize { batches.iter().map(RecordBatch::num_rows).sum() };
        match self {
            SiteState::Saved { snapshot, changes } => count(snapshot) + count(changes),
            SiteState::Groups(table) => table.groups(),
            SiteState::Rows(rows) => count(rows),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            SiteState::Saved { snapshot, changes } => state_bytes(snapshot) + state_bytes(changes),
            SiteState::Groups(table) => table.bytes(),
            SiteState::Rows(rows) => state_bytes(rows),
        }
    }
}

impl OperatorState {
    /// Rows (or groups) held, over all sites.
    pub fn rows(&self) -> usize {
        self.sites.values().map(SiteState::rows).sum()
    }

    /// Memory held, over all sites.
    pub fn bytes(&self) -> usize {
        self.sites.values().map(SiteState::bytes).sum()
    }
}

/// What a site's state after a batch is saved as.
#[derive(Debug)]
pub enum SavedState {
    /// The whole state.
    Snapshot(RecordBatch),
    /// The groups the batch changed, with their new states.
    Changes(RecordBatch),
}

/// A stateful part of a plan.
#[derive(Debug)]
enum Site {
    /// An aggregation producing final values; `window` when its input is windowed.
    Aggregate {
        node: Arc<dyn ExecutionPlan>,
        spec: Box<AggregateSpec>,
        window: Option<WindowKind>,
        /// Every stream its windows are over has a watermark.
        watermarked: bool,
    },
    /// Windowed rows held until their window closes.
    Buffer { node: Arc<dyn ExecutionPlan> },
}

impl Site {
    fn node(&self) -> &Arc<dyn ExecutionPlan> {
        match self {
            Site::Aggregate { node, .. } | Site::Buffer { node } => node,
        }
    }
}

/// What flows up from a subtree while sites are looked for.
#[derive(Debug, Default)]
struct Flow {
    /// Emitted rows reach a join or an aggregation above their site.
    emitted_combined: bool,
    /// Unclaimed window assignments over stream rows.
    windows: Vec<Arc<dyn ExecutionPlan>>,
    /// Unwindowed stream rows.
    stream: bool,
    /// Rows emitted by a site (windowed results).
    emitted: bool,
}

fn is_join(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<HashJoinExec>().is_some()
        || plan.downcast_ref::<NestedLoopJoinExec>().is_some()
        || plan.downcast_ref::<SortMergeJoinExec>().is_some()
        || plan.downcast_ref::<SymmetricHashJoinExec>().is_some()
        || plan.downcast_ref::<CrossJoinExec>().is_some()
}

fn produces_final_values(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<AggregateExec>().is_some_and(|agg| {
        matches!(
            agg.mode(),
            AggregateMode::Final
                | AggregateMode::FinalPartitioned
                | AggregateMode::Single
                | AggregateMode::SinglePartitioned
        )
    })
}

fn window_kind(node: &Arc<dyn ExecutionPlan>) -> Option<WindowKind> {
    node.downcast_ref::<WindowAssignExec>()
        .map(|w| w.kind().clone())
}

/// The stateful sites of `plan`, in plan order, and whether their emitted rows reach a join or
/// an aggregation; `streams` names the stream tables.
fn find_sites(
    plan: &Arc<dyn ExecutionPlan>,
    streams: &HashSet<String>,
) -> Result<(Vec<Site>, bool)> {
    let mut sites = vec![];
    let flow = visit(plan, streams, &mut sites)?;
    for window in flow.windows {
        sites.push(Site::Buffer { node: window });
    }
    Ok((sites, flow.emitted_combined))
}

fn visit(
    node: &Arc<dyn ExecutionPlan>,
    streams: &HashSet<String>,
    sites: &mut Vec<Site>,
) -> Result<Flow> {
    if let Some(scan) = node.downcast_ref::<KafkaScanExec>() {
        return Ok(Flow {
            stream: streams.contains(scan.table()),
            ..Flow::default()
        });
    }
    let children: Vec<Flow> = node
        .children()
        .into_iter()
        .map(|c| visit(c, streams, sites))
        .collect::<Result<_>>()?;
    if node.downcast_ref::<WindowAssignExec>().is_some() {
        let below = merge_flows(children);
        if below.stream {
            return Ok(Flow {
                windows: vec![Arc::clone(node)],
                ..Flow::default()
            });
        }
        return Ok(below);
    }
    if produces_final_values(node) {
        let mut below = merge_flows(children);
        match (below.windows.as_slice(), below.stream) {
            ([], false) => {
                below.emitted_combined |= below.emitted;
                return Ok(below);
            }
            ([window], false) => {
                sites.push(Site::Aggregate {
                    node: Arc::clone(node),
                    spec: Box::new(AggregateSpec::from_plan(aggregate(node)?)?),
                    window: window_kind(window),
                    watermarked: stream_scans(window, streams)
                        .iter()
                        .all(|s| s.has_watermark()),
                });
            }
            ([], true) => {
                if below.emitted {
                    return Err(DataFusionError::Plan(
                        "an aggregation over both raw stream rows and windowed results is not \
                         supported; window the stream rows too"
                            .to_string(),
                    ));
                }
                sites.push(Site::Aggregate {
                    node: Arc::clone(node),
                    spec: Box::new(AggregateSpec::from_plan(aggregate(node)?)?),
                    window: None,
                    watermarked: false,
                });
            }
            _ => {
                return Err(DataFusionError::Plan(
                    "an aggregation over several windowed streams, or over windowed and raw \
                     stream rows together, is not supported; aggregate each windowed stream on \
                     its own and join the results on their windows"
                        .to_string(),
                ));
            }
        }
        return Ok(Flow {
            emitted: true,
            emitted_combined: below.emitted_combined,
            ..Flow::default()
        });
    }
    if is_join(node) {
        if children.iter().filter(|c| c.stream).count() > 1 {
            return Err(DataFusionError::Plan(
                "two streams joined without windows would only join rows that happen to arrive \
                 in the same batch; window both sides (FROM tumble(stream, …) or hop(…)) and \
                 join on window_start and window_end"
                    .to_string(),
            ));
        }
        let emitted_side = children.iter().any(|c| c.emitted || !c.windows.is_empty());
        let windowed_sides = children
            .iter()
            .filter(|c| c.emitted || !c.windows.is_empty())
            .count();
        let mut joined = Flow {
            emitted_combined: windowed_sides > 1,
            ..Flow::default()
        };
        for child in children {
            joined.emitted_combined |= child.emitted_combined;
            for window in child.windows {
                sites.push(Site::Buffer { node: window });
                joined.emitted = true;
            }
            if child.stream && emitted_side {
                return Err(DataFusionError::Plan(
                    "a stream joined with windowed rows must be windowed as well (FROM \
                     tumble(stream, …)), and the join must match their windows"
                        .to_string(),
                ));
            }
            joined.stream |= child.stream;
            joined.emitted |= child.emitted;
        }
        return Ok(joined);
    }
    Ok(merge_flows(children))
}

/// The scans of stream tables in `plan`.
fn stream_scans<'a>(
    plan: &'a Arc<dyn ExecutionPlan>,
    streams: &HashSet<String>,
) -> Vec<&'a KafkaScanExec> {
    let mut found = vec![];
    if let Some(scan) = plan.downcast_ref::<KafkaScanExec>()
        && streams.contains(scan.table())
    {
        found.push(scan);
    }
    for child in plan.children() {
        found.extend(stream_scans(child, streams));
    }
    found
}

fn merge_flows(children: Vec<Flow>) -> Flow {
    let mut merged = Flow::default();
    for child in children {
        merged.windows.extend(child.windows);
        merged.stream |= child.stream;
        merged.emitted |= child.emitted;
        merged.emitted_combined |= child.emitted_combined;
    }
    merged
}

/// The outcome of running a batch's sites.
#[derive(Debug)]
pub struct SitesRun {
    /// The plans that ran (their scans hold the batch's metrics and event times).
    pub executed: Vec<Arc<dyn ExecutionPlan>>,
    sites: Vec<Site>,
    inputs: Vec<Vec<RecordBatch>>,
}

impl SitesRun {
    /// Whether the plan has stateful sites.
    pub fn is_stateful(&self) -> bool {
        !self.sites.is_empty()
    }
}

/// Checks that a streaming query can run `plan` in output mode `mode`, as Spark checks a
/// query when it starts; returns whether the plan is stateful (has aggregations or windowed
/// joins).
pub fn check_sites(
    plan: &Arc<dyn ExecutionPlan>,
    streams: &HashSet<String>,
    mode: OutputMode,
) -> Result<bool> {
    let (sites, combined) = find_sites(plan, streams)?;
    if combined && mode != OutputMode::Append {
        return Err(DataFusionError::Plan(format!(
            "'outputMode' '{}' cannot feed a join or a further aggregation: they see only what a \
             batch emits, and only append mode emits each window whole and once; use append mode \
             (the default)",
            mode.name()
        )));
    }
    for site in &sites {
        check_site(site, mode)?;
    }
    Ok(!sites.is_empty())
}

fn check_site(site: &Site, mode: OutputMode) -> Result<()> {
    match site {
        Site::Aggregate {
            window,
            watermarked,
            ..
        } => {
            if mode != OutputMode::Append {
                return Ok(());
            }
            if window.is_none() {
                return Err(DataFusionError::Plan(
                    "an aggregation over a stream without windows never finishes a group, so \
                     'outputMode' 'append' cannot emit it: aggregate over windows (tumble, hop, \
                     session), or use 'outputMode' 'update' or 'complete'"
                        .to_string(),
                ));
            }
            if !watermarked {
                return Err(DataFusionError::Plan(
                    "a windowed aggregation in append mode emits a window only once the \
                     watermark passes its end, but its stream has no 'watermark' option, so it \
                     would never emit and keep every window forever; give the source table the \
                     option 'watermark' (such as 'ts - INTERVAL ''5'' SECOND'), or use \
                     'outputMode' 'update'"
                        .to_string(),
                ));
            }
            Ok(())
        }
        Site::Buffer { node } => {
            if matches!(window_kind(node), Some(WindowKind::Session { .. })) {
                return Err(DataFusionError::Plan(
                    "session-windowed stream rows can only be aggregated in a streaming query \
                     (sessions grow across batches); aggregate them by window, or use tumble or \
                     hop windows for a join"
                        .to_string(),
                ));
            }
            if node.schema().index_of(WINDOW_END).is_err() {
                return Err(DataFusionError::Plan(
                    "windowed stream rows that are neither aggregated nor kept with their \
                     window_end column cannot be held until their window closes; select \
                     window_end (or aggregate by window)"
                        .to_string(),
                ));
            }
            Ok(())
        }
    }
}

/// Runs the input of every stateful site of `plan` (the batch's rows into each site).
pub async fn run_site_inputs(
    plan: &Arc<dyn ExecutionPlan>,
    streams: &HashSet<String>,
    mode: OutputMode,
    context: Arc<TaskContext>,
) -> Result<SitesRun> {
    let (sites, combined) = find_sites(plan, streams)?;
    if combined && mode != OutputMode::Append {
        return Err(DataFusionError::Plan(format!(
            "'outputMode' '{}' cannot feed a join or a further aggregation",
            mode.name()
        )));
    }
    let mut executed = vec![];
    let mut inputs = vec![];
    for site in &sites {
        check_site(site, mode)?;
        let input: Arc<dyn ExecutionPlan> = match site {
            Site::Aggregate { node, spec, .. } => {
                spec.partial_plan(partial_input(aggregate(node)?)?)?
            }
            Site::Buffer { node } => Arc::clone(node),
        };
        inputs.push(collect(Arc::clone(&input), Arc::clone(&context)).await?);
        executed.push(input);
    }
    Ok(SitesRun {
        executed,
        sites,
        inputs,
    })
}

fn aggregate(node: &Arc<dyn ExecutionPlan>) -> Result<&AggregateExec> {
    node.downcast_ref::<AggregateExec>()
        .ok_or_else(|| DataFusionError::Internal("an aggregate site is not an aggregate".into()))
}

/// What the sites let out for one batch.
#[derive(Debug)]
pub struct Emitted {
    /// The plan with every site replaced by its emitted rows.
    pub plan: Arc<dyn ExecutionPlan>,
    /// What to save of each site's state after the batch.
    pub saved: BTreeMap<usize, SavedState>,
}

/// How one batch's sites emit and save their state.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// What aggregations emit.
    pub mode: OutputMode,
    /// The watermark the batch ran with (after the previous batch).
    pub watermark_ms: Option<i64>,
    /// The watermark after the batch: windows ending at or before it close.
    pub next_watermark_ms: Option<i64>,
    /// Save whole states rather than the batch's changes.
    pub snapshot: bool,
    /// How many parts an aggregation's groups are spread over (merged in parallel).
    pub parts: usize,
}

/// Merges each site's batch input into its `state` (updated in place: a batch that fails ends
/// the query, and a restart restores the state from the checkpoint), and emits what the output
/// mode and the watermark let out, in `plan`'s place of the site.
pub fn emit(
    plan: &Arc<dyn ExecutionPlan>,
    run: SitesRun,
    state: &mut OperatorState,
    settings: BatchSettings,
) -> Result<Emitted> {
    let mut replacements: Vec<(Arc<dyn ExecutionPlan>, Arc<dyn ExecutionPlan>)> = vec![];
    let mut saved = BTreeMap::new();
    for (index, (site, input)) in run.sites.iter().zip(run.inputs).enumerate() {
        let held = state.sites.remove(&index);
        let (rows, kept, to_save) = match (site, held) {
            (
                Site::Aggregate {
                    spec,
                    window: window @ Some(WindowKind::Session { .. }),
                    ..
                },
                held,
            ) => {
                let held = held_rows(index, held, spec.partial_schema())?;
                let (rows, kept) = emit_sessions(spec, window.as_ref(), held, input, settings)?;
                (
                    rows,
                    SiteState::Rows(vec![kept.clone()]),
                    SavedState::Snapshot(kept),
                )
            }
            (Site::Aggregate { spec, window, .. }, held) => {
                let mut table = match held {
                    Some(SiteState::Groups(table)) => table,
                    held => restore_groups(index, spec, window.as_ref(), held, settings)?,
                };
                let closing = closes(window.as_ref(), settings.mode);
                let (rows, to_save) = emit_groups(&mut table, spec, closing, input, settings)?;
                (rows, SiteState::Groups(table), to_save)
            }
            (Site::Buffer { node }, held) => {
                let schema = node.schema();
                let held = held_rows(index, held, &schema)?;
                let (rows, kept) =
                    release_buffer(&schema, held, input, settings.next_watermark_ms)?;
                (
                    rows,
                    SiteState::Rows(vec![kept.clone()]),
                    SavedState::Snapshot(kept),
                )
            }
        };
        replacements.push((Arc::clone(site.node()), replacement(site.node(), rows)?));
        state.sites.insert(index, kept);
        saved.insert(index, to_save);
    }
    let plan = Arc::clone(plan)
        .transform_down(|node| {
            match replacements
                .iter()
                .find(|(site, _)| Arc::ptr_eq(site, &node))
            {
                Some((_, source)) => Ok(Transformed::yes(
                    Arc::clone(source) as Arc<dyn ExecutionPlan>
                )),
                None => Ok(Transformed::no(node)),
            }
        })?
        .data;
    Ok(Emitted { plan, saved })
}

/// Refuses saved state whose columns are not `expected`'s: the query changed since the
/// checkpoint was written.
fn check_saved_columns(index: usize, saved: &[RecordBatch], expected: &SchemaRef) -> Result<()> {
    match saved.first() {
        Some(held) if held.schema().fields() != expected.fields() => {
            Err(DataFusionError::Plan(format!(
                "the checkpoint's state of stateful operator {index} has the columns ({}), but \
                 this query's has ({}): the query was changed since the checkpoint was written; \
                 give the changed query a new checkpoint location",
                held.schema(),
                expected
            )))
        }
        _ => Ok(()),
    }
}

/// The rows a site that keeps whole rows held after the previous batch.
fn held_rows(
    index: usize,
    held: Option<SiteState>,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let rows = match held {
        None => vec![],
        Some(SiteState::Rows(rows)) => rows,
        Some(SiteState::Saved { snapshot, changes }) if changes.is_empty() => snapshot,
        Some(_) => {
            return Err(DataFusionError::Plan(format!(
                "the checkpoint's state of stateful operator {index} was saved as groups, but \
                 this query's operator {index} keeps rows: the query was changed since the \
                 checkpoint was written; give the changed query a new checkpoint location"
            )));
        }
    };
    check_saved_columns(index, &rows, schema)?;
    Ok(rows)
}

/// The groups of an aggregation site: restored from the checkpoint, or none yet.
fn restore_groups(
    index: usize,
    spec: &AggregateSpec,
    window: Option<&WindowKind>,
    held: Option<SiteState>,
    settings: BatchSettings,
) -> Result<GroupTable> {
    let window_end = match window {
        Some(window) => Some(window_end_of(spec, window)?),
        None => None,
    };
    let mut table = GroupTable::new(spec.clone(), window_end, settings.parts)?;
    let saved = match held {
        None => return Ok(table),
        Some(SiteState::Saved { snapshot, changes }) => [snapshot, changes].concat(),
        Some(SiteState::Rows(rows)) => rows,
        Some(SiteState::Groups(_)) => {
            return Err(DataFusionError::Internal(
                "a kept group table was to be restored".to_string(),
            ));
        }
    };
    check_saved_columns(index, &saved, spec.partial_schema())?;
    table.restore(&saved)?;
    // Groups that closed before the restored batch are in the changes they were last in.
    if let (true, Some(watermark)) = (closes(window, settings.mode), settings.watermark_ms) {
        table.close(watermark)?;
    }
    Ok(table)
}

/// Whether an aggregation's groups close when the watermark passes their window's end.
fn closes(window: Option<&WindowKind>, mode: OutputMode) -> bool {
    window.is_some() && mode != OutputMode::Complete
}

/// Where an aggregation's group columns hold each group's window end.
fn window_end_of(spec: &AggregateSpec, window: &WindowKind) -> Result<WindowEnd> {
    let groups = &spec.partial_schema().fields()[..spec.num_group_columns()];
    let position = |name: &str| groups.iter().position(|f| f.name() == name);
    if let Some(column) = position(WINDOW_END) {
        return Ok(WindowEnd::Column(column));
    }
    match (window, position(WINDOW_START)) {
        (WindowKind::Tumble { size } | WindowKind::Hop { size, .. }, Some(column)) => {
            Ok(WindowEnd::StartPlus {
                column,
                size_ms: size.as_millis() as i64,
            })
        }
        _ => Err(DataFusionError::Plan(
            "a windowed streaming aggregation must group by window_end (or window_start)"
                .to_string(),
        )),
    }
}

/// An aggregation site kept as a [`GroupTable`]: returns (emitted rows in the final schema,
/// what to save).
fn emit_groups(
    table: &mut GroupTable,
    spec: &AggregateSpec,
    closing: bool,
    input: Vec<RecordBatch>,
    settings: BatchSettings,
) -> Result<(RecordBatch, SavedState)> {
    let changed = table.apply(&input)?;
    let closed = match settings.next_watermark_ms {
        Some(watermark) if closing => Some(table.close(watermark)?),
        _ => None,
    };
    let snapshot = if settings.snapshot || settings.mode == OutputMode::Complete {
        Some(table.snapshot()?)
    } else {
        None
    };
    let emitted = match settings.mode {
        OutputMode::Append => closed.unwrap_or_else(|| changed.slice(0, 0)),
        OutputMode::Update => changed.clone(),
        OutputMode::Complete => snapshot.clone().unwrap_or_else(|| changed.slice(0, 0)),
    };
    let to_save = match snapshot {
        Some(snapshot) if settings.snapshot => SavedState::Snapshot(snapshot),
        _ => SavedState::Changes(changed),
    };
    Ok((spec.evaluate_groups(&emitted)?, to_save))
}

/// The emitted `rows` in place of site `node`, partitioned as the node's output was, since the
/// plan above it may rely on that (a partitioned join whose other side is hash-partitioned the
/// same way).
fn replacement(node: &Arc<dyn ExecutionPlan>, rows: RecordBatch) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = node.schema();
    let partitioning = node.output_partitioning().clone();
    let count = partitioning.partition_count().max(1);
    match partitioning {
        Partitioning::Hash(..) if count > 1 => {
            let source = MemorySourceConfig::try_new_exec(&[vec![rows]], schema, None)?;
            Ok(Arc::new(RepartitionExec::try_new(source, partitioning)?))
        }
        _ => {
            let mut partitions = vec![vec![]; count];
            partitions[0].push(rows);
            Ok(MemorySourceConfig::try_new_exec(&partitions, schema, None)?)
        }
    }
}

/// The window end of each row of a batch that has a `window_end` column.
fn window_ends(batch: &RecordBatch) -> Result<Option<Int64Array>> {
    match batch.schema().index_of(WINDOW_END) {
        Ok(i) => Ok(Some(WindowEnd::Column(i).ends_ms(batch)?)),
        Err(_) => Ok(None),
    }
}

/// Rows whose window ended at or before the watermark.
fn closed(ends: &Int64Array, watermark_ms: Option<i64>) -> BooleanArray {
    ends.iter()
        .map(|end| Some(matches!((end, watermark_ms), (Some(e), Some(w)) if e <= w)))
        .collect()
}

fn one_batch(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    Ok(concat_batches(schema, batches)?)
}

/// An aggregation over session windows, whose groups' windows grow and merge as rows arrive,
/// kept as whole partial-state rows: returns (emitted rows in the final schema, the new state).
fn emit_sessions(
    spec: &AggregateSpec,
    window: Option<&WindowKind>,
    held: Vec<RecordBatch>,
    input: Vec<RecordBatch>,
    settings: BatchSettings,
) -> Result<(RecordBatch, RecordBatch)> {
    let Some(WindowKind::Session { keys, .. }) = window else {
        return Err(DataFusionError::Internal(
            "a session aggregation without session windows".to_string(),
        ));
    };
    let schema = Arc::clone(spec.partial_schema());
    let held_rows: usize = held.iter().map(RecordBatch::num_rows).sum();
    let mut all = held;
    all.extend(input);
    let combined = merge_sessions(&one_batch(&schema, &all)?, keys)?;
    // The groups this batch's rows went into (after sessions merged).
    let touched = group_keys(
        spec,
        &[combined.slice(held_rows, combined.num_rows() - held_rows)],
    )?;
    let merged_state = spec.merge(&[combined])?.state()?;
    let (finished, open) = match window_ends(&merged_state)? {
        Some(ends) if settings.mode != OutputMode::Complete => {
            split_batch(&merged_state, &closed(&ends, settings.next_watermark_ms))?
        }
        _ => (merged_state.slice(0, 0), merged_state.clone()),
    };
    let emitted_state = match settings.mode {
        OutputMode::Append => finished,
        OutputMode::Complete => merged_state,
        OutputMode::Update => {
            let mask = rows_in(spec, &merged_state, &touched)?;
            split_batch(&merged_state, &mask)?.0
        }
    };
    let emitted = spec.evaluate_groups(&emitted_state)?;
    Ok((emitted, open))
}

/// The group keys of partial-state batches, as comparable rows.
fn group_keys(spec: &AggregateSpec, batches: &[RecordBatch]) -> Result<HashSet<Vec<u8>>> {
    let converter = key_converter(spec)?;
    let mut keys = HashSet::new();
    for batch in batches {
        let rows = converter.convert_columns(&batch.columns()[..spec.num_group_columns()])?;
        keys.extend(rows.iter().map(|r| r.as_ref().to_vec()));
    }
    Ok(keys)
}

fn key_converter(spec: &AggregateSpec) -> Result<RowConverter> {
    let fields = spec.partial_schema().fields()[..spec.num_group_columns()]
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    Ok(RowConverter::new(fields)?)
}

/// Which rows of `batch` have a group key in `keys`.
fn rows_in(
    spec: &AggregateSpec,
    batch: &RecordBatch,
    keys: &HashSet<Vec<u8>>,
) -> Result<BooleanArray> {
    let converter = key_converter(spec)?;
    let rows = converter.convert_columns(&batch.columns()[..spec.num_group_columns()])?;
    Ok(rows
        .iter()
        .map(|r| Some(keys.contains(r.as_ref())))
        .collect())
}

/// Session windows of partial states: per key, sessions that overlap (one starts before the
/// other ends) become one, from the earliest start to the latest end.
fn merge_sessions(batch: &RecordBatch, keys: &[String]) -> Result<RecordBatch> {
    let schema = batch.schema();
    let (Ok(start_index), Ok(end_index)) =
        (schema.index_of(WINDOW_START), schema.index_of(WINDOW_END))
    else {
        return Err(DataFusionError::Plan(
            "a streaming aggregation over session windows must group by window_start and \
             window_end"
                .to_string(),
        ));
    };
    if batch.num_rows() == 0 {
        return Ok(batch.clone());
    }
    let key_columns: Vec<ArrayRef> = keys
        .iter()
        .map(|k| {
            schema
                .index_of(k)
                .map(|i| Arc::clone(batch.column(i)))
                .map_err(|_| {
                    DataFusionError::Plan(format!(
                        "a streaming aggregation over session windows must group by the \
                         session key '{k}'"
                    ))
                })
        })
        .collect::<Result<_>>()?;
    let in_unit = |column: &ArrayRef| -> Result<Int64Array> {
        Ok(cast(column, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone())
    };
    let starts = in_unit(batch.column(start_index))?;
    let ends = in_unit(batch.column(end_index))?;
    let mut sort: Vec<SortColumn> = key_columns
        .iter()
        .map(|c| SortColumn {
            values: Arc::clone(c),
            options: None,
        })
        .collect();
    sort.push(SortColumn {
        values: Arc::new(starts.clone()),
        options: None,
    });
    let order = lexsort_to_indices(&sort, None)?;
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let key_rows = converter.convert_columns(&key_columns)?;
    let mut merged_start = vec![0i64; batch.num_rows()];
    let mut merged_end = vec![0i64; batch.num_rows()];
    let mut run: Vec<usize> = vec![];
    let mut run_start = 0i64;
    let mut run_end = i64::MIN;
    let flush = |run: &mut Vec<usize>, s: i64, e: i64, ms: &mut [i64], me: &mut [i64]| {
        for &row in run.iter() {
            ms[row] = s;
            me[row] = e;
        }
        run.clear();
    };
    for position in 0..order.len() {
        let row = order.value(position) as usize;
        let same_key = run
            .last()
            .is_some_and(|&previous| key_rows.row(previous) == key_rows.row(row));
        let (start, end) = (starts.value(row), ends.value(row));
        if same_key && start < run_end {
            run_end = run_end.max(end);
        } else {
            flush(
                &mut run,
                run_start,
                run_end,
                &mut merged_start,
                &mut merged_end,
            );
            run_start = start;
            run_end = end;
        }
        run.push(row);
    }
    flush(
        &mut run,
        run_start,
        run_end,
        &mut merged_start,
        &mut merged_end,
    );
    let as_column = |values: Vec<i64>, like: &ArrayRef| -> Result<ArrayRef> {
        Ok(cast(&Int64Array::from(values), like.data_type())?)
    };
    let mut columns = batch.columns().to_vec();
    columns[start_index] = as_column(merged_start, batch.column(start_index))?;
    columns[end_index] = as_column(merged_end, batch.column(end_index))?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A buffer site: returns (rows released, rows still held).
fn release_buffer(
    schema: &SchemaRef,
    held: Vec<RecordBatch>,
    input: Vec<RecordBatch>,
    watermark_ms: Option<i64>,
) -> Result<(RecordBatch, RecordBatch)> {
    let mut all = held;
    all.extend(input);
    let rows = one_batch(schema, &all)?;
    let ends = window_ends(&rows)?.ok_or_else(|| {
        DataFusionError::Internal("a buffered window has no window_end column".to_string())
    })?;
    split_batch(&rows, &closed(&ends, watermark_ms))
}

#[cfg(test)]
mod tests {
    use arrow::array::{StringArray, TimestampMillisecondArray, UInt64Array};
    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    fn sessions(rows: &[(&str, i64, i64, u64)]) -> RecordBatch {
        let timestamp = DataType::Timestamp(TimeUnit::Millisecond, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new(WINDOW_START, timestamp.clone(), false),
            Field::new(WINDOW_END, timestamp, false),
            Field::new("count", DataType::UInt64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .expect("batch")
    }

    fn windows(batch: &RecordBatch) -> Vec<(String, i64, i64)> {
        let keys = batch.column(0).as_string::<i32>();
        let starts = WindowEnd::Column(1).ends_ms(batch).expect("starts");
        let ends = WindowEnd::Column(2).ends_ms(batch).expect("ends");
        (0..batch.num_rows())
            .map(|i| (keys.value(i).to_string(), starts.value(i), ends.value(i)))
            .collect()
    }

    #[test]
    fn overlapping_sessions_of_a_key_become_one() {
        // a: [0, 30) from an earlier batch and [20, 50), [45, 60) now → one [0, 60);
        // a: [100, 110) stays apart; b: [25, 40) does not merge with a's.
        let merged = merge_sessions(
            &sessions(&[
                ("a", 20, 50, 2),
                ("b", 25, 40, 1),
                ("a", 0, 30, 3),
                ("a", 100, 110, 1),
                ("a", 45, 60, 1),
            ]),
            &["k".to_string()],
        )
        .expect("merged");
        assert_eq!(
            windows(&merged),
            vec![
                ("a".to_string(), 0, 60),
                ("b".to_string(), 25, 40),
                ("a".to_string(), 0, 60),
                ("a".to_string(), 100, 110),
                ("a".to_string(), 0, 60),
            ]
        );
    }

    #[test]
    fn windows_close_when_the_watermark_reaches_their_end() {
        let ends = Int64Array::from(vec![Some(10), Some(20), None]);
        assert_eq!(
            closed(&ends, Some(10)),
            BooleanArray::from(vec![true, false, false])
        );
        assert_eq!(
            closed(&ends, None),
            BooleanArray::from(vec![false, false, false])
        );
        assert_eq!(OutputMode::parse("Update"), Some(OutputMode::Update));
        assert_eq!(OutputMode::parse("upsert"), None);
    }
}
