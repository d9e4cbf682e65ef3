//! Which source topic configs are copied to the target (MM2's DefaultConfigPropertyFilter,
//! MM2-COMPAT §4.3).

use crate::filter::ListPattern;

/// MM2's default `config.properties.exclude`.
pub const DEFAULT_CONFIG_EXCLUDE: &str = r"follower\.replication\.throttled\.replicas, leader\.replication\.throttled\.replicas, message\.timestamp\.difference\.max\.ms, message\.timestamp\.type, unclean\.leader\.election\.enable, min\.insync\.replicas";

/// Where a config value comes from, as DescribeConfigs reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// Set on the topic.
    DynamicTopic,
    /// A dynamic broker or cluster default.
    DynamicBroker,
    /// From the broker's properties file.
    StaticBroker,
    /// The built-in default.
    Default,
    /// Anything else.
    Unknown,
}

/// One entry of a DescribeConfigs answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Key.
    pub name: String,
    /// Value (`None` for sensitive values).
    pub value: Option<String>,
    /// Origin.
    pub origin: ConfigOrigin,
    /// Read-only on the broker.
    pub read_only: bool,
    /// A secret.
    pub sensitive: bool,
    /// Reported as the default.
    pub is_default: bool,
}

/// MM2's DefaultConfigPropertyFilter: `config.properties.exclude` and `use.defaults.from`.
#[derive(Clone, Debug)]
pub struct ConfigFilter {
    /// Keys never copied (MM2's default list unless configured).
    pub exclude: ListPattern,
    /// `use.defaults.from=source`: copy the source's default values too.
    pub defaults_from_source: bool,
}

impl Default for ConfigFilter {
    fn default() -> Self {
        Self {
            exclude: ListPattern::parse(DEFAULT_CONFIG_EXCLUDE)
                .unwrap_or_else(|_| ListPattern::empty()),
            defaults_from_source: false,
        }
    }
}

impl ConfigEntry {
    /// The broker reports the value as its default (not set on the topic or as a broker
    /// override).
    pub fn is_default_value(&self) -> bool {
        self.is_default || self.origin == ConfigOrigin::Default
    }
}

impl ConfigFilter {
    /// Whether MM2 would ever copy this entry (read-only, sensitive, static-broker and excluded
    /// entries never are).
    pub fn is_copyable(&self, entry: &ConfigEntry) -> bool {
        !(entry.read_only
            || entry.sensitive
            || entry.origin == ConfigOrigin::StaticBroker
            || self.exclude.matches(&entry.name))
    }

    /// The configs a new target topic is created with (MM2's `incremental=false` path):
    /// copyable entries, and default ones only with `use.defaults.from=source`.
    pub fn creation_configs(&self, entries: &[ConfigEntry]) -> Vec<(String, String)> {
        entries
            .iter()
            .filter(|e| self.is_copyable(e))
            .filter(|e| self.defaults_from_source || !e.is_default_value())
            .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
            .collect()
    }

    /// What the periodic sync (MM2's `incremental=true` path) sends to the target for one
    /// topic, reduced to what differs from the target's current configs.
    ///
    /// Copyable source entries become SET to the source value, except default ones, which
    /// become DELETE (fall back to the target's default) unless `use.defaults.from=source`.
    /// A SET equal to the target's value, and a DELETE of a key the target does not override,
    /// are left out.
    pub fn changes(&self, source: &[ConfigEntry], target: &[ConfigEntry]) -> Vec<ConfigChange> {
        let mut out = Vec::new();
        for entry in source.iter().filter(|e| self.is_copyable(e)) {
            let current = target.iter().find(|t| t.name == entry.name);
            let old = current.and_then(|t| t.value.clone());
            if entry.is_default_value() && !self.defaults_from_source {
                // Only a value set on the target topic itself can be deleted.
                if current.is_some_and(|t| t.origin == ConfigOrigin::DynamicTopic && !t.is_default)
                {
                    out.push(ConfigChange {
                        name: entry.name.clone(),
                        op: ConfigOp::Delete,
                        old,
                    });
                }
                continue;
            }
            let Some(value) = entry.value.clone() else {
                continue;
            };
            if old.as_deref() == Some(value.as_str()) {
                continue;
            }
            out.push(ConfigChange {
                name: entry.name.clone(),
                op: ConfigOp::Set(value),
                old,
            });
        }
        out
    }
}

/// One IncrementalAlterConfigs operation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "op", content = "value")]
pub enum ConfigOp {
    /// Set the key on the topic.
    Set(String),
    /// Remove the topic's override (fall back to the broker default).
    Delete,
}

/// A change the config sync makes to one key of a target topic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConfigChange {
    /// Key.
    pub name: String,
    /// What is sent.
    #[serde(flatten)]
    pub op: ConfigOp,
    /// The target's value before (`None`: not reported).
    pub old: Option<String>,
}

impl std::fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let old = self.old.as_deref().unwrap_or("(unset)");
        match &self.op {
            ConfigOp::Set(v) => write!(f, "{}: {old} -> {v}", self.name),
            ConfigOp::Delete => write!(f, "{}: {old} -> (target default)", self.name),
        }
    }
}

/// What to do with one mirrored topic's partitions (MM2-COMPAT §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionAction {
    /// The remote topic is missing: create it with the source's count.
    Create(i32),
    /// The remote topic has fewer partitions: add partitions up to the source's count.
    Grow {
        /// Target count now.
        from: i32,
        /// Source count.
        to: i32,
    },
    /// Same count.
    InStep,
    /// The target has more partitions than the source: the extra ones are left alone.
    TargetLarger {
        /// Source count.
        source: i32,
        /// Target count.
        target: i32,
    },
}

