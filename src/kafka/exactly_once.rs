//! [`KafkaStreamingSink`]: a streaming query's batches into a Kafka table, each output record
//! exactly once, on any broker (design.md §4).
//!
//! Batch N is made deterministic and checkable:
//! 1. Its records are put in a canonical order (sorted by topic, value, partition, key,
//!    timestamp and headers), so a replay of the same slice yields the same sequence whatever
//!    order DataFusion's parallel plan produced the rows in.
//! 2. Each record's partition is fixed: the `partition` column, else the key's murmur2 hash (the
//!    Java client's default partitioner, so keys land where other Kafka producers put them), else
//!    round robin in canonical order. Each record carries the headers `weir.query.id`,
//!    `weir.batch.id` and `weir.seq` (its number within the batch and its partition).
//! 3. Before the first record of batch N is sent, the partition counts and end offsets of the
//!    output partitions are recorded in the checkpoint's `sinks/N`.
//! 4. A replay of N (the engine died before `commits/N`) reads each output partition from the
//!    recorded offset, collects the sequence numbers of N already there, and sends only the rest.
//!
//! The output of a stateful query (aggregations) is also kept as `outputs/N` before it is
//! sent: a replay recomputes aggregates from state, where floating-point sums may come out
//! different in their last bits, so it sends the first attempt's rows instead.
//!
//! With `'transactional' 'true'` each batch is also one Kafka transaction ([`super::transactions`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::common::collect;
use log::info;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::client::BrokerClient;
use super::offsets::BrokerLookup;
use super::options::TopicPartition;
use super::records::{RecordColumns, SinkRecords};
use super::scan::ScanSource;
use super::sink::{DeliveryReport, send_with_backpressure};
use super::transactions::TransactionalWriter;
use crate::sinks::{BatchContext, StreamingSink};

/// Header naming the query that wrote a record.
pub const QUERY_HEADER: &str = "weir.query.id";
/// Header naming the batch that wrote a record.
pub const BATCH_HEADER: &str = "weir.batch.id";
/// Header with a record's sequence number within its batch and partition.
pub const SEQ_HEADER: &str = "weir.seq";

/// `sinks/N`: the output partitions of batch N as they were before it was first written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkRecord {
    /// The query's id.
    pub query_id: String,
    /// The batch id.
    pub batch_id: u64,
    /// Each output topic, sorted by name.
    pub topics: Vec<TopicStart>,
}

/// One output topic in a [`SinkRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicStart {
    /// The topic.
    pub topic: String,
    /// Its partition count when the batch was first written.
    pub partitions: i32,
    /// Each partition's end offset then, by partition number.
    pub start_offsets: Vec<i64>,
}

/// Where one record of a batch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Its row in the batch.
    pub row: usize,
    /// Its topic, as an index into the [`SinkRecord`]'s topics.
    pub topic: usize,
    /// Its partition.
    pub partition: i32,
    /// Its sequence number within (batch, topic, partition).
    pub seq: u64,
}

/// Kafka's default partitioner hash (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives `key` among `partitions`.
pub fn key_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// The rows of `records` in canonical order: sorted by everything that makes a record.
pub fn canonical_order(records: &SinkRecords) -> Result<Vec<usize>> {
    let columns = records.identity_columns();
    let fields = columns
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let rows = converter.convert_columns(&columns)?;
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|a, b| rows.row(*a).cmp(&rows.row(*b)));
    Ok(order)
}

/// The topics the records go to.
pub fn topics_of(records: &SinkRecords) -> BTreeSet<String> {
    records
        .topics
        .iter()
        .flatten()
        .map(str::to_string)
        .collect()
}

