//! What each batch of a streaming query reports, like Spark's StreamingQueryProgress.

use serde::Serialize;

/// One partition's part in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionProgress {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset of the batch.
    pub start_offset: i64,
    /// First offset after the batch.
    pub end_offset: i64,
    /// The partition's latest offset when the batch was planned.
    pub latest_offset: i64,
    /// Offsets not yet read: latest minus end.
    pub lag: i64,
}

/// One source table's part in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceProgress {
    /// Source table.
    pub table: String,
    /// Its partitions.
    pub partitions: Vec<PartitionProgress>,
    /// Offsets skipped as lost (failOnDataLoss false).
    pub lost_offsets: i64,
}

/// How long the parts of a batch took, in milliseconds (to the microsecond).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Durations {
    /// Planning the slice (asking the brokers for the latest offsets), writing `offsets/N`,
    /// and planning the query over the slice.
    pub plan_ms: f64,
    /// Fetching and decoding records from Kafka: the longest of the readers, which run side
    /// by side.
    pub read_ms: f64,
    /// Processing the rows (operators, state) and saving state: the time of the batch's
    /// execution that was neither reading nor the sink's.
    pub execute_ms: f64,
    /// The sink's own time: writing the rows and committing them (a transaction, a file, a
    /// database commit).
    pub sink_ms: f64,
    /// Writing `commits/N` (and committing offsets to the consumer group, if asked).
    pub commit_ms: f64,
    /// The whole batch.
    pub total_ms: f64,
}

/// `duration` in milliseconds, to the microsecond.
pub fn millis(duration: std::time::Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// The report of one batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryProgress {
    /// Query id (fixed in the checkpoint).
    pub id: String,
    /// Query name.
    pub name: String,
    /// Batch id.
    pub batch_id: u64,
    /// When the batch started (ms since the epoch).
    pub timestamp_ms: i64,
    /// Records read from Kafka.
    pub num_input_rows: u64,
    /// Rows written to the sink.
    pub num_output_rows: u64,
    /// Input rows per second since the previous batch started.
    pub input_rows_per_second: f64,
    /// Input rows per second of this batch's own duration.
    pub processed_rows_per_second: f64,
    /// How long it took.
    pub durations: Durations,
    /// Per source and partition: offsets and lag.
    pub sources: Vec<SourceProgress>,
    /// The sink.
    pub sink: String,
    /// True when the batch re-ran an uncommitted batch after a restart.
    pub replayed: bool,
    /// Event time: the watermark and what stateful operators hold.
    pub event_time: EventTimeProgress,
}

/// The event-time part of a batch's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTimeProgress {
    /// The watermark the batch ran with (ms since the epoch).
    pub watermark_ms: Option<i64>,
    /// The watermark after the batch.
    pub next_watermark_ms: Option<i64>,
    /// Rows dropped because their windows had already been emitted.
    pub late_rows: u64,
    /// Rows held in state after the batch (partial aggregates, buffered rows).
    pub state_rows: u64,
    /// Memory those rows take.
    pub state_bytes: u64,
}

impl QueryProgress {
    /// Offsets not yet read, over all sources.
    pub fn total_lag(&self) -> i64 {
        self.sources
            .iter()
            .flat_map(|s| &s.partitions)
            .map(|p| p.lag)
            .sum()
    }

    /// One line for logs and the runner.
    pub fn summary(&self) -> String {
        let event_time = match self.event_time.next_watermark_ms {
            Some(watermark) => format!(
                ", watermark {}, {} late, state {} rows / {} bytes",
                arrow::temporal_conversions::timestamp_ms_to_datetime(watermark).map_or_else(
                    || format!("{watermark} ms"),
                    |t| t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
                ),
                self.event_time.late_rows,
                self.event_time.state_rows,
                self.event_time.state_bytes
            ),
            None => String::new(),
        };
        format!(
            "query {} batch {}: {} rows in {:.1} ms (plan {:.1}, read {:.1}, run {:.1}, sink {:.1}, commit {:.1}; {:.0} rows/s), lag {}{event_time}{}",
            self.name,
            self.batch_id,
            self.num_input_rows,
            self.durations.total_ms,
            self.durations.plan_ms,
            self.durations.read_ms,
            self.durations.execute_ms,
            self.durations.sink_ms,
            self.durations.commit_ms,
            self.processed_rows_per_second,
            self.total_lag(),
            if self.replayed {
                " (replayed after restart)"
            } else {
                ""
            }
        )
    }
}
