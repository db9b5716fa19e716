//! Running a batch's plan so that its rows come out in the order they came in, for sinks where
//! order matters (records of one key into Kafka):
//! - repartitioning that would mix one input partition's rows over several output partitions is
//!   turned off ([`keep_order`]);
//! - a join keeps the stream on its probe side, whose rows it emits in order, and collects the
//!   other input ([`StreamOnProbeSide`]);
//! - every output partition runs at once, and the rows are read out partition after partition
//!   ([`execute_in_order`]).
//!
//! Each partition of a stateless plan then holds whole source ranges in offset order, so records
//! of one key — which Kafka keeps in one partition — leave in the order they came in.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::kafka::scan::{KafkaScanExec, ScanKind};

/// The session of a batch whose rows must keep their order: no repartitioning that mixes them,
/// and streams on the probe side of joins.
pub fn keep_order(state: SessionState) -> SessionState {
    let mut rules = state.physical_optimizers().to_vec();
    let after = rules
        .iter()
        .position(|r| r.name() == "join_selection")
        .map_or(0, |i| i + 1);
    rules.insert(after, Arc::new(StreamOnProbeSide));
    let mut state = SessionStateBuilder::new_from_existing(state)
        .with_physical_optimizer_rules(rules)
        .build();
    let optimizer = &mut state.config_mut().options_mut().optimizer;
    optimizer.enable_round_robin_repartition = false;
    optimizer.repartition_joins = false;
    state
}

/// Puts a stream read of a batch on the probe side of every join that collects one side, so
/// that the join emits the stream's rows in their order.
#[derive(Debug)]
pub struct StreamOnProbeSide;

impl PhysicalOptimizerRule for StreamOnProbeSide {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(join) = node.downcast_ref::<HashJoinExec>()
                && *join.partition_mode() == PartitionMode::CollectLeft
                && reads_slice(join.left())
                && !reads_slice(join.right())
            {
                return Ok(Transformed::yes(
                    join.swap_inputs(PartitionMode::CollectLeft)?,
                ));
            }
            if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>()
                && reads_slice(join.left())
                && !reads_slice(join.right())
            {
                return Ok(Transformed::yes(join.swap_inputs()?));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "stream_on_probe_side"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `plan` reads a batch's slice of a stream.
fn reads_slice(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        if node
            .downcast_ref::<KafkaScanExec>()
            .is_some_and(|s| s.kind() == ScanKind::Slice)
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Executes every partition of `plan` at once and streams their rows in partition order. A
/// partition that fails (or panics) fails the stream.
pub fn execute_in_order(
    plan: &Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
) -> Result<SendableRecordBatchStream> {
    let partitions = plan.output_partitioning().partition_count();
    let mut outputs = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        let mut input = plan.execute(partition, Arc::clone(&context))?;
        // Unbounded: a later partition must not wait for the reader to reach it, or a plan
        // whose partitions share an input could stall.
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(batch) = input.next().await {
                if tx.send(batch).is_err() {
                    break;
                }
            }
        });
        outputs.push(partition_rows(rx, task));
    }
    let ordered = futures::stream::iter(outputs).flatten();
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        plan.schema(),
        ordered,
    )))
}

/// The rows one partition's task sends, then an error if the task did not end normally.
fn partition_rows(
    rx: mpsc::UnboundedReceiver<Result<arrow::array::RecordBatch>>,
    task: tokio::task::JoinHandle<()>,
) -> impl futures::Stream<Item = Result<arrow::array::RecordBatch>> {
    futures::stream::unfold((rx, Some(task)), |(mut rx, task)| async move {
        if let Some(batch) = rx.recv().await {
            return Some((batch, (rx, task)));
        }
        let outcome = task?.await;
        outcome.err().map(|e| {
            let error =
                DataFusionError::Execution(format!("a partition of the batch's plan stopped: {e}"));
            (Err(error), (rx, None))
        })
    })
}
