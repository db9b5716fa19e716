//! Progress of long work in the terminal: a bar of records read of the records to read, with
//! rate and ETA, for a bounded query and for an `availableNow` or `once` drain. The bar is drawn
//! on standard error when it is a terminal; otherwise a plain line every few seconds says the
//! same. Batch lines and other messages go through [`Console`], printed above the bar.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stream::QueryHandle;

/// How often the figures are read.
const TICK: Duration = Duration::from_millis(100);
/// Work shorter than this shows no progress at all.
const SHOW_AFTER: Duration = Duration::from_millis(500);
/// Without a terminal, a plain progress line this often.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The bar being drawn, if any: lines printed meanwhile go above it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Where the command's messages go: above the progress bar when one is drawn.
#[derive(Debug, Clone, Copy)]
pub struct Console;

impl Console {
    /// Prints `text` as a line on standard error.
    pub fn line(text: &str) {
        match ACTIVE.lock().ok().and_then(|bar| bar.clone()) {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

/// Awaits `work` while showing, every tick, the (records read, records to read) that `sample`
/// gives; `None` when Ctrl-C is pressed first.
pub async fn watched<T>(
    work: impl Future<Output = T>,
    what: String,
    mut sample: impl FnMut() -> (u64, u64),
) -> Option<T> {
    let mut progress = Progress::new(what);
    tokio::pin!(work);
    let mut ticks = tokio::time::interval(TICK);
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break Some(outcome),
            _ = tokio::signal::ctrl_c() => break None,
            _ = ticks.tick() => {
                let (read, total) = sample();
                progress.show(read, total);
            }
        }
    };
    progress.finish();
    outcome
}

/// Records read of records to read, shown as a bar or as plain lines.
#[derive(Debug)]
struct Progress {
    what: String,
    started: Instant,
    bar: Option<ProgressBar>,
    last_plain: Instant,
    shown: bool,
}

impl Progress {
    /// Progress of `what` (a query or statement), not shown until it has run a moment.
    fn new(what: impl Into<String>) -> Self {
        let now = Instant::now();
        Self {
            what: what.into(),
            started: now,
            bar: None,
            last_plain: now,
            shown: false,
        }
    }

    /// `read` of `total` records are read.
    fn show(&mut self, read: u64, total: u64) {
        if total == 0 || self.started.elapsed() < SHOW_AFTER {
            return;
        }
        let read = read.min(total);
        if !std::io::stderr().is_terminal() {
            self.plain_line(read, total);
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(bar_style())
                .with_message(self.what.clone());
            if let Ok(mut active) = ACTIVE.lock() {
                *active = Some(bar.clone());
            }
            bar
        });
        bar.set_length(total);
        bar.set_position(read);
    }

    fn plain_line(&mut self, read: u64, total: u64) {
        if self.shown && self.last_plain.elapsed() < PLAIN_EVERY {
            return;
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = read as f64 / seconds.max(0.001);
        let eta = if rate > 0.0 {
            format!(", about {:.0} s left", (total - read) as f64 / rate)
        } else {
            String::new()
        };
        eprintln!(
            "{}: read {read} of {total} records ({:.0}%, {rate:.0} records/s{eta})",
            self.what,
            100.0 * read as f64 / total as f64
        );
        self.shown = true;
        self.last_plain = Instant::now();
    }

    /// Takes the bar off the screen.
    fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            if let Ok(mut active) = ACTIVE.lock() {
                *active = None;
            }
        }
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{msg} [{bar:40}] {human_pos}/{human_len} records ({per_sec}, ETA {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// How far a draining streaming query has read: the records of the batches it ran, of those
/// plus what its latest batch left behind.
#[derive(Debug, Default)]
pub struct DrainCount {
    read: u64,
    last_batch: Option<u64>,
}

impl DrainCount {
    /// (records read, records to read) as of the query's latest reports.
    pub fn update(&mut self, query: &QueryHandle) -> (u64, u64) {
        let mut lag = 0;
        for progress in query.recent_progress() {
            if self.last_batch.is_none_or(|last| progress.batch_id > last) {
                self.read += progress.num_input_rows;
                self.last_batch = Some(progress.batch_id);
            }
            lag = progress.total_lag().max(0) as u64;
        }
        (self.read, self.read + lag)
    }
}
