//! Aggregate state for stateful (windowed) streaming aggregation: per group, the partial state
//! of DataFusion's accumulators, kept as Arrow batches in the partial-aggregate schema, merged
//! micro-batch by micro-batch, evaluated into final values for the groups a query emits, and
//! saved to the checkpoint as Arrow IPC.
//!
//! The flow for one micro-batch: [`AggregateSpec::from_plan`] reads the aggregation DataFusion
//! planned; [`AggregateSpec::partial_plan`] runs its Partial stage over the batch's input;
//! [`AggregateSpec::merge`] merges those partial rows with the stored state into
//! [`MergedGroups`]; [`split_batch`] separates closed groups from open ones;
//! [`MergedGroups::evaluate`] gives the final rows and [`MergedGroups::state`] the state to
//! keep, which [`encode`] and [`decode`] turn into bytes and back.
//!
//! A streaming query keeps each aggregation's groups in a [`GroupTable`] between batches: a batch
//! merges only the groups its rows fall in, and what it changed is saved as a delta.
//!
//! The modules: [`spec`] (what is aggregated, from the physical plan), [`groups`] (merging
//! partial states by group and evaluating them), [`table`] (the live groups kept between
//! batches) and [`codec`] (IPC bytes and memory size).

pub mod codec;
pub mod groups;
pub mod spec;
pub mod table;

#[cfg(test)]
mod tests;

pub use codec::{decode, encode, state_bytes};
pub use groups::{MergedGroups, split_batch};
pub use spec::{AggregateSpec, partial_input};
pub use table::{GroupTable, WindowEnd};
