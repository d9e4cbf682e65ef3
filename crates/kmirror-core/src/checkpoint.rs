//! Checkpoint and group-offset-sync decisions (MM2-COMPAT §5.4, §5.6).

/// Whether a new checkpoint `(upstream, downstream)` is emitted after `last`: always for the
/// first, on an upstream rewind (checkpoints may go back when the group was reset on the
/// source), and when the downstream offset moved forward; never for a repeat or a downstream
/// step back.
pub fn should_emit(last: Option<(i64, i64)>, upstream: i64, downstream: i64) -> bool {
    match last {
        None => true,
        Some((last_u, last_d)) => upstream < last_u || downstream > last_d,
    }
}

/// Whether a consumer group on the target has active members, from DescribeGroups/ListGroups:
/// any member, or a state in which the group is (re)joining. Such a group is never touched.
pub fn group_is_active(state: &str, members: usize) -> bool {
    members > 0
        || matches!(
            state,
            "Stable" | "PreparingRebalance" | "CompletingRebalance" | "Assigning" | "Reconciling"
        )
}

/// What group offset sync does with one partition of a group that is idle on the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncDecision {
    /// Commit the translated offset (forwards or backwards: the target group follows the
    /// source group exactly, rewinds included).
    Commit,
    /// Already there.
    InStep,
    /// The target group's offset was committed by someone else (an application that failed
    /// over, an operator): never overwritten.
    Foreign,
}

/// Whether to commit `translated` for a partition whose target group offset is `current`
/// (`None`: not committed), given what kmirror last wrote there (`last_written`: its own last
/// commit, or after a restart the latest checkpoint, which is what it commits).
pub fn sync_decision(
    current: Option<i64>,
    last_written: Option<i64>,
    translated: i64,
) -> SyncDecision {
    match current {
        Some(c) if c == translated => SyncDecision::InStep,
        None => SyncDecision::Commit,
        Some(c) if Some(c) == last_written => SyncDecision::Commit,
        Some(_) => SyncDecision::Foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emission_follows_mm2() {
        assert!(should_emit(None, 10, 5));
        assert!(!should_emit(Some((10, 5)), 10, 5), "a repeat is skipped");
        assert!(should_emit(Some((10, 5)), 12, 7), "forward");
        assert!(
            !should_emit(Some((10, 5)), 12, 4),
            "a downstream step back is skipped"
        );
        assert!(
            should_emit(Some((10, 5)), 3, 1),
            "an upstream rewind is emitted"
        );
        // MM2's restart vector: 250 -> 201 emitted; a new store says 176 for 250: skipped.
        assert!(!should_emit(Some((250, 201)), 250, 176));
        assert!(should_emit(Some((250, 201)), 400, 376));
    }

    #[test]
    fn active_groups_are_refused_and_only_kmirrors_own_commits_move() {
        assert!(group_is_active("Stable", 0));
        assert!(group_is_active("Unknown", 2));
        assert!(!group_is_active("Empty", 0));
        assert!(!group_is_active("Dead", 0));
        assert!(!group_is_active("", 0));
        use SyncDecision::{Commit, Foreign, InStep};
        assert_eq!(
            sync_decision(None, None, 5),
            Commit,
            "never committed there"
        );
        assert_eq!(sync_decision(Some(5), Some(3), 5), InStep);
        assert_eq!(sync_decision(Some(3), Some(3), 9), Commit, "forward");
        assert_eq!(
            sync_decision(Some(9), Some(9), 2),
            Commit,
            "a rewind on the source is followed"
        );
        assert_eq!(
            sync_decision(Some(4_000), None, 100),
            Foreign,
            "someone else's commit is never overwritten"
        );
        assert_eq!(
            sync_decision(Some(7), Some(3), 9),
            Foreign,
            "moved since kmirror wrote it"
        );
    }
}
