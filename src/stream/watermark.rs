//! Event-time watermarks of a streaming query.
//!
//! A source table declares `'watermark' '<event time expression> - INTERVAL …'`: each row's
//! watermark candidate. The scan reports, per partition, the largest candidate it read in a
//! batch; [`EventTime`] keeps those per partition across batches and combines them as the
//! minimum over the partitions that are active — a partition that brought no rows for longer
//! than the source's `watermarkIdleTimeout` does not hold the watermark back. The watermark
//! never goes down. Batch N runs with the watermark computed from batches before N (recorded in
//! `offsets/N`); the state after batch N is recorded in `commits/N`, so a restart resumes with
//! exactly the watermark the query had.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kafka::TopicPartition;

/// What the query knows of one partition's event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionEventTime {
    /// The source table.
    pub table: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The largest watermark candidate read from it (ms since the epoch); none before it
    /// brought rows.
    pub max_ms: Option<i64>,
    /// When it last brought rows, or was first seen (the trigger time of that batch, ms since
    /// the epoch).
    pub active_ms: i64,
}

/// The event-time state of a query: per-partition maxima and the combined watermark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTime {
    /// The watermark (ms since the epoch); none before any source row was read.
    pub watermark_ms: Option<i64>,
    /// Per source partition.
    pub partitions: Vec<PartitionEventTime>,
}

