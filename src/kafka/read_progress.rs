//! How far the session's bounded Kafka reads have come: the offsets their scans were planned
//! to read and the offsets read so far, for the runner's progress bar. Streaming batches are
//! not counted here; their progress is in their batch reports.

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

    /// (offsets planned, offsets read) so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.planned.load(Ordering::Relaxed),
            self.read.load(Ordering::Relaxed),
        )
    }
}
