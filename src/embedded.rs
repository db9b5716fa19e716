//! The embedded Kafka broker: librdkafka's mock cluster, in process, on loopback.
//!
//! It speaks the real Kafka protocol (produce, fetch at any offset, watermarks, consumer groups)
//! but keeps only about 5 MiB per partition, answers timestamp lookups with the end offset, and
//! accepts transactions without their semantics. Topics are created through the mock's own call
//! (the CreateTopics admin request is not served); producing to an unknown topic creates it with
//! four partitions. The cluster lives on a thread of its own, because librdkafka's handle is not
//! `Send`; dropping [`EmbeddedKafka`] stops it.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::mocking::MockCluster;

use crate::error::{Error, Result};

enum Request {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: mpsc::Sender<Result<()>>,
    },
}

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedKafka {
    bootstrap: String,
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedKafka {
    /// Starts a cluster of `brokers` brokers on loopback.
    pub fn start(brokers: i32) -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String>>();
        let (requests, inbox) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("weir-embedded-kafka".to_string())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Kafka(format!(
                            "cannot start the embedded Kafka broker: {e}"
                        ))));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                for request in inbox {
                    match request {
                        Request::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            let result = cluster.create_topic(&name, partitions, 1).map_err(|e| {
                                let exists = e.rdkafka_error_code()
                                    == Some(RDKafkaErrorCode::TopicAlreadyExists);
                                if exists {
                                    Error::Kafka(format!("topic '{name}' already exists"))
                                } else {
                                    Error::Kafka(format!("cannot create topic '{name}': {e}"))
                                }
                            });
                            let _ = reply.send(result);
                        }
                    }
                }
            })?;
        let bootstrap = ready_rx.recv().map_err(|_| {
            Error::Kafka("the embedded Kafka broker stopped while starting".to_string())
        })??;
        Ok(Self {
            bootstrap,
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// The broker list to connect to, such as `127.0.0.1:39123`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        if partitions < 1 {
            return Err(Error::Kafka(format!(
                "topic '{name}' needs at least one partition, not {partitions}"
            )));
        }
        let (reply, answer) = mpsc::channel();
        self.requests
            .as_ref()
            .and_then(|r| {
                r.send(Request::CreateTopic {
                    name: name.to_string(),
                    partitions,
                    reply,
                })
                .ok()
            })
            .ok_or_else(|| Error::Kafka("the embedded Kafka broker has stopped".to_string()))?;
        answer
            .recv()
            .map_err(|_| Error::Kafka("the embedded Kafka broker has stopped".to_string()))?
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
