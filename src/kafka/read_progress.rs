//! How far the session's bounded Kafka reads have come: the offsets their scans were planned
//! to read and the offsets read so far, for the runner's progress bar. Streaming slices are not
//! counted here (their progress is in their batch reports); a bounded table a streaming query
//! joins is. A scan that fails or is stopped early (a LIMIT above it) never reaches its plan.

use std::sync::atomic::{AtomicU64, Ordering};

/// Offsets planned and read by bounded scans, since the session started. A session config
/// extension: scans find it through their task context.
#[derive(Debug, Default)]
pub struct ReadProgress {
    planned: AtomicU64,
    read: AtomicU64,
}

impl ReadProgress {
    /// A scan is about to read `offsets` more offsets.
    pub fn plan(&self, offsets: u64) {
        self.planned.fetch_add(offsets, Ordering::Relaxed);
    }

    /// A scan moved past `offsets` more offsets (records, and gaps such as transaction markers).
    pub fn advance(&self, offsets: u64) {
        self.read.fetch_add(offsets, Ordering::Relaxed);
    }

    /// The offsets planned and read so far.
    pub fn totals(&self) -> ReadTotals {
        ReadTotals {
            planned: self.planned.load(Ordering::Relaxed),
            read: self.read.load(Ordering::Relaxed),
        }
    }
}

/// Offsets bounded scans were planned to read, and have read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadTotals {
    /// Offsets the scans were planned over.
    pub planned: u64,
    /// Offsets they moved past (at most `planned`, once every scan has finished).
    pub read: u64,
}

impl ReadTotals {
    /// What was read since `earlier`.
    pub fn since(self, earlier: ReadTotals) -> ReadTotals {
        ReadTotals {
            planned: self.planned.saturating_sub(earlier.planned),
            read: self.read.saturating_sub(earlier.read),
        }
    }
}
