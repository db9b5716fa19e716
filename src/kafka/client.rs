//! The broker lookups of offset planning, answered by a real cluster through librdkafka, each
//! bounded by the table's `brokerTimeoutMs` and failing with a message that names the brokers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use datafusion::error::{DataFusionError, Result};
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::offsets::{BrokerLookup, Watermarks};

/// Whether a consumer's error is one librdkafka recovers from by itself (a connection that
/// dropped, brokers briefly unreachable): a reader logs it and goes on, and its poll timeout
/// ends the wait if the brokers never come back.
pub fn is_transient(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
        )
    )
}

/// Whether a request failed for lack of an answer in time.
fn is_timeout(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
        )
    )
}
use super::options::{KafkaTableOptions, TopicPartition};

/// Keeps the latest error librdkafka reported outside any request (a failed authentication, a
/// TLS handshake that failed, brokers that cannot be reached), from its log, so that a request
/// that times out can say why, and one that can never succeed fails at once.
#[derive(Debug, Default)]
pub struct ErrorRecorder {
    last: Mutex<Option<String>>,
}

/// Words of librdkafka's messages for errors that no retry cures.
const FATAL_CAUSES: &[&str] = &[
    "Authentication failed",
    "SASL authentication error",
    "Unsupported SASL mechanism",
    "SSL handshake failed",
    "certificate verify failed",
];

impl ErrorRecorder {
    /// The latest error that no retry will cure: bad credentials, an unsupported mechanism, a
    /// certificate that is not trusted.
    fn fatal(&self) -> Option<String> {
        self.latest()
            .filter(|reason| FATAL_CAUSES.iter().any(|cause| reason.contains(cause)))
    }

    fn latest(&self) -> Option<String> {
        self.last.lock().ok()?.clone()
    }

    fn record(&self, reason: &str) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(reason.to_string());
        }
    }
}

impl ClientContext for ErrorRecorder {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                self.record(message);
                log::error!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            RDKafkaLogLevel::Warning => {
                self.record(message);
                log::warn!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                log::info!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            RDKafkaLogLevel::Debug => {
                log::debug!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.record(&format!("{error}: {reason}"));
    }
}

impl ConsumerContext for ErrorRecorder {}

/// How long a request waits at a time before it looks for an error that makes waiting longer
/// pointless.
const REQUEST_SLICE: Duration = Duration::from_millis(500);

/// A metadata connection to the cluster of one table.
pub struct BrokerClient {
    consumer: BaseConsumer<ErrorRecorder>,
    bootstrap: String,
    timeout: Duration,
}

impl std::fmt::Debug for BrokerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerClient")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl BrokerClient {
    /// Connects lazily (librdkafka connects on the first request) with the table's settings.
    pub fn new(options: &KafkaTableOptions) -> Result<Self> {
        Self::with_config(options, options.consumer_config())
    }

    /// A client whose latest offsets are the high watermarks, also under transactions (the
    /// default `read_committed` answers with the last stable offset).
    pub fn reading_uncommitted(options: &KafkaTableOptions) -> Result<Self> {
        let mut config = options.consumer_config();
        config.set("isolation.level", "read_uncommitted");
        Self::with_config(options, config)
    }

    fn with_config(options: &KafkaTableOptions, config: ClientConfig) -> Result<Self> {
        let consumer = config
            .create_with_context(ErrorRecorder::default())
            .map_err(|e| DataFusionError::Plan(format!("cannot create a Kafka client: {e}")))?;
        Ok(Self {
            consumer,
            bootstrap: options.bootstrap_servers().to_string(),
            timeout: options.broker_timeout,
        })
    }

    /// The cluster's metadata (of `topic`, or of every topic), asked in slices so that an error
    /// no retry cures (authentication, TLS) fails at once, naming its cause.
    fn metadata(&self, topic: Option<&str>, what: &str) -> Result<Metadata> {
        let started = Instant::now();
        loop {
            let slice = REQUEST_SLICE.min(self.timeout.saturating_sub(started.elapsed()));
            match self.consumer.fetch_metadata(topic, slice) {
                Ok(metadata) => return Ok(metadata),
                Err(e) if is_timeout(&e) && started.elapsed() < self.timeout => {
                    // Serve the client's queued events (errors the broker connection raised).
                    for _ in 0..100 {
                        if self.consumer.poll(Duration::ZERO).is_none() {
                            break;
                        }
                    }
                    if let Some(reason) = self.consumer.context().fatal() {
                        return Err(DataFusionError::Execution(format!(
                            "Kafka broker(s) {} refused the connection for {what}: {reason}; \
                             check the kafka.security.protocol, kafka.sasl.* and kafka.ssl.* \
                             options",
                            self.bootstrap
                        )));
                    }
                }
                Err(e) => return Err(self.failure(what, e)),
            }
        }
    }

