//! [`KafkaStreamingSink`]: a streaming query's batches into a Kafka table, each output record
//! exactly once, on any broker (design.md §4).
//!
//! 1. Records are sent in the order the query produced them: for a stateless query, each source
//!    partition's records in offset order, so records of one key keep their order (compacted
//!    topics and CDC consumers keep the last record per key).
//! 2. A record goes to its `partition` column, else to its key's murmur2 partition (Kafka's
//!    default partitioner), else round robin. Each carries the headers `weir.query.id` and
//!    `weir.batch.id`.
//! 3. Before the first record of batch N is sent, the end offsets of the output topics'
//!    partitions are recorded in the checkpoint's `sinks/N`.
//! 4. A replay of N (the engine died before `commits/N`) reads back every output partition from
//!    the recorded offsets ([`super::readback`]) and matches the records of batch N it finds
//!    against the batch's records by content, earliest first; only the others are sent. A
//!    killed producer's records of one partition land in order, so what was found is a prefix
//!    of each partition's records, and what is sent keeps the order.
//! 5. A replay must produce the same records as the first attempt. When it might not (a
//!    stateful query, whose floating-point aggregates may differ in their last bits; a plan that
//!    reads tables other than the batch's stream slices, which may have changed; volatile
//!    functions), the first attempt's output is kept in the checkpoint as `outputs/N` before it
//!    is sent, and a replay sends that.
//!
//! With transactions (the default where the broker has them, [`super::transactions`]) each
//! batch is also one Kafka transaction: `read_committed` readers never see part of a batch, and
//! initialising the producer fences whatever a killed instance still had in flight.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::common::collect;
use log::{info, warn};
use rdkafka::producer::{BaseProducer, Producer};
use serde::{Deserialize, Serialize};

use super::client::BrokerClient;
use super::offsets::BrokerLookup;
use super::options::{TopicPartition, Transactional};
use super::partitioner::key_partition;
use super::readback::{BATCH_HEADER, Found, QUERY_HEADER, Recorded, read_back};
use super::records::{RecordColumns, SinkRecords};
use super::scan::ScanSource;
use super::sink::{DeliveryReport, flush_promptly, send_with_backpressure};
use super::transactions::TransactionalWriter;
use crate::sinks::{BatchContext, Capabilities, StreamingSink};

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
    /// Whether the first attempt wrote the batch in a transaction.
    #[serde(default)]
    pub transactional: bool,
}

impl SinkRecord {
    /// Every recorded output partition and its end offset before the first attempt.
    fn recorded(&self) -> Recorded {
        let starts = self
            .topics
            .iter()
            .flat_map(|t| {
                t.start_offsets
                    .iter()
                    .enumerate()
                    .map(|(p, start)| (TopicPartition::new(&t.topic, p as i32), *start))
            })
            .collect();
        Recorded { starts }
    }
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
        let tps: Vec<TopicPartition> = partitions
            .iter()
            .map(|p| TopicPartition::new(topic, *p))
            .collect();
        let start_offsets = lookup
            .watermarks_of(&tps)?
            .into_iter()
            .map(|wm| wm.high)
            .collect();
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
        transactional: false,
    })
}

/// The partition of each record, in order, with the partition counts of `outputs`: the
/// `partition` column, else the key's murmur2 partition, else round robin.
pub fn place(records: &SinkRecords, outputs: &SinkRecord, table: &str) -> Result<Vec<i32>> {
    let counts: HashMap<&str, i32> = outputs
        .topics
        .iter()
        .map(|t| (t.topic.as_str(), t.partitions))
        .collect();
    let mut round_robin: HashMap<&str, i32> = HashMap::new();
    (0..records.len())
        .map(|row| {
            let topic = records.topics.value(row);
            let count = *counts.get(topic).ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "batch {} of Kafka table '{table}' now writes to topic '{topic}', which its \
                     first attempt did not",
                    outputs.batch_id
                ))
            })?;
            match (records.partition(row), records.key(row)) {
                (Some(p), _) if (0..count).contains(&p) => Ok(p),
                (Some(p), _) => Err(DataFusionError::Execution(format!(
                    "a row written to Kafka table '{table}' has partition {p}, but topic \
                     '{topic}' has partitions 0 to {}",
                    count - 1
                ))),
                (None, Some(key)) => Ok(key_partition(key, count)),
                (None, None) => {
                    let next = round_robin.entry(topic).or_default();
                    let p = *next % count;
                    *next += 1;
                    Ok(p)
                }
            }
        })
        .collect()
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
    /// Whether the query gives the records a key.
    keyed: bool,
    producing: Arc<Mutex<Option<Producing>>>,
    lookup: Mutex<Option<Arc<BrokerClient>>>,
}

