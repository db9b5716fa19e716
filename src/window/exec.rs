//! [`WindowAssignExec`]: the plan node that gives each input row its windows, appending
//! `window_start` and `window_end` (repeating rows that are in several hopping windows), drops
//! windows that already ended at a watermark, and counts the rows it drops.
//!
//! Tumbling and hopping windows are assigned batch by batch in every input partition. Session
//! windows need all rows of a key, so a session node reads one partition (it coalesces its
//! input) and computes the sessions of everything it reads.

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{concat_batches, filter, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, Distribution, ExecutionPlan,
    ExecutionPlanProperties, InputDistributionRequirements, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::{StreamExt, TryStreamExt, stream};

use super::assign::{
    Assignment, Selection, assign_hop, assign_tumble, duration_in_unit, keep_open, session_bounds,
    time_values, timestamp_unit, to_time_array, unit_name, watermark_in_unit,
};
use super::{WINDOW_END, WINDOW_START, WindowKind, metric};

/// The most hopping windows a row may be in (`size / slide`): more is almost certainly a
/// mistake in the units, and would multiply the input that many times.
pub const MAX_HOP_WINDOWS: i64 = 100_000;

/// A window kind in the units of a time column.
#[derive(Debug, Clone, Copy)]
enum UnitWindows {
    Tumble { size: i64 },
    Hop { slide: i64, size: i64 },
    Session { gap: i64 },
}

/// Where a window's columns are in a schema, checked against its kind.
#[derive(Debug, Clone)]
pub(crate) struct WindowColumns {
    /// The position of the time column.
    pub(crate) time: usize,
    /// The positions of the session keys.
    pub(crate) keys: Vec<usize>,
    /// The time column's type, which the window columns share.
    pub(crate) time_type: DataType,
    /// The time column's unit.
    unit: TimeUnit,
    windows: UnitWindows,
}

impl WindowColumns {
    /// Finds and checks the columns of `kind` over `time_column` in `schema`. Errors name the
    /// function and the argument at fault.
    pub(crate) fn resolve(schema: &Schema, kind: &WindowKind, time_column: &str) -> Result<Self> {
        let function = kind.function_name();
        let columns = || {
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let find = |name: &str, argument: &str| {
            schema.index_of(name).map_err(|_| {
                DataFusionError::Plan(format!(
                    "{function}: argument '{argument}': there is no column '{name}'; the columns \
                     are: {}",
                    columns()
                ))
            })
        };
        let time = find(time_column, "time_column")?;
        let time_type = schema.field(time).data_type().clone();
        let unit = timestamp_unit(&time_type).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "{function}: argument 'time_column': column '{time_column}' is {time_type}, not a \
                 timestamp; cast it, e.g. with a view over to_timestamp_millis(…)"
            ))
        })?;
        let units = |d, argument: &str| -> Result<i64> {
            match duration_in_unit(d, unit) {
                Some(v) if v > 0 => Ok(v),
                Some(_) => Err(DataFusionError::Plan(format!(
                    "{function}: argument '{argument}' must be positive, not {d:?}"
                ))),
                None => Err(DataFusionError::Plan(format!(
                    "{function}: argument '{argument}' ({d:?}) is not a whole number of {}, the \
                     unit of column '{time_column}'",
                    unit_name(unit)
                ))),
            }
        };
        let windows = match kind {
            WindowKind::Tumble { size } => UnitWindows::Tumble {
                size: units(*size, "size")?,
            },
            WindowKind::Hop { slide, size } => {
                let (slide_units, size_units) = (units(*slide, "slide")?, units(*size, "size")?);
                if size_units % slide_units != 0 {
                    return Err(DataFusionError::Plan(format!(
                        "{function}: argument 'size' ({size:?}) must be a multiple of argument \
                         'slide' ({slide:?})"
                    )));
                }
                if size_units / slide_units > MAX_HOP_WINDOWS {
                    return Err(DataFusionError::Plan(format!(
                        "{function}: argument 'size' ({size:?}) is more than {MAX_HOP_WINDOWS} \
                         times argument 'slide' ({slide:?}): every row would be repeated that \
                         many times; use a longer slide"
                    )));
                }
                UnitWindows::Hop {
                    slide: slide_units,
                    size: size_units,
                }
            }
            WindowKind::Session { gap, keys } => {
                if keys.is_empty() {
                    return Err(DataFusionError::Plan(format!(
                        "{function}: at least one key column is needed: \
                         session(table, time_column, gap, key_column [, key_column …])"
                    )));
                }
                UnitWindows::Session {
                    gap: units(*gap, "gap")?,
                }
            }
        };
        let keys = kind
            .keys()
            .iter()
            .map(|k| find(k, "key_column"))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            time,
            keys,
            time_type,
            unit,
            windows,
        })
    }

    /// The `window_start` and `window_end` fields.
    pub(crate) fn fields(&self) -> [Field; 2] {
        [
            Field::new(WINDOW_START, self.time_type.clone(), false),
            Field::new(WINDOW_END, self.time_type.clone(), false),
        ]
    }
}