    /// The offsets of `partitions` at `position` (beginning or end), in one request per broker.
    fn list_offsets(&self, partitions: &[TopicPartition], position: Offset) -> Result<Vec<i64>> {
        let query: Vec<(TopicPartition, Offset)> =
            partitions.iter().map(|tp| (tp.clone(), position)).collect();
        let answers = self.lookup(&query, "list-offsets")?;
        partitions
            .iter()
            .zip(answers)
            .map(|(tp, offset)| {
                offset.ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "Kafka broker(s) {} answered no offset for {tp}",
                        self.bootstrap
                    ))
                })
            })
            .collect()
    }

    /// One ListOffsets request per broker for `query` (a timestamp, or the beginning or end, per
    /// partition): each partition's offset, or `None` when the broker has none.
    fn lookup(&self, query: &[(TopicPartition, Offset)], what: &str) -> Result<Vec<Option<i64>>> {
        let mut list = TopicPartitionList::new();
        for (tp, position) in query {
            list.add_partition_offset(&tp.topic, tp.partition, *position)
                .map_err(|e| self.failure(&format!("building a {what} request"), e))?;
        }
        let answer = self
            .consumer
            .offsets_for_times(list, self.timeout)
            .map_err(|e| self.failure(&format!("the {what} request"), e))?;
        query
            .iter()
            .map(|(tp, _)| {
                let element = answer
                    .find_partition(&tp.topic, tp.partition)
                    .ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "Kafka broker(s) {} left {tp} out of the {what} answer",
                            self.bootstrap
                        ))
                    })?;
                if let Err(e) = element.error() {
                    return Err(self.failure(&format!("the {what} request for {tp}"), e));
                }
                Ok(match element.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                })
            })
            .collect()
    }

    fn failure(&self, what: &str, error: KafkaError) -> DataFusionError {
        if is_timeout(&error) {
            let cause = self
                .consumer
                .context()
                .latest()
                .map_or_else(String::new, |reason| format!(" (last error: {reason})"));
            DataFusionError::Execution(format!(
                "Kafka broker(s) {} did not answer {what} within {} ms (brokerTimeoutMs){cause}; \
                 check that the brokers are running and reachable",
                self.bootstrap,
                self.timeout.as_millis()
            ))
        } else {
            DataFusionError::Execution(format!(
                "Kafka broker(s) {} failed {what}: {error}",
                self.bootstrap
            ))
        }
    }
}

impl BrokerLookup for BrokerClient {
    fn partitions(&self, topic: &str) -> Result<Option<Vec<i32>>> {
        let metadata = self.metadata(
            Some(topic),
            &format!("the metadata request for topic '{topic}'"),
        )?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match found.error() {
            None => Ok(Some(found.partitions().iter().map(|p| p.id()).collect())),
            Some(code) => match RDKafkaErrorCode::from(code) {
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                    Ok(None)
                }
                other => Err(DataFusionError::Execution(format!(
                    "Kafka broker(s) {} report an error for topic '{topic}': {other}",
                    self.bootstrap
                ))),
            },
        }
    }

    fn topics(&self) -> Result<Vec<String>> {
        let metadata = self.metadata(None, "the metadata request for all topics")?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name().to_string())
            .collect())
    }

    fn watermarks(&self, tp: &TopicPartition) -> Result<Watermarks> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(&tp.topic, tp.partition, self.timeout)
            .map_err(|e| self.failure(&format!("the watermark request for {tp}"), e))?;
        Ok(Watermarks { low, high })
    }

    fn watermarks_of(&self, partitions: &[TopicPartition]) -> Result<Vec<Watermarks>> {
        if partitions.is_empty() {
            return Ok(vec![]);
        }
        let lows = self.list_offsets(partitions, Offset::Beginning)?;
        let highs = self.list_offsets(partitions, Offset::End)?;
        Ok(lows
            .into_iter()
            .zip(highs)
            .map(|(low, high)| Watermarks { low, high })
            .collect())
    }

    fn offsets_for_times(&self, query: &[(TopicPartition, i64)]) -> Result<Vec<Option<i64>>> {
        if query.is_empty() {
            return Ok(vec![]);
        }
        let query: Vec<(TopicPartition, Offset)> = query
            .iter()
            .map(|(tp, ts)| (tp.clone(), Offset::Offset(*ts)))
            .collect();
        self.lookup(&query, "offsets-for-times")
    }
}
