//! [`KafkaSink`]: a bounded `INSERT INTO` a Kafka table, through an idempotent producer. The
//! statement returns once every record is acknowledged, or fails naming what was not. (Streaming
//! queries write through [`super::exactly_once`].) Records are made as [`super::records`] says.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::records::{RecordColumns, SinkRecords};
use super::scan::ScanSource;

/// Writes the rows of an INSERT as Kafka records.
#[derive(Debug)]
pub struct KafkaSink {
    source: Arc<ScanSource>,
    schema: SchemaRef,
    columns: RecordColumns,
}

impl KafkaSink {
    /// A sink for input rows of `schema` (the table's schema, as INSERT casts to it).
    pub fn try_new(source: Arc<ScanSource>, schema: SchemaRef) -> Result<Self> {
        let columns = RecordColumns::try_new(&source, &schema)?;
        Ok(Self {
            source,
            schema,
            columns,
        })
    }
}

impl DisplayAs for KafkaSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KafkaSink: table={}", self.source.table)
    }
}

/// Counts failed deliveries and keeps the first failure's message.
#[derive(Debug, Default)]
pub struct DeliveryReport {
    failed: Mutex<(usize, Option<String>)>,
}

impl DeliveryReport {
    /// The failures since the last call: how many, and the first one's message.
    pub fn take(&self) -> Result<(usize, Option<String>)> {
        self.failed
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .map_err(|_| DataFusionError::Internal("delivery report lock poisoned".to_string()))
    }
}

impl ClientContext for DeliveryReport {}

impl ProducerContext for DeliveryReport {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, message)) = result {
            use rdkafka::message::Message;
            if let Ok(mut failed) = self.failed.lock() {
                failed.0 += 1;
                if failed.1.is_none() {
                    failed.1 = Some(format!("to topic '{}': {error}", message.topic()));
                }
            }
        }
    }
}

#[async_trait]
impl DataSink for KafkaSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let options = &self.source.options;
        let producer: Arc<BaseProducer<DeliveryReport>> = Arc::new(
            options
                .producer_config()
                .create_with_context(DeliveryReport::default())
                .map_err(|e| {
                    DataFusionError::Execution(format!("cannot create a Kafka producer: {e}"))
                })?,
        );
        self.columns.ready().await?;
        let mut written = 0u64;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            let producer = Arc::clone(&producer);
            let columns = self.columns.clone();
            let default_topic = options.sink_topic.clone();
            let table = self.source.table.clone();
            let timeout = options.broker_timeout;
            written += tokio::task::spawn_blocking(move || {
                produce_batch(
                    &producer,
                    &batch,
                    &columns,
                    default_topic.as_deref(),
                    &table,
                    timeout,
                )
            })
            .await
            .map_err(|e| DataFusionError::Execution(format!("producing stopped: {e}")))??;
        }
        let flush_timeout = options.broker_timeout + Duration::from_secs(1);
        let bootstrap = options.bootstrap_servers().to_string();
        let flushed = Arc::clone(&producer);
        tokio::task::spawn_blocking(move || flush_promptly(&flushed, flush_timeout))
            .await
            .map_err(|e| DataFusionError::Execution(format!("flushing stopped: {e}")))?
            .map_err(|e| {
                DataFusionError::Execution(format!(
                    "Kafka broker(s) {bootstrap} did not acknowledge all records within {} ms \
                     (brokerTimeoutMs): {e}",
                    flush_timeout.as_millis()
                ))
            })?;
        let (failed, first) = producer.context().take()?;
        if failed > 0 {
            return Err(DataFusionError::Execution(format!(
                "{failed} of {written} records were not delivered to Kafka broker(s) {}; the \
                 first failure, {}",
                options.bootstrap_servers(),
                first.unwrap_or_default()
            )));
        }
        Ok(written)
    }
}

fn produce_batch(
    producer: &BaseProducer<DeliveryReport>,
    batch: &RecordBatch,
    columns: &RecordColumns,
    default_topic: Option<&str>,
    table: &str,
    timeout: Duration,
) -> Result<u64> {
    let records = SinkRecords::try_new(batch, columns, default_topic, table)?;
    for row in 0..records.len() {
        let headers = records.headers(row, &[]);
        send_with_backpressure(producer, records.record(row, None, headers), timeout)?;
    }
    producer.poll(Duration::ZERO);
    Ok(records.len() as u64)
}

/// How long [`flush_promptly`] sleeps when no delivery report is waiting.
const FLUSH_STEP: Duration = Duration::from_micros(200);

/// Waits until every record `producer` sent is acknowledged and its delivery report handled,
/// at most `timeout`. rdkafka's own `flush` polls in steps that each last their whole 100 ms,
/// which would add up to 100 ms to every small batch, and a poll shorter than a millisecond
/// spins on the clock; this serves the reports as long as they keep coming (one per poll) and
/// sleeps [`FLUSH_STEP`] when none is waiting.
pub fn flush_promptly<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> KafkaResult<()> {
    let started = std::time::Instant::now();
    // A zero-timeout flush sends what lingers at once.
    match producer.flush(Duration::ZERO) {
        Ok(()) => return Ok(()),
        Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {}
        Err(e) => return Err(e),
    }
    loop {
        let pending = producer.in_flight_count();
        if pending == 0 {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() >= pending {
            std::thread::sleep(FLUSH_STEP);
        }
    }
}

/// Sends one record, waiting while the producer's queue is full (at most `timeout`).
pub fn send_with_backpressure<'a, C: ProducerContext<DeliveryOpaque = ()>>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, [u8], [u8]>,
    timeout: Duration,
) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                if started.elapsed() > timeout {
                    return Err(DataFusionError::Execution(format!(
                        "the Kafka producer's queue stayed full for {} ms (brokerTimeoutMs); are \
                         the brokers reachable?",
                        timeout.as_millis()
                    )));
                }
                record = returned;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, returned)) => {
                return Err(DataFusionError::Execution(format!(
                    "cannot produce a record to topic '{}': {e}",
                    returned.topic
                )));
            }
        }
    }
}
