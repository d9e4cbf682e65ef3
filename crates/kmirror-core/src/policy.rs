//! Replication policies: how topic names change between clusters (MM2-COMPAT §3).
//!
//! Both of MM2's built-in policies are implemented with MM2's exact semantics, including Java's
//! `String.split` behaviour and IdentityReplicationPolicy's "ends with heartbeats" rule, so topic
//! names, internal topic names and cycle detection match what Java tools expect.

use crate::types::ClusterAlias;

/// The Java class name of MM2's default policy.
pub const DEFAULT_POLICY_CLASS: &str = "org.apache.kafka.connect.mirror.DefaultReplicationPolicy";
/// The Java class name of MM2's identity policy.
pub const IDENTITY_POLICY_CLASS: &str = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy";

/// Which naming scheme applies to remote topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// `source.topic` on the target (MM2's DefaultReplicationPolicy).
    Default,
    /// Same topic name on the target (MM2's IdentityReplicationPolicy).
    Identity,
}

impl PolicyKind {
    /// Maps an MM2 `replication.policy.class` value (full Java name or simple class name) to a
    /// policy, or `None` for classes kmirror does not implement.
    pub fn from_class_name(class: &str) -> Option<Self> {
        match class.trim() {
            DEFAULT_POLICY_CLASS | "DefaultReplicationPolicy" => Some(Self::Default),
            IDENTITY_POLICY_CLASS | "IdentityReplicationPolicy" => Some(Self::Identity),
            _ => None,
        }
    }
}

/// A configured replication policy, as MM2 configures it inside the connectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationPolicy {
    kind: PolicyKind,
    separator: String,
    internal_separator: String,
    /// `source.cluster.alias`: what IdentityReplicationPolicy answers for `topicSource`.
    source_alias: Option<ClusterAlias>,
}

const HEARTBEATS: &str = "heartbeats";

impl ReplicationPolicy {
    /// Builds a policy. `internal_separator_enabled` is
    /// `replication.policy.internal.topic.separator.enabled` (default true).
    pub fn new(
        kind: PolicyKind,
        separator: &str,
        internal_separator_enabled: bool,
        source_alias: Option<ClusterAlias>,
    ) -> Self {
        let internal_separator = if internal_separator_enabled {
            separator.to_owned()
        } else {
            ".".to_owned()
        };
        Self {
            kind,
            separator: separator.to_owned(),
            internal_separator,
            source_alias,
        }
    }

    /// MM2's default: DefaultReplicationPolicy with separator `.`.
    pub fn mm2_default() -> Self {
        Self::new(PolicyKind::Default, ".", true, None)
    }

    /// Which policy this is.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The separator between alias and topic (`replication.policy.separator`).
    pub fn separator(&self) -> &str {
        &self.separator
    }

    fn identity_applies(&self, topic: &str) -> bool {
        self.kind == PolicyKind::Identity && !topic.ends_with(HEARTBEATS)
    }

    /// `formatRemoteTopic`: the name of `topic` from cluster `source` on the target.
    pub fn format_remote_topic(&self, source: &ClusterAlias, topic: &str) -> String {
        if self.identity_applies(topic) {
            topic.to_owned()
        } else {
            format!("{}{}{}", source, self.separator, topic)
        }
    }

    /// `topicSource`: the alias a remote topic came from, or `None` if it is not remote.
    pub fn topic_source<'a>(&'a self, topic: &'a str) -> Option<&'a str> {
        if self.identity_applies(topic) {
            return self.source_alias.as_ref().map(ClusterAlias::as_str);
        }
        default_topic_source(topic, &self.separator)
    }

    /// `upstreamTopic`: the topic's name on the cluster it came from, or `None`.
    pub fn upstream_topic<'a>(&self, topic: &'a str) -> Option<&'a str> {
        if self.identity_applies(topic) {
            return Some(topic);
        }
        let source = default_topic_source(topic, &self.separator)?;
        Some(&topic[source.len() + self.separator.len()..])
    }

    /// `originalTopic`: strips every hop.
    pub fn original_topic<'a>(&self, topic: &'a str) -> &'a str {
        let mut current = topic;
        // Each hop strips at least one byte, so this ends; the bound is a safety net.
        for _ in 0..=topic.len() {
            match self.upstream_topic(current) {
                Some(up) if up != current => current = up,
                _ => return current,
            }
        }
        current
    }

    /// The heartbeats topic name (always `heartbeats`).
    pub fn heartbeats_topic(&self) -> &'static str {
        HEARTBEATS
    }

    /// `checkpointsTopic(alias)`: `<alias><isep>checkpoints<isep>internal`.
    pub fn checkpoints_topic(&self, alias: &ClusterAlias) -> String {
        let s = &self.internal_separator;
        format!("{alias}{s}checkpoints{s}internal")
    }

    /// `offsetSyncsTopic(alias)`: `mm2-offset-syncs<isep><alias><isep>internal`.
    pub fn offset_syncs_topic(&self, alias: &ClusterAlias) -> String {
        let s = &self.internal_separator;
        format!("mm2-offset-syncs{s}{alias}{s}internal")
    }

    /// `isHeartbeatsTopic`.
    pub fn is_heartbeats_topic(&self, topic: &str) -> bool {
        self.original_topic(topic) == HEARTBEATS
    }

    /// `isCheckpointsTopic`.
    pub fn is_checkpoints_topic(&self, topic: &str) -> bool {
        let s = &self.internal_separator;
        topic.ends_with(&format!("{s}checkpoints{s}internal"))
    }

    /// `isMM2InternalTopic`.
    pub fn is_mm2_internal_topic(&self, topic: &str) -> bool {
        topic.ends_with(&format!("{}internal", self.internal_separator))
    }

    /// `isInternalTopic`: MM2 internal topics, `__*`, `.*`, `*-internal`, `*.internal`.
    pub fn is_internal_topic(&self, topic: &str) -> bool {
        self.is_mm2_internal_topic(topic)
            || topic.starts_with("__")
            || topic.starts_with('.')
            || topic.ends_with("-internal")
            || topic.ends_with(".internal")
    }

    /// `isCycle`: would replicating `topic` to `target` send data back where it came from?
    pub fn is_cycle(&self, topic: &str, target: &ClusterAlias) -> bool {
        let mut current = topic;
        for _ in 0..=topic.len() {
            match self.topic_source(current) {
                None => return false,
                Some(src) if src == target.as_str() => return true,
                Some(_) => match self.upstream_topic(current) {
                    Some(up) if up != current => current = up,
                    _ => return false,
                },
            }
        }
        false
    }
}

