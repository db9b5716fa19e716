//! [`KafkaSink`]: `INSERT INTO` a Kafka table, through an idempotent producer.
//!
//! Records are built from Spark's sink columns (`key`, `value`, `topic`, `partition`, `headers`,
//! plus `timestamp`), or, for a table with declared columns, from those columns encoded as the
//! value and the `_key`, `_topic`, `_partition`, `_headers` and `_timestamp` columns. The
//! statement returns once every record is acknowledged, or fails naming what was not.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Int32Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::layout::{Column, TableLayout, timestamp_type};
use super::options::ValueFormat;
use super::scan::ScanSource;
use crate::format::encode_json_rows;

/// Where each part of a record comes from, as column indices of the input.
#[derive(Debug, Clone)]
struct RecordColumns {
    value: ValueColumns,
    key: Option<usize>,
    topic: Option<usize>,
    partition: Option<usize>,
    headers: Option<usize>,
    timestamp: Option<usize>,
}

#[derive(Debug, Clone)]
enum ValueColumns {
    /// The value is this column's bytes.
    Bytes(usize),
    /// The value is these columns as a JSON object.
    Json(Vec<usize>),
}

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
        let layout: &TableLayout = &source.layout;
        let find = |column: Column| -> Option<usize> {
            let name = layout.schema.field(layout.index_of(column)?).name().clone();
            schema.index_of(&name).ok()
        };
        let value = match &source.options.format {
            ValueFormat::RawRecord | ValueFormat::RawValue => {
                let column = if source.options.format == ValueFormat::RawValue {
                    Column::Declared(0)
                } else {
                    Column::Value
                };
                let index = find(column).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "INSERT INTO Kafka table '{}' needs a value column",
                        source.table
                    ))
                })?;
                ValueColumns::Bytes(index)
            }
            ValueFormat::Json => ValueColumns::Json(
                layout
                    .columns
                    .iter()
                    .filter(|c| matches!(c, Column::Declared(_)))
                    .filter_map(|c| find(*c))
                    .collect(),
            ),
            ValueFormat::Csv { .. } => {
                return Err(DataFusionError::Plan(format!(
                    "INSERT INTO Kafka table '{}' with 'format' 'csv' is not supported; declare \
                     the target table with 'format' 'json', or write a raw value column",
                    source.table
                )));
            }
        };
        let columns = RecordColumns {
            value,
            key: find(Column::Key),
            topic: find(Column::Topic),
            partition: find(Column::Partition),
            headers: find(Column::Headers),
            timestamp: find(Column::Timestamp),
        };
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
#[derive(Default)]
struct DeliveryReport {
    failed: Mutex<(usize, Option<String>)>,
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
        tokio::task::spawn_blocking(move || flushed.flush(flush_timeout))
            .await
            .map_err(|e| DataFusionError::Execution(format!("flushing stopped: {e}")))?
            .map_err(|e| {
                DataFusionError::Execution(format!(
                    "Kafka broker(s) {bootstrap} did not acknowledge all records within {} ms \
                     (brokerTimeoutMs): {e}",
                    flush_timeout.as_millis()
                ))
            })?;
        let (failed, first) = producer
            .context()
            .failed
            .lock()
            .map(|f| f.clone())
            .map_err(|_| DataFusionError::Internal("delivery report lock poisoned".to_string()))?;
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

fn cast_column(
    batch: &RecordBatch,
    index: Option<usize>,
    to: &DataType,
) -> Result<Option<ArrayRef>> {
    index
        .map(|i| cast(batch.column(i), to).map_err(DataFusionError::from))
        .transpose()
}

fn produce_batch(
    producer: &BaseProducer<DeliveryReport>,
    batch: &RecordBatch,
    columns: &RecordColumns,
    default_topic: Option<&str>,
    table: &str,
    timeout: Duration,
) -> Result<u64> {
    let value_column: Option<ArrayRef> = match &columns.value {
        ValueColumns::Bytes(i) => Some(cast(batch.column(*i), &DataType::Binary)?),
        ValueColumns::Json(_) => None,
    };
    let value_bytes: Option<&BinaryArray> = value_column.as_ref().map(|a| a.as_binary::<i32>());
    let json_values: Vec<Vec<u8>> = match &columns.value {
        ValueColumns::Json(indices) => encode_json_rows(&batch.project(indices)?)?,
        ValueColumns::Bytes(_) => vec![],
    };
    let value_of = |row: usize| -> Option<&[u8]> {
        match value_bytes {
            Some(v) => v.is_valid(row).then(|| v.value(row)),
            None => json_values.get(row).map(Vec::as_slice),
        }
    };
    let keys = cast_column(batch, columns.key, &DataType::Binary)?;
    let keys: Option<&BinaryArray> = keys.as_ref().map(|a| a.as_binary::<i32>());
    let topics = cast_column(batch, columns.topic, &DataType::Utf8)?;
    let topics: Option<&StringArray> = topics.as_ref().map(|a| a.as_string::<i32>());
    let partitions = cast_column(batch, columns.partition, &DataType::Int32)?;
    let partitions: Option<&Int32Array> = partitions.as_ref().map(|a| a.as_primitive());
    let timestamps = cast_column(batch, columns.timestamp, &timestamp_type())?;
    let timestamps: Option<&TimestampMillisecondArray> =
        timestamps.as_ref().map(|a| a.as_primitive());
    let headers = columns.headers.map(|i| batch.column(i).as_list::<i32>());

    for row in 0..batch.num_rows() {
        let topic = match topics.filter(|t| t.is_valid(row)) {
            Some(t) => t.value(row),
            None => default_topic.ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "row {} of the INSERT into '{table}' has no topic: give a topic column value \
                     or set the table option 'topic'",
                    row + 1
                ))
            })?,
        };
        let value = value_of(row);
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(keys) = keys.filter(|k| k.is_valid(row)) {
            record = record.key(keys.value(row));
        }
        if let Some(p) = partitions.filter(|p| p.is_valid(row)) {
            record = record.partition(p.value(row));
        }
        if let Some(ts) = timestamps.filter(|t| t.is_valid(row)) {
            record = record.timestamp(ts.value(row));
        }
        if let Some(list) = headers.filter(|h| h.is_valid(row)) {
            let entries = list.value(row);
            let entries = entries.as_struct();
            let names = cast(entries.column(0), &DataType::Utf8)?;
            let names = names.as_string::<i32>();
            let contents = cast(entries.column(1), &DataType::Binary)?;
            let contents = contents.as_binary::<i32>();
            let mut owned = OwnedHeaders::new_with_capacity(entries.len());
            for h in (0..entries.len()).filter(|h| names.is_valid(*h)) {
                owned = owned.insert(Header {
                    key: names.value(h),
                    value: contents.is_valid(h).then(|| contents.value(h)),
                });
            }
            record = record.headers(owned);
        }
        send_with_backpressure(producer, record, timeout)?;
    }
    producer.poll(Duration::ZERO);
    Ok(batch.num_rows() as u64)
}

/// Sends one record, waiting while the producer's queue is full (at most `timeout`).
fn send_with_backpressure<'a>(
    producer: &BaseProducer<DeliveryReport>,
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