/// Assigns windows to the rows of its input: outputs the input's columns followed by
/// `window_start` and `window_end`, projected by `projection`. Each (row, window) whose window
/// ends at or before the watermark is dropped; rows dropped entirely are counted in the
/// `late_records` metric, rows with a NULL time in `null_time_records`.
#[derive(Debug)]
pub struct WindowAssignExec {
    input: Arc<dyn ExecutionPlan>,
    kind: WindowKind,
    time_column: String,
    columns: WindowColumns,
    watermark: Option<i64>,
    /// Output columns, as positions in the input's columns followed by start and end.
    projection: Vec<usize>,
    schema: SchemaRef,
    metrics: ExecutionPlanMetricsSet,
    properties: Arc<PlanProperties>,
}

impl WindowAssignExec {
    /// Windows of `kind` over `time_column` of `input`, dropping windows that end at or before
    /// `watermark_ms` (epoch milliseconds), outputting the columns `projection` numbers among
    /// the input's columns followed by `window_start` and `window_end` (all when `None`).
    /// Session windows coalesce a partitioned input into one partition.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        kind: WindowKind,
        time_column: &str,
        watermark_ms: Option<i64>,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let input_schema = input.schema();
        let columns = WindowColumns::resolve(&input_schema, &kind, time_column)?;
        let mut fields: Vec<Field> = input_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(columns.fields());
        let all = Schema::new_with_metadata(fields, input_schema.metadata().clone());
        let projection = projection.unwrap_or_else(|| (0..all.fields().len()).collect());
        let schema = Arc::new(all.project(&projection)?);
        let session = matches!(kind, WindowKind::Session { .. });
        let input: Arc<dyn ExecutionPlan> =
            if session && input.output_partitioning().partition_count() > 1 {
                Arc::new(CoalescePartitionsExec::new(input))
            } else {
                input
            };
        let (partitions, emission) = if session {
            (1, EmissionType::Final)
        } else {
            (
                input.output_partitioning().partition_count(),
                input.pipeline_behavior(),
            )
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(partitions),
            emission,
            input.boundedness(),
        ));
        Ok(Self {
            input,
            kind,
            time_column: time_column.to_string(),
            columns,
            watermark: watermark_ms,
            projection,
            schema,
            metrics: ExecutionPlanMetricsSet::new(),
            properties,
        })
    }

    /// The windows assigned.
    pub fn kind(&self) -> &WindowKind {
        &self.kind
    }

    /// The time column.
    pub fn time_column(&self) -> &str {
        &self.time_column
    }

    /// The watermark (epoch milliseconds) at or before which windows are dropped.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    fn is_session(&self) -> bool {
        matches!(self.columns.windows, UnitWindows::Session { .. })
    }
}

