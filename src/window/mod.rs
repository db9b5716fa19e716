//! Event-time windows: the `tumble`, `hop` and `session` table functions, which add
//! `window_start` and `window_end` columns to a table's rows.
//!
//! ```sql
//! SELECT window_start, window_end, auction, count(*)
//! FROM tumble(bids, ts, INTERVAL '10' SECOND)
//! GROUP BY window_start, window_end, auction;
//! ```
//!
//! - `tumble(table, time_column, size)`: each row is in the one window `[start, start + size)`
//!   with `start` a multiple of `size` (counted from 1970-01-01 UTC).
//! - `hop(table, time_column, slide, size)`: each row is in every window `[start, start + size)`
//!   with `start` a multiple of `slide` that contains it (`size / slide` windows; `size` must be
//!   a multiple of `slide`, and at most [`exec::MAX_HOP_WINDOWS`] times it).
//! - `session(table, time_column, gap, key_column [, key_column …])`: per key, rows less than
//!   `gap` apart form one session window `[first time, last time + gap)`.
//!
//! Rows whose time is NULL belong to no window and are dropped (counted in the
//! `null_time_records` metric). The modules: [`functions`] (the SQL functions and their
//! arguments), [`table`] ([`WindowedTable`], the table they return), [`exec`]
//! ([`WindowAssignExec`], the plan node that assigns windows) and [`assign`] (the vectorised
//! window arithmetic on Arrow arrays).

pub mod assign;
pub mod exec;
pub mod functions;
pub mod table;

use std::fmt;
use std::time::Duration;

pub use assign::assign_sessions;
pub use exec::{WindowAssignExec, sum_metric};
pub use functions::{HopFunction, SessionFunction, TumbleFunction};
pub use table::WindowedTable;

/// The name of the column holding a row's window start.
pub const WINDOW_START: &str = "window_start";
/// The name of the column holding a row's window end (exclusive).
pub const WINDOW_END: &str = "window_end";

/// Names of the metrics a [`WindowAssignExec`] reports.
pub mod metric {
    /// Rows dropped because every window they belong to ended at or before the watermark.
    pub const LATE_RECORDS: &str = "late_records";
    /// Rows dropped because their time column is NULL.
    pub const NULL_TIME_RECORDS: &str = "null_time_records";
}

/// Which windows rows are assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumble {
        /// The length of each window.
        size: Duration,
    },
    /// Fixed windows of `size` starting every `slide` (`size` is a multiple of `slide`).
    Hop {
        /// The distance between window starts.
        slide: Duration,
        /// The length of each window.
        size: Duration,
    },
    /// Per key, rows less than `gap` apart share a window.
    Session {
        /// The inactivity that closes a session.
        gap: Duration,
        /// The columns whose values key the sessions.
        keys: Vec<String>,
    },
}

impl WindowKind {
    /// The SQL function that makes windows of this kind, for messages.
    pub fn function_name(&self) -> &'static str {
        match self {
            WindowKind::Tumble { .. } => "tumble",
            WindowKind::Hop { .. } => "hop",
            WindowKind::Session { .. } => "session",
        }
    }

    /// The session key columns (none for tumbling and hopping windows).
    pub fn keys(&self) -> &[String] {
        match self {
            WindowKind::Session { keys, .. } => keys,
            _ => &[],
        }
    }
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowKind::Tumble { size } => write!(f, "tumble(size={size:?})"),
            WindowKind::Hop { slide, size } => write!(f, "hop(slide={slide:?}, size={size:?})"),
            WindowKind::Session { gap, keys } => {
                write!(f, "session(gap={gap:?}, keys=[{}])", keys.join(", "))
            }
        }
    }
}
