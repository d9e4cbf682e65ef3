//! Exact offset translation: where each copied record landed on the target.
//!
//! kmirror knows the target offset of every record it copied (from the delivery report), so
//! per partition it keeps *runs*: stretches where source and target offsets advance together.
//! A new run starts only at a gap in the source (compaction, transaction markers, aborted
//! records), at a replay after a restart, or when the target was truncated. The map is small
//! (one entry per run) and is stored beside replication progress so that it survives restarts.
//!
//! A consumer group committed at source offset `U` ("next to read") translates to the target
//! offset of the first copied record at or after `U`, taken from the most recent run that
//! covers it (after a crash a replayed range exists twice on the target; resuming in the newer
//! copy reads every remaining record exactly once from there), or to the end of the copied data
//! when the group is ahead of replication. Unlike MM2 (sparse syncs, "sync + 1"), there is no
//! rounding: a consumer resuming on the target reads exactly the records it had not read.

use serde::{Deserialize, Serialize};

/// Source offsets `upstream..upstream+len` are target offsets `downstream..downstream+len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// First source offset.
    pub upstream: i64,
    /// Its target offset.
    pub downstream: i64,
    /// Number of records.
    pub len: i64,
}

impl Run {
    fn end_upstream(&self) -> i64 {
        self.upstream.saturating_add(self.len)
    }

    fn contains(&self, u: i64) -> bool {
        self.upstream <= u && u < self.end_upstream()
    }
}

/// Most runs kept per partition; beyond it the oldest are dropped (they only matter for
/// groups that far behind, which then translate to the first run still known).
pub const MAX_RUNS: usize = 4096;

/// The runs of one partition, oldest first.
///
/// `known_from`, when set, is the first source offset the runs account for: records before it
/// were copied by someone else (MirrorMaker 2 before a takeover), or their runs were dropped to
/// bound memory. A group committed before it cannot be translated from this map; it is never
/// sent to the first known run, which would skip the records in between. Without it, the map
/// starts at the source's first record, and a group before the first run translates to it
/// (those records no longer exist on the source).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetMap {
    runs: Vec<Run>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    known_from: Option<i64>,
}

impl OffsetMap {
    /// Records that source offset `u` was copied to target offset `d`.
    #[inline]
    pub fn record(&mut self, u: i64, d: i64) {
        if let Some(last) = self.runs.last_mut() {
            if u == last.end_upstream() && d == last.downstream.saturating_add(last.len) {
                last.len += 1;
                return;
            }
        }
        self.runs.push(Run {
            upstream: u,
            downstream: d,
            len: 1,
        });
        if self.runs.len() > MAX_RUNS {
            let dropped = self.runs.remove(0);
            let from = self
                .runs
                .first()
                .map_or(dropped.end_upstream(), |r| r.upstream);
            self.known_from = Some(self.known_from.map_or(from, |k| k.max(from)));
        }
    }

    /// A map for a partition whose records before `from` were copied by someone else.
    pub fn known_from(from: i64) -> Self {
        Self {
            runs: Vec::new(),
            known_from: Some(from),
        }
    }

    /// The first source offset the map accounts for, if it does not start at the source's
    /// first record.
    pub fn known_from_offset(&self) -> Option<i64> {
        self.known_from
    }

    /// The runs, oldest first.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Whether nothing was copied.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The target offset where a consumer that has read everything before source offset `u`
    /// resumes; `None` if nothing was copied yet, or if `u` is before what the map accounts for.
    pub fn translate(&self, u: i64) -> Option<i64> {
        if self.known_from.is_some_and(|k| u < k) {
            return None;
        }
        // The newest copy of the record at `u`.
        if let Some(r) = self.runs.iter().rev().find(|r| r.contains(u)) {
            return Some(r.downstream + (u - r.upstream));
        }
        // `u` itself was not copied (a gap): the first copied record after it, newest copy.
        let next = self
            .runs
            .iter()
            .filter(|r| r.upstream > u)
            .fold(None::<&Run>, |best, r| match best {
                Some(b) if b.upstream < r.upstream => Some(b),
                _ => Some(r),
            });
        if let Some(r) = next {
            return Some(r.downstream);
        }
        // Ahead of replication: the end of the copied data.
        self.runs.last().map(|r| r.downstream + r.len)
    }

