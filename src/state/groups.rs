//! Merging partial-state batches by group: rows with equal group columns (compared as
//! arrow-row bytes) are merged by each aggregate's `GroupsAccumulator`, giving
//! [`MergedGroups`], whose state is stored and whose final values are emitted. Also splitting a
//! partial-state batch by a mask (closed windows from open ones).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, new_empty_array};
use arrow::compute::kernels::boolean::not;
use arrow::compute::{cast, filter_record_batch, prep_null_mask_filter};
use arrow::datatypes::{DataType, FieldRef};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

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
        let mut accumulators = self
            .aggr_expr
            .iter()
            .map(groups_accumulator)
            .collect::<Result<Vec<_>>>()?;
        for (i, batch) in batches.iter().enumerate() {
            self.check_partial(batch, i)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let (indices, total) =
                grouper.intern(&batch.columns()[..group_count], batch.num_rows())?;
            for (accumulator, columns) in accumulators.iter_mut().zip(&self.state_columns) {
                accumulator.merge_batch(&batch.columns()[columns.clone()], indices, total)?;
            }
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

    /// Checks that `batch` (number `i`) is a partial-state batch of this aggregation.
    fn check_partial(&self, batch: &RecordBatch, i: usize) -> Result<()> {
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
        let group_count = self.spec.num_group_columns();
        let mut columns = self.groups.clone();
        if self.num_groups == 0 {
            columns.extend(
                self.spec.final_schema.fields()[group_count..]
                    .iter()
                    .map(|f| new_empty_array(f.data_type())),
            );
        } else {
            // State and evaluation both consume an accumulator, so evaluate from the stored
            // states, each group merged once.
            let indices: Vec<usize> = (0..self.num_groups).collect();
            for (expr, state) in self.spec.aggr_expr.iter().zip(&self.states) {
                let mut accumulator = groups_accumulator(expr)?;
                accumulator.merge_batch(state, &indices, self.num_groups)?;
                columns.push(accumulator.evaluate(EmitTo::All)?);
            }
        }
        Ok(RecordBatch::try_new(
            Arc::clone(&self.spec.final_schema),
            columns,
        )?)
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

/// Numbers distinct group keys in order of first appearance.
struct Grouper {
    /// `None` without group columns: every row is in the one group.
    converter: Option<RowConverter>,
    /// The distinct keys, in group order.
    keys: Option<Rows>,
    index: HashMap<Box<[u8]>, usize>,
    count: usize,
    /// The group of each row of the last batch interned.
    indices: Vec<usize>,
}

impl Grouper {
    fn new(fields: &[FieldRef]) -> Result<Self> {
        let (converter, keys) = if fields.is_empty() {
            (None, None)
        } else {
            let converter = RowConverter::new(
                fields
                    .iter()
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )?;
            let keys = converter.empty_rows(0, 0);
            (Some(converter), Some(keys))
        };
        Ok(Self {
            converter,
            keys,
            index: HashMap::new(),
            count: 0,
            indices: vec![],
        })
    }

    /// The group index of each of `rows` rows with these group columns, adding new groups,
    /// and the number of groups after them.
    fn intern(&mut self, columns: &[ArrayRef], rows: usize) -> Result<(&[usize], usize)> {
        self.indices.clear();
        let (Some(converter), Some(keys)) = (&self.converter, &mut self.keys) else {
            self.count = 1;
            self.indices.resize(rows, 0);
            return Ok((&self.indices, self.count));
        };
        let converted = converter.convert_columns(columns)?;
        for row in converted.iter() {
            let group = match self.index.get(row.as_ref()) {
                Some(group) => *group,
                None => {
                    let group = self.count;
                    self.index.insert(row.as_ref().into(), group);
                    keys.push(row);
                    self.count += 1;
                    group
                }
            };
            self.indices.push(group);
        }
        Ok((&self.indices, self.count))
    }

    /// How many groups there are.
    fn len(&self) -> usize {
        self.count
    }

    /// The group columns, one row per group, with the types of `fields`.
    fn into_columns(self, fields: &[FieldRef]) -> Result<Vec<ArrayRef>> {
        let (Some(converter), Some(keys)) = (self.converter, self.keys) else {
            return Ok(vec![]);
        };
        converter
            .convert_rows(&keys)?
            .into_iter()
            .zip(fields)
            .map(|(column, field)| retype(column, field.data_type()))
            .collect()
    }
}

/// `column` as `data_type` (row conversion can return dictionary values unpacked).
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