impl DisplayAs for WindowAssignExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowAssignExec: {} on {}", self.kind, self.time_column)?;
        if let Some(watermark) = self.watermark {
            write!(f, ", watermark={watermark}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for WindowAssignExec {
    fn name(&self) -> &str {
        "WindowAssignExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        InputDistributionRequirements::new(vec![if self.is_session() {
            Distribution::SinglePartition
        } else {
            Distribution::UnspecifiedDistribution
        }])
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // Assigning windows is cheap: repartitioning for it would cost more than it saves.
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "WindowAssignExec has one child, not {}",
                children.len()
            )));
        }
        Ok(Arc::new(WindowAssignExec::try_new(
            children.swap_remove(0),
            self.kind.clone(),
            &self.time_column,
            self.watermark,
            Some(self.projection.clone()),
        )?))
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
        let assigner = Arc::new(Assigner {
            columns: self.columns.clone(),
            watermark: self
                .watermark
                .map(|ms| watermark_in_unit(ms, self.columns.unit)),
            projection: self.projection.clone(),
            input_columns: self.input.schema().fields().len(),
            schema: Arc::clone(&self.schema),
            batch_size: context.session_config().batch_size().max(1),
            late: MetricBuilder::new(&self.metrics).counter(metric::LATE_RECORDS, partition),
            null_time: MetricBuilder::new(&self.metrics)
                .counter(metric::NULL_TIME_RECORDS, partition),
            baseline: BaselineMetrics::new(&self.metrics, partition),
        });
        let input = self.input.execute(partition, context)?;
        let schema = Arc::clone(&self.schema);
        let output = if let UnitWindows::Session { gap } = self.columns.windows {
            let input_schema = self.input.schema();
            stream::once(async move {
                let batches: Vec<RecordBatch> = input.try_collect().await?;
                let all = concat_batches(&input_schema, &batches)?;
                assigner.sessions(&all, gap)
            })
            .boxed()
        } else {
            input
                .map(move |batch| batch.and_then(|b| assigner.fixed(&b)))
                .boxed()
        };
        // Each input step yields a list of output batches (possibly none).
        let flat = output
            .map(|result| match result {
                Ok(batches) => stream::iter(batches.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => stream::iter(vec![Err(e)]),
            })
            .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, flat)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// What one partition's stream needs to assign windows.
struct Assigner {
    columns: WindowColumns,
    /// In the time column's unit.
    watermark: Option<i64>,
    projection: Vec<usize>,
    input_columns: usize,
    schema: SchemaRef,
    batch_size: usize,
    late: Count,
    null_time: Count,
    baseline: BaselineMetrics,
}

impl Assigner {
    /// The tumbling or hopping windows of one input batch.
    fn fixed(&self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let _timer = self.baseline.elapsed_compute().timer();
        match self.columns.windows {
            UnitWindows::Tumble { size } => {
                let times = time_values(batch.column(self.columns.time))?;
                let assignment = assign_tumble(&times, size, self.watermark)?;
                Ok(self.output(batch, assignment)?.into_iter().collect())
            }
            UnitWindows::Hop { slide, size } => {
                // Keep output batches near the batch size: each row makes size/slide rows.
                let per_row = (size / slide) as usize;
                let chunk = (self.batch_size / per_row).max(1);
                let mut out = vec![];
                for offset in (0..batch.num_rows()).step_by(chunk) {
                    let part = batch.slice(offset, chunk.min(batch.num_rows() - offset));
                    let times = time_values(part.column(self.columns.time))?;
                    let assignment = assign_hop(&times, slide, size, self.watermark)?;
                    out.extend(self.output(&part, assignment)?);
                }
                Ok(out)
            }
            UnitWindows::Session { .. } => Err(DataFusionError::Internal(
                "session windows are assigned over the whole input".to_string(),
            )),
        }
    }

