//! What an earlier attempt of a streaming batch already wrote to Kafka: every record of the
//! output topics that carries the query's id and the batch id in its headers, from the offsets
//! the sink recorded before the first attempt (`sinks/N`) to the partitions' ends, counted by a
//! fingerprint of its content (topic, key, value and the query's own headers).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hasher};
use std::time::{Duration, Instant};

use datafusion::error::{DataFusionError, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::client::{BrokerClient, is_transient};
use super::offsets::BrokerLookup;
use super::options::{KafkaTableOptions, TopicPartition};

/// Header naming the query that wrote a record.
pub const QUERY_HEADER: &str = "weir.query.id";
/// Header naming the batch that wrote a record.
pub const BATCH_HEADER: &str = "weir.batch.id";

/// Whether a header name is weir's own: weir sets these, and drops a row's own headers of these
/// names (a query copying records an earlier weir query wrote would otherwise carry two).
/// `weir.seq` was weir's until the sink matched records by content.
pub fn is_weirs_header(name: &str) -> bool {
    matches!(name, QUERY_HEADER | BATCH_HEADER | "weir.seq")
}

/// A record's content, hashed: two records with the same fingerprint are interchangeable.
pub type Fingerprint = u128;

/// The fingerprint of a record with these parts; `headers` are the record's own (not weir's).
pub fn fingerprint<'a>(
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Fingerprint {
    let mut low = DefaultHasher::new();
    let mut high = DefaultHasher::new();
    high.write_u8(0x5a);
    let mut write = |bytes: Option<&[u8]>| {
        for hasher in [&mut low, &mut high] {
            match bytes {
                Some(b) => {
                    hasher.write_u8(1);
                    hasher.write_usize(b.len());
                    hasher.write(b);
                }
                None => hasher.write_u8(0),
            }
        }
    };
    write(Some(topic.as_bytes()));
    write(key);
    write(value);
    for (name, content) in headers {
        write(Some(name.as_bytes()));
        write(content);
    }
    (u128::from(high.finish()) << 64) | u128::from(low.finish())
}

/// The records of a batch found in the output topics, by fingerprint and partition.
#[derive(Debug, Default)]
pub struct Found {
    counts: HashMap<Fingerprint, BTreeMap<i32, u32>>,
    total: usize,
}

impl Found {
    /// Whether a record with this fingerprint was found in `partition` and not yet matched;
    /// matches it.
    pub fn take_in(&mut self, print: Fingerprint, partition: i32) -> bool {
        match self
            .counts
            .get_mut(&print)
            .and_then(|p| p.get_mut(&partition))
        {
            Some(count) if *count > 0 => {
                *count -= 1;
                true
            }
            _ => false,
        }
    }

    /// Whether a record with this fingerprint was found in any partition and not yet matched;
    /// matches it.
    pub fn take_anywhere(&mut self, print: Fingerprint) -> bool {
        let Some(partitions) = self.counts.get_mut(&print) else {
            return false;
        };
        match partitions.values_mut().find(|c| **c > 0) {
            Some(count) => {
                *count -= 1;
                true
            }
            None => false,
        }
    }

    /// How many records were found.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    fn add(&mut self, print: Fingerprint, partition: i32) {
        *self
            .counts
            .entry(print)
            .or_default()
            .entry(partition)
            .or_default() += 1;
        self.total += 1;
    }
}

/// Where to look: each output partition from the offset recorded before the first attempt.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Output partitions and their recorded end offsets.
    pub starts: Vec<(TopicPartition, i64)>,
}

