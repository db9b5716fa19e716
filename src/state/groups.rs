//! Merging partial-state batches by group: rows with equal group columns (found by DataFusion's
//! group tables) are merged by each aggregate's `GroupsAccumulator`, giving
//! [`MergedGroups`], whose state is stored and whose final values are emitted. Also splitting a
//! partial-state batch by a mask (closed windows from open ones).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, new_empty_array};
use arrow::compute::kernels::boolean::not;
use arrow::compute::{cast, filter_record_batch, prep_null_mask_filter};
use arrow::datatypes::{DataType, FieldRef, Schema};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::spec::AggregateSpec;

/// The groups of some partial-state batches, each group's states merged into one.
#[derive(Debug)]
pub struct MergedGroups {
    spec: AggregateSpec,
    /// The group columns, one row per group.
    groups: Vec<ArrayRef>,
    /// Per aggregate, its state columns, one row per group.
    states: Vec<Vec<ArrayRef>>,
    num_groups: usize,
}

impl AggregateSpec {
    /// Merges `batches` (partial-state batches: output of [`AggregateSpec::partial_plan`] or
    /// [`MergedGroups::state`], in any number and order) by group. No batches, or only empty
    /// ones, give no groups — also without GROUP BY, where DataFusion would give one row.
    pub fn merge(&self, batches: &[RecordBatch]) -> Result<MergedGroups> {
        let group_count = self.num_group_columns();
        let group_fields = &self.partial_schema.fields()[..group_count];
        let mut grouper = Grouper::new(group_fields)?;
        let mut accumulators = self.groups_accumulators()?;
        for (i, batch) in batches.iter().enumerate() {
            self.check_partial(batch, i)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let (indices, total) =
                grouper.intern(&batch.columns()[..group_count], batch.num_rows())?;
            self.merge_states(&mut accumulators, batch, indices, total)?;
        }
        let num_groups = grouper.len();
        if num_groups == 0 {
            let empty = |f: &FieldRef| new_empty_array(f.data_type());
            let fields = self.partial_schema.fields();
            return Ok(MergedGroups {
                groups: fields[..group_count].iter().map(empty).collect(),
                states: self
                    .state_columns
                    .iter()
                    .map(|r| fields[r.clone()].iter().map(empty).collect())
                    .collect(),
                spec: self.clone(),
                num_groups,
            });
        }
        let groups = grouper.into_columns(group_fields)?;
        let states = accumulators
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<Result<Vec<_>>>()?;
        Ok(MergedGroups {
            spec: self.clone(),
            groups,
            states,
            num_groups,
        })
    }

    /// A fresh accumulator of many groups per aggregate.
    pub(super) fn groups_accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.aggr_expr.iter().map(groups_accumulator).collect()
    }

    /// Merges the state columns of `batch` (partial-state rows) into `accumulators`, row `i`
    /// into group `groups[i]` of `count`.
    pub(super) fn merge_states(
        &self,
        accumulators: &mut [Box<dyn GroupsAccumulator>],
        batch: &RecordBatch,
        groups: &[usize],
        count: usize,
    ) -> Result<()> {
        for (accumulator, columns) in accumulators.iter_mut().zip(&self.state_columns) {
            accumulator.merge_batch(&batch.columns()[columns.clone()], groups, count)?;
        }
        Ok(())
    }

    /// The final rows of `states`, partial-state rows with one row per group.
    pub fn evaluate_groups(&self, states: &RecordBatch) -> Result<RecordBatch> {
        self.check_partial(states, 0)?;
        let count = states.num_rows();
        let mut columns = states.columns()[..self.num_group_columns()].to_vec();
        let groups: Vec<usize> = (0..count).collect();
        for (expr, state) in self.aggr_expr.iter().zip(&self.state_columns) {
            let mut accumulator = groups_accumulator(expr)?;
            if count > 0 {
                accumulator.merge_batch(&states.columns()[state.clone()], &groups, count)?;
                columns.push(accumulator.evaluate(EmitTo::All)?);
            } else {
                let field = &self.final_schema.fields()[columns.len()];
                columns.push(new_empty_array(field.data_type()));
            }
        }
        Ok(RecordBatch::try_new(
            Arc::clone(&self.final_schema),
            columns,
        )?)
    }

    /// Checks that `batch` (number `i`) is a partial-state batch of this aggregation.
    pub(super) fn check_partial(&self, batch: &RecordBatch, i: usize) -> Result<()> {
        let expected = self.partial_schema.fields();
        let matches = batch.num_columns() == expected.len()
            && batch
                .columns()
                .iter()
                .zip(expected)
                .all(|(c, f)| c.data_type() == f.data_type());
        if matches {
            Ok(())
        } else {
            Err(DataFusionError::Plan(format!(
                "batch {i} to merge has columns {}, but this aggregation's partial states have \
                 {}; merge only output of partial_plan() and MergedGroups::state() of the same \
                 query",
                batch.schema(),
                self.partial_schema
            )))
        }
    }
}

