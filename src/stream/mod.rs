//! Streaming queries: a loop of micro-batches, each reading one exact offset slice of its Kafka
//! sources, writing the result to a [`crate::sinks::StreamingSink`], and recording its progress
//! in a [`crate::checkpoint::Checkpoint`], so that a restart loses and repeats nothing.

pub mod ordered;
mod planning;
pub mod progress;
pub mod query;
pub mod slice;
pub(crate) mod snapshots;
pub mod stateful;
mod timing;
pub mod trigger;
pub mod watermark;

pub use progress::QueryProgress;
pub use query::{QueryHandle, QueryOptions, QueryStatus};
pub use trigger::Trigger;
