//! Which source groups a checkpoint round reads the committed offsets of.
//!
//! librdkafka sends one group per OffsetFetch request, so reading every group every interval
//! costs a request per group even when nothing was committed (at 1,000 groups and a 5 s
//! interval, 200 requests a second, most of an idle kmirror's CPU). Apache Kafka writes every
//! commit, offset expiry and group deletion of a group to one partition of
//! `__consumer_offsets`, chosen from the group id's Java hash: where that partition's end did
//! not move since the last round, none of its groups changed. A round therefore lists the end
//! offsets of `__consumer_offsets` (one request per broker) and reads only the groups of the
//! partitions that moved, new groups and groups whose last read failed, and keeps the last
//! offsets read of the others.
//!
//! Every [`FULL_READ_EVERY`], and whenever the end offsets cannot be read (no right to
//! describe the topic, a broker that has no such topic), every group is read. A full read also
//! checks the placement: a group whose offsets changed while its partition did not move means
//! the cluster places commits differently (a Kafka-compatible broker of another kind), and
//! every group is then read every round, as without this.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kmirror_core::TopicPartition;

/// The topic Apache Kafka keeps committed offsets in.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often every group is read, moved or not.
pub(crate) const FULL_READ_EVERY: Duration = Duration::from_secs(60);

/// The partition of `__consumer_offsets` that holds `group`'s commits in a topic of
/// `partitions` partitions: Kafka's `Utils.abs(groupId.hashCode()) % partitions`, the hash
/// being Java's `String.hashCode` over UTF-16 code units.
pub(crate) fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0_i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    // Kafka's Utils.abs maps Integer.MIN_VALUE to 0.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// A group's committed offsets: partition, offset, metadata.
pub(crate) type Entries = Vec<(TopicPartition, i64, String)>;

/// What the rounds remember between them.
pub(crate) struct CommitWatch {
    /// Partitions of `__consumer_offsets`, learnt at a full read.
    partitions: Option<i32>,
    /// Its end offsets when the last round began.
    ends: Option<Vec<i64>>,
    /// Each group's offsets as last read (every partition it committed: a partition mirrored
    /// later needs no new read).
    cache: HashMap<String, Entries>,
    /// Groups to read next round whatever moved (their last read failed).
    retry: HashSet<String>,
    /// When every group was last read.
    full_at: Option<Instant>,
    /// Off once the cluster was seen placing a commit elsewhere.
    enabled: bool,
    /// Whether the end offsets' absence was logged.
    unreadable_logged: bool,
}

/// The groups one round reads.
pub(crate) struct Plan {
    /// Groups to read.
    pub read: Vec<String>,
    /// Whether that is every group (a full read).
    pub full: bool,
    /// The end offsets the round began with, if read.
    ends: Option<Vec<i64>>,
}

impl CommitWatch {
    pub(crate) fn new() -> Self {
        Self {
            partitions: None,
            ends: None,
            cache: HashMap::new(),
            retry: HashSet::new(),
            full_at: None,
            enabled: true,
            unreadable_logged: false,
        }
    }

