//! Turning a table's start and end options, plus what a query's predicates allow, into exact
//! offset ranges: one `[start, end)` per partition.
//!
//! Every question this asks the broker goes through [`BrokerLookup`], so the resolution rules
//! (sentinels, timestamps and their strategy, data loss, narrowing) are tested here without a
//! broker; the real lookups are in [`super::client`].

use std::collections::BTreeSet;

use datafusion::error::{DataFusionError, Result};
use log::warn;

use super::options::{
    EARLIEST_SENTINEL, KafkaTableOptions, LATEST_SENTINEL, OffsetsSpec, PositionSpec,
    TimestampStrategy, TopicPartition, TopicSelection, refuse_latest_start,
};

/// The lowest and the next offset of a partition as the broker reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// The earliest offset still stored.
    pub low: i64,
    /// The offset the next record will get (or the last stable offset under read_committed).
    pub high: i64,
}

/// The questions offset planning asks a Kafka cluster.
pub trait BrokerLookup {
    /// The partitions of `topic`, or `None` when the topic does not exist.
    fn partitions(&self, topic: &str) -> Result<Option<Vec<i32>>>;
    /// Every topic of the cluster.
    fn topics(&self) -> Result<Vec<String>>;
    /// The watermarks of a partition.
    fn watermarks(&self, tp: &TopicPartition) -> Result<Watermarks>;
    /// The watermarks of several partitions, in order; a real client asks each broker once.
    fn watermarks_of(&self, partitions: &[TopicPartition]) -> Result<Vec<Watermarks>> {
        partitions.iter().map(|tp| self.watermarks(tp)).collect()
    }
    /// For each (partition, timestamp in ms), the earliest offset whose record has a timestamp
    /// at or after it; `None` when there is no such record.
    fn offsets_for_times(&self, query: &[(TopicPartition, i64)]) -> Result<Vec<Option<i64>>>;
}

/// The records `[start, end)` of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    /// The partition.
    pub tp: TopicPartition,
    /// First offset to read.
    pub start: i64,
    /// First offset not to read.
    pub end: i64,
}

impl PartitionRange {
    /// The number of offsets in the range (records, unless offsets have gaps).
    pub fn len(&self) -> i64 {
        (self.end - self.start).max(0)
    }

    /// True when the range holds no offsets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for PartitionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:[{}, {})", self.tp, self.start, self.end)
    }
}

/// What a query's predicates let the scan skip. Every bound is one the records must satisfy, so
/// narrowing never drops a record the query would keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// Only these partition numbers (`partition = 1`, `partition IN (…)`).
    pub partitions: Option<BTreeSet<i32>>,
    /// Only offsets at or after this (`offset >= n`, `offset > n`, `offset = n`).
    pub min_offset: Option<i64>,
    /// Only offsets before this (`offset < n`, `offset <= n`, `offset = n`).
    pub end_offset: Option<i64>,
    /// Only records with a timestamp at or after this, in ms (`timestamp >= t`).
    pub min_timestamp: Option<i64>,
}

impl Narrowing {
    /// True when nothing narrows the ranges.
    pub fn is_empty(&self) -> bool {
        self == &Narrowing::default()
    }

    /// Combines two narrowings: a record must satisfy both.
    pub fn and(mut self, other: Narrowing) -> Narrowing {
        self.partitions = match (self.partitions, other.partitions) {
            (Some(a), Some(b)) => Some(a.intersection(&b).copied().collect()),
            (a, b) => a.or(b),
        };
        self.min_offset = max_opt(self.min_offset, other.min_offset);
        self.end_offset = min_opt(self.end_offset, other.end_offset);
        self.min_timestamp = max_opt(self.min_timestamp, other.min_timestamp);
        self
    }
}

