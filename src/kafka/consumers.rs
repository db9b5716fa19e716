//! Consumers kept across batches, as Spark's consumer cache keeps them
//! (`spark.kafka.consumer.cache.capacity`, `spark.kafka.consumer.cache.timeout`).
//!
//! A reader takes a consumer of its table from the [`ConsumerPool`], reads its ranges (pausing
//! each partition at its range's end, so that an idle consumer does not fetch), and gives it
//! back. The next batch's reader of the same partitions gets the same consumer, connected and
//! assigned: it resumes the partitions and seeks them to its ranges' starts (a seek restarts
//! fetching at once, where librdkafka may wait up to a second to fetch a partition that was only
//! resumed). A consumer that failed is never given back; the pool holds at most `capacity` idle
//! consumers and closes those idle longer than the timeout.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use datafusion::error::{DataFusionError, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::offsets::PartitionRange;
use super::options::TopicPartition;

/// Spark's default `spark.kafka.consumer.cache.capacity`.
pub const DEFAULT_CAPACITY: usize = 64;
/// Spark's default `spark.kafka.consumer.cache.timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How many consumers the pool keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// At most this many idle consumers.
    pub capacity: usize,
    /// An idle consumer is dropped after this long.
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            capacity: DEFAULT_CAPACITY,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// A consumer waiting for its next reader.
struct Idle {
    /// Which table's consumers it belongs with (its group id).
    key: String,
    consumer: BaseConsumer,
    /// Its assigned partitions.
    partitions: BTreeSet<TopicPartition>,
    since: Instant,
}

/// The idle consumers of every Kafka table of an engine.
pub struct ConsumerPool {
    settings: Mutex<PoolSettings>,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for ConsumerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map(|i| i.len()).unwrap_or_default();
        f.debug_struct("ConsumerPool").field("idle", &idle).finish()
    }
}

impl Default for ConsumerPool {
    fn default() -> Self {
        Self::new(PoolSettings::default())
    }
}

/// A consumer taken from the pool, assigned and positioned at a reader's ranges.
pub struct Taken {
    /// Its table's key.
    pub key: String,
    /// The consumer.
    pub consumer: BaseConsumer,
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taken").field("key", &self.key).finish()
    }
}

impl ConsumerPool {
    /// A pool with these settings.
    pub fn new(settings: PoolSettings) -> Self {
        Self {
            settings: Mutex::new(settings),
            idle: Mutex::default(),
        }
    }

    /// Changes the capacity and idle timeout (idle consumers beyond them go at the next use).
    pub fn configure(&self, settings: PoolSettings) {
        if let Ok(mut current) = self.settings.lock() {
            *current = settings;
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> PoolSettings {
        self.settings.lock().map(|s| *s).unwrap_or_default()
    }

    /// How many consumers wait in the pool.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or_default()
    }

    /// A consumer of table `key` positioned at the starts of `ranges`: an idle one of the same
    /// table (the one of the same partitions, if there is one), else a new one from `create`.
    pub fn take(
        &self,
        key: &str,
        ranges: &[PartitionRange],
        create: impl FnOnce() -> Result<BaseConsumer>,
    ) -> Result<Taken> {
        let wanted: BTreeSet<&TopicPartition> = ranges.iter().map(|r| &r.tp).collect();
        let found = {
            let mut idle = self.idle.lock().map_err(poisoned)?;
            let same_table = |i: &Idle| i.key == key;
            let same_partitions =
                |i: &Idle| same_table(i) && i.partitions.iter().collect::<BTreeSet<_>>() == wanted;
            let index = idle
                .iter()
                .position(same_partitions)
                .or_else(|| idle.iter().position(same_table));
            index.map(|i| idle.swap_remove(i))
        };
        let consumer = match found {
            Some(idle) if idle.partitions.iter().collect::<BTreeSet<_>>() == wanted => {
                reposition(&idle.consumer, ranges)?;
                idle.consumer
            }
            Some(idle) => {
                assign(&idle.consumer, ranges)?;
                idle.consumer
            }
            None => {
                let consumer = create()?;
                assign(&consumer, ranges)?;
                consumer
            }
        };
        Ok(Taken {
            key: key.to_string(),
            consumer,
        })
    }

    /// Gives a consumer back after a reader read its ranges without error.
    pub fn give_back(&self, taken: Taken, ranges: &[PartitionRange]) {
        let partitions = ranges.iter().map(|r| r.tp.clone()).collect();
        let settings = self.settings();
        let mut dropped = vec![];
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(Idle {
                key: taken.key,
                consumer: taken.consumer,
                partitions,
                since: Instant::now(),
            });
            let (keep, expired): (Vec<Idle>, Vec<Idle>) = idle
                .drain(..)
                .partition(|i| i.since.elapsed() < settings.idle_timeout);
            *idle = keep;
            dropped.extend(expired);
            idle.sort_by_key(|i| std::cmp::Reverse(i.since));
            if idle.len() > settings.capacity {
                dropped.extend(idle.drain(settings.capacity..));
            }
        }
        close_in_background(dropped);
    }
}