/// Reads back the records query `query_id` wrote for batch `batch_id` after `recorded`.
/// `committed_only` reads as `read_committed` (transactional sinks: what a crashed attempt left
/// open was aborted when transactions were initialised) and then waits until every committed
/// record up to the partition's end is readable.
pub fn read_back(
    options: &KafkaTableOptions,
    recorded: &Recorded,
    query_id: &str,
    batch_id: u64,
    committed_only: bool,
) -> Result<Found> {
    let mut found = Found::default();
    let lookup = BrokerClient::reading_uncommitted(options)?;
    let partitions: Vec<TopicPartition> =
        recorded.starts.iter().map(|(tp, _)| tp.clone()).collect();
    let watermarks = lookup.watermarks_of(&partitions)?;
    // Records deleted since (retention, DeleteRecords) cannot be read back: start after them.
    let ranges: Vec<(TopicPartition, i64, i64)> = recorded
        .starts
        .iter()
        .zip(watermarks)
        .map(|((tp, start), wm)| (tp.clone(), (*start).max(wm.low), wm.high))
        .filter(|(_, start, end)| end > start)
        .collect();
    if ranges.is_empty() {
        return Ok(found);
    }
    let mut config = options.consumer_config();
    config.set(
        "isolation.level",
        if committed_only {
            "read_committed"
        } else {
            "read_uncommitted"
        },
    );
    let cannot_read = |e: KafkaError| {
        DataFusionError::Execution(format!(
            "cannot read back what batch {batch_id} already wrote to Kafka: {e}"
        ))
    };
    let consumer: BaseConsumer = config.create().map_err(cannot_read)?;
    let mut assignment = TopicPartitionList::new();
    for (tp, start, _) in &ranges {
        assignment
            .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*start))
            .map_err(cannot_read)?;
    }
    consumer.assign(&assignment).map_err(cannot_read)?;
    let mut open: HashMap<TopicPartition, i64> =
        ranges.into_iter().map(|(tp, _, end)| (tp, end)).collect();
    let batch = batch_id.to_string();
    let mut last_progress = Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if last_progress.elapsed() > options.broker_timeout {
                    return Err(stalled(options, batch_id, &open));
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                // read_committed stops at the last stable offset: a partition is done when
                // the consumer's position reached the end measured above.
                let done: Vec<TopicPartition> = open
                    .iter()
                    .filter(|(tp, end)| {
                        tp.partition == partition
                            && position(&consumer, tp).is_none_or(|p| p >= **end)
                    })
                    .map(|(tp, _)| tp.clone())
                    .collect();
                for tp in done {
                    open.remove(&tp);
                }
            }
            Some(Err(e)) if is_transient(&e) => {
                log::warn!("reading back batch {batch_id}: {e}; librdkafka retries");
            }
            Some(Err(e)) => return Err(cannot_read(e)),
            Some(Ok(message)) => {
                last_progress = Instant::now();
                if written_by(&message, query_id, &batch) {
                    found.add(message_fingerprint(&message), message.partition());
                }
                let tp = TopicPartition::new(message.topic(), message.partition());
                if open
                    .get(&tp)
                    .is_some_and(|end| message.offset() + 1 >= *end)
                {
                    open.remove(&tp);
                }
            }
        }
    }
    Ok(found)
}

fn stalled(
    options: &KafkaTableOptions,
    batch_id: u64,
    open: &HashMap<TopicPartition, i64>,
) -> DataFusionError {
    let names: Vec<String> = open.keys().map(ToString::to_string).collect();
    DataFusionError::Execution(format!(
        "reading back what batch {batch_id} already wrote to {} stalled for {} ms \
         (brokerTimeoutMs); another producer's open transaction may hide records: the batch is \
         retried on restart",
        names.join(", "),
        options.broker_timeout.as_millis()
    ))
}

fn position(consumer: &BaseConsumer, tp: &TopicPartition) -> Option<i64> {
    consumer
        .position()
        .ok()?
        .find_partition(&tp.topic, tp.partition)?
        .offset()
        .to_raw()
}

/// Whether batch `batch` of query `query_id` wrote `message`.
fn written_by(message: &impl Message, query_id: &str, batch: &str) -> bool {
    let Some(headers) = message.headers() else {
        return false;
    };
    let (mut query, mut same_batch) = (false, false);
    for header in headers.iter() {
        match header.key {
            QUERY_HEADER => query = header.value == Some(query_id.as_bytes()),
            BATCH_HEADER => same_batch = header.value == Some(batch.as_bytes()),
            _ => {}
        }
    }
    query && same_batch
}

/// The fingerprint of a record read back: its content without weir's own headers.
pub fn message_fingerprint(message: &impl Message) -> Fingerprint {
    let headers = message.headers();
    let own = headers
        .iter()
        .flat_map(|h| h.iter())
        .filter(|h| !is_weirs_header(h.key))
        .map(|h| (h.key, h.value));
    fingerprint(message.topic(), message.key(), message.payload(), own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_content_apart() {
        let plain = fingerprint("t", Some(b"k"), Some(b"v"), std::iter::empty());
        assert_eq!(
            plain,
            fingerprint("t", Some(b"k"), Some(b"v"), std::iter::empty())
        );
        assert_ne!(
            plain,
            fingerprint("u", Some(b"k"), Some(b"v"), std::iter::empty())
        );
        assert_ne!(
            plain,
            fingerprint("t", None, Some(b"kv"), std::iter::empty())
        );
        assert_ne!(
            plain,
            fingerprint("t", Some(b"kv"), None, std::iter::empty())
        );
        assert_ne!(
            plain,
            fingerprint("t", Some(b"k"), Some(b"v"), [("h", None)].into_iter())
        );
    }

    #[test]
    fn found_records_are_matched_once_each() {
        let a = fingerprint("t", None, Some(b"a"), std::iter::empty());
        let b = fingerprint("t", None, Some(b"b"), std::iter::empty());
        let mut found = Found::default();
        found.add(a, 0);
        found.add(a, 1);
        assert_eq!(found.len(), 2);
        assert!(!found.take_in(a, 2), "not in that partition");
        assert!(found.take_in(a, 1));
        assert!(
            !found.take_in(a, 1),
            "the copy in partition 1 is matched already"
        );
        assert!(found.take_anywhere(a));
        assert!(!found.take_anywhere(a), "a third copy was not written");
        assert!(!found.take_anywhere(b));
    }
}