impl Narrowing {
    /// The narrowing of a disjunction: a record may satisfy either, so only what both bound
    /// stays bounded (by the looser bound).
    pub fn or(self, other: Narrowing) -> Narrowing {
        let both = |a: Option<i64>, b: Option<i64>, pick: fn(i64, i64) -> i64| {
            a.zip(b).map(|(a, b)| pick(a, b))
        };
        Narrowing {
            partitions: self
                .partitions
                .zip(other.partitions)
                .map(|(a, b)| a.union(&b).copied().collect()),
            min_offset: both(self.min_offset, other.min_offset, i64::min),
            end_offset: both(self.end_offset, other.end_offset, i64::max),
            min_timestamp: both(self.min_timestamp, other.min_timestamp, i64::min),
        }
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The partitions a table reads right now, in (topic, partition) order.
pub fn resolve_partitions(
    options: &KafkaTableOptions,
    lookup: &dyn BrokerLookup,
) -> Result<Vec<TopicPartition>> {
    let mut out = vec![];
    match &options.topics {
        TopicSelection::Subscribe(topics) => {
            for topic in topics {
                let partitions = existing_partitions(options, lookup, topic)?;
                out.extend(
                    partitions
                        .into_iter()
                        .map(|p| TopicPartition::new(topic, p)),
                );
            }
        }
        TopicSelection::Pattern(pattern) => {
            for topic in lookup.topics()? {
                if pattern.is_match(&topic) {
                    let partitions = lookup.partitions(&topic)?.unwrap_or_default();
                    out.extend(
                        partitions
                            .into_iter()
                            .map(|p| TopicPartition::new(&topic, p)),
                    );
                }
            }
        }
        TopicSelection::Assign(assign) => {
            for (topic, wanted) in assign {
                let partitions = existing_partitions(options, lookup, topic)?;
                for p in wanted {
                    if !partitions.contains(p) {
                        return Err(DataFusionError::Plan(format!(
                            "option 'assign' names partition {p} of topic '{topic}', which has \
                             partitions 0 to {}",
                            partitions.len().saturating_sub(1)
                        )));
                    }
                    out.push(TopicPartition::new(topic, *p));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn existing_partitions(
    options: &KafkaTableOptions,
    lookup: &dyn BrokerLookup,
    topic: &str,
) -> Result<Vec<i32>> {
    let mut partitions = lookup.partitions(topic)?.ok_or_else(|| {
        DataFusionError::Plan(format!(
            "topic '{topic}' does not exist on Kafka broker(s) {}",
            options.bootstrap_servers()
        ))
    })?;
    partitions.sort_unstable();
    Ok(partitions)
}

/// The exact ranges a bounded table (or a snapshot of a stream, ending at the latest offsets)
/// reads, narrowed by `narrowing`. Empty ranges are kept, so callers see every partition.
pub fn plan_ranges(
    options: &KafkaTableOptions,
    lookup: &dyn BrokerLookup,
    narrowing: &Narrowing,
) -> Result<Vec<PartitionRange>> {
    let starting = options.starting_position(false);
    refuse_latest_start(&starting)?;
    let mut partitions = resolve_partitions(options, lookup)?;
    check_named_partitions(options, &starting, &partitions)?;
    if let Some(wanted) = &narrowing.partitions {
        partitions.retain(|tp| wanted.contains(&tp.partition));
    }
    let (watermarks, starts) = resolve_starts(options, lookup, &starting, &partitions)?;
    let latest = PositionSpec::Offsets(OffsetsSpec::Latest);
    let ends = resolve_position(
        options.ending.as_ref().unwrap_or(&latest),
        &partitions,
        &watermarks,
        lookup,
        Bound::End,
        options,
    )?;

    let mut ranges = Vec::with_capacity(partitions.len());
    for ((tp, wm), (start, end)) in partitions
        .into_iter()
        .zip(watermarks)
        .zip(starts.into_iter().zip(ends))
    {
        let start = check_start(options, &tp, wm, start)?;
        if end > wm.high {
            return Err(DataFusionError::Plan(format!(
                "endingOffsets asks for {tp} up to offset {end}, but its latest offset is {}",
                wm.high
            )));
        }
        if end < start {
            return Err(DataFusionError::Plan(format!(
                "the range of {tp} ends (offset {end}) before it starts (offset {start}); check \
                 the starting and ending options"
            )));
        }
        ranges.push(PartitionRange { tp, start, end });
    }
    narrow_offsets(&mut ranges, narrowing);
    narrow_by_timestamp(&mut ranges, narrowing, lookup)?;
    Ok(ranges)
}

/// Where a streaming query starts reading each partition the table reads now: its
/// `startingOffsets` (or timestamps), latest by default, resolved to offsets once.
pub fn resolve_stream_starts(
    options: &KafkaTableOptions,
    lookup: &dyn BrokerLookup,
) -> Result<Vec<(TopicPartition, i64)>> {
    let starting = options.starting_position(true);
    let partitions = resolve_partitions(options, lookup)?;
    check_named_partitions(options, &starting, &partitions)?;
    let (watermarks, starts) = resolve_starts(options, lookup, &starting, &partitions)?;
    partitions
        .into_iter()
        .zip(watermarks)
        .zip(starts)
        .map(|((tp, wm), start)| {
            let start = check_start(options, &tp, wm, start)?;
            Ok((tp, start))
        })
        .collect()
}

/// The watermarks of `partitions` and where `starting` puts each of them.
fn resolve_starts(
    options: &KafkaTableOptions,
    lookup: &dyn BrokerLookup,
    starting: &PositionSpec,
    partitions: &[TopicPartition],
) -> Result<(Vec<Watermarks>, Vec<i64>)> {
    let watermarks = lookup.watermarks_of(partitions)?;
    let starts = resolve_position(
        starting,
        partitions,
        &watermarks,
        lookup,
        Bound::Start,
        options,
    )?;
    Ok((watermarks, starts))
}

/// Offsets or timestamp JSON must name exactly the partitions the table reads, as Spark
/// requires: a partition left out would silently start (or end) somewhere nobody chose.
fn check_named_partitions(
    options: &KafkaTableOptions,
    starting: &PositionSpec,
    partitions: &[TopicPartition],
) -> Result<()> {
    let read: BTreeSet<&TopicPartition> = partitions.iter().collect();
    let positions = [
        ("startingOffsets", Some(starting)),
        ("endingOffsets", options.ending.as_ref()),
    ];
    for (name, position) in positions {
        let named: BTreeSet<&TopicPartition> = match position {
            Some(PositionSpec::Offsets(OffsetsSpec::PerPartition(offsets))) => {
                offsets.keys().collect()
            }
            Some(PositionSpec::TimestampPerPartition(timestamps)) => timestamps.keys().collect(),
            _ => continue,
        };
        if let Some(unknown) = named.difference(&read).next() {
            return Err(DataFusionError::Plan(format!(
                "{name} (or its ByTimestamp form) names {unknown}, which the table does not \
                 read: no such partition exists, or the topic is not subscribed"
            )));
        }
        let missing: Vec<String> = read.difference(&named).map(|tp| tp.to_string()).collect();
        if !missing.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{name} (or its ByTimestamp form) gives positions for some partitions but not \
                 for {}; name every partition the table reads (-2 is earliest, -1 latest), as \
                 Spark requires",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    Start,
    End,
}

fn resolve_position(
    spec: &PositionSpec,
    partitions: &[TopicPartition],
    watermarks: &[Watermarks],
    lookup: &dyn BrokerLookup,
    bound: Bound,
    options: &KafkaTableOptions,
) -> Result<Vec<i64>> {
    let by_offsets = |offsets: &OffsetsSpec, tp: &TopicPartition, wm: Watermarks| -> i64 {
        match offsets {
            OffsetsSpec::Earliest => wm.low,
            OffsetsSpec::Latest => wm.high,
            OffsetsSpec::PerPartition(offsets) => match offsets.get(tp) {
                Some(&EARLIEST_SENTINEL) => wm.low,
                Some(&LATEST_SENTINEL) | None => wm.high,
                Some(&offset) => offset,
            },
        }
    };
    let timestamps: Vec<Option<i64>> = match spec {
        PositionSpec::Offsets(offsets) => {
            return Ok(partitions
                .iter()
                .zip(watermarks)
                .map(|(tp, wm)| by_offsets(offsets, tp, *wm))
                .collect());
        }
        PositionSpec::Timestamp(ts) => partitions.iter().map(|_| Some(*ts)).collect(),
        PositionSpec::TimestampPerPartition(timestamps) => partitions
            .iter()
            .map(|tp| timestamps.get(tp).copied())
            .collect(),
    };
    let query: Vec<(TopicPartition, i64)> = partitions
        .iter()
        .zip(&timestamps)
        .filter_map(|(tp, ts)| ts.map(|ts| (tp.clone(), ts)))
        .collect();
    let mut answers = lookup.offsets_for_times(&query)?.into_iter();
    let mut out = Vec::with_capacity(partitions.len());
    for ((tp, wm), ts) in partitions.iter().zip(watermarks).zip(timestamps) {
        let Some(ts) = ts else {
            // check_named_partitions makes per-partition timestamps name every partition.
            out.push(wm.high);
            continue;
        };
        let answer = answers.next().flatten().filter(|offset| *offset < wm.high);
        let offset = match (answer, bound) {
            (Some(offset), _) => offset.max(wm.low),
            (None, Bound::End) => wm.high,
            (None, Bound::Start) => match options.timestamp_strategy {
                TimestampStrategy::Latest => wm.high,
                TimestampStrategy::Error => {
                    return Err(DataFusionError::Plan(format!(
                        "{tp} has no record with a timestamp at or after {ts} ms (the starting \
                         timestamp); set startingOffsetsByTimestampStrategy to 'latest' to start \
                         such partitions at their latest offset"
                    )));
                }
            },
        };
        out.push(offset);
    }
    Ok(out)
}

/// Applies failOnDataLoss to a start that is no longer (or not yet) on the broker.
fn check_start(
    options: &KafkaTableOptions,
    tp: &TopicPartition,
    wm: Watermarks,
    start: i64,
) -> Result<i64> {
    if start < wm.low {
        if options.fail_on_data_loss {
            return Err(DataFusionError::Execution(format!(
                "data loss: offsets {start} to {} of {tp} are no longer on the broker (deleted \
                 by retention or compaction); set failOnDataLoss to false to skip them",
                wm.low - 1
            )));
        }
        warn!(
            "data loss: skipping offsets {start} to {} of {tp}, no longer on the broker",
            wm.low - 1
        );
        return Ok(wm.low);
    }
    if start > wm.high {
        if options.fail_on_data_loss {
            return Err(DataFusionError::Execution(format!(
                "the starting offset {start} of {tp} is past its latest offset {} (was the \
                 topic recreated?); set failOnDataLoss to false to start at the latest offset",
                wm.high
            )));
        }
        warn!(
            "starting offset {start} of {tp} is past its latest offset {}; starting there",
            wm.high
        );
        return Ok(wm.high);
    }
    Ok(start)
}

/// Fixed ranges (a streaming batch's slice) narrowed by partition and offset predicates.
pub fn narrow_fixed(ranges: &[PartitionRange], narrowing: &Narrowing) -> Vec<PartitionRange> {
    let mut out: Vec<PartitionRange> = ranges
        .iter()
        .filter(|r| {
            narrowing
                .partitions
                .as_ref()
                .is_none_or(|p| p.contains(&r.tp.partition))
        })
        .cloned()
        .collect();
    narrow_offsets(&mut out, narrowing);
    out
}

fn narrow_offsets(ranges: &mut [PartitionRange], narrowing: &Narrowing) {
    for range in ranges {
        if let Some(min) = narrowing.min_offset {
            range.start = range.start.max(min);
        }
        if let Some(end) = narrowing.end_offset {
            range.end = range.end.min(end);
        }
        range.end = range.end.max(range.start);
    }
}

/// Moves each start to the first record at or after `min_timestamp`. Only a lower bound narrows:
/// records after any offset may carry earlier timestamps, so an upper bound cannot be mapped to
/// an offset without losing records. An answer at or beyond a range's end is not trusted to mean
/// "no such record" (brokers that cannot look timestamps up answer "end"), so such a range is
/// read whole and the predicate filters it.
fn narrow_by_timestamp(
    ranges: &mut [PartitionRange],
    narrowing: &Narrowing,
    lookup: &dyn BrokerLookup,
) -> Result<()> {
    let Some(ts) = narrowing.min_timestamp else {
        return Ok(());
    };
    let query: Vec<(TopicPartition, i64)> = ranges
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| (r.tp.clone(), ts))
        .collect();
    if query.is_empty() {
        return Ok(());
    }
    let answers = lookup.offsets_for_times(&query)?;
    let mut answers = answers.into_iter();
    for range in ranges.iter_mut().filter(|r| !r.is_empty()) {
        if let Some(offset) = answers.next().flatten()
            && offset > range.start
            && offset < range.end
        {
            range.start = offset;
        }
    }
    Ok(())
}

/// Splits ranges so that at least `min_partitions` exist, each range into parts proportional to
/// its share of all offsets (Spark's rule). Ranges are never merged.
pub fn split_ranges(
    ranges: Vec<PartitionRange>,
    min_partitions: Option<usize>,
) -> Vec<PartitionRange> {
    let Some(min_partitions) = min_partitions else {
        return ranges;
    };
    let total: i64 = ranges.iter().map(PartitionRange::len).sum();
    if ranges.len() >= min_partitions || total == 0 {
        return ranges;
    }
    let mut out = vec![];
    for range in ranges {
        let share = range.len() as f64 / total as f64 * min_partitions as f64;
        let parts = (share.round() as i64).clamp(1, range.len().max(1));
        let size = range.len();
        for i in 0..parts {
            let start = range.start + size * i / parts;
            let end = range.start + size * (i + 1) / parts;
            out.push(PartitionRange {
                tp: range.tp.clone(),
                start,
                end,
            });
        }
    }
    out
}

/// A broker made of tables, for tests of the rules above and of the scan's pushdown.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub(crate) struct FakeBroker {
        pub topics: BTreeMap<String, Vec<Watermarks>>,
        /// (partition, timestamp) → answer.
        pub times: BTreeMap<(TopicPartition, i64), Option<i64>>,
    }

    /// Options of a table with `pairs`, on the fake broker.
    pub fn options(pairs: &[(&str, &str)]) -> KafkaTableOptions {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KafkaTableOptions::parse(&map, false, Some("fake:9092")).unwrap()
    }

    impl FakeBroker {
        pub fn with_topic(mut self, name: &str, watermarks: &[(i64, i64)]) -> Self {
            let wms = watermarks
                .iter()
                .map(|&(low, high)| Watermarks { low, high })
                .collect();
            self.topics.insert(name.to_string(), wms);
            self
        }

        pub fn with_time(mut self, tp: TopicPartition, ts: i64, answer: Option<i64>) -> Self {
            self.times.insert((tp, ts), answer);
            self
        }
    }

    impl BrokerLookup for FakeBroker {
        fn partitions(&self, topic: &str) -> Result<Option<Vec<i32>>> {
            Ok(self
                .topics
                .get(topic)
                .map(|w| (0..w.len() as i32).collect()))
        }
        fn topics(&self) -> Result<Vec<String>> {
            Ok(self.topics.keys().cloned().collect())
        }
        fn watermarks(&self, tp: &TopicPartition) -> Result<Watermarks> {
            Ok(self.topics[&tp.topic][tp.partition as usize])
        }
        fn offsets_for_times(&self, query: &[(TopicPartition, i64)]) -> Result<Vec<Option<i64>>> {
            Ok(query
                .iter()
                .map(|(tp, ts)| self.times.get(&(tp.clone(), *ts)).copied().flatten())
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeBroker, options};
    use super::*;

    fn spans(ranges: &[PartitionRange]) -> Vec<(String, i32, i64, i64)> {
        ranges
            .iter()
            .map(|r| (r.tp.topic.clone(), r.tp.partition, r.start, r.end))
            .collect()
    }

    fn broker() -> FakeBroker {
        FakeBroker::default()
            .with_topic("t", &[(0, 10), (5, 20)])
            .with_topic("u", &[(0, 3)])
    }

    fn plan(pairs: &[(&str, &str)]) -> Result<Vec<PartitionRange>> {
        plan_ranges(&options(pairs), &broker(), &Narrowing::default())
    }

    #[test]
    fn earliest_to_latest_per_partition() {
        let r = plan(&[("subscribe", "t,u"), ("endingOffsets", "latest")]).unwrap();
        assert_eq!(
            spans(&r),
            vec![
                ("t".into(), 0, 0, 10),
                ("t".into(), 1, 5, 20),
                ("u".into(), 0, 0, 3)
            ]
        );
    }

    #[test]
    fn json_offsets_and_sentinels() {
        let r = plan(&[
            ("subscribe", "t"),
            ("startingOffsets", r#"{"t":{"0":4,"1":-2}}"#),
            ("endingOffsets", r#"{"t":{"0":-1,"1":7}}"#),
        ])
        .unwrap();
        assert_eq!(
            spans(&r),
            vec![("t".into(), 0, 4, 10), ("t".into(), 1, 5, 7)]
        );
    }

    #[test]
    fn pattern_and_assign_select_partitions() {
        let r = plan(&[("subscribePattern", "[tu]")]).unwrap();
        assert_eq!(r.len(), 3);
        let r = plan(&[("assign", r#"{"t":[1]}"#)]).unwrap();
        assert_eq!(spans(&r), vec![("t".into(), 1, 5, 20)]);
        let e = plan(&[("assign", r#"{"t":[7]}"#)]).unwrap_err().to_string();
        assert!(e.contains("partition 7 of topic 't'"), "{e}");
    }

    #[test]
    fn missing_topic_and_partition_are_named() {
        let e = plan(&[("subscribe", "nope")]).unwrap_err().to_string();
        assert!(
            e.contains("topic 'nope' does not exist on Kafka broker(s) fake:9092"),
            "{e}"
        );
        let e = plan(&[("subscribe", "t"), ("startingOffsets", r#"{"t":{"9":0}}"#)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("t[9]"), "{e}");
        let e = plan(&[("subscribe", "t"), ("endingOffsets", r#"{"u":{"0":1}}"#)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("u[0]"), "{e}");
    }

    #[test]
    fn end_beyond_latest_or_before_start_fails() {
        let e = plan(&[
            ("subscribe", "t"),
            ("endingOffsets", r#"{"t":{"0":11,"1":-1}}"#),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("t[0] up to offset 11, but its latest offset is 10"),
            "{e}"
        );
        let e = plan(&[
            ("subscribe", "t"),
            ("startingOffsets", r#"{"t":{"0":8,"1":-2}}"#),
            ("endingOffsets", r#"{"t":{"0":6,"1":-1}}"#),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ends (offset 6) before it starts (offset 8)"),
            "{e}"
        );
    }

    #[test]
    fn data_loss_fails_or_skips() {
        let e = plan(&[
            ("subscribe", "t"),
            ("startingOffsets", r#"{"t":{"0":-2,"1":2}}"#),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("offsets 2 to 4 of t[1] are no longer on the broker"),
            "{e}"
        );
        let r = plan(&[
            ("subscribe", "t"),
            ("startingOffsets", r#"{"t":{"0":-2,"1":2}}"#),
            ("failOnDataLoss", "false"),
        ])
        .unwrap();
        assert_eq!(spans(&r)[1], ("t".into(), 1, 5, 20));
        let e = plan(&[
            ("subscribe", "t"),
            ("startingOffsets", r#"{"t":{"0":50,"1":-2}}"#),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("past its latest offset 10"), "{e}");
    }

    #[test]
    fn a_snapshot_of_a_stream_cannot_start_at_latest() {
        let e = plan(&[("subscribe", "t"), ("startingOffsets", "latest")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("which a bounded query cannot start from"), "{e}");
        let r = plan(&[("subscribe", "t")]).unwrap();
        assert_eq!(spans(&r)[1], ("t".into(), 1, 5, 20), "earliest by default");
    }

    #[test]
    fn starting_timestamp_resolution_and_strategy() {
        let b = broker()
            .with_time(TopicPartition::new("t", 0), 1000, Some(3))
            .with_time(TopicPartition::new("t", 1), 1000, None);
        let o = options(&[("subscribe", "t"), ("startingTimestamp", "1000")]);
        let e = plan_ranges(&o, &b, &Narrowing::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t[1] has no record with a timestamp at or after 1000"),
            "{e}"
        );
        let o = options(&[
            ("subscribe", "t"),
            ("startingTimestamp", "1000"),
            ("startingOffsetsByTimestampStrategy", "latest"),
        ]);
        let r = plan_ranges(&o, &b, &Narrowing::default()).unwrap();
        assert_eq!(
            spans(&r),
            vec![("t".into(), 0, 3, 10), ("t".into(), 1, 20, 20)]
        );
    }

    #[test]
    fn timestamps_per_partition_and_ending_timestamp() {
        let b = broker()
            .with_time(TopicPartition::new("t", 0), 100, Some(2))
            .with_time(TopicPartition::new("t", 1), 500, Some(9))
            .with_time(TopicPartition::new("t", 0), 900, Some(6))
            .with_time(TopicPartition::new("t", 1), 900, None);
        let o = options(&[
            ("subscribe", "t"),
            ("startingOffsetsByTimestamp", r#"{"t":{"0":100,"1":500}}"#),
            ("endingTimestamp", "900"),
        ]);
        let r = plan_ranges(&o, &b, &Narrowing::default()).unwrap();
        // t[1] has no record at 900, so it ends at latest.
        assert_eq!(
            spans(&r),
            vec![("t".into(), 0, 2, 6), ("t".into(), 1, 9, 20)]
        );
        let partial = options(&[
            ("subscribe", "t"),
            ("startingOffsetsByTimestamp", r#"{"t":{"1":500}}"#),
        ]);
        let e = plan_ranges(&partial, &b, &Narrowing::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("but not for t[0]"), "{e}");
    }

    #[test]
    fn ending_offsets_by_timestamp_per_partition() {
        let b = broker().with_time(TopicPartition::new("t", 1), 700, Some(12));
        let o = options(&[
            ("subscribe", "t"),
            ("endingOffsetsByTimestamp", r#"{"t":{"0":700,"1":700}}"#),
        ]);
        let r = plan_ranges(&o, &b, &Narrowing::default()).unwrap();
        // t[0] has no record at 700, so it ends at latest; t[1] ends before its first record at 700.
        assert_eq!(
            spans(&r),
            vec![("t".into(), 0, 0, 10), ("t".into(), 1, 5, 12)]
        );
        assert!(o.is_bounded());
    }

    #[test]
    fn an_answer_of_end_counts_as_no_record() {
        let b = broker().with_time(TopicPartition::new("t", 0), 1, Some(10));
        let o = options(&[("subscribe", "t"), ("endingTimestamp", "1")]);
        let r = plan_ranges(&o, &b, &Narrowing::default()).unwrap();
        assert_eq!(spans(&r)[0], ("t".into(), 0, 0, 10));
    }

    #[test]
    fn narrowing_by_partition_offset_and_timestamp() {
        let b = broker()
            .with_time(TopicPartition::new("t", 0), 77, Some(6))
            .with_time(TopicPartition::new("t", 1), 77, Some(20));
        let o = options(&[("subscribe", "t")]);
        let n = Narrowing {
            partitions: Some([1].into()),
            ..Default::default()
        };
        assert_eq!(
            spans(&plan_ranges(&o, &b, &n).unwrap()),
            vec![("t".into(), 1, 5, 20)]
        );
        let n = Narrowing {
            min_offset: Some(7),
            end_offset: Some(12),
            ..Default::default()
        };
        assert_eq!(
            spans(&plan_ranges(&o, &b, &n).unwrap()),
            vec![("t".into(), 0, 7, 10), ("t".into(), 1, 7, 12)]
        );
        let n = Narrowing {
            min_offset: Some(30),
            ..Default::default()
        };
        assert!(
            plan_ranges(&o, &b, &n)
                .unwrap()
                .iter()
                .all(PartitionRange::is_empty)
        );
        // t[0] narrows to 6; t[1]'s answer is its end, which is not trusted, so it is read whole.
        let n = Narrowing {
            min_timestamp: Some(77),
            ..Default::default()
        };
        assert_eq!(
            spans(&plan_ranges(&o, &b, &n).unwrap()),
            vec![("t".into(), 0, 6, 10), ("t".into(), 1, 5, 20)]
        );
    }

    #[test]
    fn narrowings_combine() {
        let a = Narrowing {
            partitions: Some([0, 1].into()),
            min_offset: Some(3),
            ..Default::default()
        };
        let b = Narrowing {
            partitions: Some([1, 2].into()),
            min_offset: Some(5),
            end_offset: Some(9),
            ..Default::default()
        };
        let c = a.and(b);
        assert_eq!(c.partitions, Some([1].into()));
        assert_eq!((c.min_offset, c.end_offset), (Some(5), Some(9)));
        let p = Narrowing {
            partitions: Some([0].into()),
            end_offset: Some(5),
            ..Default::default()
        };
        let q = Narrowing {
            partitions: Some([2].into()),
            min_offset: Some(95),
            ..Default::default()
        };
        let either = p.or(q);
        assert_eq!(either.partitions, Some([0, 2].into()));
        assert_eq!((either.min_offset, either.end_offset), (None, None));
    }

    #[test]
    fn min_partitions_splits_in_proportion() {
        let ranges = vec![
            PartitionRange {
                tp: TopicPartition::new("t", 0),
                start: 0,
                end: 90,
            },
            PartitionRange {
                tp: TopicPartition::new("t", 1),
                start: 0,
                end: 10,
            },
        ];
        let split = split_ranges(ranges.clone(), Some(10));
        assert_eq!(split.len(), 10);
        assert_eq!(split.iter().filter(|r| r.tp.partition == 0).count(), 9);
        let covered: i64 = split.iter().map(PartitionRange::len).sum();
        assert_eq!(covered, 100);
        for pair in split.windows(2).filter(|w| w[0].tp == w[1].tp) {
            assert_eq!(pair[0].end, pair[1].start, "parts are contiguous");
        }
        assert_eq!(split_ranges(ranges.clone(), Some(2)), ranges);
        assert_eq!(split_ranges(ranges.clone(), None), ranges);
    }
}