fn poisoned<T>(_: T) -> DataFusionError {
    DataFusionError::Internal("the Kafka consumer pool's lock is poisoned".to_string())
}

/// `ranges`' partitions, each at its range's start.
fn starts(ranges: &[PartitionRange]) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for range in ranges {
        list.add_partition_offset(
            &range.tp.topic,
            range.tp.partition,
            Offset::Offset(range.start),
        )
        .map_err(|e| DataFusionError::Execution(format!("cannot position {}: {e}", range.tp)))?;
    }
    Ok(list)
}

fn resume(consumer: &BaseConsumer, list: &TopicPartitionList) -> Result<()> {
    consumer.resume(list).map_err(|e| {
        DataFusionError::Execution(format!("cannot resume a Kafka consumer's partitions: {e}"))
    })
}

/// Assigns `ranges`' partitions, each at its range's start.
pub fn assign(consumer: &BaseConsumer, ranges: &[PartitionRange]) -> Result<()> {
    let list = starts(ranges)?;
    consumer.assign(&list).map_err(|e| {
        DataFusionError::Execution(format!("cannot assign partitions to a Kafka consumer: {e}"))
    })?;
    // A partition this consumer paused at the end of an earlier range stays paused through a
    // new assignment.
    resume(consumer, &list)
}

/// Moves a consumer that already holds `ranges`' partitions to their starts: resumes them and
/// seeks each to its range's start.
fn reposition(consumer: &BaseConsumer, ranges: &[PartitionRange]) -> Result<()> {
    let list = starts(ranges)?;
    resume(consumer, &list)?;
    let sought = consumer
        .seek_partitions(list, Duration::from_secs(10))
        .map_err(|e| DataFusionError::Execution(format!("cannot seek a Kafka consumer: {e}")))?;
    for element in sought.elements() {
        element.error().map_err(|e| {
            DataFusionError::Execution(format!(
                "cannot seek {}[{}]: {e}",
                element.topic(),
                element.partition()
            ))
        })?;
    }
    Ok(())
}

/// Closes consumers off the caller's thread: closing waits for librdkafka's threads.
fn close_in_background(consumers: Vec<Idle>) {
    if consumers.is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("weir-consumer-close".to_string())
        .spawn(move || drop(consumers));
}

#[cfg(test)]
mod tests {
    use rdkafka::ClientConfig;

    use super::*;

    fn consumer() -> Result<BaseConsumer> {
        ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "pool-tests")
            .create()
            .map_err(|e| DataFusionError::Execution(e.to_string()))
    }

    fn ranges(partitions: &[i32]) -> Vec<PartitionRange> {
        partitions
            .iter()
            .map(|p| PartitionRange {
                tp: TopicPartition::new("t", *p),
                start: 0,
                end: 10,
            })
            .collect()
    }

    fn identity(taken: &Taken) -> usize {
        taken.consumer.client().native_ptr() as usize
    }

    #[test]
    fn a_reader_gets_back_the_consumer_of_its_partitions() {
        let pool = ConsumerPool::default();
        let first = pool.take("a", &ranges(&[0, 1]), consumer).unwrap();
        let other = pool.take("a", &ranges(&[2]), consumer).unwrap();
        let (first_id, other_id) = (identity(&first), identity(&other));
        pool.give_back(first, &ranges(&[0, 1]));
        pool.give_back(other, &ranges(&[2]));
        assert_eq!(pool.idle_count(), 2);
        let again = pool.take("a", &ranges(&[2]), || panic!("kept")).unwrap();
        assert_eq!(
            identity(&again),
            other_id,
            "the one assigned to the same partitions"
        );
        let reassigned = pool.take("a", &ranges(&[5]), || panic!("kept")).unwrap();
        assert_eq!(
            identity(&reassigned),
            first_id,
            "another of the same table, reassigned"
        );
        let fresh = pool.take("b", &ranges(&[0]), consumer).unwrap();
        assert_ne!(identity(&fresh), first_id, "never one of another table");
    }

    #[test]
    fn the_pool_keeps_at_most_its_capacity_for_at_most_its_timeout() {
        let pool = ConsumerPool::new(PoolSettings {
            capacity: 2,
            idle_timeout: Duration::from_millis(200),
        });
        let taken: Vec<Taken> = (0..3)
            .map(|p| pool.take("a", &ranges(&[p]), consumer).unwrap())
            .collect();
        for (p, t) in taken.into_iter().enumerate() {
            pool.give_back(t, &ranges(&[p as i32]));
        }
        assert_eq!(pool.idle_count(), 2);
        std::thread::sleep(Duration::from_millis(250));
        let t = pool.take("b", &ranges(&[0]), consumer).unwrap();
        pool.give_back(t, &ranges(&[0]));
        assert_eq!(pool.idle_count(), 1, "the idle ones timed out");
    }
}