    /// The session windows of the whole input, in batches of the batch size.
    fn sessions(&self, all: &RecordBatch, gap: i64) -> Result<Vec<RecordBatch>> {
        let _timer = self.baseline.elapsed_compute().timer();
        let keys: Vec<ArrayRef> = self
            .columns
            .keys
            .iter()
            .map(|k| Arc::clone(all.column(*k)))
            .collect();
        let mut times = time_values(all.column(self.columns.time))?;
        // A row before the watermark is late even when its own session would end after it: its
        // key's session around that time may already have been emitted.
        let mut late_rows = 0;
        let mut keys = keys;
        let mut all = all.clone();
        if let Some(watermark) = self.watermark {
            use arrow::array::{Array, AsArray, Int64Array};
            let on_time =
                arrow::compute::kernels::cmp::gt_eq(&times, &Int64Array::new_scalar(watermark))?;
            let non_null = times.len() - times.null_count();
            late_rows = non_null - on_time.true_count();
            if late_rows > 0 {
                // Rows with a NULL time stay, to be counted as such.
                let keep = arrow::compute::or_kleene(&on_time, &arrow::compute::is_null(&times)?)?;
                all = arrow::compute::filter_record_batch(&all, &keep)?;
                times = arrow::compute::filter(&times, &keep)?
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .clone();
                keys = self
                    .columns
                    .keys
                    .iter()
                    .map(|k| Arc::clone(all.column(*k)))
                    .collect();
            }
        }
        let (starts, ends) = session_bounds(&keys, &times, gap)?;
        let mut assignment = keep_open(starts, ends, self.watermark)?;
        assignment.late += late_rows;
        let all = &all;
        let Some(out) = self.output(all, assignment)? else {
            return Ok(vec![]);
        };
        Ok((0..out.num_rows())
            .step_by(self.batch_size)
            .map(|offset| out.slice(offset, self.batch_size.min(out.num_rows() - offset)))
            .collect())
    }

