//! Prometheus metrics of the session's streaming queries and of the process, in the OpenMetrics
//! text format (`/metrics`). Batch counters and histograms are recorded as each batch reports;
//! statuses, failures and the process's own figures are read when scraped.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::process;
use crate::queries::QueryRegistry;
use crate::stream::QueryProgress;
use crate::stream::query::QueryStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    query: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    query: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    query: String,
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    query: String,
    status: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type Histograms = Family<QueryLabels, Histogram, fn() -> Histogram>;

/// Batch durations from 0.5 ms to about 16 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics, and the registry that writes them out.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    input_rows: Family<QueryLabels, Counter>,
    output_rows: Family<QueryLabels, Counter>,
    batches: Family<QueryLabels, Counter>,
    replayed_batches: Family<QueryLabels, Counter>,
    late_rows: Family<QueryLabels, Counter>,
    lost_offsets: Family<QueryLabels, Counter>,
    batch_duration: Histograms,
    sink_duration: Histograms,
    phase_seconds: Family<PhaseLabels, Counter<f64, AtomicU64>>,
    latest_batch: Family<QueryLabels, Gauge>,
    input_rate: Family<QueryLabels, FloatGauge>,
    processed_rate: Family<QueryLabels, FloatGauge>,
    lag: Family<PartitionLabels, Gauge>,
    watermark: Family<QueryLabels, FloatGauge>,
    state_rows: Family<QueryLabels, Gauge>,
    state_bytes: Family<QueryLabels, Gauge>,
    status: Family<StatusLabels, Gauge>,
    failures: Family<QueryLabels, Counter>,
    /// Runs (by run id) already counted in `failures`; held through a scrape, so that scrapes
    /// at the same moment do not interleave their updates.
    failed_runs: Mutex<HashSet<String>>,
    process: process::ProcessMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("weir"),
            input_rows: Family::default(),
            output_rows: Family::default(),
            batches: Family::default(),
            replayed_batches: Family::default(),
            late_rows: Family::default(),
            lost_offsets: Family::default(),
            batch_duration: Family::new_with_constructor(duration_histogram),
            sink_duration: Family::new_with_constructor(duration_histogram),
            phase_seconds: Family::default(),
            latest_batch: Family::default(),
            input_rate: Family::default(),
            processed_rate: Family::default(),
            lag: Family::default(),
            watermark: Family::default(),
            state_rows: Family::default(),
            state_bytes: Family::default(),
            status: Family::default(),
            failures: Family::default(),
            failed_runs: Mutex::default(),
            process: process::ProcessMetrics::default(),
        };
        metrics.register();
        metrics
    }
}

impl Metrics {
    fn register(&mut self) {
        self.register_totals();
        self.register_durations();
        self.register_latest();
        let process = self.registry.sub_registry_with_prefix("process");
        self.process.register(process);
    }

    /// Counters over every batch.
    fn register_totals(&mut self) {
        let r = &mut self.registry;
        r.register(
            "query_input_rows",
            "Records read from Kafka",
            self.input_rows.clone(),
        );
        r.register(
            "query_output_rows",
            "Rows written to the sink",
            self.output_rows.clone(),
        );
        r.register("query_batches", "Batches committed", self.batches.clone());
        r.register(
            "query_replayed_batches",
            "Batches re-run after a restart because their commit was not recorded",
            self.replayed_batches.clone(),
        );
        r.register(
            "query_late_rows",
            "Rows dropped because their window had already been emitted",
            self.late_rows.clone(),
        );
        r.register(
            "query_lost_offsets",
            "Offsets skipped as deleted from the broker (failOnDataLoss false)",
            self.lost_offsets.clone(),
        );
        r.register(
            "query_failures",
            "Times the query failed",
            self.failures.clone(),
        );
    }

    /// How long batches and their phases took.
    fn register_durations(&mut self) {
        let r = &mut self.registry;
        r.register_with_unit(
            "query_batch_duration",
            "Duration of a batch, from planning its slice to its commit",
            Unit::Seconds,
            self.batch_duration.clone(),
        );
        r.register_with_unit(
            "query_sink_commit_duration",
            "Time the sink spent writing and committing a batch",
            Unit::Seconds,
            self.sink_duration.clone(),
        );
        r.register_with_unit(
            "query_phase",
            "Time spent in each phase of the batches: plan, read, execute, sink, commit",
            Unit::Seconds,
            self.phase_seconds.clone(),
        );
    }

