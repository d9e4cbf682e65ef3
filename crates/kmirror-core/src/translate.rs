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
//!
//! Memory is bounded: a partition keeps at most [`MAX_RUNS`] runs (32 bytes each). Beyond that,
//! the oldest runs are merged pairwise into *gapped* runs, which remember how many source
//! offsets inside them were not copied but not where. A group inside a gapped run translates
//! to the earliest target offset it can be sure of: it may re-read at most that many records,
//! and never skips one. Recent offsets stay exact; exactness fades with age, as in MM2's
//! offset-sync store, but rounding always goes back, never forward.

use serde::{Deserialize, Serialize};

/// Source offsets `upstream..upstream+len+gaps` were copied, `len` of them, to target offsets
/// `downstream..downstream+len` in order; the other `gaps` source offsets (transaction markers,
/// compacted or aborted records) were not. `gaps == 0` is an exact run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// First source offset.
    pub upstream: i64,
    /// Its target offset.
    pub downstream: i64,
    /// Number of records.
    pub len: i64,
    /// Source offsets inside the run that were not copied (0: exact).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gaps: i64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Run {
    fn end_upstream(&self) -> i64 {
        self.upstream
            .saturating_add(self.len)
            .saturating_add(self.gaps)
    }

    fn end_downstream(&self) -> i64 {
        self.downstream.saturating_add(self.len)
    }

    fn contains(&self, u: i64) -> bool {
        self.upstream <= u && u < self.end_upstream()
    }

    /// Whether `next` continues this run on the target and comes after it on the source, so
    /// that the two can be merged into one gapped run.
    fn mergeable(&self, next: &Run) -> bool {
        next.downstream == self.end_downstream() && next.upstream >= self.end_upstream()
    }

    fn merged(&self, next: &Run) -> Run {
        let len = self.len + next.len;
        Run {
            upstream: self.upstream,
            downstream: self.downstream,
            len,
            gaps: next.end_upstream() - self.upstream - len,
        }
    }
}

/// Most runs kept per partition; beyond it the oldest are merged into gapped runs (see the
/// module documentation), or, where they cannot be merged (a replay or a target truncation
/// between them), the oldest is forgotten and groups before what is left are not translated.
pub const MAX_RUNS: usize = 512;

/// A translation and whether it is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The target offset to resume at.
    pub offset: i64,
    /// `false` inside a gapped run: up to `rereads` records before it may be read again.
    pub exact: bool,
    /// At most this many records the consumer already read on the source are read again.
    pub rereads: i64,
}

