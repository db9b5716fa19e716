//! The broker lookups of offset planning, answered by a real cluster through librdkafka, each
//! bounded by the table's `brokerTimeoutMs` and failing with a message that names the brokers.

use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::offsets::{BrokerLookup, Watermarks};
use super::options::{KafkaTableOptions, TopicPartition};

/// A metadata connection to the cluster of one table.
pub struct BrokerClient {
    consumer: BaseConsumer,
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
        let consumer: BaseConsumer = options
            .consumer_config()
            .create()
            .map_err(|e| DataFusionError::Plan(format!("cannot create a Kafka client: {e}")))?;
        Ok(Self {
            consumer,
            bootstrap: options.bootstrap_servers().to_string(),
            timeout: options.broker_timeout,
        })
    }

    fn failure(&self, what: &str, error: KafkaError) -> DataFusionError {
        let timed_out = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
            )
        );
        if timed_out {
            DataFusionError::Execution(format!(
                "Kafka broker(s) {} did not answer {what} within {} ms (brokerTimeoutMs): {error}; \
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
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|e| self.failure(&format!("the metadata request for topic '{topic}'"), e))?;
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
        let metadata = self
            .consumer
            .fetch_metadata(None, self.timeout)
            .map_err(|e| self.failure("the metadata request for all topics", e))?;
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

    fn offsets_for_times(&self, query: &[(TopicPartition, i64)]) -> Result<Vec<Option<i64>>> {
        if query.is_empty() {
            return Ok(vec![]);
        }
        let mut list = TopicPartitionList::new();
        for (tp, ts) in query {
            list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*ts))
                .map_err(|e| self.failure("building an offsets-for-times request", e))?;
        }
        let answer = self
            .consumer
            .offsets_for_times(list, self.timeout)
            .map_err(|e| self.failure("the offsets-for-times request", e))?;
        query
            .iter()
            .map(|(tp, _)| {
                let element = answer
                    .find_partition(&tp.topic, tp.partition)
                    .ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "Kafka broker(s) {} left {tp} out of the offsets-for-times answer",
                            self.bootstrap
                        ))
                    })?;
                if let Err(e) = element.error() {
                    return Err(self.failure(&format!("the offsets-for-times request for {tp}"), e));
                }
                Ok(match element.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                })
            })
            .collect()
    }
}
