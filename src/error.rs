//! The error type of weir's public API.
//!
//! Code that runs inside DataFusion traits (table providers, execution plans, sinks) reports
//! `DataFusionError`s with a message that names the option, topic, partition or offset at fault;
//! this type carries those out of the engine together with errors of weir's own layers.

use datafusion::error::DataFusionError;

/// Errors returned by [`crate::Engine`] and the command-line tools.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SQL text could not be split into statements or parsed.
    #[error("SQL error: {0}")]
    Sql(String),
    /// Planning or executing a statement failed.
    #[error("{}", describe_datafusion_error(.0))]
    DataFusion(#[from] DataFusionError),
    /// A Kafka operation of weir's own (embedded broker, topic creation) failed.
    #[error("Kafka error: {0}")]
    Kafka(String),
    /// A streaming query's checkpoint is missing, foreign, corrupt or taken.
    #[error("{0}")]
    Checkpoint(String),
    /// A streaming query failed or was misconfigured.
    #[error("{0}")]
    Streaming(String),
    /// Reading a file or writing output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with weir's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Renders a DataFusion error without the wrappers DataFusion adds on its way up
/// (`External error: …`, `Context(…)`), so that users read weir's own message.
fn describe_datafusion_error(error: &DataFusionError) -> String {
    match error {
        DataFusionError::External(inner) => match inner.downcast_ref::<DataFusionError>() {
            Some(df) => describe_datafusion_error(df),
            None => inner.to_string(),
        },
        DataFusionError::Context(context, inner) => {
            format!("{context}: {}", describe_datafusion_error(inner))
        }
        DataFusionError::Shared(inner) => describe_datafusion_error(inner),
        other => other.to_string(),
    }
}
