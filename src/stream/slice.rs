//! Planning the slice of the next batch of a streaming query: where each partition starts (the
//! previous batch's end, the table's starting position, or earliest for partitions that
//! appeared since), where it ends (latest, clamped by the rate options), and what happens to
//! partitions and offsets that disappeared.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use log::warn;

use crate::kafka::offsets::{
    BrokerLookup, Narrowing, PartitionRange, plan_ranges, resolve_partitions,
};
use crate::kafka::options::{KafkaTableOptions, RateLimits, TopicPartition};

/// The next slice of one source, before rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSlice {
    /// `[start, latest)` of every partition read.
    pub ranges: Vec<PartitionRange>,
    /// Offsets skipped because they were lost (only with failOnDataLoss false).
    pub lost_offsets: i64,
}

/// Plans `[start, latest)` for every partition the table reads now. `previous` holds the ends of
/// the last batch (none before the first batch).
pub fn plan_slice(
    options: &KafkaTableOptions,
    lookup: &dyn BrokerLookup,
    previous: Option<&BTreeMap<TopicPartition, i64>>,
) -> Result<SourceSlice> {
    let Some(previous) = previous else {
        let mut first = options.clone();
        first.ending = None;
        let ranges = plan_ranges(&first, lookup, &Narrowing::default())?;
        return Ok(SourceSlice {
            ranges,
            lost_offsets: 0,
        });
    };
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
    let mut ranges = Vec::with_capacity(partitions.len());
    let mut lost_offsets = 0;
    for tp in partitions {
        let wm = lookup.watermarks(&tp)?;
        let start = match previous.get(&tp) {
            Some(end) => *end,
            None => {
                log::info!(
                    "new partition {tp}: reading it from its earliest offset {}",
                    wm.low
                );
                wm.low
            }
        };
        let start = if start < wm.low {
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
            lost_offsets += wm.low - start;
            wm.low
        } else if start > wm.high {
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
            lost_offsets += start - wm.high;
            wm.high
        } else {
            start
        };
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

/// Cuts each range's end so the batch stays within the limits. The total cap is shared in
/// proportion to each partition's backlog, as Spark does (a share below one offset rounds up).
pub fn clamp(ranges: &[PartitionRange], limits: &RateLimits) -> Vec<PartitionRange> {
    let mut out: Vec<PartitionRange> = ranges.to_vec();
    if let Some(cap) = limits.max_per_partition {
        for range in &mut out {
            range.end = range.end.min(range.start + cap);
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
    fn first_slice_uses_the_starting_options_then_continues_from_the_ends() {
        let broker = FakeBroker::default().with_topic("t", &[(0, 10), (2, 5)]);
        let o = options(&[("subscribe", "t"), ("startingOffsets", r#"{"t":{"0":4}}"#)]);
        let first = plan_slice(&o, &broker, None).unwrap();
        assert_eq!(ends(&first.ranges), vec![(0, 4, 10), (1, 2, 5)]);
        let previous = [
            (TopicPartition::new("t", 0), 10),
            (TopicPartition::new("t", 1), 3),
        ]
        .into();
        let next = plan_slice(&o, &broker, Some(&previous)).unwrap();
        assert_eq!(ends(&next.ranges), vec![(0, 10, 10), (1, 3, 5)]);
    }

    #[test]
    fn new_partitions_start_at_earliest() {
        let broker = FakeBroker::default().with_topic("t", &[(0, 10), (3, 7)]);
        let o = options(&[("subscribe", "t")]);
        let previous = [(TopicPartition::new("t", 0), 8)].into();
        let next = plan_slice(&o, &broker, Some(&previous)).unwrap();
        assert_eq!(ends(&next.ranges), vec![(0, 8, 10), (1, 3, 7)]);
    }

    #[test]
    fn lost_offsets_and_vanished_partitions() {
        let broker = FakeBroker::default().with_topic("t", &[(6, 10)]);
        let previous = [(TopicPartition::new("t", 0), 2)].into();
        let e = plan_slice(&options(&[("subscribe", "t")]), &broker, Some(&previous))
            .unwrap_err()
            .to_string();
        assert!(e.contains("offsets 2 to 5 of t[0] were deleted"), "{e}");
        let lenient = options(&[("subscribe", "t"), ("failOnDataLoss", "false")]);
        let next = plan_slice(&lenient, &broker, Some(&previous)).unwrap();
        assert_eq!(
            (ends(&next.ranges), next.lost_offsets),
            (vec![(0, 6, 10)], 4)
        );

        let gone = [
            (TopicPartition::new("t", 0), 6),
            (TopicPartition::new("t", 1), 3),
        ]
        .into();
        let e = plan_slice(&options(&[("subscribe", "t")]), &broker, Some(&gone))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t[1] was read by the previous batch but no longer exists"),
            "{e}"
        );
        assert_eq!(
            plan_slice(&lenient, &broker, Some(&gone))
                .unwrap()
                .ranges
                .len(),
            1
        );
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