    /// A watch that reads every group each round (a one-off read, such as the plan's).
    pub(crate) fn every_group() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }

    /// Whether the round should list the end offsets of `__consumer_offsets`.
    pub(crate) fn tracking(&self) -> bool {
        self.enabled
    }

    /// The partition count to list end offsets for, if known; `None` asks the caller to look
    /// it up (at a full read).
    pub(crate) fn partitions(&self, now: Instant) -> Option<i32> {
        self.partitions.filter(|_| !self.full_due(now))
    }

    fn full_due(&self, now: Instant) -> bool {
        self.full_at
            .is_none_or(|at| now.saturating_duration_since(at) >= FULL_READ_EVERY)
    }

    /// Decides the round's groups. `ends`: the end offsets just listed (`Err`: why they could
    /// not be), `None` when not tracking; `partitions`: the partition count they were listed
    /// for.
    pub(crate) fn plan(
        &mut self,
        groups: &[String],
        ends: Option<Result<(i32, Vec<i64>), String>>,
        now: Instant,
    ) -> Plan {
        let ends = match ends {
            Some(Ok((partitions, ends))) => {
                self.partitions = Some(partitions);
                Some(ends)
            }
            Some(Err(e)) => {
                if !self.unreadable_logged {
                    self.unreadable_logged = true;
                    tracing::info!("cannot list the end offsets of {OFFSETS_TOPIC} ({e}): every group's committed offsets are read each round");
                }
                None
            }
            None => None,
        };
        let moved: Option<HashSet<i32>> = match (&self.ends, &ends) {
            (Some(before), Some(now)) if before.len() == now.len() => Some(
                before
                    .iter()
                    .zip(now)
                    .enumerate()
                    .filter(|(_, (b, n))| b != n)
                    .filter_map(|(p, _)| i32::try_from(p).ok())
                    .collect(),
            ),
            _ => None,
        };
        let full = !self.enabled || self.full_due(now);
        let read = match (&moved, self.partitions) {
            (Some(moved), Some(partitions)) if !full => groups
                .iter()
                .filter(|g| {
                    !self.cache.contains_key(*g)
                        || self.retry.contains(*g)
                        || moved.contains(&offsets_partition(g, partitions))
                })
                .cloned()
                .collect(),
            _ => groups.to_vec(),
        };
        let full = read.len() == groups.len();
        Plan { read, full, ends }
    }

    /// The partition count the round's end offsets were listed for, to list them again after a
    /// full read (`None` if they were not listed).
    pub(crate) fn listed_partitions(&self, plan: &Plan) -> Option<i32> {
        plan.ends.as_ref().and(self.partitions)
    }

    /// Takes the round's answers (`ends_after`: the end offsets listed again after a full
    /// read, to check the placement) and returns every group's offsets on `mirrored`, read now
    /// or remembered, and the groups whose offsets differ from what was last read of them (or
    /// were read for the first time).
    pub(crate) fn update(
        &mut self,
        plan: Plan,
        groups: &[String],
        mirrored: &HashSet<TopicPartition>,
        answers: Vec<(String, Option<Entries>)>,
        ends_after: Option<Vec<i64>>,
        now: Instant,
    ) -> (Vec<(String, Entries)>, HashSet<String>) {
        let unmoved = |p: i32| -> bool {
            let (Some(before), Some(after)) = (&self.ends, &ends_after) else {
                return false;
            };
            let p = usize::try_from(p).unwrap_or(usize::MAX);
            before.len() == after.len() && before.get(p).is_some_and(|b| after.get(p) == Some(b))
        };
        let mut misplaced = None;
        let mut changed = HashSet::new();
        for (group, entries) in answers {
            let Some(mut entries) = entries else {
                self.retry.insert(group);
                continue;
            };
            self.retry.remove(&group);
            entries.sort_by(|a, b| (&a.0.topic, a.0.partition).cmp(&(&b.0.topic, b.0.partition)));
            let cached = self.cache.get(&group);
            if cached == Some(&entries) {
                continue;
            }
            if plan.full && self.enabled && misplaced.is_none() && cached.is_some() {
                if let Some(partitions) = self.partitions {
                    if unmoved(offsets_partition(&group, partitions)) {
                        misplaced = Some(group.clone());
                    }
                }
            }
            changed.insert(group.clone());
            self.cache.insert(group, entries);
        }
        if let Some(group) = misplaced {
            self.enabled = false;
            tracing::warn!(group = %group, "the group's committed offsets changed while its partition of {OFFSETS_TOPIC} did not move: this cluster places commits unlike Apache Kafka; every group's committed offsets are read each round from now on");
        }
        let listed: HashSet<&String> = groups.iter().collect();
        self.cache.retain(|g, _| listed.contains(g));
        if plan.full {
            self.full_at = Some(now);
        }
        self.ends = plan.ends;
        let out = groups
            .iter()
            .filter_map(|g| {
                let entries: Entries = self
                    .cache
                    .get(g)?
                    .iter()
                    .filter(|(tp, _, _)| mirrored.contains(tp))
                    .cloned()
                    .collect();
                (!entries.is_empty()).then(|| (g.clone(), entries))
            })
            .collect();
        (out, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_where_kafka_puts_them() {
        // Utils.abs(s.hashCode()) % 50, computed by Java 17.
        for (group, partition) in [
            ("scale-g00001", 31),
            ("console-consumer-12345", 6),
            ("orders-app", 5),
            // Beyond the basic plane: two UTF-16 code units, as Java counts.
            ("g\u{1F600}", 32),
            // Its hashCode is Integer.MIN_VALUE, which Kafka's Utils.abs maps to 0.
            ("polygenelubricants", 0),
            ("", 0),
        ] {
            assert_eq!(offsets_partition(group, 50), partition, "{group}");
        }
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn entries(offset: i64) -> Option<Entries> {
        Some(vec![(tp(0), offset, String::new())])
    }

    #[test]
    fn only_groups_of_moved_partitions_are_read_again() {
        let groups: Vec<String> = (0..200).map(|i| format!("g{i}")).collect();
        let mirrored: HashSet<TopicPartition> = [tp(0)].into();
        let mut w = CommitWatch::new();
        let start = Instant::now();
        // First round: every group.
        let plan = w.plan(&groups, Some(Ok((50, vec![10; 50]))), start);
        assert!(plan.full);
        let answers = groups.iter().map(|g| (g.clone(), entries(1))).collect();
        let (out, changed) = w.update(plan, &groups, &mirrored, answers, Some(vec![10; 50]), start);
        assert_eq!(out.len(), 200);
        assert_eq!(changed.len(), 200, "read for the first time");
        // Nothing moved: nobody is read, every group keeps its offsets.
        let t = start + Duration::from_secs(5);
        assert_eq!(w.partitions(t), Some(50));
        let plan = w.plan(&groups, Some(Ok((50, vec![10; 50]))), t);
        assert!(plan.read.is_empty() && !plan.full);
        let (out, changed) = w.update(plan, &groups, &mirrored, Vec::new(), None, t);
        assert_eq!(out.len(), 200);
        assert!(changed.is_empty());
        assert!(out.iter().all(|(_, e)| e[0].1 == 1));
        // Partition 7 moved: its groups only.
        let mut ends = vec![10; 50];
        ends[7] = 11;
        let plan = w.plan(&groups, Some(Ok((50, ends.clone()))), t);
        let want: Vec<String> = groups
            .iter()
            .filter(|g| offsets_partition(g, 50) == 7)
            .cloned()
            .collect();
        assert!(!want.is_empty());
        assert_eq!(plan.read, want);
        let mut answers: Vec<(String, Option<Entries>)> =
            want.iter().map(|g| (g.clone(), entries(2))).collect();
        // One of them read again unchanged (another group of its partition committed).
        answers[0].1 = entries(1);
        let (out, changed) = w.update(plan, &groups, &mirrored, answers, None, t);
        assert_eq!(changed.len(), want.len() - 1);
        assert!(!changed.contains(&want[0]));
        for (g, e) in &out {
            assert_eq!(e[0].1, if changed.contains(g) { 2 } else { 1 }, "{g}");
        }
        // A new group and a failed read are read at the next round.
        let mut more = groups.clone();
        more.push("new".into());
        let plan = w.plan(&more, Some(Ok((50, ends.clone()))), t);
        assert_eq!(plan.read, ["new"]);
        let (out, _) = w.update(plan, &more, &mirrored, vec![("new".into(), None)], None, t);
        assert!(!out.iter().any(|(g, _)| g == "new"));
        let plan = w.plan(&more, Some(Ok((50, ends.clone()))), t);
        assert_eq!(plan.read, ["new"]);
        w.update(
            plan,
            &more,
            &mirrored,
            vec![("new".into(), entries(3))],
            None,
            t,
        );
        // A partition mirrored later: its offsets are known without a read.
        let wider: HashSet<TopicPartition> = [tp(0), tp(1)].into();
        let plan = w.plan(&more, Some(Ok((50, ends.clone()))), t);
        assert!(plan.read.is_empty());
        let answers = vec![(
            "g0".to_owned(),
            Some(vec![(tp(0), 2, String::new()), (tp(1), 4, String::new())]),
        )];
        w.update(plan, &more, &mirrored, answers, None, t);
        let plan = w.plan(&more, Some(Ok((50, ends.clone()))), t);
        let (out, _) = w.update(plan, &more, &wider, Vec::new(), None, t);
        let g0 = out.iter().find(|(g, _)| g == "g0").map(|(_, e)| e.len());
        assert_eq!(g0, Some(2));
        // The minute passed: every group.
        let later = start + FULL_READ_EVERY;
        assert_eq!(w.partitions(later), None, "the count is looked up again");
        let plan = w.plan(&more, Some(Ok((50, ends))), later);
        assert!(plan.full);
        // The ends are listed again after a full read, for the count they were listed for.
        assert_eq!(w.listed_partitions(&plan), Some(50));
    }

    #[test]
    fn without_end_offsets_every_group_is_read() {
        let groups: Vec<String> = vec!["a".into(), "b".into()];
        let mirrored: HashSet<TopicPartition> = [tp(0)].into();
        let mut w = CommitWatch::new();
        let now = Instant::now();
        for _ in 0..3 {
            let plan = w.plan(&groups, Some(Err("unauthorized".into())), now);
            assert!(plan.full);
            let answers = groups.iter().map(|g| (g.clone(), entries(1))).collect();
            w.update(plan, &groups, &mirrored, answers, None, now);
        }
    }

    #[test]
    fn a_commit_placed_elsewhere_turns_the_watch_off() {
        let groups: Vec<String> = vec!["a".into()];
        let mirrored: HashSet<TopicPartition> = [tp(0)].into();
        let mut w = CommitWatch::new();
        let start = Instant::now();
        let plan = w.plan(&groups, Some(Ok((50, vec![0; 50]))), start);
        w.update(
            plan,
            &groups,
            &mirrored,
            vec![("a".into(), entries(1))],
            Some(vec![0; 50]),
            start,
        );
        // Group "a" committed, but its partition's end stayed: another placement.
        let later = start + FULL_READ_EVERY;
        let plan = w.plan(&groups, Some(Ok((50, vec![0; 50]))), later);
        assert!(plan.full);
        w.update(
            plan,
            &groups,
            &mirrored,
            vec![("a".into(), entries(5))],
            Some(vec![0; 50]),
            later,
        );
        assert!(!w.tracking());
        let plan = w.plan(&groups, None, later + Duration::from_secs(1));
        assert!(plan.full);
        // Committed while the round ran (after the ends were listed): the end moved by the
        // second listing, so the placement holds.
        let mut w = CommitWatch::new();
        let plan = w.plan(&groups, Some(Ok((50, vec![0; 50]))), start);
        w.update(
            plan,
            &groups,
            &mirrored,
            vec![("a".into(), entries(1))],
            Some(vec![0; 50]),
            start,
        );
        let plan = w.plan(&groups, Some(Ok((50, vec![0; 50]))), later);
        let mut after = vec![0; 50];
        after[usize::try_from(offsets_partition("a", 50)).unwrap_or(0)] = 1;
        w.update(
            plan,
            &groups,
            &mirrored,
            vec![("a".into(), entries(5))],
            Some(after),
            later,
        );
        assert!(w.tracking());
    }
}