    /// The output rows of `batch` under `assignment`, or `None` when there are none.
    fn output(&self, batch: &RecordBatch, assignment: Assignment) -> Result<Option<RecordBatch>> {
        self.late.add(assignment.late);
        self.null_time.add(assignment.null_time);
        let rows = assignment.starts.len();
        if rows == 0 {
            return Ok(None);
        }
        let starts = to_time_array(assignment.starts, &self.columns.time_type)?;
        let ends = to_time_array(assignment.ends, &self.columns.time_type)?;
        let columns = self
            .projection
            .iter()
            .map(|&i| {
                if i == self.input_columns {
                    return Ok(Arc::clone(&starts));
                }
                if i == self.input_columns + 1 {
                    return Ok(Arc::clone(&ends));
                }
                let column = batch.column(i);
                Ok(match &assignment.selection {
                    Selection::All => Arc::clone(column),
                    Selection::Filter(mask) => filter(column, mask)?,
                    Selection::Take(indices) => take(column, indices, None)?,
                })
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let out = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        self.baseline.record_output(rows);
        Ok(Some(out))
    }
}

/// The sum of the metric `name` (see [`metric`]) over every [`WindowAssignExec`] in `plan`.
pub fn sum_metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    let own = plan
        .downcast_ref::<WindowAssignExec>()
        .and_then(|exec| exec.metrics())
        .and_then(|m| m.sum_by_name(name))
        .map_or(0, |v| v.as_usize());
    own + plan
        .children()
        .iter()
        .map(|c| sum_metric(c, name))
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow::array::{AsArray, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Int64Type, TimestampMillisecondType};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::SessionContext;

    use super::*;

    fn input(partitions: Vec<Vec<(Option<i64>, &str)>>) -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let partitions: Vec<Vec<RecordBatch>> = partitions
            .into_iter()
            .map(|rows| {
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(TimestampMillisecondArray::from(
                            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                        )),
                        Arc::new(StringArray::from(
                            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                        )),
                        Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)),
                    ],
                )
                .unwrap();
                vec![batch]
            })
            .collect();
        MemorySourceConfig::try_new_exec(&partitions, schema, None).unwrap()
    }

    async fn run(exec: WindowAssignExec) -> (Vec<RecordBatch>, Arc<dyn ExecutionPlan>) {
        let plan: Arc<dyn ExecutionPlan> = Arc::new(exec);
        let batches = collect(Arc::clone(&plan), SessionContext::new().task_ctx())
            .await
            .unwrap();
        (batches, plan)
    }

    fn column_i64(batches: &[RecordBatch], name: &str) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name(name).unwrap();
                match c.data_type() {
                    DataType::Int64 => c.as_primitive::<Int64Type>().values().to_vec(),
                    _ => c
                        .as_primitive::<TimestampMillisecondType>()
                        .values()
                        .to_vec(),
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn tumble_appends_window_columns_and_projects() {
        let plan = input(vec![vec![(Some(1_000), "a"), (Some(-1), "b")]]);
        let exec = WindowAssignExec::try_new(
            plan,
            WindowKind::Tumble {
                size: Duration::from_secs(10),
            },
            "ts",
            None,
            Some(vec![3, 2, 4]),
        )
        .unwrap();
        assert_eq!(
            exec.schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>(),
            vec!["window_start", "v", "window_end"]
        );
        let (batches, _) = run(exec).await;
        assert_eq!(column_i64(&batches, "window_start"), vec![0, -10_000]);
        assert_eq!(column_i64(&batches, "window_end"), vec![10_000, 0]);
        assert_eq!(column_i64(&batches, "v"), vec![0, 1]);
    }

    #[tokio::test]
    async fn hop_expands_rows_in_every_partition_and_keeps_batches_small() {
        let rows: Vec<(Option<i64>, &str)> = (0..100).map(|i| (Some(i * 1000), "a")).collect();
        let exec = WindowAssignExec::try_new(
            input(vec![rows.clone(), rows]),
            WindowKind::Hop {
                slide: Duration::from_secs(1),
                size: Duration::from_secs(10),
            },
            "ts",
            None,
            None,
        )
        .unwrap();
        assert_eq!(exec.properties().partitioning.partition_count(), 2);
        let plan: Arc<dyn ExecutionPlan> = Arc::new(exec);
        let config = datafusion::prelude::SessionConfig::new().with_batch_size(64);
        let ctx = SessionContext::new_with_config(config);
        let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(total, 2 * 100 * 10);
        assert!(
            batches.iter().all(|b| b.num_rows() <= 64),
            "batches too big"
        );
        assert_eq!(sum_metric(&plan, metric::LATE_RECORDS), 0);
    }

    #[tokio::test]
    async fn late_windows_are_dropped_and_counted() {
        // Watermark 10 s: tumbling windows [0,10) are closed, [10,20) open.
        let plan = input(vec![
            vec![(Some(0), "a"), (Some(9_999), "a"), (None, "a")],
            vec![(Some(10_000), "b"), (Some(5_000), "b")],
        ]);
        let exec = WindowAssignExec::try_new(
            plan,
            WindowKind::Tumble {
                size: Duration::from_secs(10),
            },
            "ts",
            Some(10_000),
            None,
        )
        .unwrap();
        let (batches, plan) = run(exec).await;
        assert_eq!(column_i64(&batches, "window_start"), vec![10_000]);
        assert_eq!(sum_metric(&plan, metric::LATE_RECORDS), 3);
        assert_eq!(sum_metric(&plan, metric::NULL_TIME_RECORDS), 1);
        let shown = displayable(plan.as_ref()).one_line().to_string();
        assert!(shown.contains("watermark=10000"), "{shown}");
    }

    #[tokio::test]
    async fn sessions_coalesce_partitions_and_see_all_rows_of_a_key() {
        // Key a's rows are split over both partitions but form one session.
        let plan = input(vec![
            vec![(Some(0), "a"), (Some(30_000), "b")],
            vec![(Some(4_000), "a"), (Some(50_000), "a")],
        ]);
        let exec = WindowAssignExec::try_new(
            plan,
            WindowKind::Session {
                gap: Duration::from_secs(5),
                keys: vec!["k".to_string()],
            },
            "ts",
            Some(20_000),
            None,
        )
        .unwrap();
        assert_eq!(exec.properties().partitioning.partition_count(), 1);
        let (batches, plan) = run(exec).await;
        let mut got: Vec<(String, i64, i64, i64)> = vec![];
        for b in &batches {
            for i in 0..b.num_rows() {
                got.push((
                    b.column(1).as_string::<i32>().value(i).to_string(),
                    b.column(0)
                        .as_primitive::<TimestampMillisecondType>()
                        .value(i),
                    b.column(3)
                        .as_primitive::<TimestampMillisecondType>()
                        .value(i),
                    b.column(4)
                        .as_primitive::<TimestampMillisecondType>()
                        .value(i),
                ));
            }
        }
        got.sort();
        // a's first session [0, 9 s) is before the watermark: dropped (2 rows late).
        assert_eq!(
            got,
            vec![
                ("a".to_string(), 50_000, 50_000, 55_000),
                ("b".to_string(), 30_000, 30_000, 35_000),
            ]
        );
        assert_eq!(sum_metric(&plan, metric::LATE_RECORDS), 2);
    }

    #[tokio::test]
    async fn a_session_row_before_the_watermark_is_late_even_if_its_session_ends_after() {
        // a at 15 s would open [15 s, 25 s), past the 20 s watermark, but a's session around
        // 15 s may already have been emitted: the row is late.
        let plan = input(vec![vec![(Some(15_000), "a"), (Some(30_000), "b")]]);
        let exec = WindowAssignExec::try_new(
            plan,
            WindowKind::Session {
                gap: Duration::from_secs(10),
                keys: vec!["k".to_string()],
            },
            "ts",
            Some(20_000),
            None,
        )
        .unwrap();
        let (batches, plan) = run(exec).await;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1, "only b's row");
        assert_eq!(sum_metric(&plan, metric::LATE_RECORDS), 1);
    }

    #[tokio::test]
    async fn sessions_of_no_rows_are_no_batches() {
        let exec = WindowAssignExec::try_new(
            input(vec![vec![], vec![]]),
            WindowKind::Session {
                gap: Duration::from_secs(5),
                keys: vec!["k".to_string()],
            },
            "ts",
            None,
            None,
        )
        .unwrap();
        let (batches, _) = run(exec).await;
        assert!(batches.is_empty());
    }

    #[test]
    fn bad_window_arguments_are_refused_naming_them() {
        let plan = input(vec![vec![(Some(0), "a")]]);
        let err = |kind: WindowKind, time: &str| {
            WindowAssignExec::try_new(Arc::clone(&plan), kind, time, None, None)
                .unwrap_err()
                .to_string()
        };
        let ten = Duration::from_secs(10);
        let e = err(WindowKind::Tumble { size: ten }, "v");
        assert!(e.contains("tumble: argument 'time_column'") && e.contains("not a timestamp"));
        let e = err(WindowKind::Tumble { size: ten }, "nope");
        assert!(
            e.contains("no column 'nope'") && e.contains("ts, k, v"),
            "{e}"
        );
        let e = err(
            WindowKind::Hop {
                slide: Duration::from_secs(3),
                size: ten,
            },
            "ts",
        );
        assert!(
            e.contains("hop: argument 'size'") && e.contains("multiple"),
            "{e}"
        );
        let e = err(
            WindowKind::Hop {
                slide: Duration::from_millis(1),
                size: Duration::from_secs(86_400),
            },
            "ts",
        );
        assert!(e.contains("more than 100000 times argument 'slide'"), "{e}");
        let e = err(
            WindowKind::Tumble {
                size: Duration::from_micros(1500),
            },
            "ts",
        );
        assert!(e.contains("whole number of milliseconds"), "{e}");
        let e = err(
            WindowKind::Tumble {
                size: Duration::ZERO,
            },
            "ts",
        );
        assert!(e.contains("must be positive"), "{e}");
        let e = err(
            WindowKind::Session {
                gap: ten,
                keys: vec!["kk".to_string()],
            },
            "ts",
        );
        assert!(
            e.contains("session: argument 'key_column'") && e.contains("'kk'"),
            "{e}"
        );
    }
}