impl PartitionAction {
    /// Decides from the source count and the target's (`None`: no such topic).
    pub fn decide(source: i32, target: Option<i32>) -> Self {
        match target {
            None => Self::Create(source),
            Some(t) if t < source => Self::Grow {
                from: t,
                to: source,
            },
            Some(t) if t > source => Self::TargetLarger { source, target: t },
            Some(_) => Self::InStep,
        }
    }
}

/// How many partitions are replicated: those that exist on both sides. Partitions never
/// shrink and are never deleted, so this is the smaller count.
pub fn replicated_partitions(source: i32, target: i32) -> i32 {
    source.min(target).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, origin: ConfigOrigin) -> ConfigEntry {
        ConfigEntry {
            name: name.into(),
            value: Some("v".into()),
            origin,
            read_only: false,
            sensitive: false,
            is_default: origin == ConfigOrigin::Default,
        }
    }

    #[test]
    fn creation_filters_like_mm2() {
        let mut filter = ConfigFilter::default();
        let mut ro = entry("segment.bytes", ConfigOrigin::DynamicTopic);
        ro.read_only = true;
        let mut secret = entry("x.password", ConfigOrigin::DynamicTopic);
        secret.sensitive = true;
        let entries = vec![
            entry("cleanup.policy", ConfigOrigin::DynamicTopic),
            entry("retention.ms", ConfigOrigin::DynamicBroker),
            entry("min.insync.replicas", ConfigOrigin::DynamicTopic),
            entry("max.message.bytes", ConfigOrigin::Default),
            entry("log.dirs", ConfigOrigin::StaticBroker),
            ro,
            secret,
        ];
        let names = |v: Vec<(String, String)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            names(filter.creation_configs(&entries)),
            ["cleanup.policy", "retention.ms"]
        );
        filter.defaults_from_source = true;
        assert_eq!(
            names(filter.creation_configs(&entries)),
            ["cleanup.policy", "retention.ms", "max.message.bytes"]
        );
    }

    fn valued(name: &str, value: &str, origin: ConfigOrigin) -> ConfigEntry {
        ConfigEntry {
            value: Some(value.into()),
            ..entry(name, origin)
        }
    }

    fn ops(changes: &[ConfigChange]) -> Vec<String> {
        changes.iter().map(ToString::to_string).collect()
    }

    // MM2-COMPAT §4.3: read-only, sensitive, static-broker and excluded entries are never sent;
    // defaults become DELETE with use.defaults.from=target and SET with =source; dynamic broker
    // defaults count as set values.
    #[test]
    fn periodic_sync_sets_and_deletes_like_mm2() {
        let mut ro = valued("message.format.version", "3.0", ConfigOrigin::DynamicTopic);
        ro.read_only = true;
        let mut secret = valued("ssl.key.password", "x", ConfigOrigin::DynamicTopic);
        secret.sensitive = true;
        let source = vec![
            valued("cleanup.policy", "compact", ConfigOrigin::DynamicTopic),
            valued("retention.ms", "1000", ConfigOrigin::DynamicBroker),
            valued("max.message.bytes", "1048588", ConfigOrigin::Default),
            valued("segment.ms", "604800000", ConfigOrigin::Default),
            valued("min.insync.replicas", "1", ConfigOrigin::DynamicTopic),
            valued("log.dirs", "/x", ConfigOrigin::StaticBroker),
            ro,
            secret,
        ];
        let target = vec![
            valued("cleanup.policy", "delete", ConfigOrigin::Default),
            valued("retention.ms", "1000", ConfigOrigin::DynamicTopic),
            valued("max.message.bytes", "2000000", ConfigOrigin::DynamicTopic),
            valued("segment.ms", "604800000", ConfigOrigin::Default),
            valued("min.insync.replicas", "2", ConfigOrigin::DynamicTopic),
        ];
        let mut filter = ConfigFilter::default();
        assert_eq!(
            ops(&filter.changes(&source, &target)),
            [
                "cleanup.policy: delete -> compact",
                "max.message.bytes: 2000000 -> (target default)",
            ]
        );
        filter.defaults_from_source = true;
        assert_eq!(
            ops(&filter.changes(&source, &target)),
            [
                "cleanup.policy: delete -> compact",
                "max.message.bytes: 2000000 -> 1048588",
            ]
        );
        // A target that does not report a key gets it set.
        assert_eq!(
            ops(&filter.changes(&source[..2], &[])),
            [
                "cleanup.policy: (unset) -> compact",
                "retention.ms: (unset) -> 1000"
            ]
        );
    }

    #[test]
    fn configured_exclude_replaces_the_default_list() {
        let filter = ConfigFilter {
            exclude: ListPattern::parse(r"delete\.retention\..*").expect("valid"),
            defaults_from_source: false,
        };
        let source = vec![
            valued("delete.retention.ms", "2000", ConfigOrigin::DynamicTopic),
            valued("min.insync.replicas", "2", ConfigOrigin::DynamicTopic),
        ];
        assert_eq!(
            ops(&filter.changes(&source, &[])),
            ["min.insync.replicas: (unset) -> 2"]
        );
    }

    #[test]
    fn partitions_grow_and_never_shrink() {
        assert_eq!(PartitionAction::decide(3, None), PartitionAction::Create(3));
        assert_eq!(
            PartitionAction::decide(6, Some(3)),
            PartitionAction::Grow { from: 3, to: 6 }
        );
        assert_eq!(PartitionAction::decide(3, Some(3)), PartitionAction::InStep);
        assert_eq!(
            PartitionAction::decide(2, Some(5)),
            PartitionAction::TargetLarger {
                source: 2,
                target: 5
            }
        );
        assert_eq!(replicated_partitions(6, 3), 3);
        assert_eq!(replicated_partitions(2, 5), 2);
    }
}