/// DefaultReplicationPolicy's `topicSource` with Java `split` semantics: trailing empty pieces
/// are dropped, leading ones kept; fewer than two pieces means "not remote".
fn default_topic_source<'a>(topic: &'a str, separator: &str) -> Option<&'a str> {
    if separator.is_empty() {
        return None;
    }
    let mut pieces: Vec<&str> = topic.split(separator).collect();
    while pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    if pieces.len() >= 2 {
        pieces.first().copied()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(a: &str) -> ClusterAlias {
        ClusterAlias::new(a)
    }

    #[test]
    fn default_topic_source_follows_java_split() {
        let p = ReplicationPolicy::mm2_default();
        assert_eq!(p.topic_source("a.b.c"), Some("a"));
        assert_eq!(p.topic_source("a."), None);
        assert_eq!(p.topic_source(".a"), Some(""));
        assert_eq!(p.topic_source("a..b"), Some("a"));
        assert_eq!(p.topic_source(""), None);
        assert_eq!(p.upstream_topic("a..b"), Some(".b"));
        assert_eq!(p.original_topic("x.y.orders"), "orders");
    }

    #[test]
    fn internal_topic_names_use_the_internal_separator() {
        let p = ReplicationPolicy::new(PolicyKind::Default, "__", true, None);
        assert_eq!(
            p.offset_syncs_topic(&alias("B")),
            "mm2-offset-syncs__B__internal"
        );
        assert_eq!(p.checkpoints_topic(&alias("A")), "A__checkpoints__internal");
        let p = ReplicationPolicy::new(PolicyKind::Default, "__", false, None);
        assert_eq!(
            p.offset_syncs_topic(&alias("B")),
            "mm2-offset-syncs.B.internal"
        );
        assert_eq!(p.checkpoints_topic(&alias("A")), "A.checkpoints.internal");
        assert_eq!(p.heartbeats_topic(), "heartbeats");
    }

    #[test]
    fn heartbeats_and_internal_topics() {
        let p = ReplicationPolicy::mm2_default();
        assert!(p.is_heartbeats_topic("heartbeats"));
        assert!(p.is_heartbeats_topic("A.heartbeats"));
        assert!(p.is_heartbeats_topic("A.B.heartbeats"));
        let underscore = ReplicationPolicy::new(PolicyKind::Default, "_", true, None);
        assert!(!underscore.is_heartbeats_topic("us-west.heartbeats"));
        assert!(p.is_checkpoints_topic("primary.checkpoints.internal"));
        assert!(!p.is_checkpoints_topic("checkpoints.internal"));
        assert!(p.is_internal_topic("__consumer_offsets"));
        assert!(p.is_internal_topic(".hidden"));
        assert!(p.is_internal_topic("mm2-offsets.A.internal"));
        assert!(p.is_internal_topic("x-internal"));
        assert!(!p.is_internal_topic("orders"));
        assert!(
            !underscore.is_mm2_internal_topic("mm2-offsets_X_internal")
                || underscore.is_internal_topic("mm2-offsets_X_internal")
        );
        assert!(!p.is_internal_topic("mm2-offsets_X_internal"));
    }

    #[test]
    fn identity_keeps_names_but_prefixes_heartbeats() {
        let p = ReplicationPolicy::new(PolicyKind::Identity, ".", true, Some(alias("primary")));
        assert_eq!(p.format_remote_topic(&alias("primary"), "orders"), "orders");
        assert_eq!(
            p.format_remote_topic(&alias("primary"), "heartbeats"),
            "primary.heartbeats"
        );
        assert_eq!(
            p.format_remote_topic(&alias("primary"), "my-heartbeats"),
            "primary.my-heartbeats"
        );
        assert_eq!(p.topic_source("orders"), Some("primary"));
        assert_eq!(p.upstream_topic("orders"), Some("orders"));
        assert!(!p.is_cycle("orders", &alias("backup")));
        assert!(p.is_heartbeats_topic("primary.heartbeats"));
    }

    #[test]
    fn cycles_are_detected_through_hops() {
        let p = ReplicationPolicy::mm2_default();
        assert!(p.is_cycle("B.orders", &alias("B")));
        assert!(p.is_cycle("A.B.orders", &alias("B")));
        assert!(!p.is_cycle("A.orders", &alias("B")));
        assert!(!p.is_cycle("orders", &alias("B")));
        assert_eq!(p.format_remote_topic(&alias("A"), "orders"), "A.orders");
    }

    #[test]
    fn class_names() {
        assert_eq!(
            PolicyKind::from_class_name(IDENTITY_POLICY_CLASS),
            Some(PolicyKind::Identity)
        );
        assert_eq!(
            PolicyKind::from_class_name("DefaultReplicationPolicy"),
            Some(PolicyKind::Default)
        );
        assert_eq!(PolicyKind::from_class_name("com.example.Custom"), None);
    }
}