/// The runs of one partition, oldest first.
///
/// `known_from`, when set, is the first source offset the runs account for: records before it
/// were copied by someone else (MirrorMaker 2 before a takeover), or their runs were forgotten
/// to bound memory. A group committed before it cannot be translated from this map; it is never
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
            if u == last.end_upstream() && d == last.end_downstream() {
                last.len += 1;
                return;
            }
        }
        self.runs.push(Run {
            upstream: u,
            downstream: d,
            len: 1,
            gaps: 0,
        });
        if self.runs.len() > MAX_RUNS {
            self.compact();
        }
    }

    /// Halves the oldest half of the runs by merging neighbours; forgets the oldest run only if
    /// nothing there can be merged.
    fn compact(&mut self) {
        let half = self.runs.len() / 2;
        let mut out: Vec<Run> = Vec::with_capacity(self.runs.len());
        let mut i = 0;
        while i < half {
            let r = self.runs[i];
            match self.runs.get(i + 1) {
                Some(next) if i + 1 < half && r.mergeable(next) => {
                    out.push(r.merged(next));
                    i += 2;
                }
                _ => {
                    out.push(r);
                    i += 1;
                }
            }
        }
        out.extend_from_slice(&self.runs[i..]);
        if out.len() > MAX_RUNS {
            let dropped = out.remove(0);
            let from = out.first().map_or(dropped.end_upstream(), |r| r.upstream);
            self.known_from = Some(self.known_from.map_or(from, |k| k.max(from)));
        }
        self.runs = out;
    }

    /// The partition resumes copying at source offset `next` (its stored progress). Progress
    /// is stored more often than the map, so records between the map's end and `next` may have
    /// copies on the target that the map does not know: a group there translates to the end of
    /// what the map knows (those copies are read again, none is skipped).
    pub fn resumed_at(&mut self, next: i64) {
        let Some(last) = self.runs.last() else {
            return;
        };
        let end = last.end_upstream();
        if end < next {
            self.runs.push(Run {
                upstream: end,
                downstream: last.end_downstream(),
                len: 0,
                gaps: next - end,
            });
            if self.runs.len() > MAX_RUNS {
                self.compact();
            }
        }
    }

    /// The end of what the map knows was copied: the source offset after the last copied
    /// record, and the target offset after its copy. The next record copied after it, if any,
    /// is at that target offset. `None` if nothing was copied.
    pub fn copied_end(&self) -> Option<(i64, i64)> {
        self.runs
            .iter()
            .rev()
            .find(|r| r.len > 0)
            .map(|r| (r.end_upstream(), r.end_downstream()))
    }

    /// Forgets the trailing unknown stretch [`OffsetMap::resumed_at`] added, once the copies
    /// there are known (and recorded next).
    pub fn forget_unknown_end(&mut self) {
        while self.runs.last().is_some_and(|r| r.len == 0) {
            self.runs.pop();
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
        self.translate_detail(u).map(|t| t.offset)
    }

    /// [`OffsetMap::translate`], saying whether the answer is exact.
    pub fn translate_detail(&self, u: i64) -> Option<Translation> {
        if self.known_from.is_some_and(|k| u < k) {
            return None;
        }
        let exact = |offset| Translation {
            offset,
            exact: true,
            rereads: 0,
        };
        // The newest copy of the record at `u`.
        if let Some(r) = self.runs.iter().rev().find(|r| r.contains(u)) {
            let into = u - r.upstream;
            if r.gaps == 0 {
                return Some(exact(r.downstream + into));
            }
            // At least `into - gaps` of the run's records come before `u`: resume there.
            let before = (into - r.gaps).max(0);
            return Some(Translation {
                offset: r.downstream + before,
                exact: false,
                rereads: into.min(r.len) - before,
            });
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
            return Some(exact(r.downstream));
        }
        // Ahead of replication: the end of the copied data.
        self.runs.last().map(|r| exact(r.end_downstream()))
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
    fn a_map_behind_the_stored_progress_never_skips_what_it_does_not_know() {
        let mut m = OffsetMap::default();
        for u in 0..100 {
            m.record(u, u);
        }
        // Progress says 150; the map knows 0..100. Records 100..150 were copied to target
        // offsets 100.. (unknown to the map) before the stop; after it, 150 lands at 170.
        m.resumed_at(150);
        m.record(150, 170);
        assert_eq!(m.translate(99), Some(99));
        let t = m.translate_detail(120).expect("translates");
        assert_eq!(t.offset, 100, "back to the end of what the map knows");
        assert!(!t.exact);
        assert_eq!(m.translate(150), Some(170));
        assert_eq!(m.translate(151), Some(171));
        // Nothing to add when the map is not behind.
        let mut n = OffsetMap::default();
        n.record(0, 0);
        n.resumed_at(1);
        assert_eq!(n.runs().len(), 1);
    }

    #[test]
    fn the_copied_end_ignores_the_unknown_stretch_until_it_is_known() {
        let mut m = OffsetMap::default();
        assert_eq!(m.copied_end(), None);
        for u in 0..100 {
            m.record(u, u + 10);
        }
        m.resumed_at(150);
        assert_eq!(m.copied_end(), Some((100, 110)));
        // The copies of 100..160 are found on the target: recorded exactly.
        m.forget_unknown_end();
        for u in 100..160 {
            m.record(u, u + 10);
        }
        assert_eq!(m.runs().len(), 1);
        assert_eq!(
            m.translate_detail(120).map(|t| (t.offset, t.exact)),
            Some((130, true))
        );
        assert_eq!(m.copied_end(), Some((160, 170)));
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
        assert_eq!(
            serde_json::from_str::<OffsetMap>(
                r#"{"runs":[{"upstream":5,"downstream":7,"len":3}]}"#
            )
            .expect("parses")
            .translate(6),
            Some(8),
            "runs stored before gaps existed still load"
        );
    }

    #[test]
    fn beyond_the_run_limit_old_gaps_merge_and_translation_rounds_back_never_forward() {
        // 5,000 one-record transactions: every other source offset is a commit marker, so
        // every record is a run of its own.
        let mut m = OffsetMap::default();
        let n: i64 = 5_000;
        for i in 0..n {
            m.record(2 * i, i);
        }
        assert!(m.runs().len() <= MAX_RUNS, "{} runs", m.runs().len());
        assert_eq!(m.known_from_offset(), None, "merged, not forgotten");
        let mut inexact = 0;
        for u in 0..=2 * n {
            // Exact answer: records before u are those at even offsets below u.
            let exact = (u + 1) / 2;
            let t = m.translate_detail(u).expect("translated");
            assert!(
                t.offset <= exact,
                "source offset {u} translates to {}, after the exact {exact}: a skip",
                t.offset
            );
            assert!(exact - t.offset <= t.rereads, "{u}: {t:?} vs {exact}");
            if t.exact {
                assert_eq!(t.offset, exact, "{u}");
            } else {
                inexact += 1;
            }
        }
        assert!(inexact > 0, "old offsets degraded");
        // The newest offsets stay exact.
        for u in (2 * n - 200)..=2 * n {
            assert!(m.translate_detail(u).expect("translated").exact, "{u}");
        }
        let json = serde_json::to_string(&m).expect("serializes");
        assert_eq!(serde_json::from_str::<OffsetMap>(&json).expect("parses"), m);
    }

    #[test]
    fn runs_that_cannot_merge_are_forgotten_and_not_translated() {
        // A replay after every record (target offsets go on, source offsets go back).
        let mut m = OffsetMap::default();
        let mut d = 0;
        for i in 0..=i64::try_from(MAX_RUNS).expect("fits") {
            m.record(10 * i, d);
            d += 1;
            m.record(10 * i, d);
            d += 1;
        }
        let from = m.known_from_offset().expect("forgotten");
        assert!(m.runs().len() <= MAX_RUNS);
        assert_eq!(m.translate(from - 1), None, "unknown, not skipped");
        assert!(m.translate(from).is_some());
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
