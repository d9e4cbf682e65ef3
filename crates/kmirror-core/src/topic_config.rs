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

/// Whether MM2 would ever copy this entry (read-only, sensitive, static-broker and excluded
/// entries never are).
pub fn is_copyable(entry: &ConfigEntry, exclude: &ListPattern) -> bool {
    !(entry.read_only
        || entry.sensitive
        || entry.origin == ConfigOrigin::StaticBroker
        || exclude.matches(&entry.name))
}

/// The configs a new target topic is created with (MM2's `incremental=false` path): copyable
/// entries, and default ones only with `use.defaults.from=source`.
pub fn creation_configs(
    entries: &[ConfigEntry],
    exclude: &ListPattern,
    defaults_from_source: bool,
) -> Vec<(String, String)> {
    entries
        .iter()
        .filter(|e| is_copyable(e, exclude))
        .filter(|e| defaults_from_source || !(e.is_default || e.origin == ConfigOrigin::Default))
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect()
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
        let exclude = ListPattern::parse(DEFAULT_CONFIG_EXCLUDE).expect("valid");
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
            names(creation_configs(&entries, &exclude, false)),
            ["cleanup.policy", "retention.ms"]
        );
        assert_eq!(
            names(creation_configs(&entries, &exclude, true)),
            ["cleanup.policy", "retention.ms", "max.message.bytes"]
        );
    }
}
