//! The process's own metrics, named as Prometheus's client libraries name them
//! (`weir_process_*` here, under weir's prefix): CPU time, memory, threads, open files and start
//! time, read from `/proc/self` on Linux and left at zero elsewhere.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The `process_*` metrics, refreshed at each scrape.
#[derive(Debug, Default)]
pub struct ProcessMetrics {
    cpu_seconds: Counter<f64, AtomicU64>,
    resident_bytes: Gauge,
    virtual_bytes: Gauge,
    threads: Gauge,
    open_fds: Gauge,
    start_time: Gauge<f64, AtomicU64>,
}

impl ProcessMetrics {
    /// Registers the metrics under `registry` (prefixed `process`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "cpu",
            "User and system CPU time the process used",
            Unit::Seconds,
            self.cpu_seconds.clone(),
        );
        registry.register_with_unit(
            "resident_memory",
            "Resident memory size",
            Unit::Bytes,
            self.resident_bytes.clone(),
        );
        registry.register_with_unit(
            "virtual_memory",
            "Virtual memory size",
            Unit::Bytes,
            self.virtual_bytes.clone(),
        );
        registry.register("threads", "Threads of the process", self.threads.clone());
        registry.register("open_fds", "Open file descriptors", self.open_fds.clone());
        registry.register_with_unit(
            "start_time",
            "When the process started, since the epoch",
            Unit::Seconds,
            self.start_time.clone(),
        );
    }

    /// Reads the figures as they are now.
    pub fn refresh(&self) {
        let Some(stat) = read_stat() else {
            return;
        };
        let ticks = clock_ticks_per_second();
        let cpu = (stat.utime + stat.stime) as f64 / ticks;
        let counted = self.cpu_seconds.get();
        if cpu > counted {
            self.cpu_seconds.inc_by(cpu - counted);
        }
        self.resident_bytes.set(stat.rss_pages * page_size());
        self.virtual_bytes.set(stat.vsize);
        self.threads.set(stat.threads);
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // Less the descriptor of the listing itself.
            self.open_fds.set(entries.count() as i64 - 1);
        }
        if let Some(boot) = boot_time() {
            self.start_time.set(boot + stat.start_ticks as f64 / ticks);
        }
    }
}

/// The fields of `/proc/self/stat` used here.
struct Stat {
    utime: u64,
    stime: u64,
    threads: i64,
    start_ticks: u64,
    vsize: i64,
    rss_pages: i64,
}

fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: the fields after it follow its ')'.
    let after_name = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field n of proc(5) is fields[n - 3] here.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<i64>().ok());
    Some(Stat {
        utime: field(14)? as u64,
        stime: field(15)? as u64,
        threads: field(20)?,
        start_ticks: field(22)? as u64,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|s| s.trim().parse().ok())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn page_size() -> i64 {
    // SAFETY: sysconf only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as i64 } else { 4096 }
}
