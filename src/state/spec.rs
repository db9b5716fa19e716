//! [`AggregateSpec`]: what a GROUP BY aggregates, taken from the `AggregateExec` DataFusion
//! planned (its group expressions, aggregate functions, FILTER clauses and schemas), and the
//! Partial-mode aggregate over any input with the same columns, whose output rows are partial
//! states.

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::empty::EmptyExec;

/// One GROUP BY aggregation, split into the Partial stage (input rows to partial states, see
/// [`AggregateSpec::partial_plan`]) and the merge of partial states into final values (see
/// [`AggregateSpec::merge`]). Partial-state batches have the columns of
/// [`AggregateSpec::partial_schema`]: the group columns, then each aggregate's state columns.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    pub(super) group_by: PhysicalGroupBy,
    pub(super) aggr_expr: Vec<Arc<AggregateFunctionExpr>>,
    pub(super) filter_expr: Vec<Option<Arc<dyn PhysicalExpr>>>,
    pub(super) input_schema: SchemaRef,
    pub(super) partial_schema: SchemaRef,
    pub(super) final_schema: SchemaRef,
    /// Per aggregate, the positions of its state columns in the partial schema.
    pub(super) state_columns: Vec<Range<usize>>,
}

impl AggregateSpec {
    /// The aggregation `agg` computes: `agg` must produce final values (mode Final,
    /// FinalPartitioned, Single or SinglePartitioned); for the Final modes, the Partial
    /// aggregate below it supplies the input side.
    pub fn from_plan(agg: &AggregateExec) -> Result<Self> {
        let source = match agg.mode() {
            AggregateMode::Single | AggregateMode::SinglePartitioned => agg,
            AggregateMode::Final | AggregateMode::FinalPartitioned => partial_node(agg)?,
            other => {
                return Err(DataFusionError::Plan(format!(
                    "stateful aggregation needs the aggregate that produces final values (mode \
                     Final, FinalPartitioned, Single or SinglePartitioned), not a {other:?} one"
                )));
            }
        };
        if source.group_expr().has_grouping_set() {
            return Err(DataFusionError::NotImplemented(
                "GROUPING SETS, CUBE and ROLLUP are not supported in streaming aggregations; \
                 group by plain columns"
                    .to_string(),
            ));
        }
        let input_schema = source.input().schema();
        // The partial stage of this aggregation; for Final modes the one DataFusion planned.
        let partial = if *source.mode() == AggregateMode::Partial {
            source.clone()
        } else {
            AggregateExec::try_new(
                AggregateMode::Partial,
                source.group_expr().clone(),
                source.aggr_expr().to_vec(),
                source.filter_expr().to_vec(),
                Arc::new(EmptyExec::new(Arc::clone(&input_schema))),
                Arc::clone(&input_schema),
            )?
        };
        let aggr_expr = partial.aggr_expr().to_vec();
        let mut state_columns = vec![];
        let mut next = partial.group_expr().expr().len();
        for expr in &aggr_expr {
            let count = expr.state_fields()?.len();
            state_columns.push(next..next + count);
            next += count;
        }
        let partial_schema = partial.schema();
        if next != partial_schema.fields().len() {
            return Err(DataFusionError::Internal(format!(
                "the partial aggregate has {} columns, but its groups and states account for \
                 {next}",
                partial_schema.fields().len()
            )));
        }
        Ok(Self {
            group_by: partial.group_expr().clone(),
            aggr_expr,
            filter_expr: partial.filter_expr().to_vec(),
            input_schema,
            partial_schema,
            final_schema: agg.schema(),
            state_columns,
        })
    }

    /// The columns the aggregation reads (the output of the plan below it).
    pub fn input_schema(&self) -> &SchemaRef {
        &self.input_schema
    }

    /// The columns of partial-state batches: the group columns, then each aggregate's state.
    pub fn partial_schema(&self) -> &SchemaRef {
        &self.partial_schema
    }

    /// The columns of final rows: the group columns, then each aggregate's value, with the
    /// types of the planned aggregate's output.
    pub fn final_schema(&self) -> &SchemaRef {
        &self.final_schema
    }

    /// How many leading columns of the partial and final schemas are group columns.
    pub fn num_group_columns(&self) -> usize {
        self.group_by.expr().len()
    }

    /// The Partial-mode aggregate over `input` (which must have the columns of
    /// [`AggregateSpec::input_schema`]): its output is partial-state batches.
    pub fn partial_plan(&self, input: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if !same_columns(&input.schema(), &self.input_schema) {
            return Err(DataFusionError::Plan(format!(
                "the aggregation's input must have the columns {}, not {}; pass the plan that \
                 was below the aggregate (see partial_input), rebound to new data",
                self.input_schema,
                input.schema()
            )));
        }
        let partial = AggregateExec::try_new(
            AggregateMode::Partial,
            self.group_by.clone(),
            self.aggr_expr.clone(),
            self.filter_expr.clone(),
            input,
            Arc::clone(&self.input_schema),
        )?;
        // An ordered input can make DataFusion reverse an order-sensitive aggregate, whose
        // states would then not merge with this spec's.
        let same_aggregates = partial
            .aggr_expr()
            .iter()
            .zip(&self.aggr_expr)
            .all(|(a, b)| a.name() == b.name() && a.is_reversed() == b.is_reversed());
        if !same_aggregates || !same_columns(&partial.schema(), &self.partial_schema) {
            return Err(DataFusionError::NotImplemented(format!(
                "over this input, the partial aggregate's states ({}) differ from the planned \
                 ones ({}); order-sensitive aggregates over ordered inputs are not supported in \
                 streaming aggregations",
                partial.schema(),
                self.partial_schema
            )));
        }
        Ok(Arc::new(partial))
    }
}

/// True when two schemas have the same column names and types, in order.
fn same_columns(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

/// The Partial aggregate feeding a Final one, through the repartitioning and coalescing
/// between them.
fn partial_node(agg: &AggregateExec) -> Result<&AggregateExec> {
    let mut node = agg.input();
    loop {
        if let Some(partial) = node.downcast_ref::<AggregateExec>() {
            return if *partial.mode() == AggregateMode::Partial {
                Ok(partial)
            } else {
                Err(DataFusionError::NotImplemented(format!(
                    "a {:?} aggregate feeds the final one; nested aggregations (such as \
                     count(DISTINCT …)) are not supported in streaming aggregations",
                    partial.mode()
                )))
            };
        }
        match node.children().as_slice() {
            [child] => node = child,
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "found no Partial aggregate below the {:?} aggregate (reached {})",
                    agg.mode(),
                    node.name()
                )));
            }
        }
    }
}

/// The plan whose rows `agg` aggregates: the input of its Partial stage (for Final modes) or
/// its own input (Single modes). [`AggregateSpec::partial_plan`] takes this plan, or the same
/// plan rebound to other data.
pub fn partial_input(agg: &AggregateExec) -> Result<Arc<dyn ExecutionPlan>> {
    match agg.mode() {
        AggregateMode::Single | AggregateMode::SinglePartitioned => Ok(Arc::clone(agg.input())),
        AggregateMode::Final | AggregateMode::FinalPartitioned => {
            Ok(Arc::clone(partial_node(agg)?.input()))
        }
        other => Err(DataFusionError::Plan(format!(
            "a {other:?} aggregate has no partial input; pass the aggregate that produces final \
             values"
        ))),
    }
}
