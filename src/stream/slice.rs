//! Planning the slice of the next batch of a streaming query: where each partition starts (the
//! previous batch's end, the table's starting position, or earliest for partitions that
//! appeared since), where it ends (latest, clamped by the rate options), and what happens to
//! partitions and offsets that disappeared.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use log::warn;

use crate::kafka::offsets::{BrokerLookup, PartitionRange, Watermarks, resolve_partitions};
use crate::kafka::options::{KafkaTableOptions, RateLimits, TopicPartition};

/// The next slice of one source, before rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSlice {
    /// `[start, latest)` of every partition read.
    pub ranges: Vec<PartitionRange>,
    /// Offsets skipped because they were lost (only with failOnDataLoss false).
    pub lost_offsets: i64,
}

/// Plans `[start, latest)` for every partition the table reads now. `previous` holds where each
/// known partition continues: the ends of the last batch, or the starts the query resolved
/// when it first started. A partition not in it appeared since, and is read from its earliest
/// offset (which is data loss unless that is 0, as in Spark).
pub fn plan_slice(
    options: &KafkaTableOptions,
    lookup: &dyn BrokerLookup,
    previous: &BTreeMap<TopicPartition, i64>,
) -> Result<SourceSlice> {
    let partitions = resolve_partitions(options, lookup)?;
    for tp in previous.keys() {
        if !partitions.contains(tp) {
            if options.fail_on_data_loss {
                return Err(DataFusionError::Execution(format!(
                    "data loss: {tp} was read by the previous batch but no longer exists (was the \
                     topic deleted?); set failOnDataLoss to false to go on without it"
                )));
            }
            warn!("data loss: {tp} no longer exists; going on without it");
        }
    }
    let watermarks = lookup.watermarks_of(&partitions)?;
    let mut ranges = Vec::with_capacity(partitions.len());
    let mut lost_offsets = 0;
    for (tp, wm) in partitions.into_iter().zip(watermarks) {
        let start = match previous.get(&tp) {
            Some(end) => *end,
            None => new_partition_start(options, &tp, wm)?,
        };
        let (start, lost) = continue_from(options, &tp, wm, start)?;
        lost_offsets += lost;
        ranges.push(PartitionRange {
            tp,
            start,
            end: wm.high,
        });
    }
    Ok(SourceSlice {
        ranges,
        lost_offsets,
    })
}

/// Where a partition that appeared since the query started is read from: its earliest offset.
/// Records before it were deleted before the query could see them, unless it is 0.
fn new_partition_start(
    options: &KafkaTableOptions,
    tp: &TopicPartition,
    wm: Watermarks,
) -> Result<i64> {
    log::info!(
        "new partition {tp}: reading it from its earliest offset {}",
        wm.low
    );
    if wm.low > 0 {
        if options.fail_on_data_loss {
            return Err(DataFusionError::Execution(format!(
                "data loss: {tp} appeared while the query ran and starts at offset {} instead of \
                 0, so offsets 0 to {} were deleted before the query saw them; set \
                 failOnDataLoss to false to go on from offset {}",
                wm.low,
                wm.low - 1,
                wm.low
            )));
        }
        warn!(
            "data loss: {tp} appeared with its earliest offset at {}; offsets before it were \
             never read",
            wm.low
        );
    }
    Ok(wm.low)
}

/// Checks that a partition can continue from `start` (its records may have been deleted, or the
/// topic recreated): the start to use and how many offsets were lost.
fn continue_from(
    options: &KafkaTableOptions,
    tp: &TopicPartition,
    wm: Watermarks,
    start: i64,
) -> Result<(i64, i64)> {
    if start < wm.low {
        if options.fail_on_data_loss {
            return Err(DataFusionError::Execution(format!(
                "data loss: offsets {start} to {} of {tp} were deleted before the query read \
                 them (retention); set failOnDataLoss to false to skip them",
                wm.low - 1
            )));
        }
        warn!(
            "data loss: skipping offsets {start} to {} of {tp}, deleted before they were read",
            wm.low - 1
        );
        return Ok((wm.low, wm.low - start));
    }
    if start > wm.high {
        if options.fail_on_data_loss {
            return Err(DataFusionError::Execution(format!(
                "data loss: {tp} was read up to offset {start} but now ends at {} (was the \
                 topic recreated?); set failOnDataLoss to false to go on from its end",
                wm.high
            )));
        }
        warn!(
            "data loss: {tp} ends at {} before the offset {start} already read",
            wm.high
        );
        return Ok((wm.high, start - wm.high));
    }
    Ok((start, 0))
}

/// Cuts each range's end so the batch stays within the limits. The total cap is shared in
/// proportion to each partition's backlog, as Spark does (a share below one offset rounds up).
pub fn clamp(ranges: &[PartitionRange], limits: &RateLimits) -> Vec<PartitionRange> {
    let mut out: Vec<PartitionRange> = ranges.to_vec();
    if let Some(cap) = limits.max_per_partition {
        for range in &mut out {
            range.end = range.end.min(range.start.saturating_add(cap));
        }
    }
    if let Some(max) = limits.max_offsets {
        let total: i64 = out.iter().map(PartitionRange::len).sum();
        if total > max {
            for range in &mut out {
                let share = max as f64 * (range.len() as f64 / total as f64);
                let share = if share < 1.0 {
                    share.ceil()
                } else {
                    share.floor()
                } as i64;
                range.end = range.start + share.min(range.len());
            }
        }
    }
    out
}

