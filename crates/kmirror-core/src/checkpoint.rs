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

/// Whether to commit `translated` for a partition whose target group offset is `current`
/// (`None`: not committed): only forward, never back.
pub fn should_commit(current: Option<i64>, translated: i64) -> bool {
    current.is_none_or(|c| c < translated)
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
    fn active_groups_and_backwards_commits_are_refused() {
        assert!(group_is_active("Stable", 0));
        assert!(group_is_active("Unknown", 2));
        assert!(!group_is_active("Empty", 0));
        assert!(!group_is_active("Dead", 0));
        assert!(!group_is_active("", 0));
        assert!(should_commit(None, 5));
        assert!(should_commit(Some(4), 5));
        assert!(!should_commit(Some(5), 5));
        assert!(
            !should_commit(Some(9), 5),
            "never move a target group backwards"
        );
    }
}
