//! Per-partition bookkeeping of the replication pipeline.
//!
//! A [`PartitionTracker`] follows one source partition: records handed to the producer, the
//! target's acknowledgements, and failures. Its [`PartitionTracker::progress`] is the next source
//! offset such that every record before it was acknowledged by the target: the only position
//! that may be recorded as done. The idempotent producer reports deliveries of one partition in
//! order; the tracker still never moves progress backwards and freezes it at the first failure,
//! so a record can be copied twice but never skipped.

use crate::types::Offset;

/// The life of a partition pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipelineState {
    /// Copying.
    Running,
    /// No longer fetching; waiting for in-flight records to be acknowledged before release.
    Draining,
    /// Stopped by an error that retrying cannot fix; progress is frozen at `at`.
    Failed {
        /// The first source offset that could not be copied.
        at: Offset,
        /// The cause, for logs and health checks.
        reason: String,
    },
}

/// What a delivery report did to the partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// Progress moved.
    Advanced,
    /// Nothing changed (a report after a failure, or a stale report).
    Ignored,
}

/// Bookkeeping for one source partition.
#[derive(Clone, Debug)]
pub struct PartitionTracker {
    state: PipelineState,
    acked_next: Offset,
    fetch_next: Offset,
    in_flight: u64,
    persisted: Option<Offset>,
    copied: u64,
    /// The position was anchored (see [`PartitionTracker::anchor`]): store it.
    anchored: bool,
    /// Records not copied on purpose (see [`PartitionTracker::on_skipped`]) up to here, while
    /// records before them are still in flight.
    skipped_next: Option<Offset>,
}

impl PartitionTracker {
    /// Starts tracking at `next`, the first source offset to copy. `persisted` is the progress
    /// already stored (so an unchanged position is not written again).
    pub fn new(next: Offset, persisted: Option<Offset>) -> Self {
        Self {
            state: PipelineState::Running,
            acked_next: next,
            fetch_next: next,
            in_flight: 0,
            persisted,
            copied: 0,
            anchored: false,
            skipped_next: None,
        }
    }

    /// The pipeline state.
    pub fn state(&self) -> &PipelineState {
        &self.state
    }

    /// Whether records of this partition should still be fetched and produced.
    pub fn is_running(&self) -> bool {
        self.state == PipelineState::Running
    }

    /// The next source offset expected from the consumer.
    pub fn fetch_next(&self) -> Offset {
        self.fetch_next
    }

    /// A record at `offset` was handed to the producer.
    pub fn on_produced(&mut self, offset: Offset) {
        self.in_flight += 1;
        self.fetch_next = offset.next();
    }

    /// The record at `offset` could not even be queued (the producer refused it locally).
    /// Nothing is in flight for it; the partition fails at `offset`.
    pub fn on_rejected(&mut self, offset: Offset, reason: String) {
        self.fail(offset, reason);
    }

    /// The target acknowledged the record at `offset`.
    pub fn on_acked(&mut self, offset: Offset) -> AckOutcome {
        self.in_flight = self.in_flight.saturating_sub(1);
        // After a failure, records before the failed one still count: they were produced
        // earlier and are acknowledged in order. Nothing at or after it does.
        let beyond_failure = matches!(self.state, PipelineState::Failed { at, .. } if offset >= at);
        if beyond_failure || offset < self.acked_next {
            return AckOutcome::Ignored;
        }
        self.acked_next = offset.next();
        self.copied += 1;
        if self.in_flight == 0 {
            if let Some(skipped) = self.skipped_next.take() {
                self.acked_next = self.acked_next.max(skipped);
            }
        }
        AckOutcome::Advanced
    }