    /// Drops runs entirely below `log_start` on the source (always keeping the newest). Records
    /// below the log start no longer exist: nothing is forgotten that a group could resume at.
    pub fn prune_below(&mut self, log_start: i64) {
        let newest = self.runs.len().saturating_sub(1);
        let mut i = 0;
        self.runs.retain(|r| {
            let keep = i == newest || r.end_upstream() > log_start;
            i += 1;
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(i64, i64)]) -> OffsetMap {
        let mut m = OffsetMap::default();
        for (u, d) in pairs {
            m.record(*u, *d);
        }
        m
    }

    #[test]
    fn contiguous_copies_are_one_run() {
        let m = map(&(0..1000).map(|i| (i, i + 7)).collect::<Vec<_>>());
        assert_eq!(m.runs().len(), 1);
        assert_eq!(m.translate(0), Some(7));
        assert_eq!(m.translate(500), Some(507));
        assert_eq!(
            m.translate(1000),
            Some(1007),
            "a group at the end resumes at the target end"
        );
        assert_eq!(
            m.translate(5000),
            Some(1007),
            "ahead of replication: the target end"
        );
        assert_eq!(OffsetMap::default().translate(0), None);
    }

    #[test]
    fn source_gaps_translate_to_the_next_copied_record() {
        // Source offsets 10..=12 are transaction markers / compacted away.
        let m = map(&[(8, 0), (9, 1), (13, 2), (14, 3)]);
        assert_eq!(m.runs().len(), 2);
        assert_eq!(m.translate(9), Some(1));
        assert_eq!(m.translate(10), Some(2));
        assert_eq!(m.translate(12), Some(2));
        assert_eq!(m.translate(13), Some(2));
        assert_eq!(
            m.translate(0),
            Some(0),
            "before anything copied: the first copied record"
        );
    }

    #[test]
    fn replays_after_a_crash_use_the_newest_copy() {
        // 0..100 copied to 0..100; crash; 50..150 copied again to 100..200.
        let mut pairs: Vec<(i64, i64)> = (0..100).map(|i| (i, i)).collect();
        pairs.extend((50..150).map(|i| (i, i + 50)));
        let m = map(&pairs);
        assert_eq!(m.runs().len(), 2);
        assert_eq!(m.translate(20), Some(20), "only one copy");
        assert_eq!(
            m.translate(70),
            Some(120),
            "the newest copy of a replayed record"
        );
        assert_eq!(m.translate(149), Some(199));
        assert_eq!(m.translate(150), Some(200));
    }

    #[test]
    fn a_group_before_what_the_map_accounts_for_is_not_translated() {
        // Taken over at source offset 1000 (MM2 copied 0..1000 before).
        let mut m = OffsetMap::known_from(1000);
        assert_eq!(m.translate(1000), None, "nothing copied yet");
        for u in 1000..1100 {
            m.record(u, u + 5);
        }
        assert_eq!(m.translate(999), None, "copied by someone else: unknown");
        assert_eq!(m.translate(300), None);
        assert_eq!(m.translate(1000), Some(1005));
        assert_eq!(m.translate(1100), Some(1105));
        let json = serde_json::to_string(&m).expect("serializes");
        assert_eq!(serde_json::from_str::<OffsetMap>(&json).expect("parses"), m);
        assert_eq!(
            serde_json::from_str::<OffsetMap>(r#"{"runs":[]}"#).expect("parses"),
            OffsetMap::default(),
            "maps stored before known_from existed still load"
        );
    }

    #[test]
    fn dropping_the_oldest_runs_never_translates_into_a_skip() {
        // Every other source offset is a gap: one run per record.
        let mut m = OffsetMap::default();
        for i in 0..=i64::try_from(MAX_RUNS).expect("fits") {
            m.record(2 * i, i);
        }
        assert_eq!(m.runs().len(), MAX_RUNS);
        assert_eq!(
            m.translate(0),
            None,
            "the dropped run is unknown now, not skipped"
        );
        assert_eq!(m.translate(1), None);
        assert_eq!(m.translate(2), Some(1));
    }

    #[test]
    fn target_truncation_starts_a_new_run_and_pruning_keeps_the_newest() {
        let mut m = map(&[(0, 50), (1, 51), (2, 3), (3, 4)]);
        assert_eq!(m.runs().len(), 2);
        assert_eq!(m.translate(2), Some(3));
        m.prune_below(2);
        assert_eq!(m.runs().len(), 1);
        m.prune_below(1_000_000);
        assert_eq!(m.runs().len(), 1, "the newest run is always kept");
        let json = serde_json::to_string(&m).expect("serializes");
        assert_eq!(serde_json::from_str::<OffsetMap>(&json).expect("parses"), m);
    }
}
