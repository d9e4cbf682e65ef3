//! When to emit an offset sync (MM2's OffsetSyncWriter rules, MM2-COMPAT §4.6).
//!
//! Called for every record the target acknowledged, with its source offset `U` and target
//! offset `D`. A sync is due for the first record, when `D` moved `offset.lag.max` past the last
//! sync, when the source offsets jump (filtered records, compaction, transaction markers, a
//! rewind), and when the target offsets go backwards (truncation). A due sync replaces any
//! pending one; otherwise the record becomes the partition's "delayed" sync, which is promoted
//! to pending at every progress flush so that the tail of a quiet partition is synced too.

/// Emission state of one partition.
#[derive(Clone, Debug)]
pub struct SyncWriter {
    lag_max: i64,
    prev_u: i64,
    prev_d: i64,
    last_sync_d: i64,
    pending: Option<(i64, i64)>,
    delayed: Option<(i64, i64)>,
}

impl SyncWriter {
    /// A writer with `offset.lag.max = lag_max`.
    pub fn new(lag_max: i64) -> Self {
        Self {
            lag_max,
            prev_u: -1,
            prev_d: -1,
            last_sync_d: -1,
            pending: None,
            delayed: None,
        }
    }

    /// Records that the record at source offset `u` is at target offset `d`. Returns whether a
    /// sync became due.
    pub fn update(&mut self, u: i64, d: i64) -> bool {
        let due = self.last_sync_d == -1
            || d.saturating_sub(self.last_sync_d.saturating_add(1)) >= self.lag_max
            || u.wrapping_sub(self.prev_u) != 1
            || d < self.prev_d;
        if due {
            self.last_sync_d = d;
            self.pending = Some((u, d));
            self.delayed = None;
        } else {
            self.delayed = Some((u, d));
        }
        self.prev_u = u;
        self.prev_d = d;
        due
    }

    /// Moves the delayed sync to pending (MM2 does this at every offset commit).
    pub fn promote_delayed(&mut self) {
        if let Some(s) = self.delayed.take() {
            self.pending = Some(s);
        }
    }

    /// Whether a sync is waiting to be sent.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes the pending sync, if any.
    pub fn take_pending(&mut self) -> Option<(i64, i64)> {
        self.pending.take()
    }

    /// Puts a sync back (it could not be sent now) unless a newer one is pending.
    pub fn restore_pending(&mut self, sync: (i64, i64)) {
        if self.pending.is_none() {
            self.pending = Some(sync);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MirrorSourceTaskTest's vectors with offset.lag.max = 50.
    #[test]
    fn mm2_sync_writer_vectors() {
        let mut w = SyncWriter::new(50);
        let steps = [
            ((0, 100), true),
            ((2, 102), true),
            ((3, 152), false),
            ((4, 153), true),
            ((5, 154), false),
            ((6, 203), false),
            ((7, 204), true),
            ((2, 206), true),
            ((3, 207), false),
            ((4, 3), true),
        ];
        for ((u, d), due) in steps {
            assert_eq!(w.update(u, d), due, "update({u}, {d})");
        }
    }

    #[test]
    fn lag_zero_syncs_every_record_and_delayed_tail_is_promoted() {
        let mut w = SyncWriter::new(0);
        for i in 0..5 {
            assert!(w.update(i, i));
        }
        let mut w = SyncWriter::new(100);
        assert!(w.update(0, 0));
        assert_eq!(w.take_pending(), Some((0, 0)));
        assert!(!w.update(1, 1));
        assert_eq!(w.take_pending(), None);
        w.promote_delayed();
        assert_eq!(w.take_pending(), Some((1, 1)));
    }
}