impl EventTime {
    /// Takes in what a batch triggered at `now_ms` read (`observed`: per source table and
    /// partition, the largest candidate; `partitions`: every partition of the batch's slice, so
    /// that one that never brought rows holds the watermark back too, and one that is no longer
    /// read — its topic deleted, or gone from the subscription — stops holding it back) and
    /// moves the watermark; `idle_timeout` per table.
    pub fn advance(
        &mut self,
        observed: &BTreeMap<(String, TopicPartition), i64>,
        partitions: &[(String, TopicPartition)],
        now_ms: i64,
        idle_timeout: &BTreeMap<String, Option<Duration>>,
    ) {
        let mut by_key: BTreeMap<(String, String, i32), PartitionEventTime> = self
            .partitions
            .drain(..)
            .map(|p| ((p.table.clone(), p.topic.clone(), p.partition), p))
            .collect();
        let untracked = |table: &String, tp: &TopicPartition| PartitionEventTime {
            table: table.clone(),
            topic: tp.topic.clone(),
            partition: tp.partition,
            max_ms: None,
            active_ms: now_ms,
        };
        let read: std::collections::BTreeSet<(String, String, i32)> = partitions
            .iter()
            .map(|(table, tp)| (table.clone(), tp.topic.clone(), tp.partition))
            .collect();
        by_key.retain(|key, _| read.contains(key));
        for (table, tp) in partitions {
            by_key
                .entry((table.clone(), tp.topic.clone(), tp.partition))
                .or_insert_with(|| untracked(table, tp));
        }
        for ((table, tp), max_ms) in observed {
            let entry = by_key
                .entry((table.clone(), tp.topic.clone(), tp.partition))
                .or_insert_with(|| untracked(table, tp));
            entry.max_ms = Some(entry.max_ms.map_or(*max_ms, |m| m.max(*max_ms)));
            entry.active_ms = now_ms;
        }
        self.partitions = by_key.into_values().collect();
        let active = self.partitions.iter().filter(|p| {
            match idle_timeout.get(&p.table).copied().flatten() {
                Some(timeout) => now_ms - p.active_ms <= timeout.as_millis() as i64,
                None => true,
            }
        });
        // A partition that never brought rows holds the watermark back (None sorts first).
        if let Some(Some(combined)) = active.map(|p| p.max_ms).min() {
            self.watermark_ms = Some(self.watermark_ms.map_or(combined, |w| w.max(combined)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(rows: &[(&str, i32, i64)]) -> BTreeMap<(String, TopicPartition), i64> {
        rows.iter()
            .map(|(t, p, ms)| (("src".to_string(), TopicPartition::new(*t, *p)), *ms))
            .collect()
    }

    impl EventTime {
        fn advance_all(
            &mut self,
            observed: &BTreeMap<(String, TopicPartition), i64>,
            now_ms: i64,
            idle: &BTreeMap<String, Option<Duration>>,
        ) {
            let read: Vec<(String, TopicPartition)> = self
                .partitions
                .iter()
                .map(|p| (p.table.clone(), TopicPartition::new(&p.topic, p.partition)))
                .chain(observed.keys().cloned())
                .collect();
            self.advance(observed, &read, now_ms, idle);
        }
    }

    #[test]
    fn a_partition_that_never_brought_rows_holds_the_watermark_back_until_idle() {
        let idle: BTreeMap<String, Option<Duration>> =
            [("src".to_string(), Some(Duration::from_secs(5)))].into();
        let slice = vec![
            ("src".to_string(), TopicPartition::new("t", 0)),
            ("src".to_string(), TopicPartition::new("t", 1)),
        ];
        let mut time = EventTime::default();
        time.advance(&seen(&[("t", 0, 100)]), &slice, 0, &idle);
        assert_eq!(
            time.watermark_ms, None,
            "partition 1 may still bring older rows"
        );
        time.advance(&seen(&[("t", 0, 200)]), &slice, 6_000, &idle);
        assert_eq!(
            time.watermark_ms,
            Some(200),
            "partition 1 idle since it was first seen"
        );
    }

    fn no_idle() -> BTreeMap<String, Option<Duration>> {
        [("src".to_string(), None)].into()
    }

    #[test]
    fn the_watermark_is_the_minimum_over_partitions_and_never_goes_down() {
        let mut time = EventTime::default();
        time.advance_all(&seen(&[("t", 0, 100), ("t", 1, 40)]), 1_000, &no_idle());
        assert_eq!(time.watermark_ms, Some(40));
        time.advance_all(&seen(&[("t", 1, 90)]), 2_000, &no_idle());
        assert_eq!(time.watermark_ms, Some(90));
        // Older rows do not move a partition's maximum back, nor the watermark.
        time.advance_all(&seen(&[("t", 0, 10), ("t", 1, 20)]), 3_000, &no_idle());
        assert_eq!(time.watermark_ms, Some(90));
    }

    #[test]
    fn an_idle_partition_stops_holding_the_watermark_back() {
        let idle: BTreeMap<String, Option<Duration>> =
            [("src".to_string(), Some(Duration::from_secs(5)))].into();
        let mut time = EventTime::default();
        time.advance_all(&seen(&[("t", 0, 100), ("t", 1, 10)]), 0, &idle);
        assert_eq!(time.watermark_ms, Some(10));
        time.advance_all(&seen(&[("t", 0, 200)]), 3_000, &idle);
        assert_eq!(time.watermark_ms, Some(10), "partition 1 is not idle yet");
        time.advance_all(&seen(&[("t", 0, 300)]), 6_000, &idle);
        assert_eq!(time.watermark_ms, Some(300), "partition 1 idle for 6 s");
        // Back with data, it holds the watermark again, which does not go down.
        time.advance_all(&seen(&[("t", 1, 250)]), 7_000, &idle);
        assert_eq!(time.watermark_ms, Some(300));
        time.advance_all(&seen(&[("t", 0, 400), ("t", 1, 350)]), 8_000, &idle);
        assert_eq!(time.watermark_ms, Some(350));
    }

    #[test]
    fn a_partition_no_longer_read_stops_holding_the_watermark_back() {
        let mut time = EventTime::default();
        let both = vec![
            ("src".to_string(), TopicPartition::new("t", 0)),
            ("src".to_string(), TopicPartition::new("gone", 0)),
        ];
        time.advance(
            &seen(&[("t", 0, 100), ("gone", 0, 10)]),
            &both,
            0,
            &no_idle(),
        );
        assert_eq!(time.watermark_ms, Some(10));
        let only_t = vec![("src".to_string(), TopicPartition::new("t", 0))];
        time.advance(&seen(&[("t", 0, 200)]), &only_t, 1_000, &no_idle());
        assert_eq!(
            time.watermark_ms,
            Some(200),
            "the deleted topic's partition no longer counts"
        );
        assert_eq!(time.partitions.len(), 1);
    }

    #[test]
    fn without_rows_there_is_no_watermark() {
        let mut time = EventTime::default();
        time.advance(&BTreeMap::new(), &[], 0, &no_idle());
        assert_eq!(time.watermark_ms, None);
        let json = serde_json::to_string(&time).expect("json");
        assert_eq!(
            serde_json::from_str::<EventTime>(&json).expect("back"),
            time
        );
    }
}
