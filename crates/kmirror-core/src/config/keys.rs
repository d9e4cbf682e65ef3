//! The MM2 connector keys kmirror knows, and what it does with each (MM2-COMPAT §8.3).

/// What kmirror does with a known connector key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// Honoured with MM2's meaning.
    Implemented,
    /// Meaningless for kmirror (Connect plumbing); accepted with a notice.
    NoEffect(&'static str),
    /// Only MM2's own default class is accepted.
    DefaultClassOnly(&'static str),
}

/// Every MM2 connector key kmirror accepts.
pub const CONNECTOR_KEYS: &[(&str, KeyStatus)] = {
    use KeyStatus::{DefaultClassOnly, Implemented, NoEffect};
    const CONNECT: &str = "Kafka Connect plumbing, not used by kmirror";
    &[
        ("replication.policy.class", Implemented),
        ("replication.policy.separator", Implemented),
        (
            "replication.policy.internal.topic.separator.enabled",
            Implemented,
        ),
        ("topics", Implemented),
        ("topics.exclude", Implemented),
        ("topics.blacklist", Implemented),
        ("heartbeats.replication.enabled", Implemented),
        ("refresh.topics.enabled", Implemented),
        ("refresh.topics.interval.seconds", Implemented),
        ("replication.factor", Implemented),
        ("source.cluster.alias", Implemented),
        ("target.cluster.alias", Implemented),
        ("admin.timeout.ms", Implemented),
        ("enabled", Implemented),
        ("groups", Implemented),
        ("groups.exclude", Implemented),
        ("groups.blacklist", Implemented),
        ("emit.offset-syncs.enabled", Implemented),
        ("offset-syncs.topic.location", Implemented),
        ("offset-syncs.topic.replication.factor", Implemented),
        ("offset.lag.max", Implemented),
        ("refresh.groups.enabled", Implemented),
        ("refresh.groups.interval.seconds", Implemented),
        ("emit.checkpoints.enabled", Implemented),
        ("emit.checkpoints.interval.seconds", Implemented),
        ("sync.group.offsets.enabled", Implemented),
        ("sync.group.offsets.interval.seconds", Implemented),
        ("checkpoints.topic.replication.factor", Implemented),
        ("emit.heartbeats.enabled", Implemented),
        ("emit.heartbeats.interval.seconds", Implemented),
        ("heartbeats.topic.replication.factor", Implemented),
        ("sync.topic.configs.enabled", Implemented),
        ("sync.topic.configs.interval.seconds", Implemented),
        ("sync.topic.acls.enabled", Implemented),
        ("sync.topic.acls.interval.seconds", Implemented),
        ("config.properties.exclude", Implemented),
        ("config.properties.blacklist", Implemented),
        ("use.defaults.from", Implemented),
        ("provenance.header.enabled", Implemented),
        ("provenance.header.name", Implemented),
        ("scale.out.enabled", Implemented),
        ("scale.out.group.id", Implemented),
        ("scale.out.group.protocol", Implemented),
        ("scale.out.session.timeout.ms", Implemented),
        (
            "consumer.poll.timeout.ms",
            NoEffect("kmirror polls continuously"),
        ),
        (
            "tasks.max",
            NoEffect("kmirror runs one pipeline per partition"),
        ),
        ("tasks.max.enforce", NoEffect(CONNECT)),
        ("name", NoEffect(CONNECT)),
        ("connector.class", NoEffect(CONNECT)),
        ("key.converter", NoEffect(CONNECT)),
        ("value.converter", NoEffect(CONNECT)),
        ("header.converter", NoEffect(CONNECT)),
        (
            "metric.reporters",
            NoEffect("kmirror exports Prometheus metrics on --metrics-addr"),
        ),
        // Checked by `exactly_once` (config/mod.rs).
        ("exactly.once.support", Implemented),
        ("transaction.boundary", Implemented),
        ("transaction.boundary.interval.ms", Implemented),
        (
            "topic.filter.class",
            DefaultClassOnly("org.apache.kafka.connect.mirror.DefaultTopicFilter"),
        ),
        (
            "group.filter.class",
            DefaultClassOnly("org.apache.kafka.connect.mirror.DefaultGroupFilter"),
        ),
        (
            "config.property.filter.class",
            DefaultClassOnly("org.apache.kafka.connect.mirror.DefaultConfigPropertyFilter"),
        ),
        (
            "forwarding.admin.class",
            DefaultClassOnly("org.apache.kafka.clients.admin.ForwardingAdmin"),
        ),
    ]
};

/// Key prefixes of connector configs that carry client properties, and the client they go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTarget {
    /// The replication consumer on the source.
    SourceConsumer,
    /// The replication producer on the target.
    TargetProducer,
    /// Admin clients on the source.
    SourceAdmin,
    /// Admin clients on the target.
    TargetAdmin,
    /// Every client on the source.
    SourceAll,
    /// Every client on the target.
    TargetAll,
}

/// Connector-config prefixes for client overrides, most specific first.
pub const CLIENT_PREFIXES: &[(&str, ClientTarget)] = &[
    ("source.consumer.", ClientTarget::SourceConsumer),
    ("target.producer.", ClientTarget::TargetProducer),
    ("source.admin.", ClientTarget::SourceAdmin),
    ("target.admin.", ClientTarget::TargetAdmin),
    ("source.cluster.", ClientTarget::SourceAll),
    ("target.cluster.", ClientTarget::TargetAll),
    ("producer.override.", ClientTarget::TargetProducer),
    ("consumer.", ClientTarget::SourceConsumer),
    ("producer.", ClientTarget::TargetProducer),
    ("admin.", ClientTarget::TargetAdmin),
];

/// Looks up a connector key.
pub fn status_of(key: &str) -> Option<KeyStatus> {
    CONNECTOR_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, status)| *status)
}

/// Connect worker keys that may appear in a cluster's `config:` (Strimzi puts them there).
/// `offset.storage.*` and `offset.flush.interval.ms` configure kmirror's progress topic; the
/// others have no meaning without Connect.
pub const WORKER_KEYS: &[&str] = &[
    "offset.storage.topic",
    "offset.storage.replication.factor",
    "offset.storage.partitions",
    "offset.flush.interval.ms",
    "offset.flush.timeout.ms",
    "config.storage.topic",
    "config.storage.replication.factor",
    "status.storage.topic",
    "status.storage.replication.factor",
    "status.storage.partitions",
    "group.id",
    "key.converter",
    "value.converter",
    "header.converter",
    "key.converter.schemas.enable",
    "value.converter.schemas.enable",
    "config.providers",
    "connector.client.config.override.policy",
    "exactly.once.source.support",
    "task.shutdown.graceful.timeout.ms",
];

/// Edit distance, for "did you mean" hints on unknown keys.
pub fn closest_key(key: &str) -> Option<&'static str> {
    CONNECTOR_KEYS
        .iter()
        .map(|(k, _)| (*k, levenshtein(key, k)))
        .filter(|(_, d)| *d <= 3)
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}