/// The output partitions of `topics` as they are now: the record to keep before writing.
pub fn record_outputs(
    lookup: &dyn BrokerLookup,
    query_id: &str,
    batch_id: u64,
    topics: &BTreeSet<String>,
    table: &str,
) -> Result<SinkRecord> {
    let mut starts = vec![];
    for topic in topics {
        let mut partitions = lookup.partitions(topic)?.ok_or_else(|| {
            DataFusionError::Execution(format!(
                "output topic '{topic}' of Kafka table '{table}' does not exist; create it first \
                 (CREATE TOPIC {topic} PARTITIONS n)"
            ))
        })?;
        partitions.sort_unstable();
        if partitions.iter().enumerate().any(|(i, p)| *p != i as i32) {
            return Err(DataFusionError::Execution(format!(
                "output topic '{topic}' reports partitions {partitions:?}, not 0..n"
            )));
        }
        let start_offsets = partitions
            .iter()
            .map(|p| Ok(lookup.watermarks(&TopicPartition::new(topic, *p))?.high))
            .collect::<Result<Vec<i64>>>()?;
        starts.push(TopicStart {
            topic: topic.clone(),
            partitions: partitions.len() as i32,
            start_offsets,
        });
    }
    Ok(SinkRecord {
        query_id: query_id.to_string(),
        batch_id,
        topics: starts,
    })
}

/// Where each record goes, in canonical order `order`, with the partition counts of `outputs`.
pub fn place(
    records: &SinkRecords,
    order: &[usize],
    outputs: &SinkRecord,
    table: &str,
) -> Result<Vec<Placed>> {
    let topic_index: HashMap<&str, usize> = outputs
        .topics
        .iter()
        .enumerate()
        .map(|(i, t)| (t.topic.as_str(), i))
        .collect();
    let mut round_robin = vec![0i32; outputs.topics.len()];
    let mut next_seq: HashMap<(usize, i32), u64> = HashMap::new();
    let mut placed = Vec::with_capacity(order.len());
    for &row in order {
        let topic_name = records.topics.value(row);
        let topic = *topic_index.get(topic_name).ok_or_else(|| {
            DataFusionError::Execution(format!(
                "batch {} of Kafka table '{table}' now writes to topic '{topic_name}', which its \
                 first attempt did not: the query's output is not deterministic (does it use \
                 now() or random()?), so it cannot be replayed exactly once",
                outputs.batch_id
            ))
        })?;
        let count = outputs.topics[topic].partitions;
        let partition = match (records.partition(row), records.key(row)) {
            (Some(p), _) if (0..count).contains(&p) => p,
            (Some(p), _) => {
                return Err(DataFusionError::Execution(format!(
                    "a row written to Kafka table '{table}' has partition {p}, but topic \
                     '{topic_name}' has partitions 0 to {}",
                    count - 1
                )));
            }
            (None, Some(key)) => key_partition(key, count),
            (None, None) => {
                let p = round_robin[topic] % count;
                round_robin[topic] += 1;
                p
            }
        };
        let seq = next_seq.entry((topic, partition)).or_default();
        placed.push(Placed {
            row,
            topic,
            partition,
            seq: *seq,
        });
        *seq += 1;
    }
    Ok(placed)
}

/// The producer of a sink, made on its first batch and kept.
struct Producing {
    producer: BaseProducer<DeliveryReport>,
    transactions: Option<TransactionalWriter>,
}

/// A Kafka table as the sink of a streaming query.
pub struct KafkaStreamingSink {
    source: Arc<ScanSource>,
    schema: SchemaRef,
    columns: RecordColumns,
    producing: Arc<Mutex<Option<Producing>>>,
}

impl std::fmt::Debug for KafkaStreamingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreamingSink")
            .field("table", &self.source.table)
            .finish()
    }
}

impl KafkaStreamingSink {
    /// The sink of `source`, taking rows of the table's `schema`.
    pub fn try_new(source: Arc<ScanSource>, schema: SchemaRef) -> Result<Self> {
        let columns = RecordColumns::try_new(&source, &schema)?;
        Ok(Self {
            source,
            schema,
            columns,
            producing: Arc::default(),
        })
    }

    fn table(&self) -> &str {
        &self.source.table
    }
}

/// What one blocking write of a batch needs.
struct BatchWrite {
    source: Arc<ScanSource>,
    query_id: String,
    batch_id: u64,
    records: SinkRecords,
    placed: Vec<Placed>,
    outputs: SinkRecord,
    /// `WEIR_FAULT_KAFKA_SINK_PARTIAL=N`, for crash tests: the process ends after sending N
    /// records of a batch.
    abort_after_sending: Option<u64>,
}

