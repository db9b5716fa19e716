//! When a stateful query saves its operators' whole state (a snapshot) rather than what a batch
//! changed, and which saved state the checkpoint may delete: state older than the latest
//! snapshot that every batch still kept (`checkpointRetention`) can be restored from.

use std::collections::VecDeque;
use std::ops::Range;

/// Spark's default `spark.sql.streaming.stateStore.minDeltasForSnapshot`.
pub const DEFAULT_DELTAS_PER_SNAPSHOT: u64 = 10;

/// The snapshots a running query knows of, and how far its saved state is purged.
#[derive(Debug)]
pub struct Snapshots {
    /// A snapshot once this many batches have saved only their changes since the last one.
    deltas_per_snapshot: u64,
    /// Batches with a snapshot, oldest first: the one restored from and those written since.
    known: VecDeque<u64>,
    /// State before this batch is deleted.
    purged_below: Option<u64>,
}

impl Snapshots {
    /// No snapshot known yet.
    pub fn new(deltas_per_snapshot: u64) -> Self {
        Self {
            deltas_per_snapshot: deltas_per_snapshot.max(1),
            known: VecDeque::new(),
            purged_below: None,
        }
    }

    /// The state was restored from the snapshot of batch `batch`.
    pub fn restored_from(&mut self, batch: u64) {
        self.known.clear();
        self.known.push_back(batch);
    }

    /// Whether batch `batch` saves a snapshot: the first batch with state, and the first
    /// after `deltas_per_snapshot` batches of changes (as Spark's `minDeltasForSnapshot`).
    pub fn is_snapshot(&self, batch: u64) -> bool {
        self.known
            .back()
            .is_none_or(|last| batch > last.saturating_add(self.deltas_per_snapshot))
    }

    /// Batch `batch` saved a snapshot.
    pub fn saved(&mut self, batch: u64) {
        if self.known.back().is_none_or(|last| *last < batch) {
            self.known.push_back(batch);
        }
    }

    /// The latest snapshot at or before `oldest_kept` (the oldest batch a restart may restore):
    /// state before it is not needed.
    pub fn floor(&self, oldest_kept: u64) -> Option<u64> {
        self.known
            .iter()
            .rev()
            .find(|s| **s <= oldest_kept)
            .copied()
    }

    /// The batches whose state may be deleted now that `oldest_kept` is the oldest kept batch
    /// (none the first time: older leftovers are the listing purge's).
    pub fn purgeable(&mut self, oldest_kept: u64) -> Range<u64> {
        let Some(floor) = self.floor(oldest_kept) else {
            return 0..0;
        };
        while self.known.front().is_some_and(|s| *s < floor) {
            self.known.pop_front();
        }
        let from = self.purged_below.replace(floor).unwrap_or(floor);
        from..floor.max(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_come_every_so_many_batches_and_bound_what_is_purged() {
        let mut snapshots = Snapshots::new(2);
        assert!(snapshots.is_snapshot(0));
        snapshots.saved(0);
        assert!(!snapshots.is_snapshot(1) && !snapshots.is_snapshot(2));
        assert!(snapshots.is_snapshot(3));
        snapshots.saved(3);
        snapshots.saved(6);
        // Batches 5.. kept: the snapshot at 3 is still needed.
        assert_eq!(snapshots.floor(5), Some(3));
        assert_eq!(snapshots.purgeable(5), 3..3);
        // Batches 7.. kept: state before 6 goes.
        assert_eq!(snapshots.purgeable(7), 3..6);
        assert_eq!(snapshots.purgeable(8), 6..6);
        assert_eq!(snapshots.floor(2), None);
    }

    #[test]
    fn a_restore_starts_from_the_snapshot_it_read() {
        let mut snapshots = Snapshots::new(10);
        snapshots.restored_from(40);
        assert!(!snapshots.is_snapshot(50));
        assert!(snapshots.is_snapshot(51));
        assert_eq!(snapshots.purgeable(20), 0..0);
    }
}