    /// The record at `offset` is not copied, on purpose (it came from the target cluster: see
    /// [`crate::provenance`]). It counts as done as soon as every record before it is
    /// acknowledged, so that a partition whose last records are not copied still reaches the
    /// source's end.
    pub fn on_skipped(&mut self, offset: Offset) {
        self.fetch_next = offset.next();
        if self.in_flight == 0 {
            if offset >= self.acked_next {
                self.acked_next = offset.next();
                self.anchored = true;
            }
        } else {
            self.skipped_next = Some(offset.next());
        }
    }

    /// Delivery of the record at `offset` failed for good. Returns `true` if this is the
    /// partition's first failure (the caller logs it once).
    pub fn on_failed(&mut self, offset: Offset, reason: String) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.fail(offset, reason)
    }

    fn fail(&mut self, offset: Offset, reason: String) -> bool {
        self.skipped_next = None;
        if let PipelineState::Failed { at, .. } = &mut self.state {
            // An earlier record failed too (it was still in flight): progress stops there.
            if offset < *at {
                *at = offset;
                self.acked_next = self.acked_next.min(offset);
            }
            return false;
        }
        self.acked_next = self.acked_next.min(offset);
        self.state = PipelineState::Failed { at: offset, reason };
        true
    }

    /// Runs again after a retriable failure, from the progress (the caller seeks there).
    /// Counters and the stored position are kept. Returns the offset to fetch from.
    pub fn restart(&mut self) -> Offset {
        self.state = PipelineState::Running;
        self.skipped_next = None;
        self.fetch_next = self.acked_next;
        self.acked_next
    }

    /// Stop fetching: the partition is being released or kmirror is shutting down.
    pub fn start_draining(&mut self) {
        if self.state == PipelineState::Running {
            self.state = PipelineState::Draining;
        }
    }

    /// Whether no record is waiting for an acknowledgement.
    pub fn is_drained(&self) -> bool {
        self.in_flight == 0
    }

    /// Records waiting for an acknowledgement.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Records acknowledged since tracking started.
    pub fn copied(&self) -> u64 {
        self.copied
    }

    /// Next source offset whose predecessors are all acknowledged on the target.
    pub fn progress(&self) -> Offset {
        self.acked_next
    }

    /// The progress to store now, if it changed since the last stored value. A partition that
    /// had no stored position and has copied nothing stores nothing: its start (earliest or
    /// latest) is decided again at the next start, and a placeholder position below the source's
    /// log start would later read as records lost to retention.
    pub fn progress_to_store(&self) -> Option<Offset> {
        if self.persisted.is_none() && self.copied == 0 && !self.anchored {
            return None;
        }
        (self.persisted != Some(self.acked_next)).then_some(self.acked_next)
    }

    /// Record that `offset` was durably stored.
    pub fn mark_stored(&mut self, offset: Offset) {
        if self.persisted.is_none_or(|p| offset > p) {
            self.persisted = Some(offset);
        }
    }

    /// The last durably stored progress.
    pub fn stored(&self) -> Option<Offset> {
        self.persisted
    }

    /// A partition started at the source's end (no stored progress) learned where that is:
    /// the position is stored like progress, so that a restart resumes there instead of at the
    /// end of the source again (which would skip what was written in between). Ignored once
    /// anything was copied or stored.
    pub fn anchor(&mut self, at: Offset) -> bool {
        if self.copied > 0 || self.in_flight > 0 || self.persisted.is_some() {
            return false;
        }
        self.acked_next = at;
        self.fetch_next = at;
        self.anchored = true;
        true
    }

    /// The consumer reset the position (the stored offset was no longer on the source). A
    /// position moved back (the source's log was truncated) is stored like any other.
    pub fn on_position_reset(&mut self, to: Offset) {
        self.skipped_next = None;
        if self.in_flight == 0 {
            if self.persisted.is_some_and(|p| p > to) {
                self.persisted = None;
                self.anchored = true;
            }
            self.acked_next = to;
        }
        self.fetch_next = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_not_copied_count_as_done_once_those_before_them_are_acknowledged() {
        let mut t = PartitionTracker::new(Offset(10), Some(Offset(10)));
        t.on_produced(Offset(10));
        t.on_skipped(Offset(11));
        t.on_skipped(Offset(12));
        assert_eq!(t.fetch_next(), Offset(13));
        assert_eq!(t.progress(), Offset(10), "10 is not acknowledged yet");
        assert_eq!(t.on_acked(Offset(10)), AckOutcome::Advanced);
        assert_eq!(t.progress(), Offset(13));
        // Nothing in flight: a skipped record moves progress at once, and is stored.
        t.mark_stored(Offset(13));
        t.on_skipped(Offset(13));
        assert_eq!(t.progress_to_store(), Some(Offset(14)));
    }

    #[test]
    fn a_partition_that_copied_nothing_stores_what_it_skipped() {
        let mut t = PartitionTracker::new(Offset(0), None);
        t.on_skipped(Offset(0));
        t.on_skipped(Offset(1));
        assert_eq!(t.progress_to_store(), Some(Offset(2)));
    }

    #[test]
    fn a_failure_before_a_skipped_record_keeps_progress_at_the_failure() {
        let mut t = PartitionTracker::new(Offset(0), None);
        t.on_produced(Offset(0));
        t.on_produced(Offset(1));
        t.on_skipped(Offset(2));
        t.on_acked(Offset(0));
        assert!(t.on_failed(Offset(1), "refused".into()));
        assert_eq!(t.progress(), Offset(1));
        assert_eq!(t.restart(), Offset(1));
        t.on_produced(Offset(1));
        t.on_acked(Offset(1));
        assert_eq!(
            t.progress(),
            Offset(2),
            "2 is decided again when fetched again"
        );
    }

    #[test]
    fn a_position_moved_back_is_stored_even_before_a_copy() {
        let mut t = PartitionTracker::new(Offset(1_000), Some(Offset(1_000)));
        t.on_position_reset(Offset(400));
        assert_eq!(t.progress_to_store(), Some(Offset(400)));
        t.mark_stored(Offset(400));
        assert_eq!(t.progress_to_store(), None);
    }

    #[test]
    fn a_partition_started_at_the_end_stores_where_that_was() {
        let mut t = PartitionTracker::new(Offset(0), None);
        assert_eq!(t.progress_to_store(), None);
        assert!(t.anchor(Offset(100)));
        assert_eq!(t.progress_to_store(), Some(Offset(100)));
        assert_eq!(t.fetch_next(), Offset(100));
        t.mark_stored(Offset(100));
        assert_eq!(t.progress_to_store(), None);
        assert!(!t.anchor(Offset(200)), "never once stored");
    }

    #[test]
    fn progress_follows_acks_in_order() {
        let mut t = PartitionTracker::new(Offset(10), None);
        for o in 10..15 {
            t.on_produced(Offset(o));
        }
        assert_eq!(t.in_flight(), 5);
        assert_eq!(t.progress(), Offset(10));
        t.on_acked(Offset(10));
        t.on_acked(Offset(11));
        assert_eq!(t.progress(), Offset(12));
        assert_eq!(t.progress_to_store(), Some(Offset(12)));
        t.mark_stored(Offset(12));
        assert_eq!(t.progress_to_store(), None);
        t.on_acked(Offset(12));
        t.on_acked(Offset(13));
        t.on_acked(Offset(14));
        assert!(t.is_drained());
        assert_eq!(t.progress(), Offset(15));
        assert_eq!(t.copied(), 5);
    }

    #[test]
    fn nothing_is_stored_before_the_first_copy() {
        let mut t = PartitionTracker::new(Offset(0), None);
        assert_eq!(t.progress_to_store(), None, "no placeholder position");
        t.on_produced(Offset(1_000));
        t.on_acked(Offset(1_000));
        assert_eq!(t.progress_to_store(), Some(Offset(1_001)));
        let resumed = PartitionTracker::new(Offset(7), Some(Offset(7)));
        assert_eq!(resumed.progress_to_store(), None, "already stored");
    }

    #[test]
    fn gaps_in_source_offsets_are_fine() {
        // Compaction and transaction markers leave gaps; progress jumps past them.
        let mut t = PartitionTracker::new(Offset(0), None);
        t.on_produced(Offset(0));
        t.on_produced(Offset(7));
        t.on_acked(Offset(0));
        t.on_acked(Offset(7));
        assert_eq!(t.progress(), Offset(8));
    }

    #[test]
    fn failure_freezes_progress_at_the_failed_record() {
        let mut t = PartitionTracker::new(Offset(0), Some(Offset(0)));
        for o in 0..5 {
            t.on_produced(Offset(o));
        }
        t.on_acked(Offset(0));
        assert!(t.on_failed(Offset(1), "record too large".into()));
        // Later records acknowledged after the failure do not move progress past it.
        assert_eq!(t.on_acked(Offset(2)), AckOutcome::Ignored);
        assert!(!t.on_failed(Offset(3), "again".into()));
        t.on_acked(Offset(4));
        assert_eq!(t.progress(), Offset(1));
        assert!(t.is_drained());
        assert!(matches!(
            t.state(),
            PipelineState::Failed { at: Offset(1), .. }
        ));
        assert!(!t.is_running());
    }

    #[test]
    fn records_in_flight_before_a_refused_one_still_count() {
        // The producer refuses record 3 at once while 0..=2 are still in flight.
        let mut t = PartitionTracker::new(Offset(0), None);
        for o in 0..3 {
            t.on_produced(Offset(o));
        }
        t.on_rejected(Offset(3), "too large".into());
        for o in 0..3 {
            assert_eq!(t.on_acked(Offset(o)), AckOutcome::Advanced);
        }
        assert_eq!(
            t.progress(),
            Offset(3),
            "progress stops exactly at the refused record"
        );
        assert!(t.is_drained());
    }

    #[test]
    fn an_earlier_failure_moves_the_stop_back() {
        let mut t = PartitionTracker::new(Offset(0), None);
        for o in 0..3 {
            t.on_produced(Offset(o));
        }
        t.on_rejected(Offset(3), "too large".into());
        t.on_acked(Offset(0));
        assert!(!t.on_failed(Offset(1), "timed out".into()));
        assert_eq!(t.on_acked(Offset(2)), AckOutcome::Ignored);
        assert_eq!(t.progress(), Offset(1));
        assert!(matches!(
            t.state(),
            PipelineState::Failed { at: Offset(1), .. }
        ));
    }

    #[test]
    fn restart_after_a_retriable_failure_keeps_what_was_copied() {
        let mut t = PartitionTracker::new(Offset(0), None);
        t.on_produced(Offset(0));
        t.on_produced(Offset(1));
        t.on_acked(Offset(0));
        t.on_failed(Offset(1), "timed out".into());
        assert_eq!(t.restart(), Offset(1));
        assert!(t.is_running());
        assert_eq!(
            t.progress_to_store(),
            Some(Offset(1)),
            "the copied record's progress is still stored"
        );
        t.on_produced(Offset(1));
        t.on_acked(Offset(1));
        assert_eq!(t.progress(), Offset(2));
    }

    #[test]
    fn draining_waits_for_in_flight() {
        let mut t = PartitionTracker::new(Offset(0), None);
        t.on_produced(Offset(0));
        t.start_draining();
        assert!(!t.is_drained());
        assert!(!t.is_running());
        t.on_acked(Offset(0));
        assert!(t.is_drained());
        assert_eq!(t.progress(), Offset(1));
    }

    #[test]
    fn stale_acks_never_move_progress_back() {
        let mut t = PartitionTracker::new(Offset(5), None);
        t.on_produced(Offset(5));
        t.on_acked(Offset(5));
        t.on_acked(Offset(3));
        assert_eq!(t.progress(), Offset(6));
    }
}