impl std::fmt::Debug for KafkaStreamingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreamingSink")
            .field("table", &self.source.table)
            .finish()
    }
}

impl KafkaStreamingSink {
    /// The sink of `source`, taking rows of the table's `schema`; `keyed` when the query gives
    /// the records a key.
    pub fn try_new(source: Arc<ScanSource>, schema: SchemaRef, keyed: bool) -> Result<Self> {
        let columns = RecordColumns::try_new(&source, &schema)?;
        Ok(Self {
            source,
            schema,
            columns,
            keyed,
            producing: Arc::default(),
            lookup: Mutex::default(),
        })
    }

    fn table(&self) -> &str {
        &self.source.table
    }

    /// The client that looks the output topics up, made on first use and kept.
    fn lookup(&self) -> Result<Arc<BrokerClient>> {
        let mut lookup = self
            .lookup
            .lock()
            .map_err(|_| DataFusionError::Internal("Kafka sink lock poisoned".to_string()))?;
        if let Some(client) = lookup.as_ref() {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(BrokerClient::reading_uncommitted(&self.source.options)?);
        *lookup = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Makes the sink's producer on the first batch (and initialises its transactions); says
    /// whether it writes in transactions.
    async fn ensure_producer(&self, query_id: &str) -> Result<bool> {
        let producing = Arc::clone(&self.producing);
        let source = Arc::clone(&self.source);
        let query_id = query_id.to_string();
        tokio::task::spawn_blocking(move || {
            let mut guard = producing
                .lock()
                .map_err(|_| DataFusionError::Internal("Kafka sink lock poisoned".to_string()))?;
            if guard.is_none() {
                *guard = Some(new_producing(&source, &query_id)?);
            }
            Ok(guard.as_ref().is_some_and(|p| p.transactions.is_some()))
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("making a producer stopped: {e}")))?
    }

    /// Drops the lookup client after it failed: the next batch makes a new one.
    fn forget_lookup(&self) {
        if let Ok(mut lookup) = self.lookup.lock() {
            *lookup = None;
        }
    }

    /// The rows to send for batch `batch`: those the query produced, or, when a replay could
    /// produce others, the first attempt's, kept in `outputs/N`.
    async fn rows(
        &self,
        batch: &BatchContext,
        data: SendableRecordBatchStream,
    ) -> Result<Vec<RecordBatch>> {
        let to_datafusion = |e: crate::error::Error| DataFusionError::External(Box::new(e));
        let batches = collect(data).await?;
        if !batch.stateful && batch.replay_deterministic {
            return Ok(batches);
        }
        let checkpoint = &batch.checkpoint;
        // Only a replay can find an earlier attempt's output.
        if batch.replayed
            && let Some(bytes) = checkpoint
                .batch_output(batch.batch_id)
                .await
                .map_err(to_datafusion)?
        {
            return Ok(crate::state::codec::decode(&bytes)?.1);
        }
        let bytes = crate::state::codec::encode(&self.schema, &batches)?;
        if !checkpoint
            .create_batch_output(batch.batch_id, bytes)
            .await
            .map_err(to_datafusion)?
        {
            return Err(DataFusionError::Execution(format!(
                "outputs/{} appeared while batch {} was written: another instance is running \
                 this query",
                batch.batch_id, batch.batch_id
            )));
        }
        Ok(batches)
    }

    /// `sinks/N` as an earlier attempt recorded it (a replay), or recorded now, saying whether
    /// this attempt writes in a transaction.
    async fn outputs(
        &self,
        batch: &BatchContext,
        records: &SinkRecords,
        transactional: bool,
    ) -> Result<(SinkRecord, bool)> {
        let to_datafusion = |e: crate::error::Error| DataFusionError::External(Box::new(e));
        // Only a replay can find what an earlier attempt recorded.
        let recorded = if batch.replayed {
            batch
                .checkpoint
                .sink_record::<SinkRecord>(batch.batch_id)
                .await
                .map_err(to_datafusion)?
        } else {
            None
        };
        if let Some(recorded) = recorded {
            if recorded.query_id != batch.query_id {
                return Err(DataFusionError::Execution(format!(
                    "sinks/{} of the checkpoint belongs to query {}, not {}",
                    batch.batch_id, recorded.query_id, batch.query_id
                )));
            }
            return Ok((recorded, true));
        }
        let topics = topics_of(records);
        let (query_id, batch_id, table) = (
            batch.query_id.clone(),
            batch.batch_id,
            self.table().to_string(),
        );
        let lookup = self.lookup()?;
        let asked = Arc::clone(&lookup);
        let outputs = tokio::task::spawn_blocking(move || {
            record_outputs(asked.as_ref(), &query_id, batch_id, &topics, &table).map(|mut o| {
                o.transactional = transactional;
                o
            })
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("looking up topics stopped: {e}")))?
        .inspect_err(|_| self.forget_lookup())?;
        batch
            .checkpoint
            .create_sink_record(batch.batch_id, &outputs)
            .await
            .map_err(to_datafusion)?;
        Ok((outputs, false))
    }
}

/// What one blocking write of a batch needs.
struct BatchWrite {
    source: Arc<ScanSource>,
    query_id: String,
    batch_id: u64,
    records: SinkRecords,
    partitions: Vec<i32>,
    outputs: SinkRecord,
    replaying: bool,
    /// `WEIR_FAULT_KAFKA_SINK_PARTIAL=N`, for crash tests: the process ends after sending N
    /// records of a batch.
    abort_after_sending: Option<u64>,
    /// `WEIR_FAULT_KAFKA_BEFORE_COMMIT=abort`, for crash tests: the process ends after every
    /// record of a transactional batch was sent and acknowledged, before the commit.
    abort_before_commit: bool,
}

impl BatchWrite {
    /// Writes the batch with the sink's producer, made on first use.
    fn run(self, producing: &Mutex<Option<Producing>>) -> Result<()> {
        let mut guard = producing
            .lock()
            .map_err(|_| DataFusionError::Internal("Kafka sink lock poisoned".to_string()))?;
        let producing = guard
            .as_mut()
            .ok_or_else(|| DataFusionError::Internal("Kafka sink producer missing".to_string()))?;
        if let Some(writer) = producing.transactions.as_mut() {
            writer.initialise(&producing.producer)?;
        }
        let transactional = producing.transactions.is_some();
        let mut found = if self.replaying {
            if self.outputs.transactional && !transactional {
                // The first attempt's open transaction must end before it is read back.
                fence_transactions(&self.source, &self.query_id)?;
            }
            read_back(
                &self.source.options,
                &self.outputs.recorded(),
                &self.query_id,
                self.batch_id,
                transactional || self.outputs.transactional,
            )?
        } else {
            Found::default()
        };
        let already = found.len();
        let skipped = self.already_there(&mut found);
        let sent = self.send_missing(producing, &skipped)?;
        if already > 0 {
            info!(
                "Kafka table '{}': batch {} was written before; {already} record(s) were \
                 already there, {sent} sent now",
                self.source.table, self.batch_id
            );
        }
        Ok(())
    }

    /// Which of the batch's records are among those `found`: first those whose partition is
    /// the same every attempt (a `partition` column, or a key), in their partition; then the
    /// others (spread round robin), in any partition of their topic.
    fn already_there(&self, found: &mut Found) -> Vec<bool> {
        let mut there = vec![false; self.partitions.len()];
        if found.is_empty() {
            return there;
        }
        let fixed =
            |row: usize| self.records.partition(row).is_some() || self.records.key(row).is_some();
        for (row, partition) in self.partitions.iter().enumerate() {
            if fixed(row) {
                there[row] = found.take_in(self.records.fingerprint(row), *partition);
            }
        }
        for row in (0..self.partitions.len()).filter(|r| !fixed(*r)) {
            there[row] = found.take_anywhere(self.records.fingerprint(row));
        }
        there
    }

    /// Sends the records not `already` there, in order, and waits for them; returns how many it
    /// sent.
    fn send_missing(&self, producing: &mut Producing, already: &[bool]) -> Result<u64> {
        let timeout = self.source.options.broker_timeout;
        let batch = self.batch_id.to_string();
        let producer = &producing.producer;
        let extra = [
            (QUERY_HEADER, self.query_id.as_bytes()),
            (BATCH_HEADER, batch.as_bytes()),
        ];
        let send_all = || -> Result<u64> {
            let mut sent = 0;
            for (row, partition) in self.partitions.iter().enumerate() {
                if already[row] {
                    continue;
                }
                let headers = self.records.headers(row, &extra);
                let record = self.records.record(row, Some(*partition), headers);
                send_with_backpressure(producer, record, timeout)?;
                sent += 1;
                if self.abort_after_sending == Some(sent) {
                    // Crash tests: die with part of the batch durably written.
                    let _ = flush_promptly(producer, timeout);
                    std::process::abort();
                }
            }
            self.flush(producer)?;
            Ok(sent)
        };
        let abort_before_commit = self.abort_before_commit;
        match producing.transactions.as_mut() {
            None => send_all(),
            Some(writer) => {
                let mut sent = 0;
                writer.run_batch(producer, || {
                    sent = send_all()?;
                    if abort_before_commit {
                        std::process::abort();
                    }
                    Ok(())
                })?;
                Ok(sent)
            }
        }
    }

    /// Waits until every record sent is acknowledged; fails naming what was not.
    fn flush(&self, producer: &BaseProducer<DeliveryReport>) -> Result<()> {
        let timeout = self.source.options.broker_timeout;
        flush_promptly(producer, timeout + Duration::from_secs(1)).map_err(|e| {
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
        Ok(())
    }
}

/// Ends what a transactional producer of the query left open (a first attempt that wrote in a
/// transaction, replayed without transactions): initialising its `transactional.id` aborts it
/// and fences that producer.
fn fence_transactions(source: &ScanSource, query_id: &str) -> Result<()> {
    let id = format!("weir-{query_id}");
    let producer: BaseProducer = source
        .options
        .transactional_producer_config(&id)
        .create()
        .map_err(|e| DataFusionError::Execution(format!("cannot create a Kafka producer: {e}")))?;
    producer
        .init_transactions(source.options.broker_timeout)
        .map_err(|e| {
            DataFusionError::Execution(format!(
                "cannot end the transaction an earlier attempt left open under \
                 transactional.id '{id}': {e}"
            ))
        })
}

/// The sink's producer: transactional (`transactional.id` `weir-<query id>`, stable across
/// restarts) unless the table says `'transactional' 'false'`, or says nothing and the brokers
/// have no transactions.
fn new_producing(source: &ScanSource, query_id: &str) -> Result<Producing> {
    let options = &source.options;
    let create = |transactional_id: Option<&str>| -> Result<Producing> {
        let config = match transactional_id {
            Some(id) => options.transactional_producer_config(id),
            None => options.producer_config(),
        };
        let transactions =
            transactional_id.map(|id| TransactionalWriter::new(id, options.broker_timeout));
        let producer = config
            .create_with_context(DeliveryReport::default())
            .map_err(|e| {
                DataFusionError::Execution(format!("cannot create a Kafka producer: {e}"))
            })?;
        Ok(Producing {
            producer,
            transactions,
        })
    };
    let id = format!("weir-{query_id}");
    match options.transactional {
        Transactional::Off => create(None),
        Transactional::On => create(Some(&id)),
        Transactional::Auto => {
            let mut producing = create(Some(&id))?;
            let writer = producing
                .transactions
                .as_mut()
                .ok_or_else(|| DataFusionError::Internal("transactional writer missing".into()))?;
            match writer.initialise(&producing.producer) {
                Ok(()) => Ok(producing),
                Err(e) if writer.unsupported() => {
                    warn!(
                        "Kafka table '{}': the brokers have no transactions ({e}); writing \
                         exactly once without them",
                        source.table
                    );
                    create(None)
                }
                Err(e) => Err(e),
            }
        }
    }
}

#[async_trait]
impl StreamingSink for KafkaStreamingSink {
    async fn write_batch(
        &self,
        batch: &BatchContext,
        data: SendableRecordBatchStream,
    ) -> Result<u64> {
        let batches = self.rows(batch, data).await?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(0);
        }
        let all = concat_batches(&self.schema, &batches)?;
        self.columns.ready().await?;
        let records = SinkRecords::try_new(
            &all,
            &self.columns,
            self.source.options.sink_topic.as_deref(),
            self.table(),
        )?;
        let transactional = self.ensure_producer(&batch.query_id).await?;
        let (outputs, replaying) = self.outputs(batch, &records, transactional).await?;
        let partitions = place(&records, &outputs, self.table())?;
        let write = BatchWrite {
            source: Arc::clone(&self.source),
            query_id: batch.query_id.clone(),
            batch_id: batch.batch_id,
            records,
            partitions,
            outputs,
            replaying,
            abort_after_sending: std::env::var("WEIR_FAULT_KAFKA_SINK_PARTIAL")
                .ok()
                .and_then(|n| n.parse().ok()),
            abort_before_commit: std::env::var("WEIR_FAULT_KAFKA_BEFORE_COMMIT")
                .is_ok_and(|v| v == "abort"),
        };
        let producing = Arc::clone(&self.producing);
        tokio::task::spawn_blocking(move || write.run(&producing))
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

    fn capabilities(&self) -> Capabilities {
        let replay = "records of the batch already in the topic are found by content and not \
                      sent again";
        let whole = "read_committed readers, when the batch is a transaction";
        let mut capabilities = if self.keyed {
            Capabilities::any_mode(replay, whole)
        } else {
            Capabilities::append_only(
                &format!(
                    "rows written to Kafka table '{}' have no key, so each batch of update or \
                     complete mode would add a new copy of every group; give the query a key \
                     column (the group columns) so that consumers and compaction keep the \
                     latest record per group",
                    self.table()
                ),
                replay,
                whole,
            )
        };
        capabilities.keeps_input_order = true;
        capabilities
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{BinaryArray, Int32Array, StringArray};

    use super::*;
    use crate::kafka::offsets::fake::FakeBroker;

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
            transactional: false,
        }
    }

    #[test]
    fn keys_go_where_the_java_client_puts_them_and_partitions_are_kept() {
        let rows = [
            (Some("k1"), "a", None),
            (None, "b", None),
            (Some("k2"), "c", None),
            (None, "d", Some(2)),
            (Some("k1"), "f", None),
        ];
        let placed = place(&records(&rows), &outputs(3), "t").unwrap();
        assert_eq!(placed[0], key_partition(b"k1", 3));
        assert_eq!(placed[2], key_partition(b"k2", 3));
        assert_eq!(placed[3], 2);
        assert_eq!(placed[4], placed[0], "one key, one partition");
    }

    #[test]
    fn rows_without_key_or_partition_are_spread_round_robin() {
        let rows: Vec<(Option<&str>, &str, Option<i32>)> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|v| (None, *v, None))
            .collect();
        let placed = place(&records(&rows), &outputs(3), "t").unwrap();
        for p in 0..3 {
            assert_eq!(placed.iter().filter(|x| **x == p).count(), 2);
        }
    }

    #[test]
    fn a_partition_outside_the_topic_is_refused() {
        let error = place(&records(&[(None, "a", Some(5))]), &outputs(3), "sink_table")
            .expect_err("refused")
            .to_string();
        assert!(error.contains("partition 5"), "{error}");
        assert!(error.contains("sink_table"), "{error}");
    }

    #[test]
    fn a_topic_the_first_attempt_did_not_write_is_refused() {
        let mut other = outputs(3);
        other.topics[0].topic = "elsewhere".into();
        let error = place(&records(&[(None, "a", None)]), &other, "t")
            .expect_err("refused")
            .to_string();
        assert!(error.contains("first attempt did not"), "{error}");
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