/// Whether a batch of `available` offsets should wait for more under `minOffsetsPerTrigger`.
pub fn should_wait(available: i64, limits: &RateLimits, since_last_batch: Duration) -> bool {
    match limits.min_offsets {
        Some(min) => available < min && since_last_batch < limits.max_trigger_delay,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::offsets::fake::{FakeBroker, options};
    use crate::kafka::offsets::resolve_stream_starts;

    fn range(p: i32, start: i64, end: i64) -> PartitionRange {
        PartitionRange {
            tp: TopicPartition::new("t", p),
            start,
            end,
        }
    }

    fn ends(ranges: &[PartitionRange]) -> Vec<(i32, i64, i64)> {
        ranges
            .iter()
            .map(|r| (r.tp.partition, r.start, r.end))
            .collect()
    }

    #[test]
    fn the_first_slice_starts_where_the_resolved_starts_say_then_continues_from_the_ends() {
        let broker = FakeBroker::default().with_topic("t", &[(0, 10), (2, 5)]);
        let o = options(&[
            ("subscribe", "t"),
            ("startingOffsets", r#"{"t":{"0":4,"1":-2}}"#),
        ]);
        let starts: BTreeMap<TopicPartition, i64> = resolve_stream_starts(&o, &broker)
            .unwrap()
            .into_iter()
            .collect();
        let first = plan_slice(&o, &broker, &starts).unwrap();
        assert_eq!(ends(&first.ranges), vec![(0, 4, 10), (1, 2, 5)]);
        let previous = [
            (TopicPartition::new("t", 0), 10),
            (TopicPartition::new("t", 1), 3),
        ]
        .into();
        let next = plan_slice(&o, &broker, &previous).unwrap();
        assert_eq!(ends(&next.ranges), vec![(0, 10, 10), (1, 3, 5)]);
    }

    #[test]
    fn a_stream_starts_at_latest_unless_told_otherwise() {
        let broker = FakeBroker::default().with_topic("t", &[(0, 10), (2, 5)]);
        let starts = resolve_stream_starts(&options(&[("subscribe", "t")]), &broker).unwrap();
        assert_eq!(
            starts,
            vec![
                (TopicPartition::new("t", 0), 10),
                (TopicPartition::new("t", 1), 5)
            ]
        );
        let e = resolve_stream_starts(
            &options(&[("subscribe", "t"), ("startingOffsets", r#"{"t":{"0":4}}"#)]),
            &broker,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not for t[1]"), "{e}");
    }

    #[test]
    fn new_partitions_start_at_earliest_and_a_start_above_zero_is_data_loss() {
        let broker = FakeBroker::default().with_topic("t", &[(0, 10), (0, 7), (3, 9)]);
        let o = options(&[("subscribe", "t")]);
        let previous = [(TopicPartition::new("t", 0), 8)].into();
        let e = plan_slice(&o, &broker, &previous).unwrap_err().to_string();
        assert!(
            e.contains("t[2] appeared while the query ran and starts at offset 3 instead of 0"),
            "{e}"
        );
        let lenient = options(&[("subscribe", "t"), ("failOnDataLoss", "false")]);
        let next = plan_slice(&lenient, &broker, &previous).unwrap();
        assert_eq!(ends(&next.ranges), vec![(0, 8, 10), (1, 0, 7), (2, 3, 9)]);
    }

    #[test]
    fn max_offsets_is_shared_by_backlog() {
        let ranges = [range(0, 0, 900), range(1, 0, 100), range(2, 50, 50)];
        let limits = RateLimits {
            max_offsets: Some(100),
            ..Default::default()
        };
        assert_eq!(
            ends(&clamp(&ranges, &limits)),
            vec![(0, 0, 90), (1, 0, 10), (2, 50, 50)]
        );
        let tiny = RateLimits {
            max_offsets: Some(5),
            ..Default::default()
        };
        let clamped = clamp(&[range(0, 0, 1000), range(1, 0, 1)], &tiny);
        assert_eq!(
            ends(&clamped),
            vec![(0, 0, 4), (1, 0, 1)],
            "a share below one rounds up"
        );
        assert_eq!(ends(&clamp(&ranges, &RateLimits::default())), ends(&ranges));
    }

    #[test]
    fn per_partition_cap_then_total_cap() {
        let ranges = [range(0, 0, 900), range(1, 0, 100)];
        let limits = RateLimits {
            max_per_partition: Some(60),
            ..Default::default()
        };
        assert_eq!(ends(&clamp(&ranges, &limits)), vec![(0, 0, 60), (1, 0, 60)]);
        let both = RateLimits {
            max_per_partition: Some(60),
            max_offsets: Some(60),
            ..Default::default()
        };
        assert_eq!(ends(&clamp(&ranges, &both)), vec![(0, 0, 30), (1, 0, 30)]);
    }

    #[test]
    fn min_offsets_waits_up_to_the_delay() {
        let limits = RateLimits {
            min_offsets: Some(100),
            max_trigger_delay: Duration::from_secs(10),
            ..Default::default()
        };
        assert!(should_wait(50, &limits, Duration::from_secs(1)));
        assert!(!should_wait(150, &limits, Duration::from_secs(1)));
        assert!(!should_wait(50, &limits, Duration::from_secs(11)));
        assert!(!should_wait(0, &RateLimits::default(), Duration::ZERO));
    }
}
