//! [`GroupTable`]: the live groups of one streaming aggregation, kept between micro-batches so
//! that a batch costs what its rows cost, not what the state holds.
//!
//! Each group's current partial state is one row of a *chunk* (a partial-state batch). A batch's
//! rows are looked up in DataFusion's group tables; only the groups they fall in are merged
//! (their stored states with the new rows), and their new states become the next chunk — which
//! is also what the batch changed, the delta saved to the checkpoint. Groups whose window the
//! watermark passed are found through an index by window end and dropped. Superseded rows are
//! garbage in older chunks until the table is compacted (rebuilt from its live groups), which
//! happens once garbage outweighs what is live, so its cost is spread over the batches that made
//! it.
//!
//! Groups are spread over parts by the hash of their group columns; a large batch merges all
//! parts at once, one thread each.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{
    SortColumn, cast, interleave, interleave_record_batch, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::common::hash_utils::create_hashes;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::joins::SeededRandomState;

use super::groups::Grouper;
use super::spec::AggregateSpec;

/// How a group's window end is found among its group columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEnd {
    /// The group column at this position is the window end.
    Column(usize),
    /// The group column at this position is the window start; the window lasts `size_ms`.
    StartPlus {
        /// The window start's position.
        column: usize,
        /// The window's length.
        size_ms: i64,
    },
}