impl MergedGroups {
    /// How many groups there are.
    pub fn num_groups(&self) -> usize {
        self.num_groups
    }

    /// One partial-state row per group (the partial schema): what to store.
    pub fn state(&self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self
            .groups
            .iter()
            .chain(self.states.iter().flatten())
            .cloned()
            .collect();
        Ok(RecordBatch::try_new(
            Arc::clone(&self.spec.partial_schema),
            columns,
        )?)
    }

    /// One final row per group (the final schema): the group columns and each aggregate's
    /// value, as the planned aggregate outputs them.
    pub fn evaluate(&self) -> Result<RecordBatch> {
        self.spec.evaluate_groups(&self.state()?)
    }
}

/// The accumulator of many groups for `expr`: its own, or DataFusion's adapter over one
/// accumulator per group when it has none.
fn groups_accumulator(expr: &Arc<AggregateFunctionExpr>) -> Result<Box<dyn GroupsAccumulator>> {
    if expr.groups_accumulator_supported() {
        expr.create_groups_accumulator()
    } else {
        let expr = Arc::clone(expr);
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            expr.create_accumulator()
        })))
    }
}

/// Numbers distinct group keys in order of first appearance, with DataFusion's own vectorised
/// group tables (as its hash aggregation does).
pub(super) struct Grouper {
    /// `None` without group columns: every row is in the one group.
    values: Option<Box<dyn GroupValues>>,
    count: usize,
    /// The group of each row of the last batch interned.
    indices: Vec<usize>,
}

impl Grouper {
    pub(super) fn new(fields: &[FieldRef]) -> Result<Self> {
        let values = if fields.is_empty() {
            None
        } else {
            let schema = Arc::new(Schema::new(fields.to_vec()));
            Some(new_group_values(schema, &GroupOrdering::None)?)
        };
        Ok(Self {
            values,
            count: 0,
            indices: vec![],
        })
    }

    /// The group index of each of `rows` rows with these group columns, adding new groups,
    /// and the number of groups after them.
    pub(super) fn intern(
        &mut self,
        columns: &[ArrayRef],
        rows: usize,
    ) -> Result<(&[usize], usize)> {
        self.indices.clear();
        match &mut self.values {
            None => {
                self.count = 1;
                self.indices.resize(rows, 0);
            }
            Some(values) => {
                values.intern(columns, &mut self.indices)?;
                self.count = values.len();
            }
        }
        Ok((&self.indices, self.count))
    }

    /// How many groups there are.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Memory held by the group keys.
    pub(super) fn size(&self) -> usize {
        self.values.as_ref().map_or(0, |values| values.size())
    }

    /// The group columns, one row per group, with the types of `fields`.
    fn into_columns(self, fields: &[FieldRef]) -> Result<Vec<ArrayRef>> {
        let Some(mut values) = self.values else {
            return Ok(vec![]);
        };
        values
            .emit(EmitTo::All)?
            .into_iter()
            .zip(fields)
            .map(|(column, field)| retype(column, field.data_type()))
            .collect()
    }
}

/// `column` as `data_type` (group tables can return dictionary values unpacked).
fn retype(column: ArrayRef, data_type: &DataType) -> Result<ArrayRef> {
    if column.data_type() == data_type {
        Ok(column)
    } else {
        Ok(cast(&column, data_type)?)
    }
}

/// Splits `batch` by `mask`: the rows where it is true, and the rest (false or NULL).
pub fn split_batch(batch: &RecordBatch, mask: &BooleanArray) -> Result<(RecordBatch, RecordBatch)> {
    if mask.len() != batch.num_rows() {
        return Err(DataFusionError::Execution(format!(
            "a mask of {} values cannot split a batch of {} rows",
            mask.len(),
            batch.num_rows()
        )));
    }
    let yes = if mask.null_count() > 0 {
        prep_null_mask_filter(mask)
    } else {
        mask.clone()
    };
    let no = not(&yes)?;
    Ok((
        filter_record_batch(batch, &yes)?,
        filter_record_batch(batch, &no)?,
    ))
}
