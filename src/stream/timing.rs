//! Splitting a batch's time into its phases: how long the sink waited for the query's rows
//! (reading and executing) and how long it spent writing them, and how long the Kafka readers
//! spent fetching.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use datafusion::physical_plan::ExecutionPlan;
use futures::Stream;

use crate::kafka::scan::{metric, scans};

/// A stream that adds the time its consumer waited for each batch (from asking for it until it
/// was ready, pending polls included) to a shared total, so that the sink's own time is the
/// rest.
pub struct TimedStream {
    inner: SendableRecordBatchStream,
    producing_nanos: Arc<AtomicU64>,
    /// When the consumer first asked for the batch not yet ready.
    asked: Option<Instant>,
}

impl TimedStream {
    /// Wraps `inner`; the time spent in it accumulates in the returned counter (nanoseconds).
    pub fn new(inner: SendableRecordBatchStream) -> (Self, Arc<AtomicU64>) {
        let producing_nanos = Arc::new(AtomicU64::new(0));
        let stream = Self {
            inner,
            producing_nanos: Arc::clone(&producing_nanos),
            asked: None,
        };
        (stream, producing_nanos)
    }
}

impl Stream for TimedStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let asked = *self.asked.get_or_insert_with(Instant::now);
        let polled = self.inner.as_mut().poll_next(cx);
        if polled.is_ready() {
            self.asked = None;
            let waited = asked.elapsed().as_nanos() as u64;
            self.producing_nanos.fetch_add(waited, Ordering::Relaxed);
        }
        polled
    }
}

impl RecordBatchStream for TimedStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

/// The wall time of the longest Kafka reader in `plans`: readers run side by side, so the
/// slowest one is the time the batch spent reading.
pub fn longest_read(plans: &[Arc<dyn ExecutionPlan>]) -> Duration {
    let mut longest = Duration::ZERO;
    for scan in plans.iter().flat_map(scans) {
        let Some(metrics) = scan.metrics() else {
            continue;
        };
        for m in metrics
            .iter()
            .filter(|m| m.value().name() == metric::READ_TIME)
        {
            longest = longest.max(Duration::from_nanos(m.value().as_usize() as u64));
        }
    }
    longest
}