impl WindowEnd {
    /// The window end of each row of a partial-state batch, in epoch milliseconds.
    pub fn ends_ms(self, batch: &RecordBatch) -> Result<Int64Array> {
        let (column, offset) = match self {
            WindowEnd::Column(column) => (column, 0),
            WindowEnd::StartPlus { column, size_ms } => (column, size_ms),
        };
        let millis = cast(
            batch.column(column),
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?;
        let millis = cast(&millis, &DataType::Int64)?;
        let millis = millis.as_primitive::<Int64Type>();
        Ok(millis.unary(|start| start.saturating_add(offset)))
    }
}

/// Below this many rows a batch is merged on the calling thread, part after part.
const PARALLEL_ROWS: usize = 16 * 1024;
/// A part is compacted when its garbage (superseded rows, forgotten keys) exceeds what is live
/// by this much.
const COMPACT_SLACK: usize = 4096;
/// A part is compacted when it has this many chunks, whatever they hold.
const MAX_CHUNKS: usize = 256;
/// Seeds the hash that spreads groups over parts (any fixed value: parts are rebuilt on
/// restore, so it need not match across versions).
const PART_SEED: u64 = 0x7765_6972;

/// The live groups of one aggregation (see the module documentation).
pub struct GroupTable {
    spec: AggregateSpec,
    parts: Vec<Part>,
}

impl std::fmt::Debug for GroupTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupTable")
            .field("groups", &self.groups())
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl GroupTable {
    /// An empty table for `spec`'s groups in `parts` parts (at least one); `window_end` says
    /// where a group's window end is, when groups close with the watermark.
    pub fn new(spec: AggregateSpec, window_end: Option<WindowEnd>, parts: usize) -> Result<Self> {
        let parts = (0..parts.max(1))
            .map(|_| Part::new(&spec, window_end))
            .collect::<Result<_>>()?;
        Ok(Self { spec, parts })
    }

    /// Merges a batch's partial-state rows into the groups they fall in; returns those groups'
    /// new states (one row per group).
    pub fn apply(&mut self, rows: &[RecordBatch]) -> Result<RecordBatch> {
        for (i, batch) in rows.iter().enumerate() {
            self.spec.check_partial(batch, i)?;
        }
        let routed = self.route(rows)?;
        let total: usize = rows.iter().map(RecordBatch::num_rows).sum();
        let spec = &self.spec;
        let changed = if total >= PARALLEL_ROWS && self.parts.len() > 1 {
            std::thread::scope(|scope| {
                let running: Vec<_> = self
                    .parts
                    .iter_mut()
                    .zip(&routed)
                    .map(|(part, rows)| scope.spawn(move || part.apply(spec, rows)))
                    .collect();
                running
                    .into_iter()
                    .map(|thread| {
                        thread.join().unwrap_or_else(|_| {
                            Err(DataFusionError::Internal(
                                "merging a part of the aggregate state panicked".to_string(),
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })?
        } else {
            self.parts
                .iter_mut()
                .zip(&routed)
                .map(|(part, rows)| part.apply(spec, rows))
                .collect::<Result<Vec<_>>>()?
        };
        self.concat(changed)
    }

    /// Removes the groups whose window ended at or before `watermark_ms`; returns their states.
    /// Without windows no group closes.
    /// They come ordered by window end, then by group key, so that a key's windows reach a sink
    /// in time order (a compacted topic keeps the last) whichever parts they were kept in.
    pub fn close(&mut self, watermark_ms: i64) -> Result<RecordBatch> {
        let closed = self
            .parts
            .iter_mut()
            .map(|part| part.close(&self.spec, watermark_ms))
            .collect::<Result<Vec<_>>>()?;
        let closed = self.concat(closed)?;
        match self.parts[0].window_end {
            Some(window_end) if closed.num_rows() > 1 => {
                let ends = window_end.ends_ms(&closed)?;
                let keys = &closed.columns()[..self.spec.num_group_columns()];
                let order: Vec<SortColumn> = std::iter::once(Arc::new(ends) as ArrayRef)
                    .chain(keys.iter().cloned())
                    .map(|values| SortColumn {
                        values,
                        options: None,
                    })
                    .collect();
                Ok(take_record_batch(
                    &closed,
                    &lexsort_to_indices(&order, None)?,
                )?)
            }
            _ => Ok(closed),
        }
    }

    /// Every live group's state, one row per group.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let live = self
            .parts
            .iter()
            .map(|part| part.live_states(&self.spec))
            .collect::<Result<Vec<_>>>()?;
        self.concat(live)
    }

    /// Restores saved states, oldest first (a snapshot, then the changes of later batches):
    /// each row replaces the state of its group.
    pub fn restore(&mut self, saved: &[RecordBatch]) -> Result<()> {
        for (i, batch) in saved.iter().enumerate() {
            self.spec.check_partial(batch, i)?;
        }
        for batch in saved {
            let routed = self.route(std::slice::from_ref(batch))?;
            for (part, rows) in self.parts.iter_mut().zip(routed) {
                for rows in rows {
                    part.load(rows)?;
                }
            }
        }
        for part in &mut self.parts {
            part.compact_if_sparse(&self.spec)?;
        }
        Ok(())
    }

    /// The number of live groups.
    pub fn groups(&self) -> usize {
        self.parts.iter().map(|p| p.live).sum()
    }

    /// Memory held, garbage included.
    pub fn bytes(&self) -> usize {
        self.parts.iter().map(Part::bytes).sum()
    }

    /// The rows of `batches` split by part.
    fn route(&self, batches: &[RecordBatch]) -> Result<Vec<Vec<RecordBatch>>> {
        let count = self.parts.len();
        let mut routed = vec![vec![]; count];
        let group_columns = self.spec.num_group_columns();
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            if count == 1 {
                routed[0].push(batch.clone());
                continue;
            }
            let mut hashes = vec![0; batch.num_rows()];
            create_hashes(
                &batch.columns()[..group_columns],
                SeededRandomState::with_seed(PART_SEED).random_state(),
                &mut hashes,
            )?;
            let mut rows_of: Vec<Vec<u32>> = vec![vec![]; count];
            for (row, hash) in hashes.iter().enumerate() {
                rows_of[(*hash % count as u64) as usize].push(row as u32);
            }
            for (part, rows) in rows_of.into_iter().enumerate() {
                if !rows.is_empty() {
                    routed[part].push(take_record_batch(batch, &UInt32Array::from(rows))?);
                }
            }
        }
        Ok(routed)
    }

    fn concat(&self, batches: Vec<RecordBatch>) -> Result<RecordBatch> {
        Ok(arrow::compute::concat_batches(
            self.spec.partial_schema(),
            &batches,
        )?)
    }
}

/// Where a group's current state is: chunk and row.
type Slot = (u32, u32);

/// One part of a [`GroupTable`]: the groups whose hash falls in it.
struct Part {
    /// How many leading columns of a partial-state row are group columns.
    group_columns: usize,
    window_end: Option<WindowEnd>,
    /// Group columns to group number (in a mutex only to make the part `Sync`; it is used
    /// through `&mut self`).
    keys: Mutex<Grouper>,
    /// Per group number, its state's slot; `None` once the group closed.
    slots: Vec<Option<Slot>>,
    chunks: Vec<RecordBatch>,
    /// Rows over all chunks, superseded ones included.
    chunk_rows: usize,
    live: usize,
    /// Group numbers by window end, for closing; a number may be listed after its group closed.
    by_end: BTreeMap<i64, Vec<u32>>,
    /// Per group number, its position among the groups of the batch being merged.
    position: Vec<u32>,
}

/// No position: the group is not in the batch being merged.
const UNSEEN: u32 = u32::MAX;

impl Part {
    fn new(spec: &AggregateSpec, window_end: Option<WindowEnd>) -> Result<Self> {
        let group_columns = spec.num_group_columns();
        Ok(Self {
            group_columns,
            window_end,
            keys: Mutex::new(Grouper::new(
                &spec.partial_schema().fields()[..group_columns],
            )?),
            slots: vec![],
            chunks: vec![],
            chunk_rows: 0,
            live: 0,
            by_end: BTreeMap::new(),
            position: vec![],
        })
    }

    /// Merges `inputs` (partial-state rows of this part) into their groups; returns the new
    /// states of the groups they touched.
    fn apply(&mut self, spec: &AggregateSpec, inputs: &[RecordBatch]) -> Result<RecordBatch> {
        let touched = self.number_rows(inputs)?;
        let count = touched.groups.len();
        if count == 0 {
            return Ok(RecordBatch::new_empty(Arc::clone(spec.partial_schema())));
        }
        let mut accumulators = spec.groups_accumulators()?;
        let (stored_positions, stored_slots): (Vec<usize>, Vec<(usize, usize)>) = touched
            .groups
            .iter()
            .enumerate()
            .filter_map(|(position, group)| {
                self.slots[*group].map(|(c, r)| (position, (c as usize, r as usize)))
            })
            .unzip();
        if !stored_slots.is_empty() {
            let stored = interleave_record_batch(&self.chunk_refs(), &stored_slots)?;
            spec.merge_states(&mut accumulators, &stored, &stored_positions, count)?;
        }
        for (input, positions) in inputs.iter().zip(&touched.positions) {
            spec.merge_states(&mut accumulators, input, positions, count)?;
        }
        let changed = self.changed_states(spec, &mut accumulators, inputs, &touched.first_rows)?;
        self.record(&touched.groups, changed.clone())?;
        self.compact_if_sparse(spec)?;
        Ok(changed)
    }

    /// Numbers the groups of `inputs`' rows in order of first appearance.
    fn number_rows(&mut self, inputs: &[RecordBatch]) -> Result<Touched> {
        let mut touched = Touched::default();
        for (input_index, input) in inputs.iter().enumerate() {
            let keys = self.keys.get_mut().unwrap_or_else(PoisonError::into_inner);
            let (numbers, count) =
                keys.intern(&input.columns()[..self.group_columns], input.num_rows())?;
            self.slots.resize(count, None);
            self.position.resize(count, UNSEEN);
            let mut positions = Vec::with_capacity(numbers.len());
            for (row, &group) in numbers.iter().enumerate() {
                let mut position = self.position[group];
                if position == UNSEEN {
                    position = touched.groups.len() as u32;
                    self.position[group] = position;
                    touched.groups.push(group);
                    touched.first_rows.push((input_index, row));
                }
                positions.push(position as usize);
            }
            touched.positions.push(positions);
        }
        for &group in &touched.groups {
            self.position[group] = UNSEEN;
        }
        Ok(touched)
    }

    /// The merged states of the touched groups, with their group columns.
    fn changed_states(
        &self,
        spec: &AggregateSpec,
        accumulators: &mut [Box<dyn datafusion::logical_expr::GroupsAccumulator>],
        inputs: &[RecordBatch],
        first_rows: &[(usize, usize)],
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = (0..spec.num_group_columns())
            .map(|c| {
                let sources: Vec<&dyn Array> =
                    inputs.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&sources, first_rows)
            })
            .collect::<std::result::Result<_, _>>()?;
        for accumulator in accumulators {
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        Ok(RecordBatch::try_new(
            Arc::clone(spec.partial_schema()),
            columns,
        )?)
    }

    /// Makes `changed` (the new states of `groups`, in order) the groups' current states.
    fn record(&mut self, groups: &[usize], changed: RecordBatch) -> Result<()> {
        let chunk = self.chunks.len() as u32;
        let mut opened = vec![];
        for (row, &group) in groups.iter().enumerate() {
            if self.slots[group].is_none() {
                self.live += 1;
                opened.push(row);
            }
            self.slots[group] = Some((chunk, row as u32));
        }
        if let Some(window_end) = self.window_end
            && !opened.is_empty()
        {
            let ends = window_end.ends_ms(&changed)?;
            for row in opened {
                if ends.is_valid(row) {
                    self.by_end
                        .entry(ends.value(row))
                        .or_default()
                        .push(groups[row] as u32);
                }
            }
        }
        self.chunk_rows += changed.num_rows();
        self.chunks.push(changed);
        Ok(())
    }

    /// Makes each row of `saved` its group's current state (restoring from the checkpoint, or
    /// compacting).
    fn load(&mut self, saved: RecordBatch) -> Result<()> {
        let keys = self.keys.get_mut().unwrap_or_else(PoisonError::into_inner);
        let (numbers, count) =
            keys.intern(&saved.columns()[..self.group_columns], saved.num_rows())?;
        let numbers = numbers.to_vec();
        self.slots.resize(count, None);
        self.position.resize(count, UNSEEN);
        self.record(&numbers, saved)
    }

    /// Removes the groups whose window ended at or before `watermark_ms`; returns their states.
    fn close(&mut self, spec: &AggregateSpec, watermark_ms: i64) -> Result<RecordBatch> {
        let still_open = match watermark_ms.checked_add(1) {
            Some(after) => self.by_end.split_off(&after),
            None => BTreeMap::new(),
        };
        let closing = std::mem::replace(&mut self.by_end, still_open);
        let mut slots = vec![];
        for group in closing.into_values().flatten() {
            if let Some((chunk, row)) = self.slots[group as usize].take() {
                self.live -= 1;
                slots.push((chunk as usize, row as usize));
            }
        }
        let closed = self.states_at(spec, &slots)?;
        self.compact_if_sparse(spec)?;
        Ok(closed)
    }

    /// The states of every live group.
    fn live_states(&self, spec: &AggregateSpec) -> Result<RecordBatch> {
        let slots: Vec<(usize, usize)> = self
            .slots
            .iter()
            .flatten()
            .map(|(c, r)| (*c as usize, *r as usize))
            .collect();
        self.states_at(spec, &slots)
    }

    fn states_at(&self, spec: &AggregateSpec, slots: &[(usize, usize)]) -> Result<RecordBatch> {
        if slots.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(spec.partial_schema())));
        }
        Ok(interleave_record_batch(&self.chunk_refs(), slots)?)
    }

    /// Rebuilds the part from its live groups when garbage outweighs them.
    fn compact_if_sparse(&mut self, spec: &AggregateSpec) -> Result<()> {
        let sparse = self.chunk_rows > 2 * self.live + COMPACT_SLACK
            || self
                .keys
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
                > 2 * self.live + COMPACT_SLACK
            || self.chunks.len() > MAX_CHUNKS;
        if !sparse {
            return Ok(());
        }
        let live = self.live_states(spec)?;
        *self = Part::new(spec, self.window_end)?;
        self.load(live)
    }

    fn chunk_refs(&self) -> Vec<&RecordBatch> {
        self.chunks.iter().collect()
    }

    fn bytes(&self) -> usize {
        self.keys.lock().map_or(0, |keys| keys.size())
            + self
                .chunks
                .iter()
                .map(RecordBatch::get_array_memory_size)
                .sum::<usize>()
    }
}

/// The groups one batch's rows fall in.
#[derive(Default)]
struct Touched {
    /// Group numbers, in order of first appearance.
    groups: Vec<usize>,
    /// Per group, the input and row where it first appears.
    first_rows: Vec<(usize, usize)>,
    /// Per input, each row's position in `groups`.
    positions: Vec<Vec<usize>>,
}
