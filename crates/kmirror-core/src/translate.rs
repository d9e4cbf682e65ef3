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
    /// Source offsets `[from, to)` whose records were passed over because they came from the
    /// target cluster (two-way mirroring, see [`crate::provenance`]): their originals are on
    /// the target already, at offsets only the opposite flow's map knows. Oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    passed: Vec<(i64, i64)>,
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

    /// Records that the record at source offset `u` was passed over: it came from the target
    /// cluster, so its original is there already.
    #[inline]
    pub fn passed_over(&mut self, u: i64) {
        match self.passed.last_mut() {
            Some(last) if u == last.1 => {
                last.1 += 1;
                return;
            }
            Some(last) if u < last.1 => {
                // Read again after a restart: known already, or put in its place.
                let i = self.passed.partition_point(|(_, to)| *to <= u);
                if self.passed.get(i).is_some_and(|(from, _)| *from <= u) {
                    return;
                }
                // Joined to its neighbours where it touches them.
                let joins_next = self.passed.get(i).is_some_and(|(from, _)| *from == u + 1);
                match i.checked_sub(1).filter(|&j| self.passed[j].1 == u) {
                    Some(j) if joins_next => {
                        self.passed[j].1 = self.passed[i].1;
                        self.passed.remove(i);
                    }
                    Some(j) => self.passed[j].1 = u + 1,
                    None if joins_next => self.passed[i].0 = u,
                    None => self.passed.insert(i, (u, u + 1)),
                }
            }
            _ => self.passed.push((u, u + 1)),
        }
        if self.passed.len() > MAX_RUNS {
            // The two oldest stretches become one: the copied records between them still
            // translate, a group between them no longer does (never a skip).
            let second = self.passed.remove(1);
            self.passed[0].1 = second.1;
        }
    }

    /// The first source offset at or after `u` whose record was passed over (see
    /// [`OffsetMap::passed_over`]).
    pub fn first_passed_from(&self, u: i64) -> Option<i64> {
        self.passed
            .iter()
            .find(|(_, to)| *to > u)
            .map(|&(from, _)| from.max(u))
    }

    /// Runs and passed stretches: what the map's size grows with.
    pub fn entries(&self) -> usize {
        self.runs.len() + self.passed.len()
    }

    /// The end of the source offsets this map accounts for, as copied or passed over: records
    /// from here on were not looked at yet (or, after a restart, were copied but are not known
    /// to the map: see [`OffsetMap::resumed_at`]). `None` if it accounts for nothing.
    pub fn classified_end(&self) -> Option<i64> {
        if let Some(unknown) = self.runs.last().filter(|r| r.len == 0) {
            return Some(unknown.upstream);
        }
        let copied = self.copied_end().map(|(u, _)| u);
        let passed = self.passed.last().map(|&(_, to)| to);
        copied.max(passed)
    }

    /// The stretches of source offsets passed over, oldest first.
    pub fn passed(&self) -> &[(i64, i64)] {
        &self.passed
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

    /// Where copies on the target beyond the stored progress `next` are looked for (the
    /// engine's tail check): a source offset and the target offset of its copy, or of where its
    /// copy would be. The map's copied end when the map ends at or before `next`. The map can
    /// also be ahead of `next`: it is written just before its progress, to another partition of
    /// the progress topic, and a kill can keep the one without the other. Then the newest copy
    /// of `next` itself; inside a gapped run, the run's first copy; in a gap, the first copy
    /// after it. `None` if nothing was copied.
    pub fn tail_start(&self, next: i64) -> Option<(i64, i64)> {
        let end = self.copied_end()?;
        if end.0 <= next {
            return Some(end);
        }
        let newest_first = || self.runs.iter().rev().filter(|r| r.len > 0);
        if let Some(r) = newest_first().find(|r| r.contains(next)) {
            return Some(if r.gaps == 0 {
                (next, r.downstream + (next - r.upstream))
            } else {
                (r.upstream, r.downstream)
            });
        }
        newest_first()
            .filter(|r| r.upstream > next)
            .min_by_key(|r| r.upstream)
            .map(|r| (r.upstream, r.downstream))
    }

    /// Forgets the copies of source offsets `from` and after that the map's last runs know,
    /// before the copies found on the target from there are recorded again (as the newest):
    /// runs that start there or later are dropped, and then the last run, if it covers `from`,
    /// is cut there when exact, dropped when gapped (where its copies end is not known).
    pub fn forget_from(&mut self, from: i64) {
        while let Some(last) = self.runs.last_mut() {
            if last.upstream >= from || (last.contains(from) && last.gaps > 0) {
                self.runs.pop();
                continue;
            }
            if last.contains(from) {
                last.len = from - last.upstream;
            }
            break;
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
            passed: Vec::new(),
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
    ///
    /// `None` as well when a record at or after `u` was passed over because it came from the
    /// target (two-way mirroring): its original lies somewhere on the target that only the
    /// opposite flow's map knows, maybe before the copies this map knows, so this map alone
    /// could skip it ([`translate_back`] combines both maps). For the same reason, once the map
    /// passed over anything, `None` for a group beyond what it looked at.
    pub fn translate_detail(&self, u: i64) -> Option<Translation> {
        if self.first_passed_from(u).is_some() {
            return None;
        }
        // A flow that met records from its target may meet more beyond what it looked at.
        if !self.passed.is_empty() && self.classified_end().is_some_and(|k| u > k) {
            return None;
        }
        self.translate_copies(u)
    }

    /// [`OffsetMap::translate_detail`] for the copies this map knows, ignoring the records it
    /// passed over.
    fn translate_copies(&self, u: i64) -> Option<Translation> {
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

    /// The source offset of the record copied to target offset `d`, or, if `d` holds no copy
    /// this map knows, of the first copy after it; `None` if there is none. Never later than
    /// the right answer: inside a gapped run, the earliest source offset the copy can have;
    /// where copies are not known (after a restart, see [`OffsetMap::resumed_at`]), the first
    /// source offset they can be of; before what the map accounts for (see
    /// [`OffsetMap::known_from`]), `None`.
    pub fn source_of(&self, d: i64) -> Option<i64> {
        let copies = || self.runs.iter().filter(|r| r.len > 0);
        if self.known_from.is_some()
            && copies()
                .map(|r| r.downstream)
                .min()
                .is_none_or(|first| d < first)
        {
            return None;
        }
        if let Some(r) = copies().find(|r| r.downstream <= d && d < r.end_downstream()) {
            return Some(r.upstream + (d - r.downstream));
        }
        let next = copies()
            .filter(|r| r.downstream > d)
            .min_by_key(|r| r.downstream)
            .map(|r| r.upstream);
        // Unknown copies of `[upstream, upstream + gaps)` lie from `downstream` up to the next
        // known copy.
        let unknown = self
            .runs
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                r.len == 0
                    && r.downstream <= d
                    && self.runs[i + 1..]
                        .iter()
                        .filter(|n| n.len > 0)
                        .all(|n| d < n.downstream)
            })
            .map(|(_, r)| r.upstream)
            .min();
        match (next, unknown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The first target offset at or after `d` that holds no copy this map knows: where the
    /// target's own records (or copies from elsewhere) can be.
    pub fn first_non_copy_from(&self, d: i64) -> i64 {
        let mut at = d;
        while let Some(r) = self
            .runs
            .iter()
            .find(|r| r.len > 0 && r.downstream <= at && at < r.end_downstream())
        {
            at = r.end_downstream();
        }
        at
    }

    /// The first target offset at or after `d` that holds a copy this map knows.
    pub fn first_copy_from(&self, d: i64) -> Option<i64> {
        self.runs
            .iter()
            .filter(|r| r.len > 0 && r.end_downstream() > d)
            .map(|r| r.downstream.max(d))
            .min()
    }

    /// How many copies this map knows in target offsets `[from, to)`.
    pub fn copies_between(&self, from: i64, to: i64) -> i64 {
        self.runs
            .iter()
            .map(|r| (r.end_downstream().min(to) - r.downstream.max(from)).max(0))
            .sum()
    }

    /// Drops runs and passed stretches entirely below `log_start` on the source (always keeping
    /// the newest run). Records below the log start no longer exist: nothing is forgotten that a
    /// group could resume at. Returns whether anything was dropped.
    pub fn prune_below(&mut self, log_start: i64) -> bool {
        let before = self.entries();
        self.passed.retain(|(_, to)| *to > log_start);
        let newest = self.runs.len().saturating_sub(1);
        let mut i = 0;
        self.runs.retain(|r| {
            let keep = i == newest || r.end_upstream() > log_start;
            i += 1;
            keep
        });
        self.entries() != before
    }
}

/// What a group's position on the flow's source means on its target when records go both ways
/// with the same topic names (see [`translate_back`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Back {
    /// The target offset to resume at: no record the group has not read comes before it.
    pub offset: i64,
    /// Copies of this flow's source records between `offset` and where the group's next record
    /// of the flow's source is: the group read them on the source already and reads them again.
    pub rereads: i64,
    /// Records only the target has that the group never read (written there after the last
    /// record the opposite flow copied, and after the group's last commit there): read from
    /// `offset`, before the rereads.
    pub unread_target_only: i64,
}

/// Where a consumer group resumes on the target of flow `S->T` when the opposite flow `T->S`
/// copies the same topic names the other way (two-way mirroring, failback).
///
/// `own` is `S->T`'s map (source offsets on S, target offsets on T), `opposite` is `T->S`'s map
/// (its source offsets are on T, its target offsets on S). The group's next record on S is at
/// `u`. Records on S from `u` on are of two kinds: written on S (or copied there from elsewhere)
/// and copied to T by this flow, and copies of T's own records that this flow passed over. The
/// group resumes on T at the earliest of
/// 1. this flow's copy of its first S record at or after `u` (or the end of what this flow
///    copied);
/// 2. the original on T of its first record at or after `u` that came from T (passed over by
///    this flow, or not looked at by it yet);
/// 3. `target_only`: `(from, committed)`: the first record on T at or after `from` (the
///    opposite flow's copied end on T) and after the group's own commit on T (`committed`, from
///    before it moved to S) that is not one of this flow's copies: a record of T's that never
///    reached S, which the group cannot have read.
///
/// So no record the group has not read is skipped; with active-passive failback the answer is
/// exact but for records of kind 3, which come before the copies of what it read on S. `None`
/// when a record the group has not read cannot be placed (a copy no map knows: made before
/// kmirror took over, or forgotten to bound memory).
pub fn translate_back(
    own: &OffsetMap,
    opposite: &OffsetMap,
    u: i64,
    target_only: Option<(i64, Option<i64>)>,
) -> Option<Back> {
    let copies = own.translate_copies(u)?;
    let mut offset = copies.offset;
    // 2. Records from T: those this flow passed over, and any beyond what it has looked at
    //    (it may lag, or its map may be behind its progress after a restart).
    if let Some(v) = own.first_passed_from(u) {
        offset = offset.min(opposite.source_of(v)?);
    }
    let unlooked = own.classified_end().map_or(u, |k| k.max(u));
    if let Some(x) = opposite.source_of(unlooked) {
        offset = offset.min(x);
    }
    // 3. T's records that never went to S, from the first the group has not read.
    let mut unread_target_only = 0;
    if let Some((from, committed)) = target_only {
        let start = committed.map_or(from, |c| c.max(from));
        let first = own.first_non_copy_from(start);
        if first < offset {
            unread_target_only = (offset - first) - own.copies_between(first, offset);
            offset = first;
        }
    }
    let rereads = own.copies_between(offset, copies.offset) + copies.rereads;
    Some(Back {
        offset,
        rereads,
        unread_target_only,
    })
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
    fn copies_beyond_a_map_ahead_of_the_stored_progress_are_looked_for_from_the_progress() {
        // A kill stored the map up to 160 but the progress only up to 130: the copies of
        // 130..160 are looked for on the target from the copy of 130.
        let mut m = map(&(0..160).map(|u| (u, u + 5)).collect::<Vec<_>>());
        m.resumed_at(130);
        assert_eq!(m.tail_start(130), Some((130, 135)));
        assert_eq!(m.translate(150), Some(155), "the map itself is kept");
        // Found again from 130: recorded once, not as a second run.
        m.forget_from(130);
        for u in 130..170 {
            m.record(u, u + 5);
        }
        assert_eq!(m.runs().len(), 1);
        // A map behind (or at) the progress: its end.
        let mut behind = map(&(0..100).map(|u| (u, u)).collect::<Vec<_>>());
        behind.resumed_at(150);
        assert_eq!(behind.tail_start(150), Some((100, 100)));
        behind.forget_from(100);
        assert_eq!(behind.runs().len(), 1, "the unknown stretch is forgotten");

        // A replay run that starts at the progress (a second kill): its first copy, not the
        // end of the run before it (where the target holds the first crash's copies).
        let mut r = map(&(0..100).map(|u| (u, u)).collect::<Vec<_>>());
        for u in 80..150 {
            r.record(u, u + 20);
        }
        assert_eq!(r.tail_start(80), Some((80, 100)));
        assert_eq!(r.tail_start(90), Some((90, 110)), "the newest copy");
        r.forget_from(90);
        assert_eq!(r.copied_end(), Some((90, 110)));
        r.forget_from(80);
        assert_eq!(r.runs().len(), 1, "the replay run started at 80");
        assert_eq!(r.copied_end(), Some((80, 80)));

        // Inside a gapped run: from its first copy. In a gap: the first copy after it.
        let mut g = map(&[(0, 0), (1, 1)]);
        g.runs.push(Run {
            upstream: 2,
            downstream: 2,
            len: 3,
            gaps: 4,
        });
        g.record(20, 5);
        assert_eq!(g.tail_start(6), Some((2, 2)));
        assert_eq!(g.tail_start(15), Some((20, 5)));
        g.forget_from(6);
        assert_eq!(g.copied_end(), Some((2, 2)));
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

    /// A->B copied A 0..150 to B 0..150 and stopped (A "lost" with 20 more records, 150..170);
    /// B took 50 records (150..200); B->A passed over B 0..150 and copied B 150..200 to A
    /// 170..220. Returns (B->A's map, A->B's map).
    fn failback_maps() -> (OffsetMap, OffsetMap) {
        let mut forward = OffsetMap::default();
        for u in 0..150 {
            forward.record(u, u);
        }
        let mut reverse = OffsetMap::default();
        for u in 0..150 {
            reverse.passed_over(u);
        }
        for u in 150..200 {
            reverse.record(u, u + 20);
        }
        (reverse, forward)
    }

    #[test]
    fn records_passed_over_are_stretches_and_stop_one_sided_translation() {
        let (reverse, _) = failback_maps();
        assert_eq!(reverse.passed(), &[(0, 150)]);
        assert_eq!(reverse.first_passed_from(0), Some(0));
        assert_eq!(reverse.first_passed_from(149), Some(149));
        assert_eq!(reverse.first_passed_from(150), None);
        // A group among B's copies of A's records: only A->B's map knows where their originals
        // are on A, so B->A's map alone does not translate it.
        assert_eq!(reverse.translate(120), None);
        assert_eq!(reverse.translate(150), Some(170));
        assert_eq!(reverse.translate(200), Some(220));
        assert_eq!(
            reverse.translate(201),
            None,
            "beyond what it looked at: maybe more records from the target"
        );
        // Passed over again after a restart: nothing new.
        let mut again = reverse.clone();
        again.passed_over(10);
        again.passed_over(150 + 100);
        again.passed_over(5);
        assert_eq!(again.passed(), &[(0, 150), (250, 251)]);
        again.passed_over(200);
        assert_eq!(again.passed(), &[(0, 150), (200, 201), (250, 251)]);
        let json = serde_json::to_string(&again).expect("serializes");
        assert_eq!(
            serde_json::from_str::<OffsetMap>(&json).expect("parses"),
            again
        );
        again.prune_below(201);
        assert_eq!(again.passed(), &[(250, 251)]);
    }

    #[test]
    fn passed_stretches_are_bounded_and_merging_never_skips() {
        let mut m = OffsetMap::default();
        for i in 0..5_000 {
            m.passed_over(2 * i);
            m.record(2 * i + 1, i);
        }
        assert!(m.passed().len() <= MAX_RUNS);
        for u in 0..10_000 {
            if let Some(p) = m.first_passed_from(u) {
                assert!(p <= u + u % 2, "{u}: the first passed record is skipped");
            }
        }
    }

    #[test]
    fn source_of_inverts_a_map_and_never_goes_forward() {
        let (_, forward) = failback_maps();
        assert_eq!(forward.source_of(0), Some(0));
        assert_eq!(forward.source_of(149), Some(149));
        assert_eq!(forward.source_of(150), None);
        let m = map(&[(8, 0), (9, 1), (13, 2), (14, 3)]);
        assert_eq!(m.source_of(2), Some(13));
        let mut later = m.clone();
        later.record(20, 10);
        assert_eq!(later.source_of(5), Some(20), "no copy there: the next copy");
        assert_eq!(later.first_copy_from(5), Some(10));
        assert_eq!(later.copies_between(0, 11), 5);
    }

    #[test]
    fn groups_go_back_to_the_old_primary_without_skipping_a_record() {
        let (reverse, forward) = failback_maps();
        // A->B's copied end on A, and the group's commit on A from before the failover.
        let at_risk = Some((150, Some(100)));
        let back = |u| translate_back(&reverse, &forward, u, at_risk).expect("translates");
        // Still among the copies of A's records on B: back to their originals on A.
        assert_eq!(
            back(120),
            Back {
                offset: 120,
                rereads: 0,
                unread_target_only: 0
            }
        );
        // Read all of A's copies and 30 of B's records: A's 20 records at risk first, then B's
        // records from the first (30 read again).
        assert_eq!(
            back(180),
            Back {
                offset: 150,
                rereads: 30,
                unread_target_only: 20
            }
        );
        // Without records at risk: exactly the copy of the next record.
        assert_eq!(
            translate_back(&reverse, &forward, 180, Some((170, None))),
            Some(Back {
                offset: 200,
                rereads: 0,
                unread_target_only: 0
            })
        );
        // A group that read the records at risk on A before the failover does not read them
        // again.
        assert_eq!(
            translate_back(&reverse, &forward, 180, Some((150, Some(170)))).map(|b| b.offset),
            Some(200)
        );
        // Read everything on B.
        assert_eq!(back(200).offset, 150);
        assert_eq!(back(200).rereads, 50);

        // A->B runs again: it copies A's 20 records at risk to B 200..220 and passes over B->A's
        // copies (A 170..220); B->A then passes over B 200..220. The answer does not change.
        let (mut reverse, mut forward) = failback_maps();
        for u in 150..170 {
            forward.record(u, u + 50);
        }
        for u in 170..220 {
            forward.passed_over(u);
        }
        for u in 200..220 {
            reverse.passed_over(u);
        }
        let from = forward.copied_end().map(|(u, _)| u);
        assert_eq!(from, Some(170));
        let b = translate_back(&reverse, &forward, 180, from.map(|f| (f, Some(100))))
            .expect("translates");
        assert_eq!((b.offset, b.rereads), (150, 30));
        // A copy no map knows cannot be placed.
        assert_eq!(
            translate_back(&reverse, &OffsetMap::default(), 120, None),
            None
        );
    }

    #[test]
    fn records_the_reverse_flow_has_not_looked_at_are_placed_by_the_forward_map() {
        // A->B runs again and copies A's records at risk (A 150..170) to B 200..220, but B->A
        // has not read them yet: they are not among its passed records.
        let (reverse, mut forward) = failback_maps();
        for u in 150..170 {
            forward.record(u, u + 50);
        }
        assert_eq!(reverse.classified_end(), Some(200));
        let b =
            translate_back(&reverse, &forward, 180, Some((170, Some(100)))).expect("translates");
        assert_eq!(b.offset, 150, "A's records at risk are not skipped");
        // The same when B->A's map is behind its stored progress after a restart.
        let mut behind = reverse.clone();
        behind.resumed_at(215);
        assert_eq!(behind.classified_end(), Some(200));
        assert_eq!(
            translate_back(&behind, &forward, 180, Some((170, Some(100)))).map(|b| b.offset),
            Some(150)
        );
    }

    #[test]
    fn target_only_records_between_copies_are_not_skipped() {
        // On A: 500 A's own (not yet copied to B), 501 a copy of B 10, 502..504 A's own, then
        // copies of B 11..20 at 504..514. The group committed 503 on A before moving to B and
        // read B up to 15 there.
        let mut reverse = OffsetMap::default();
        reverse.record(10, 501);
        for u in 11..21 {
            reverse.record(u, u + 493);
        }
        let forward = OffsetMap::default();
        let b = translate_back(&reverse, &forward, 15, Some((500, Some(503)))).expect("translates");
        assert_eq!(b.offset, 503, "{b:?}");
        assert_eq!(b.unread_target_only, 1);
        assert_eq!(b.rereads, 4, "copies of B 11..15 at 504..508");
    }

    #[test]
    fn source_of_is_never_later_than_the_copy() {
        // Copies of 0..10 at 100..110; after a restart the map knows the copies from 40 on
        // (at 140..150), not those of 10..40.
        let mut m = map(&(0..10).map(|u| (u, u + 100)).collect::<Vec<_>>());
        m.resumed_at(40);
        m.record(40, 140);
        assert_eq!(m.source_of(105), Some(5));
        assert_eq!(
            m.source_of(120),
            Some(10),
            "an unknown copy: its first possible source"
        );
        assert_eq!(m.source_of(140), Some(40));
        assert_eq!(m.first_non_copy_from(100), 110);
        assert_eq!(m.first_non_copy_from(140), 141);
        // Copies before what a map accounts for are not placed.
        let mut k = OffsetMap::known_from(1000);
        k.record(1000, 50);
        assert_eq!(k.source_of(10), None);
        assert_eq!(k.source_of(50), Some(1000));
    }

    #[test]
    fn passed_records_read_again_join_their_neighbours() {
        let mut m = OffsetMap::default();
        for u in [0, 1, 2, 6, 7, 20] {
            m.passed_over(u);
        }
        assert_eq!(m.passed(), &[(0, 3), (6, 8), (20, 21)]);
        m.passed_over(3);
        m.passed_over(5);
        assert_eq!(m.passed(), &[(0, 4), (5, 8), (20, 21)]);
        m.passed_over(4);
        assert_eq!(m.passed(), &[(0, 8), (20, 21)]);
        assert!(m.prune_below(10));
        assert!(!m.prune_below(10));
    }
}
