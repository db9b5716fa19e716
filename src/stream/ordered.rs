//! Running a batch's plan so that its rows come out in a fixed order: every output partition
//! runs at once, and the stream yields partition 0's rows, then partition 1's, and so on. With
//! repartitioning that would mix rows turned off ([`keep_order`]), each partition of a
//! stateless plan holds whole source ranges in offset order, so records of one key (which
//! Kafka keeps in one source partition) leave in the order they came in.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
use tokio::sync::mpsc;

/// Turns off the optimizer rules that spread one input partition's rows over several output
/// partitions (round-robin repartitioning, repartitioned joins).
pub fn keep_order(config: &mut SessionConfig) {
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.enable_round_robin_repartition = false;
    optimizer.repartition_joins = false;
}

/// Executes every partition of `plan` at once and streams their rows in partition order.
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
        tokio::spawn(async move {
            while let Some(batch) = input.next().await {
                if tx.send(batch).is_err() {
                    break;
                }
            }
        });
        outputs.push(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|batch| (batch, rx))
        }));
    }
    let ordered = futures::stream::iter(outputs).flatten();
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        plan.schema(),
        ordered,
    )))
}
