//! Topic creation on a real Kafka cluster through the admin API, bounded by a timeout.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Error, Result};

/// How long topic creation may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `name` with `partitions` partitions and the cluster's default replication.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| Error::Kafka(format!("cannot create a Kafka admin client: {e}")))?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    let results = tokio::time::timeout(ADMIN_TIMEOUT, admin.create_topics([&topic], &options))
        .await
        .map_err(|_| {
            Error::Kafka(format!(
                "Kafka broker(s) {bootstrap} did not create topic '{name}' within {} s",
                ADMIN_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| Error::Kafka(format!("cannot create topic '{name}' on {bootstrap}: {e}")))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                return Err(Error::Kafka(format!("topic '{name}' already exists")));
            }
            Err((_, code)) => {
                return Err(Error::Kafka(format!(
                    "cannot create topic '{name}' on {bootstrap}: {code}"
                )));
            }
        }
    }
    Ok(())
}