    /// What the latest batch reported, and the query's status.
    fn register_latest(&mut self) {
        let r = &mut self.registry;
        r.register(
            "query_latest_batch",
            "Id of the latest batch",
            self.latest_batch.clone(),
        );
        r.register(
            "query_input_rows_per_second",
            "Input rate of the latest batch, since the batch before it started",
            self.input_rate.clone(),
        );
        r.register(
            "query_processed_rows_per_second",
            "Rows per second of the latest batch's own duration",
            self.processed_rate.clone(),
        );
        r.register(
            "query_lag_offsets",
            "Offsets not yet read of a partition, when the latest batch was planned",
            self.lag.clone(),
        );
        r.register_with_unit(
            "query_watermark",
            "Event-time watermark after the latest batch, since the epoch",
            Unit::Seconds,
            self.watermark.clone(),
        );
        r.register(
            "query_state_rows",
            "Rows held by stateful operators",
            self.state_rows.clone(),
        );
        r.register_with_unit(
            "query_state",
            "Memory held by stateful operators",
            Unit::Bytes,
            self.state_bytes.clone(),
        );
        r.register(
            "query_status",
            "1 for the query's current status (running, finished, stopped, failed)",
            self.status.clone(),
        );
    }

    /// Records one batch's report.
    pub fn record(&self, progress: &QueryProgress) {
        let query = QueryLabels {
            query: progress.name.clone(),
        };
        self.record_totals(&query, progress);
        self.record_durations(&query, progress);
        self.record_latest(&query, progress);
    }

    fn record_totals(&self, query: &QueryLabels, progress: &QueryProgress) {
        self.input_rows
            .get_or_create(query)
            .inc_by(progress.num_input_rows);
        self.output_rows
            .get_or_create(query)
            .inc_by(progress.num_output_rows);
        self.batches.get_or_create(query).inc();
        let replayed = self.replayed_batches.get_or_create_owned(query);
        if progress.replayed {
            replayed.inc();
        }
        let lost: i64 = progress.sources.iter().map(|s| s.lost_offsets).sum();
        self.lost_offsets
            .get_or_create(query)
            .inc_by(lost.max(0) as u64);
        self.late_rows
            .get_or_create(query)
            .inc_by(progress.event_time.late_rows);
    }

    fn record_durations(&self, query: &QueryLabels, progress: &QueryProgress) {
        let durations = &progress.durations;
        self.batch_duration
            .get_or_create(query)
            .observe(durations.total_ms / 1000.0);
        self.sink_duration
            .get_or_create(query)
            .observe(durations.sink_ms / 1000.0);
        for (phase, ms) in [
            ("plan", durations.plan_ms),
            ("read", durations.read_ms),
            ("execute", durations.execute_ms),
            ("sink", durations.sink_ms),
            ("commit", durations.commit_ms),
        ] {
            let labels = PhaseLabels {
                query: progress.name.clone(),
                phase,
            };
            self.phase_seconds
                .get_or_create(&labels)
                .inc_by(ms / 1000.0);
        }
    }

    fn record_latest(&self, query: &QueryLabels, progress: &QueryProgress) {
        self.latest_batch
            .get_or_create(query)
            .set(progress.batch_id as i64);
        self.input_rate
            .get_or_create(query)
            .set(progress.input_rows_per_second);
        self.processed_rate
            .get_or_create(query)
            .set(progress.processed_rows_per_second);
        for partition in progress.sources.iter().flat_map(|s| &s.partitions) {
            let labels = PartitionLabels {
                query: progress.name.clone(),
                topic: partition.topic.clone(),
                partition: partition.partition,
            };
            self.lag.get_or_create(&labels).set(partition.lag);
        }
        if let Some(watermark) = progress.event_time.next_watermark_ms {
            self.watermark
                .get_or_create(query)
                .set(watermark as f64 / 1000.0);
        }
        self.state_rows
            .get_or_create(query)
            .set(progress.event_time.state_rows as i64);
        self.state_bytes
            .get_or_create(query)
            .set(progress.event_time.state_bytes as i64);
    }

    /// The metrics in Prometheus's text format, with the queries' statuses as they are now.
    pub fn render(&self, queries: &QueryRegistry) -> String {
        let Ok(mut counted) = self.failed_runs.lock() else {
            return "# the metrics could not be read: a scrape failed\n".to_string();
        };
        self.status.clear();
        for query in queries.all() {
            let status = query.status();
            let labels = StatusLabels {
                query: query.name().to_string(),
                status: status.label(),
            };
            self.status.get_or_create(&labels).set(1);
            let failures = self.failures.get_or_create(&QueryLabels {
                query: query.name().to_string(),
            });
            if let QueryStatus::Failed(_) = status
                && counted.insert(query.run_id().to_string())
            {
                failures.inc();
            }
        }
        self.process.refresh();
        let mut text = String::new();
        let written = encode(&mut text, &self.registry);
        drop(counted);
        match written {
            Ok(()) => text,
            Err(_) => "# the metrics could not be written\n".to_string(),
        }
    }
}