impl BatchWrite {
    /// The sequence numbers of this batch already in each output partition.
    fn already_written(&self) -> Result<HashSet<(usize, i32, u64)>> {
        let options = &self.source.options;
        let mut present = HashSet::new();
        let wanted: BTreeSet<(usize, i32)> =
            self.placed.iter().map(|p| (p.topic, p.partition)).collect();
        let lookup = BrokerClient::new(options)?;
        let batch = self.batch_id.to_string();
        for (topic_index, output) in self.outputs.topics.iter().enumerate() {
            let mut ranges = vec![];
            for (partition, start) in output.start_offsets.iter().enumerate() {
                let partition = partition as i32;
                if !wanted.contains(&(topic_index, partition)) {
                    continue;
                }
                let end = lookup
                    .watermarks(&TopicPartition::new(&output.topic, partition))?
                    .high;
                if end > *start {
                    ranges.push((partition, *start, end));
                }
            }
            if ranges.is_empty() {
                continue;
            }
            let mut config = options.consumer_config();
            // Transactional: only committed records count as written (the predecessor's open
            // transaction was completed or aborted by initialising). Otherwise every record
            // counts, also those behind another producer's open transaction.
            config.set(
                "isolation.level",
                if options.transactional {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            );
            let consumer: BaseConsumer = config.create().map_err(|e| {
                DataFusionError::Execution(format!("cannot create a Kafka consumer: {e}"))
            })?;
            let cannot_read = |e: KafkaError| {
                DataFusionError::Execution(format!(
                    "cannot read back what batch {} already wrote to topic '{}': {e}",
                    self.batch_id, output.topic
                ))
            };
            let mut assignment = TopicPartitionList::new();
            for (partition, start, _) in &ranges {
                assignment
                    .add_partition_offset(&output.topic, *partition, Offset::Offset(*start))
                    .map_err(cannot_read)?;
            }
            consumer.assign(&assignment).map_err(cannot_read)?;
            let mut open: HashMap<i32, i64> = ranges.iter().map(|(p, _, end)| (*p, *end)).collect();
            let mut last_progress = Instant::now();
            while !open.is_empty() {
                match consumer.poll(Duration::from_millis(100)) {
                    None => {
                        if last_progress.elapsed() > options.broker_timeout {
                            return Err(DataFusionError::Execution(format!(
                                "reading back what batch {} already wrote to topic '{}' stalled \
                                 for {} ms (brokerTimeoutMs); with 'transactional', another \
                                 producer's open transaction may hide records: the batch is \
                                 retried on restart",
                                self.batch_id,
                                output.topic,
                                options.broker_timeout.as_millis()
                            )));
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        // read_committed stops at the last stable offset: done only when that
                        // is the end measured above.
                        let position = consumer
                            .position()
                            .ok()
                            .and_then(|list| {
                                list.find_partition(&output.topic, partition)
                                    .map(|e| e.offset())
                            })
                            .and_then(|offset| offset.to_raw());
                        let end = open.get(&partition).copied().unwrap_or_default();
                        if position.is_some_and(|p| p >= end) || !options.transactional {
                            open.remove(&partition);
                        }
                    }
                    Some(Err(e)) => return Err(cannot_read(e)),
                    Some(Ok(message)) => {
                        last_progress = Instant::now();
                        let partition = message.partition();
                        if let Some(seq) = weir_seq(&message, &self.query_id, &batch) {
                            present.insert((topic_index, partition, seq));
                        }
                        if open
                            .get(&partition)
                            .is_some_and(|end| message.offset() + 1 >= *end)
                        {
                            open.remove(&partition);
                        }
                    }
                }
            }
        }
        Ok(present)
    }

    /// Sends the records not in `present` and waits for them; returns how many were sent.
    fn send_missing(
        &self,
        producing: &mut Producing,
        present: &HashSet<(usize, i32, u64)>,
    ) -> Result<u64> {
        let timeout = self.source.options.broker_timeout;
        let batch = self.batch_id.to_string();
        let producer = &producing.producer;
        let send_all = || -> Result<u64> {
            let mut sent = 0;
            for placed in &self.placed {
                if present.contains(&(placed.topic, placed.partition, placed.seq)) {
                    continue;
                }
                let seq = placed.seq.to_string();
                let headers = self.records.headers(
                    placed.row,
                    &[
                        (QUERY_HEADER, self.query_id.as_bytes()),
                        (BATCH_HEADER, batch.as_bytes()),
                        (SEQ_HEADER, seq.as_bytes()),
                    ],
                )?;
                let record = self
                    .records
                    .record(placed.row, Some(placed.partition), headers);
                send_with_backpressure(producer, record, timeout)?;
                sent += 1;
                if self.abort_after_sending == Some(sent) {
                    // Crash tests: die with part of the batch durably written.
                    let _ = producer.flush(timeout);
                    std::process::abort();
                }
            }
            producer
                .flush(timeout + Duration::from_secs(1))
                .map_err(|e| {
                    DataFusionError::Execution(format!(
                        "Kafka broker(s) {} did not acknowledge batch {}'s records within {} ms \
                     (brokerTimeoutMs): {e}",
                        self.source.options.bootstrap_servers(),
                        self.batch_id,
                        timeout.as_millis()
                    ))
                })?;
            let (failed, first) = producer.context().take()?;
            if failed > 0 {
                return Err(DataFusionError::Execution(format!(
                    "{failed} of batch {}'s records were not delivered to Kafka broker(s) {}; the \
                     first failure, {}",
                    self.batch_id,
                    self.source.options.bootstrap_servers(),
                    first.unwrap_or_default()
                )));
            }
            Ok(sent)
        };
        match producing.transactions.as_mut() {
            None => send_all(),
            Some(writer) => {
                let mut sent = 0;
                writer.run_batch(producer, || {
                    sent = send_all()?;
                    Ok(())
                })?;
                Ok(sent)
            }
        }
    }
}

/// The sequence number in `message`'s headers, when batch `batch` of query `query_id` wrote it.
fn weir_seq(message: &impl Message, query_id: &str, batch: &str) -> Option<u64> {
    let headers = message.headers()?;
    let mut query = false;
    let mut same_batch = false;
    let mut seq = None;
    for header in headers.iter() {
        match header.key {
            QUERY_HEADER => query = header.value == Some(query_id.as_bytes()),
            BATCH_HEADER => same_batch = header.value == Some(batch.as_bytes()),
            SEQ_HEADER => {
                seq = header
                    .value
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            }
            _ => {}
        }
    }
    (query && same_batch).then_some(seq).flatten()
}

fn new_producing(source: &ScanSource, query_id: &str) -> Result<Producing> {
    let options = &source.options;
    let mut config = options.producer_config();
    let transactions = options.transactional.then(|| {
        let id = format!("weir-{query_id}");
        config.set("transactional.id", &id);
        TransactionalWriter::new(&id, options.broker_timeout)
    });
    let producer = config
        .create_with_context(DeliveryReport::default())
        .map_err(|e| DataFusionError::Execution(format!("cannot create a Kafka producer: {e}")))?;
    Ok(Producing {
        producer,
        transactions,
    })
}

#[async_trait]
impl StreamingSink for KafkaStreamingSink {
    async fn write_batch(
        &self,
        batch: &BatchContext,
        data: SendableRecordBatchStream,
    ) -> Result<u64> {
        let to_datafusion = |e: crate::error::Error| DataFusionError::External(Box::new(e));
        let mut batches = collect(data).await?;
        if batch.stateful {
            // Aggregates recomputed on a replay may differ in their last floating-point bits,
            // and records are matched by content: a replay uses the output of the first attempt.
            let kept = batch
                .checkpoint
                .batch_output(batch.batch_id)
                .await
                .map_err(to_datafusion)?;
            match kept {
                Some(bytes) => batches = crate::state::codec::decode(&bytes)?.1,
                None => {
                    let bytes = crate::state::codec::encode(&self.schema, &batches)?;
                    if !batch
                        .checkpoint
                        .create_batch_output(batch.batch_id, bytes)
                        .await
                        .map_err(to_datafusion)?
                    {
                        return Err(DataFusionError::Execution(format!(
                            "outputs/{} appeared while batch {} was written: another instance \
                             is running this query",
                            batch.batch_id, batch.batch_id
                        )));
                    }
                }
            }
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(0);
        }
        let all = concat_batches(&self.schema, &batches)?;
        let records = SinkRecords::try_new(
            &all,
            &self.columns,
            self.source.options.sink_topic.as_deref(),
            self.table(),
        )?;
        let order = canonical_order(&records)?;
        // Only an attempt that finds `sinks/N` can have been preceded by one that wrote records.
        let (outputs, replaying) = match batch
            .checkpoint
            .sink_record::<SinkRecord>(batch.batch_id)
            .await
            .map_err(to_datafusion)?
        {
            Some(recorded) => (recorded, true),
            None => {
                let options = Arc::clone(&self.source.options);
                let topics = topics_of(&records);
                let (query_id, batch_id, table) = (
                    batch.query_id.clone(),
                    batch.batch_id,
                    self.table().to_string(),
                );
                let outputs = tokio::task::spawn_blocking(move || {
                    let lookup = BrokerClient::new(&options)?;
                    record_outputs(&lookup, &query_id, batch_id, &topics, &table)
                })
                .await
                .map_err(|e| {
                    DataFusionError::Execution(format!("looking up topics stopped: {e}"))
                })??;
                batch
                    .checkpoint
                    .create_sink_record(batch.batch_id, &outputs)
                    .await
                    .map_err(to_datafusion)?;
                (outputs, false)
            }
        };
        if outputs.query_id != batch.query_id {
            return Err(DataFusionError::Execution(format!(
                "sinks/{} of the checkpoint belongs to query {}, not {}",
                batch.batch_id, outputs.query_id, batch.query_id
            )));
        }
        let placed = place(&records, &order, &outputs, self.table())?;
        let write = BatchWrite {
            source: Arc::clone(&self.source),
            query_id: batch.query_id.clone(),
            batch_id: batch.batch_id,
            records,
            placed,
            outputs,
            abort_after_sending: std::env::var("WEIR_FAULT_KAFKA_SINK_PARTIAL")
                .ok()
                .and_then(|n| n.parse().ok()),
        };
        let producing = Arc::clone(&self.producing);
        tokio::task::spawn_blocking(move || {
            let mut guard = producing
                .lock()
                .map_err(|_| DataFusionError::Internal("Kafka sink lock poisoned".to_string()))?;
            if guard.is_none() {
                *guard = Some(new_producing(&write.source, &write.query_id)?);
            }
            let producing = guard.as_mut().ok_or_else(|| {
                DataFusionError::Internal("Kafka sink producer missing".to_string())
            })?;
            if let Some(writer) = producing.transactions.as_mut() {
                writer.initialise(&producing.producer)?;
            }
            let present = if replaying {
                write.already_written()?
            } else {
                HashSet::new()
            };
            let sent = write.send_missing(producing, &present)?;
            if !present.is_empty() {
                info!(
                    "Kafka table '{}': batch {} was partly written before; {} record(s) were \
                     already there, {sent} sent now",
                    write.source.table,
                    write.batch_id,
                    present.len()
                );
            }
            Ok::<_, DataFusionError>(())
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("producing stopped: {e}")))??;
        Ok(rows as u64)
    }

    fn describe(&self) -> String {
        format!(
            "kafka table {} ({})",
            self.table(),
            self.source.options.topics_description()
        )
    }

    async fn has_batch(&self, _batch: &BatchContext) -> Result<bool> {
        // A replayed batch is always written again: what the first attempt wrote is found
        // record by record, so only the missing records are sent.
        Ok(false)
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{BinaryArray, Int32Array, StringArray};

    use super::*;
    use crate::kafka::offsets::fake::FakeBroker;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Vectors from Kafka's UtilsTest.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    fn records(rows: &[(Option<&str>, &str, Option<i32>)]) -> SinkRecords {
        SinkRecords {
            values: BinaryArray::from_iter_values(rows.iter().map(|r| r.1.as_bytes())),
            keys: Some(BinaryArray::from_iter(
                rows.iter().map(|r| r.0.map(str::as_bytes)),
            )),
            topics: StringArray::from_iter_values(rows.iter().map(|_| "out")),
            partitions: Some(Int32Array::from_iter(rows.iter().map(|r| r.2))),
            timestamps: None,
            headers: None,
        }
    }

    fn outputs(partitions: i32) -> SinkRecord {
        SinkRecord {
            query_id: "q".into(),
            batch_id: 7,
            topics: vec![TopicStart {
                topic: "out".into(),
                partitions,
                start_offsets: vec![0; partitions as usize],
            }],
        }
    }

    /// (value, partition, seq) of each record: what a replay must reproduce.
    fn placement(rows: &[(Option<&str>, &str, Option<i32>)]) -> BTreeSet<(String, i32, u64)> {
        let records = records(rows);
        let order = canonical_order(&records).expect("order");
        place(&records, &order, &outputs(3), "t")
            .expect("placed")
            .into_iter()
            .map(|p| {
                let value = String::from_utf8(records.values.value(p.row).to_vec()).unwrap();
                (value, p.partition, p.seq)
            })
            .collect()
    }

    #[test]
    fn placement_is_the_same_whatever_order_the_rows_come_in() {
        let rows = vec![
            (Some("k1"), "a", None),
            (None, "b", None),
            (Some("k2"), "c", None),
            (None, "d", Some(2)),
            (None, "e", None),
            (Some("k1"), "f", None),
            (None, "g", None),
        ];
        let first = placement(&rows);
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(placement(&reversed), first);
        let mut rotated = rows.clone();
        rotated.rotate_left(3);
        assert_eq!(placement(&rotated), first);
        // Keys go where the Java client puts them; explicit partitions are kept.
        for (value, partition, _) in &first {
            match value.as_str() {
                "a" | "f" => assert_eq!(*partition, key_partition(b"k1", 3)),
                "c" => assert_eq!(*partition, key_partition(b"k2", 3)),
                "d" => assert_eq!(*partition, 2),
                _ => {}
            }
        }
        // Sequence numbers count 0.. within each partition.
        for p in 0..3 {
            let mut seqs: Vec<u64> = first
                .iter()
                .filter(|(_, partition, _)| *partition == p)
                .map(|(_, _, s)| *s)
                .collect();
            seqs.sort_unstable();
            assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
        }
    }

    #[test]
    fn rows_without_key_or_partition_are_spread_round_robin() {
        let rows: Vec<(Option<&str>, &str, Option<i32>)> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|v| (None, *v, None))
            .collect();
        let placed = placement(&rows);
        for p in 0..3 {
            assert_eq!(placed.iter().filter(|x| x.1 == p).count(), 2);
        }
    }

    #[test]
    fn a_partition_outside_the_topic_is_refused() {
        let records = records(&[(None, "a", Some(5))]);
        let error = place(&records, &[0], &outputs(3), "sink_table")
            .expect_err("refused")
            .to_string();
        assert!(error.contains("partition 5"), "{error}");
        assert!(error.contains("sink_table"), "{error}");
    }

    #[test]
    fn a_topic_the_first_attempt_did_not_write_is_refused() {
        let records = records(&[(None, "a", None)]);
        let mut other = outputs(3);
        other.topics[0].topic = "elsewhere".into();
        let error = place(&records, &[0], &other, "t")
            .expect_err("refused")
            .to_string();
        assert!(error.contains("not deterministic"), "{error}");
    }

    #[test]
    fn outputs_are_recorded_from_the_broker_and_missing_topics_named() {
        let broker = FakeBroker::default().with_topic("out", &[(0, 10), (3, 4)]);
        let topics: BTreeSet<String> = ["out".to_string()].into();
        let record = record_outputs(&broker, "q", 2, &topics, "t").expect("recorded");
        assert_eq!(record.topics[0].partitions, 2);
        assert_eq!(record.topics[0].start_offsets, vec![10, 4]);
        let missing: BTreeSet<String> = ["nope".to_string()].into();
        let error = record_outputs(&broker, "q", 2, &missing, "t")
            .expect_err("missing")
            .to_string();
        assert!(
            error.contains("'nope'") && error.contains("does not exist"),
            "{error}"
        );
    }

    #[test]
    fn sink_record_round_trips_as_json() {
        let record = outputs(2);
        let json = serde_json::to_string(&record).expect("json");
        assert!(json.contains("startOffsets"), "{json}");
        let back: SinkRecord = serde_json::from_str(&json).expect("parsed");
        assert_eq!(back, record);
    }
}
