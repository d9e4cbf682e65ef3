//! Configuration: the raw, as-written model ([`raw`]) and its validated form ([`Config`]).
//!
//! [`resolve`] checks everything that can be checked without touching files or the network and
//! returns either a [`Config`] or every [`Problem`] found, each naming the field at fault.
//! Certificate files are checked by the engine, which owns I/O.

pub mod keys;
pub mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::filter::{self, ListPattern, NameFilter};
use crate::policy::{PolicyKind, ReplicationPolicy};
use crate::topic_config::ConfigFilter;
use crate::types::{ClusterAlias, StartFrom};
use keys::{ClientTarget, KeyStatus};
use raw::{CertificateSource, ClusterSpec, ConnectorSpec, MirrorSpec, Spec};

/// kmirror's default for `refresh.topics.interval.seconds` (MM2's is 600).
pub const DEFAULT_REFRESH_TOPICS: Duration = Duration::from_secs(5);
/// kmirror's default for `offset.flush.interval.ms`: how often progress is recorded.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// MM2's default `admin.timeout.ms`.
pub const DEFAULT_ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: a field path such as `spec.clusters[source].bootstrapServers`, or a file.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl Problem {
    /// Builds a problem.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// How serious a [`Notice`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something the user asked for that kmirror does not do (yet).
    Warning,
    /// Accepted and deliberately without effect.
    Info,
}

/// A remark about an accepted configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// How serious.
    pub severity: Severity,
    /// The field.
    pub field: String,
    /// The remark.
    pub message: String,
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Client properties (librdkafka names) as key → value.
pub type ClientProps = BTreeMap<String, String>;

/// Where a PEM file comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemSource {
    /// One file.
    File(PathBuf),
    /// Every file in a mounted Secret directory whose name matches a glob (`*.crt`).
    Pattern {
        /// The Secret's directory.
        dir: PathBuf,
        /// The glob.
        pattern: String,
    },
}

/// A PEM input together with the config field it came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    /// The config field.
    pub field: String,
    /// The value.
    pub value: T,
}

/// TLS settings of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// CA certificates.
    pub trusted: Vec<Located<PemSource>>,
    /// Client certificate and key for mutual TLS.
    pub client: Option<ClientCertificate>,
}

/// A client certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The config field (`...authentication.certificateAndKey`).
    pub field: String,
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// SASL settings of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sasl {
    /// librdkafka `sasl.mechanism`.
    pub mechanism: &'static str,
    /// User name.
    pub username: String,
    /// File holding the password.
    pub password_file: Located<PathBuf>,
}

/// A resolved cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Alias.
    pub alias: ClusterAlias,
    /// Bootstrap servers.
    pub bootstrap_servers: String,
    /// TLS, if the cluster uses it.
    pub tls: Option<Tls>,
    /// SASL, if the cluster uses it.
    pub sasl: Option<Sasl>,
    /// Properties for every client on this cluster.
    pub common: ClientProps,
    /// `producer.*` from the cluster config.
    pub producer: ClientProps,
    /// `consumer.*` from the cluster config.
    pub consumer: ClientProps,
    /// `admin.*` from the cluster config.
    pub admin: ClientProps,
    /// Connect worker keys found in the config.
    pub worker: BTreeMap<String, String>,
}

/// Where and how replication progress is recorded on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressSettings {
    /// Topic name (`offset.storage.topic`, default `mm2-offsets.<source>.internal`).
    pub topic: String,
    /// Partitions when kmirror creates it (`offset.storage.partitions`, default 25).
    pub partitions: i32,
    /// Replication factor when kmirror creates it (`offset.storage.replication.factor`, `None`
    /// = broker default).
    pub replication_factor: Option<i32>,
    /// How often progress is written (`offset.flush.interval.ms`).
    pub flush_interval: Duration,
}

/// Client overrides from a mirror's connector configs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorClients {
    /// The replication consumer.
    pub source_consumer: ClientProps,
    /// The replication producer.
    pub target_producer: ClientProps,
    /// Admin on the source.
    pub source_admin: ClientProps,
    /// Admin on the target.
    pub target_admin: ClientProps,
    /// Every client on the source.
    pub source_all: ClientProps,
    /// Every client on the target.
    pub target_all: ClientProps,
}

/// A resolved replication flow.
#[derive(Clone, Debug)]
pub struct Mirror {
    /// Source alias.
    pub source: ClusterAlias,
    /// Target alias.
    pub target: ClusterAlias,
    /// Naming of remote topics.
    pub policy: ReplicationPolicy,
    /// Which topics.
    pub topics: NameFilter,
    /// Which consumer groups.
    pub groups: NameFilter,
    /// Replicate heartbeats topics even if the topic filter rejects them.
    pub heartbeats_replication: bool,
    /// How often new topics and partitions are looked for (`None`: only at start).
    pub refresh_topics: Option<Duration>,
    /// Replication factor of created topics (`None` = broker default).
    pub replication_factor: Option<i32>,
    /// Timeout of admin requests.
    pub admin_timeout: Duration,
    /// Where partitions without progress start.
    pub start_from: StartFrom,
    /// Client overrides.
    pub clients: MirrorClients,
    /// Progress recording.
    pub progress: ProgressSettings,
    /// Heartbeat emission (`None`: `emit.heartbeats.enabled=false`).
    pub heartbeats: Option<HeartbeatSettings>,
    /// Offset-sync emission (`None`: `emit.offset-syncs.enabled=false`).
    pub offset_syncs: Option<OffsetSyncSettings>,
    /// Checkpoints (`None`: `emit.checkpoints.enabled=false`).
    pub checkpoints: Option<CheckpointSettings>,
    /// Which source topic configs are copied (at creation and by the periodic sync).
    pub config_filter: ConfigFilter,
    /// `sync.topic.configs.interval.seconds` (`None`: `sync.topic.configs.enabled=false`).
    pub sync_topic_configs: Option<Duration>,
    /// `sync.topic.acls.interval.seconds` (`None`: `sync.topic.acls.enabled=false`).
    pub sync_topic_acls: Option<Duration>,
    /// The origin header written on every copied record, and by which records from the target
    /// are not copied back (`provenance.header.name`; `None`:
    /// `provenance.header.enabled=false`). See [`crate::provenance`].
    pub provenance: Option<String>,
    /// Exactly-once mode (`exactly.once.source.support: enabled` on the target cluster; `None`:
    /// at least once).
    pub exactly_once: Option<ExactlyOnce>,
    /// Scale-out across replicas (`scale.out.enabled`; `None`: this instance copies every
    /// partition and runs every job).
    pub scale_out: Option<ScaleOut>,
}

/// Scale-out: replicas of the same config share a flow's partitions through a consumer group
/// on the target cluster (see the engine's `ownership` module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleOut {
    /// The group (`scale.out.group.id`, default `kmirror-<source>-<target>`).
    pub group_id: String,
    /// The group protocol (`scale.out.group.protocol`).
    pub protocol: GroupProtocol,
    /// `scale.out.session.timeout.ms` (classic protocol; the `consumer` protocol's session
    /// timeout is the broker's `group.consumer.session.timeout.ms`).
    pub session_timeout: Duration,
}

/// The consumer group protocol replicas coordinate with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup with incremental cooperative rebalancing (`cooperative-sticky`):
    /// every Kafka since 2.4.
    Classic,
    /// KIP-848's broker-driven protocol (Kafka 4.0 and later): no stop-the-world rebalance.
    Consumer,
}

impl GroupProtocol {
    /// The value of librdkafka's `group.protocol`.
    pub fn name(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

/// Default `scale.out.session.timeout.ms` (Kafka Connect's worker default).
pub const DEFAULT_SCALE_OUT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Exactly-once mode of a flow (MM2's KIP-618 keys): the copied records and their progress are
/// committed together in transactions on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExactlyOnce {
    /// The target producer's `transactional.id`: `kmirror-<source>-<target>` (and
    /// `<that>-<codec>` for the producers of compressed topics). A second instance with the
    /// same ones fences the first.
    pub transactional_id: String,
    /// How often the open transaction is committed (`transaction.boundary`: `poll` is
    /// [`DEFAULT_COMMIT_INTERVAL`]; `interval` is `transaction.boundary.interval.ms`, else
    /// `offset.flush.interval.ms`, as in MM2).
    pub commit_interval: Duration,
}

/// How often a transaction is committed with `transaction.boundary: poll` (MM2's default, which
/// commits after each poll of at most 500 records): what a `read_committed` consumer on the
/// target waits for a record at most, beyond the copy itself.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(200);

/// kmirror's default for `sync.topic.configs.interval.seconds` and
/// `sync.topic.acls.interval.seconds` (MM2: 600 s): the target follows within seconds.
pub const DEFAULT_TOPIC_SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// kmirror's default for MM2's checkpoint, group refresh and group sync intervals (MM2: 60 s,
/// 600 s, 60 s): checkpoints follow the source within seconds.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// `emit.checkpoints.*`, `refresh.groups.*`, `sync.group.offsets.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// `<source>.checkpoints.internal` (policy-aware separator), on the target.
    pub topic: String,
    /// `emit.checkpoints.interval.seconds`.
    pub interval: Duration,
    /// `refresh.groups.interval.seconds` (`None`: groups found at start only).
    pub refresh_groups: Option<Duration>,
    /// `checkpoints.topic.replication.factor` (`None` = broker default; MM2's is 3).
    pub replication_factor: Option<i32>,
    /// `sync.group.offsets.interval.seconds` when `sync.group.offsets.enabled=true`.
    pub sync_group_offsets: Option<Duration>,
}

/// Which cluster holds the offset-syncs topic (`offset-syncs.topic.location`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncLocation {
    /// On the source, named after the target (MM2's default).
    Source,
    /// On the target, named after the source.
    Target,
}

/// `emit.offset-syncs.*`, `offset-syncs.topic.*` and `offset.lag.max`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetSyncSettings {
    /// Where the topic lives.
    pub location: SyncLocation,
    /// Its name: `mm2-offset-syncs.<the other cluster>.internal` (policy-aware separator).
    pub topic: String,
    /// Replication factor when kmirror creates it (`None` = broker default; MM2's is 3).
    pub replication_factor: Option<i32>,
    /// `offset.lag.max` (MM2 default 100).
    pub lag_max: i64,
}

/// `emit.heartbeats.*` and `heartbeats.topic.replication.factor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatSettings {
    /// `emit.heartbeats.interval.seconds` (MM2 default 1).
    pub interval: Duration,
    /// Replication factor of the `heartbeats` topic when kmirror creates it (`None` = broker
    /// default; MM2's default is 3).
    pub replication_factor: Option<i32>,
}

impl Mirror {
    /// `S->T`, the name MM2 gives a flow.
    pub fn name(&self) -> String {
        format!("{}->{}", self.source, self.target)
    }
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Name of the Strimzi resource, if the file was one.
    pub name: Option<String>,
    /// Clusters by alias.
    pub clusters: BTreeMap<ClusterAlias, Cluster>,
    /// Enabled flows.
    pub mirrors: Vec<Mirror>,
    /// Remarks for the log.
    pub notices: Vec<Notice>,
}

impl Config {
    /// The cluster with `alias`; every mirror's aliases exist after resolution.
    pub fn cluster(&self, alias: &ClusterAlias) -> Option<&Cluster> {
        self.clusters.get(alias)
    }
}

/// Where relative paths and Secrets are found.
#[derive(Clone, Debug, Default)]
pub struct ResolveContext {
    /// `--secrets-dir`: Secrets are at `<dir>/<secretName>/<key>`.
    pub secrets_dir: Option<PathBuf>,
    /// The config file's directory, for relative file paths.
    pub config_dir: PathBuf,
}

/// Config keys whose values are secrets: never logged.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with("jaas.config")
        || k.ends_with("ssl.key.pem")
        || k == "ssl_key"
        || k.ends_with("keystore.key")
        || k.ends_with(".token")
}

/// Client keys kmirror sets itself; a user value would break ordering or progress tracking.
const RESERVED_CLIENT_KEYS: &[(&str, &str)] = &[
    (
        "bootstrap.servers",
        "set bootstrapServers on the cluster instead",
    ),
    (
        "enable.idempotence",
        "kmirror always uses the idempotent producer to keep order",
    ),
    (
        "enable.auto.commit",
        "kmirror records progress itself, after the target acknowledged",
    ),
    (
        "enable.auto.offset.store",
        "kmirror records progress itself",
    ),
    (
        "group.instance.id",
        "kmirror manages consumer membership itself",
    ),
    (
        "transactional.id",
        "kmirror names its transactions itself in exactly-once mode (kmirror-<source>-<target>)",
    ),
];

/// Validates a spec. `name` is the resource name for logs.
pub fn resolve(
    spec: &Spec,
    name: Option<String>,
    ctx: &ResolveContext,
) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut notices = Vec::new();
    ignored_spec_fields(spec, &mut notices);

    let mut clusters = BTreeMap::new();
    // Clusters whose own problems left them out: what names them is not reported again.
    let mut refused: BTreeSet<ClusterAlias> = BTreeSet::new();
    for (i, c) in spec.clusters.iter().enumerate() {
        let field = if c.alias.is_empty() {
            format!("spec.clusters[{i}]")
        } else {
            format!("spec.clusters[{}]", c.alias)
        };
        if let Some(cluster) = resolve_cluster(c, &field, ctx, &mut problems, &mut notices) {
            if clusters.insert(cluster.alias.clone(), cluster).is_some() {
                problems.push(Problem::new(
                    format!("{field}.alias"),
                    format!("alias `{}` is used by more than one cluster", c.alias),
                ));
            }
        } else if !c.alias.is_empty() {
            refused.insert(ClusterAlias::new(c.alias.as_str()));
        }
    }
    if spec.clusters.is_empty() {
        problems.push(Problem::new("spec.clusters", "no clusters are defined"));
    }
    if let Some(connect) = &spec.connect_cluster {
        let alias = ClusterAlias::new(connect.as_str());
        if !clusters.contains_key(&alias) && !refused.contains(&alias) {
            problems.push(Problem::new(
                "spec.connectCluster",
                format!("`{connect}` is not the alias of any cluster in spec.clusters"),
            ));
        }
    }

    let mut mirrors = Vec::new();
    for (i, m) in spec.mirrors.iter().enumerate() {
        let field = format!("spec.mirrors[{i}]");
        let known = Known {
            clusters: &clusters,
            refused: &refused,
            replicated: spec.replicas.is_some_and(|r| r > 1),
        };
        if let Some(mirror) = resolve_mirror(m, &field, &known, &mut problems, &mut notices) {
            mirrors.push(mirror);
        }
    }
    if spec.mirrors.is_empty() {
        problems.push(Problem::new(
            "spec.mirrors",
            "no mirrors are defined: nothing to replicate",
        ));
    }
    let mut flows = BTreeSet::new();
    for m in &mirrors {
        if !flows.insert((m.source.clone(), m.target.clone())) {
            problems.push(Problem::new(
                "spec.mirrors",
                format!("the flow {} is defined more than once", m.name()),
            ));
        }
    }

    if problems.is_empty() {
        Ok(Config {
            name,
            clusters,
            mirrors,
            notices,
        })
    } else {
        // One line per problem: a Secret named by both a certificate and its key is one.
        let mut seen = BTreeSet::new();
        problems.retain(|p| seen.insert((p.field.clone(), p.message.clone())));
        Err(problems)
    }
}

fn ignored_spec_fields(spec: &Spec, notices: &mut Vec<Notice>) {
    let fields = [
        ("image", spec.image.is_some()),
        ("resources", spec.resources.is_some()),
        ("livenessProbe", spec.liveness_probe.is_some()),
        ("readinessProbe", spec.readiness_probe.is_some()),
        ("jvmOptions", spec.jvm_options.is_some()),
        ("jmxOptions", spec.jmx_options.is_some()),
        ("logging", spec.logging.is_some()),
        ("clientRackInitImage", spec.client_rack_init_image.is_some()),
        ("rack", spec.rack.is_some()),
        ("tracing", spec.tracing.is_some()),
        ("template", spec.template.is_some()),
        (
            "externalConfiguration",
            spec.external_configuration.is_some(),
        ),
        ("metricsConfig", spec.metrics_config.is_some()),
    ];
    for (name, present) in fields {
        if present {
            notices.push(Notice {
                severity: Severity::Info,
                field: format!("spec.{name}"),
                message: "configures Strimzi's Connect pods; set it on the kmirror Deployment instead (ignored)".into(),
            });
        }
    }
    if let Some(replicas) = spec.replicas {
        if replicas > 1 {
            notices.push(Notice {
                severity: Severity::Info,
                field: "spec.replicas".into(),
                message: format!("{replicas} replicas: scale-out is on for every flow (scale.out.enabled), so that replicas share the partitions; run the Deployment with {replicas} replicas"),
            });
        }
    }
}

fn secret_path(
    ctx: &ResolveContext,
    secret_name: Option<&str>,
    key: &str,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<PathBuf> {
    match secret_name {
        Some(secret) => match &ctx.secrets_dir {
            Some(dir) => Some(dir.join(secret).join(key)),
            None => {
                problems.push(Problem::new(
                    field,
                    format!("refers to Secret `{secret}`: pass --secrets-dir DIR where Secrets are mounted as DIR/<secretName>/<key>"),
                ));
                None
            }
        },
        None => Some(relative_to(&ctx.config_dir, Path::new(key))),
    }
}

fn relative_to(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn resolve_cluster(
    c: &ClusterSpec,
    field: &str,
    ctx: &ResolveContext,
    problems: &mut Vec<Problem>,
    notices: &mut Vec<Notice>,
) -> Option<Cluster> {
    let before = problems.len();
    if c.alias.is_empty() {
        problems.push(Problem::new(format!("{field}.alias"), "must not be empty"));
    } else if !c
        .alias
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
    {
        problems.push(Problem::new(
            format!("{field}.alias"),
            format!(
                "`{}` must be letters, digits, `-`, `_` or `.`: it becomes part of topic names",
                c.alias
            ),
        ));
    }
    if c.bootstrap_servers.trim().is_empty() {
        problems.push(Problem::new(
            format!("{field}.bootstrapServers"),
            "must not be empty",
        ));
    }

    let tls = c.tls.as_ref().map(|tls| {
        let trusted = tls
            .trusted_certificates
            .iter()
            .enumerate()
            .filter_map(|(i, source)| {
                let f = format!("{field}.tls.trustedCertificates[{i}]");
                trusted_source(source, &f, ctx, problems).map(|value| Located { field: f, value })
            })
            .collect();
        Tls {
            trusted,
            client: None,
        }
    });
    let mut tls = tls;
    let mut sasl = None;
    if let Some(auth) = &c.authentication {
        let afield = format!("{field}.authentication");
        match auth.kind.as_str() {
            "tls" => match (&auth.certificate_and_key, tls.as_mut()) {
                (Some(ck), Some(tls)) => {
                    let f = format!("{afield}.certificateAndKey");
                    let cert = secret_path(ctx, ck.secret_name.as_deref(), &ck.certificate, &f, problems);
                    let key = secret_path(ctx, ck.secret_name.as_deref(), &ck.key, &f, problems);
                    if let (Some(certificate), Some(key)) = (cert, key) {
                        tls.client = Some(ClientCertificate {
                            field: f,
                            certificate,
                            key,
                        });
                    }
                }
                (None, _) => problems.push(Problem::new(
                    format!("{afield}.certificateAndKey"),
                    "is required for authentication type `tls`",
                )),
                (Some(_), None) => problems.push(Problem::new(
                    format!("{field}.tls"),
                    "authentication type `tls` needs a `tls` section (mutual TLS runs over TLS)",
                )),
            },
            kind @ ("scram-sha-256" | "scram-sha-512" | "plain") => {
                let mechanism = match kind {
                    "scram-sha-256" => "SCRAM-SHA-256",
                    "scram-sha-512" => "SCRAM-SHA-512",
                    _ => "PLAIN",
                };
                match (&auth.username, &auth.password_secret) {
                    (Some(username), Some(ps)) => {
                        let f = format!("{afield}.passwordSecret");
                        if let Some(path) = secret_path(ctx, ps.secret_name.as_deref(), &ps.password, &f, problems) {
                            sasl = Some(Sasl {
                                mechanism,
                                username: username.clone(),
                                password_file: Located { field: f, value: path },
                            });
                        }
                    }
                    _ => problems.push(Problem::new(
                        afield.clone(),
                        format!("type `{kind}` needs `username` and `passwordSecret`"),
                    )),
                }
            }
            other => problems.push(Problem::new(
                format!("{afield}.type"),
                format!("`{other}` is not supported; use tls, scram-sha-256, scram-sha-512 or plain (or librdkafka sasl.* keys in config)"),
            )),
        }
    }

    let mut common = ClientProps::new();
    let mut producer = ClientProps::new();
    let mut consumer = ClientProps::new();
    let mut admin = ClientProps::new();
    let mut worker = BTreeMap::new();
    for (key, value) in &c.config {
        let value = value.to_string();
        let kfield = format!("{field}.config.{key}");
        if key == "exactly.once.source.support" {
            match value.trim().to_ascii_lowercase().as_str() {
                "disabled" => {}
                // MM2's rolling-upgrade step: its tasks still copy at least once.
                "preparing" => notices.push(Notice {
                    severity: Severity::Info,
                    field: kfield,
                    message: "`preparing` copies at least once, in MM2 as in kmirror".into(),
                }),
                "enabled" => {}
                _ => problems.push(Problem::new(
                    kfield,
                    format!("`{}` is not a value of exactly.once.source.support (disabled, enabled or preparing)", value.trim()),
                )),
            }
            worker.insert(key.clone(), value);
            continue;
        }
        if keys::WORKER_KEYS.contains(&key.as_str()) {
            if !(key.starts_with("offset.storage.") || key == "offset.flush.interval.ms") {
                notices.push(Notice {
                    severity: Severity::Info,
                    field: kfield,
                    message: "Kafka Connect worker setting without meaning for kmirror (ignored)"
                        .into(),
                });
            }
            worker.insert(key.clone(), value);
            continue;
        }
        let (map, bare) = if let Some(k) = key.strip_prefix("producer.") {
            (&mut producer, k)
        } else if let Some(k) = key.strip_prefix("consumer.") {
            (&mut consumer, k)
        } else if let Some(k) = key.strip_prefix("admin.") {
            (&mut admin, k)
        } else {
            (&mut common, key.as_str())
        };
        if let Some((_, why)) = RESERVED_CLIENT_KEYS.iter().find(|(k, _)| *k == bare) {
            problems.push(Problem::new(kfield, format!("cannot be set: {why}")));
            continue;
        }
        map.insert(bare.to_owned(), value);
    }

    if problems.len() > before {
        return None;
    }
    Some(Cluster {
        alias: ClusterAlias::new(c.alias.as_str()),
        bootstrap_servers: c.bootstrap_servers.trim().to_owned(),
        tls,
        sasl,
        common,
        producer,
        consumer,
        admin,
        worker,
    })
}

fn trusted_source(
    source: &CertificateSource,
    field: &str,
    ctx: &ResolveContext,
    problems: &mut Vec<Problem>,
) -> Option<PemSource> {
    match (&source.certificate, &source.pattern) {
        (Some(cert), None) => {
            secret_path(ctx, source.secret_name.as_deref(), cert, field, problems)
                .map(PemSource::File)
        }
        (None, Some(pattern)) => {
            let Some(secret) = &source.secret_name else {
                problems.push(Problem::new(field, "`pattern` needs `secretName`"));
                return None;
            };
            let dir = secret_path(ctx, Some(secret), "", field, problems)?;
            Some(PemSource::Pattern {
                dir,
                pattern: pattern.clone(),
            })
        }
        _ => {
            problems.push(Problem::new(
                field,
                "give exactly one of `certificate` or `pattern`",
            ));
            None
        }
    }
}

/// The connector keys of a mirror after merging the three connector blocks.
struct MergedKeys {
    values: BTreeMap<String, (String, String)>,
}

impl MergedKeys {
    fn get(&self, key: &str) -> Option<(&str, &str)> {
        self.values.get(key).map(|(f, v)| (f.as_str(), v.as_str()))
    }
}

/// The source consumer's effective `isolation.level`, as MM2 computes it: the source cluster's
/// client keys, overlaid by its consumer keys, by the connector's `source.cluster.*` and by
/// `source.consumer.*` (kmirror's default: `read_committed`).
fn source_isolation<'a>(source: Option<&'a Cluster>, clients: &'a MirrorClients) -> &'a str {
    [
        source.and_then(|c| c.common.get("isolation.level")),
        source.and_then(|c| c.consumer.get("isolation.level")),
        clients.source_all.get("isolation.level"),
        clients.source_consumer.get("isolation.level"),
    ]
    .into_iter()
    .flatten()
    .next_back()
    .map_or("read_committed", |v| v.trim())
}

/// Exactly-once mode (KIP-618): `exactly.once.source.support` on the target cluster turns it
/// on; the connector's `exactly.once.support`, `transaction.boundary` and
/// `transaction.boundary.interval.ms` are checked against the values MM2 accepts.
fn exactly_once(
    keys: &MergedKeys,
    (source, target): (&ClusterAlias, Option<&Cluster>),
    isolation: &str,
    flush_interval: Option<Duration>,
    problems: &mut Vec<Problem>,
    notices: &mut Vec<Notice>,
) -> Option<ExactlyOnce> {
    let enabled = target.is_some_and(|t| {
        t.worker
            .get("exactly.once.source.support")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("enabled"))
    });
    let target_alias = target.map_or_else(String::new, |t| t.alias.to_string());
    if let Some((kfield, value)) = keys.get("exactly.once.support") {
        match value.trim().to_ascii_lowercase().as_str() {
            "requested" => {}
            "required" if !enabled => problems.push(Problem::new(
                kfield,
                format!("exactly-once copying needs `exactly.once.source.support: enabled` in the config of the target cluster `{target_alias}`; without it kmirror copies at least once (nothing is lost, and the records in flight when it is killed are copied again)"),
            )),
            "required" => {}
            _ => problems.push(Problem::new(
                kfield,
                format!("`{}` is not a value of exactly.once.support (requested or required)", value.trim()),
            )),
        }
    }
    if enabled && !isolation.eq_ignore_ascii_case("read_committed") {
        problems.push(Problem::new(
            format!("mirror {source}->{target_alias}: source consumer isolation.level"),
            format!("exactly-once mode needs `read_committed` on the source consumer (it is `{isolation}`): records of aborted source transactions would be copied as committed; remove the setting"),
        ));
    }
    let mut boundary_interval = false;
    if let Some((kfield, value)) = keys.get("transaction.boundary") {
        match value.trim().to_ascii_lowercase().as_str() {
            "poll" => {}
            "interval" => boundary_interval = true,
            "connector" => problems.push(Problem::new(
                kfield,
                "MirrorSourceConnector does not define transaction boundaries (MM2 refuses `connector` too); use `poll` or `interval`",
            )),
            _ => problems.push(Problem::new(
                kfield,
                format!("`{}` is not a value of transaction.boundary (poll, interval or connector)", value.trim()),
            )),
        }
        if !enabled {
            notices.push(Notice {
                severity: Severity::Info,
                field: kfield.to_owned(),
                message: format!("applies to exactly-once mode only (`exactly.once.source.support: enabled` on the target cluster `{target_alias}`); ignored"),
            });
        }
    }
    let interval_ms = keys
        .get("transaction.boundary.interval.ms")
        .and_then(|(f, v)| parse_int(f, v, 1, problems).map(|ms| (f, ms)));
    if let Some((f, _)) = interval_ms {
        if !(enabled && boundary_interval) {
            notices.push(Notice {
                severity: Severity::Info,
                field: f.to_owned(),
                message: "applies with `transaction.boundary: interval` in exactly-once mode only (ignored)".into(),
            });
        }
    }
    if !enabled {
        return None;
    }
    let commit_interval = if boundary_interval {
        interval_ms
            .map(|(_, ms)| Duration::from_millis(ms.unsigned_abs()))
            .or(flush_interval)
            .unwrap_or(DEFAULT_FLUSH_INTERVAL)
    } else {
        DEFAULT_COMMIT_INTERVAL
    };
    Some(ExactlyOnce {
        transactional_id: format!("kmirror-{source}-{target_alias}"),
        commit_interval,
    })
}

fn merge_connector_keys(m: &MirrorSpec, field: &str, problems: &mut Vec<Problem>) -> MergedKeys {
    let mut values: BTreeMap<String, (String, String)> = BTreeMap::new();
    let blocks: [(&str, &Option<ConnectorSpec>); 3] = [
        ("sourceConnector", &m.source_connector),
        ("checkpointConnector", &m.checkpoint_connector),
        ("heartbeatConnector", &m.heartbeat_connector),
    ];
    for (name, block) in blocks {
        let Some(block) = block else { continue };
        for (key, value) in &block.config {
            let f = format!("{field}.{name}.config.{key}");
            let value = value.to_string();
            match values.get(key) {
                Some((other_field, other)) if *other != value => problems.push(Problem::new(
                    f,
                    format!(
                        "`{value}` differs from `{other}` in {other_field}; a flow has one value"
                    ),
                )),
                Some(_) => {}
                None => {
                    values.insert(key.clone(), (f, value));
                }
            }
        }
    }
    let strimzi = [
        ("topics", "topicsPattern", &m.topics_pattern),
        (
            "topics.exclude",
            "topicsExcludePattern",
            &m.topics_exclude_pattern,
        ),
        (
            "topics.exclude",
            "topicsBlacklistPattern",
            &m.topics_blacklist_pattern,
        ),
        ("groups", "groupsPattern", &m.groups_pattern),
        (
            "groups.exclude",
            "groupsExcludePattern",
            &m.groups_exclude_pattern,
        ),
        (
            "groups.exclude",
            "groupsBlacklistPattern",
            &m.groups_blacklist_pattern,
        ),
    ];
    for (key, name, value) in strimzi {
        if let Some(value) = value {
            let f = format!("{field}.{name}");
            if let Some((other_field, _)) = values.get(key) {
                problems.push(Problem::new(
                    f,
                    format!("conflicts with {other_field}; set one of them"),
                ));
            } else {
                values.insert(key.to_owned(), (f, value.clone()));
            }
        }
    }
    for (alias, canonical) in [
        ("topics.blacklist", "topics.exclude"),
        ("groups.blacklist", "groups.exclude"),
        ("config.properties.blacklist", "config.properties.exclude"),
    ] {
        if let Some(entry) = values.remove(alias) {
            if values.contains_key(canonical) {
                problems.push(Problem::new(
                    entry.0,
                    format!("is the old name of `{canonical}`, which is set too; keep one"),
                ));
            } else {
                values.insert(canonical.to_owned(), entry);
            }
        }
    }
    MergedKeys { values }
}

fn parse_bool(field: &str, value: &str, problems: &mut Vec<Problem>) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => {
            problems.push(Problem::new(
                field,
                format!("`{value}` is not true or false"),
            ));
            None
        }
    }
}

fn parse_int(field: &str, value: &str, min: i64, problems: &mut Vec<Problem>) -> Option<i64> {
    match value.trim().parse::<i64>() {
        Ok(n) if n >= min => Some(n),
        Ok(n) => {
            problems.push(Problem::new(
                field,
                format!("{n} is below the minimum {min}"),
            ));
            None
        }
        Err(_) => {
            problems.push(Problem::new(
                field,
                format!("`{value}` is not a whole number"),
            ));
            None
        }
    }
}

fn replication_factor(
    field: &str,
    value: &str,
    problems: &mut Vec<Problem>,
) -> Option<Option<i32>> {
    let n = parse_int(field, value, -1, problems)?;
    match n {
        -1 => Some(None),
        0 => {
            problems.push(Problem::new(
                field,
                "0 is not a replication factor; use -1 for the broker default",
            ));
            None
        }
        n => match i32::try_from(n) {
            Ok(n) => Some(Some(n)),
            Err(_) => {
                problems.push(Problem::new(field, format!("{n} is too large")));
                None
            }
        },
    }
}

/// A list-of-regexes key, or its default.
fn pattern_of(
    keys: &MergedKeys,
    key: &str,
    default: &str,
    problems: &mut Vec<Problem>,
) -> ListPattern {
    let (f, v) = keys.get(key).unwrap_or(("", default));
    match ListPattern::parse(v) {
        Ok(p) => p,
        Err(e) => {
            problems.push(Problem::new(
                f,
                format!("invalid regular expression: {}", first_line(&e.to_string())),
            ));
            ListPattern::empty()
        }
    }
}

/// The clusters a mirror may name: those resolved, and those left out for their own problems.
struct Known<'a> {
    clusters: &'a BTreeMap<ClusterAlias, Cluster>,
    refused: &'a BTreeSet<ClusterAlias>,
    /// `spec.replicas` above 1: scale-out is on unless a flow says otherwise.
    replicated: bool,
}

#[allow(clippy::too_many_lines)]
fn resolve_mirror(
    m: &MirrorSpec,
    field: &str,
    known: &Known<'_>,
    problems: &mut Vec<Problem>,
    notices: &mut Vec<Notice>,
) -> Option<Mirror> {
    let clusters = known.clusters;
    let before = problems.len();
    let source = ClusterAlias::new(m.source_cluster.as_str());
    let target = ClusterAlias::new(m.target_cluster.as_str());
    // A cluster left out for its own problems: they are reported already.
    let names_refused = known.refused.contains(&source) || known.refused.contains(&target);
    for (name, alias) in [("sourceCluster", &source), ("targetCluster", &target)] {
        if !clusters.contains_key(alias) && !known.refused.contains(alias) {
            let known: Vec<&str> = clusters.keys().map(ClusterAlias::as_str).collect();
            problems.push(Problem::new(
                format!("{field}.{name}"),
                format!(
                    "unknown cluster alias `{alias}` (defined: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    if source == target {
        problems.push(Problem::new(
            format!("{field}.targetCluster"),
            format!("mirrors cluster `{source}` to itself; source and target must differ"),
        ));
    }

    let keys = merge_connector_keys(m, field, problems);
    let mut clients = MirrorClients::default();
    for (key, (kfield, value)) in &keys.values {
        if let Some(status) = keys::status_of(key) {
            match status {
                KeyStatus::Implemented => {}
                KeyStatus::NoEffect(why) => notices.push(Notice {
                    severity: Severity::Info,
                    field: kfield.clone(),
                    message: format!("{why} (ignored)"),
                }),
                KeyStatus::DefaultClassOnly(default) => {
                    if value.trim() != default {
                        problems.push(Problem::new(
                            kfield.clone(),
                            format!("custom class `{value}` cannot run in kmirror; only {default} is supported"),
                        ));
                    }
                }
            }
            continue;
        }
        if let Some((prefix, target_client)) = keys::CLIENT_PREFIXES
            .iter()
            .find(|(p, _)| key.starts_with(p))
        {
            let bare = &key[prefix.len()..];
            if let Some((_, why)) = RESERVED_CLIENT_KEYS.iter().find(|(k, _)| *k == bare) {
                problems.push(Problem::new(
                    kfield.clone(),
                    format!("cannot be set: {why}"),
                ));
                continue;
            }
            let map = match target_client {
                ClientTarget::SourceConsumer => &mut clients.source_consumer,
                ClientTarget::TargetProducer => &mut clients.target_producer,
                ClientTarget::SourceAdmin => &mut clients.source_admin,
                ClientTarget::TargetAdmin => &mut clients.target_admin,
                ClientTarget::SourceAll => &mut clients.source_all,
                ClientTarget::TargetAll => &mut clients.target_all,
            };
            map.insert(bare.to_owned(), value.clone());
            continue;
        }
        let hint = keys::closest_key(key)
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        problems.push(Problem::new(
            kfield.clone(),
            format!("unknown MirrorMaker 2 key{hint}"),
        ));
    }

    for (key, expected) in [
        ("source.cluster.alias", &source),
        ("target.cluster.alias", &target),
    ] {
        if let Some((f, v)) = keys.get(key) {
            if v != expected.as_str() {
                problems.push(Problem::new(
                    f,
                    format!("`{v}` contradicts the mirror's cluster `{expected}`"),
                ));
            }
        }
    }

    let kind = match keys.get("replication.policy.class") {
        Some((f, class)) => match PolicyKind::from_class_name(class) {
            Some(kind) => kind,
            None => {
                problems.push(Problem::new(
                    f,
                    format!(
                        "unsupported replication policy `{class}`; use {} or {}",
                        crate::policy::DEFAULT_POLICY_CLASS,
                        crate::policy::IDENTITY_POLICY_CLASS
                    ),
                ));
                PolicyKind::Default
            }
        },
        None => PolicyKind::Default,
    };
    let separator = keys
        .get("replication.policy.separator")
        .map_or(".", |(_, v)| v);
    if separator.is_empty() {
        problems.push(Problem::new(
            format!("{field}.replication.policy.separator"),
            "must not be empty",
        ));
    }
    let internal_sep = match keys.get("replication.policy.internal.topic.separator.enabled") {
        Some((f, v)) => parse_bool(f, v, problems).unwrap_or(true),
        None => true,
    };
    let policy = ReplicationPolicy::new(kind, separator, internal_sep, Some(source.clone()));

    let topics = NameFilter::new(
        pattern_of(&keys, "topics", filter::DEFAULT_TOPICS, problems),
        pattern_of(
            &keys,
            "topics.exclude",
            filter::DEFAULT_TOPICS_EXCLUDE,
            problems,
        ),
    );
    let groups = NameFilter::new(
        pattern_of(&keys, "groups", filter::DEFAULT_GROUPS, problems),
        pattern_of(
            &keys,
            "groups.exclude",
            filter::DEFAULT_GROUPS_EXCLUDE,
            problems,
        ),
    );

    let bool_key = |key: &str, default: bool, problems: &mut Vec<Problem>| match keys.get(key) {
        Some((f, v)) => parse_bool(f, v, problems).unwrap_or(default),
        None => default,
    };
    let heartbeats_replication = bool_key("heartbeats.replication.enabled", true, problems);
    let refresh_enabled = bool_key("refresh.topics.enabled", true, problems);
    let enabled = bool_key("enabled", true, problems);
    let refresh_topics = match keys.get("refresh.topics.interval.seconds") {
        Some((f, v)) => parse_int(f, v, 1, problems).map(|s| Duration::from_secs(s.unsigned_abs())),
        None => Some(DEFAULT_REFRESH_TOPICS),
    }
    .filter(|_| refresh_enabled);
    let replication_factor = match keys.get("replication.factor") {
        Some((f, v)) => replication_factor(f, v, problems).unwrap_or(None),
        None => Some(2),
    };
    let admin_timeout = match keys.get("admin.timeout.ms") {
        Some((f, v)) => parse_int(f, v, 1, problems).map_or(DEFAULT_ADMIN_TIMEOUT, |ms| {
            Duration::from_millis(ms.unsigned_abs())
        }),
        None => DEFAULT_ADMIN_TIMEOUT,
    };

    // `auto.offset.reset` decides where partitions without progress start; kmirror applies it
    // itself so that an out-of-range stored position is reported instead of silently reset.
    let source_cluster = clusters.get(&source);
    let mut start_from = StartFrom::Earliest;
    let reset_sources = [
        source_cluster.and_then(|c| c.common.get("auto.offset.reset")),
        source_cluster.and_then(|c| c.consumer.get("auto.offset.reset")),
        clients.source_all.get("auto.offset.reset"),
        clients.source_consumer.get("auto.offset.reset"),
    ];
    for value in reset_sources.into_iter().flatten() {
        match value.as_str() {
            "earliest" | "smallest" | "beginning" => start_from = StartFrom::Earliest,
            "latest" | "largest" | "end" => start_from = StartFrom::Latest,
            other => problems.push(Problem::new(
                format!("{field}: consumer auto.offset.reset"),
                format!("`{other}` is not earliest or latest"),
            )),
        }
    }
    clients.source_consumer.remove("auto.offset.reset");
    clients.source_all.remove("auto.offset.reset");

    let progress = clusters
        .get(&target)
        .map(|t| progress_settings(t, &source, problems));
    let exactly_once = exactly_once(
        &keys,
        (&source, clusters.get(&target)),
        source_isolation(source_cluster, &clients),
        progress.as_ref().map(|p| p.flush_interval),
        problems,
        notices,
    );
    let scale_out = bool_key("scale.out.enabled", known.replicated, problems).then(|| ScaleOut {
        group_id: match keys.get("scale.out.group.id") {
            Some((f, v)) if v.trim().is_empty() => {
                problems.push(Problem::new(f, "the group id is empty (leave the key out for kmirror-<source>-<target>)"));
                String::new()
            }
            Some((_, v)) => v.trim().to_owned(),
            None => format!("kmirror-{source}-{target}"),
        },
        protocol: match keys.get("scale.out.group.protocol") {
            None => GroupProtocol::Classic,
            Some((f, v)) => match v.trim() {
                "classic" => GroupProtocol::Classic,
                "consumer" => GroupProtocol::Consumer,
                other => {
                    problems.push(Problem::new(
                        f,
                        format!("`{other}` is not a group protocol (classic, or consumer on Kafka 4.0 and later)"),
                    ));
                    GroupProtocol::Classic
                }
            },
        },
        session_timeout: match keys.get("scale.out.session.timeout.ms") {
            // Brokers refuse less (group.min.session.timeout.ms).
            Some((f, v)) => parse_int(f, v, 6000, problems).map_or(
                DEFAULT_SCALE_OUT_SESSION_TIMEOUT,
                |ms| Duration::from_millis(ms.unsigned_abs()),
            ),
            None => DEFAULT_SCALE_OUT_SESSION_TIMEOUT,
        },
    });
    let offset_syncs = if bool_key("emit.offset-syncs.enabled", true, problems) {
        let location = match keys.get("offset-syncs.topic.location") {
            None => SyncLocation::Source,
            Some((_, v)) if v.trim() == "source" => SyncLocation::Source,
            Some((_, v)) if v.trim() == "target" => SyncLocation::Target,
            Some((f, v)) => {
                problems.push(Problem::new(
                    f,
                    format!("`{v}` is neither `source` nor `target`"),
                ));
                SyncLocation::Source
            }
        };
        let topic = match location {
            SyncLocation::Source => policy.offset_syncs_topic(&target),
            SyncLocation::Target => policy.offset_syncs_topic(&source),
        };
        Some(OffsetSyncSettings {
            location,
            topic,
            replication_factor: match keys.get("offset-syncs.topic.replication.factor") {
                Some((f, v)) => self::replication_factor(f, v, problems).unwrap_or(None),
                None => Some(3),
            },
            lag_max: match keys.get("offset.lag.max") {
                Some((f, v)) => parse_int(f, v, 0, problems).unwrap_or(100),
                None => 100,
            },
        })
    } else {
        None
    };
    let seconds = |key: &str, default: Duration, problems: &mut Vec<Problem>| match keys.get(key) {
        Some((f, v)) => {
            parse_int(f, v, 1, problems).map_or(default, |s| Duration::from_secs(s.unsigned_abs()))
        }
        None => default,
    };
    let checkpoints = if bool_key("emit.checkpoints.enabled", true, problems) {
        let refresh = bool_key("refresh.groups.enabled", true, problems);
        let sync = bool_key("sync.group.offsets.enabled", false, problems);
        Some(CheckpointSettings {
            topic: policy.checkpoints_topic(&source),
            interval: seconds(
                "emit.checkpoints.interval.seconds",
                DEFAULT_CHECKPOINT_INTERVAL,
                problems,
            ),
            refresh_groups: refresh.then(|| {
                seconds(
                    "refresh.groups.interval.seconds",
                    DEFAULT_CHECKPOINT_INTERVAL,
                    problems,
                )
            }),
            replication_factor: match keys.get("checkpoints.topic.replication.factor") {
                Some((f, v)) => self::replication_factor(f, v, problems).unwrap_or(None),
                None => Some(3),
            },
            sync_group_offsets: sync.then(|| {
                seconds(
                    "sync.group.offsets.interval.seconds",
                    DEFAULT_CHECKPOINT_INTERVAL,
                    problems,
                )
            }),
        })
    } else {
        None
    };
    let config_filter = ConfigFilter {
        exclude: pattern_of(
            &keys,
            "config.properties.exclude",
            crate::topic_config::DEFAULT_CONFIG_EXCLUDE,
            problems,
        ),
        defaults_from_source: match keys.get("use.defaults.from") {
            None => false,
            Some((_, v)) if v.trim() == "target" => false,
            Some((_, v)) if v.trim() == "source" => true,
            Some((f, v)) => {
                problems.push(Problem::new(
                    f,
                    format!("`{v}` is neither `source` nor `target`"),
                ));
                false
            }
        },
    };
    let sync_topic_configs = bool_key("sync.topic.configs.enabled", true, problems).then(|| {
        seconds(
            "sync.topic.configs.interval.seconds",
            DEFAULT_TOPIC_SYNC_INTERVAL,
            problems,
        )
    });
    let sync_topic_acls = bool_key("sync.topic.acls.enabled", true, problems).then(|| {
        seconds(
            "sync.topic.acls.interval.seconds",
            DEFAULT_TOPIC_SYNC_INTERVAL,
            problems,
        )
    });
    let heartbeats =
        bool_key("emit.heartbeats.enabled", true, problems).then(|| HeartbeatSettings {
            interval: match keys.get("emit.heartbeats.interval.seconds") {
                Some((f, v)) => parse_int(f, v, 1, problems).map_or(Duration::from_secs(1), |s| {
                    Duration::from_secs(s.unsigned_abs())
                }),
                None => Duration::from_secs(1),
            },
            replication_factor: match keys.get("heartbeats.topic.replication.factor") {
                Some((f, v)) => self::replication_factor(f, v, problems).unwrap_or(None),
                None => Some(3),
            },
        });

    let provenance = bool_key("provenance.header.enabled", true, problems).then(|| {
        match keys.get("provenance.header.name") {
            Some((f, v)) if v.trim().is_empty() => {
                problems.push(Problem::new(
                    f,
                    "the origin header needs a name (or set provenance.header.enabled: false)",
                ));
                String::new()
            }
            Some((f, v)) if v.contains('\0') => {
                problems.push(Problem::new(
                    f,
                    "the origin header name contains a NUL character",
                ));
                String::new()
            }
            Some((_, v)) => v.trim().to_owned(),
            None => crate::provenance::DEFAULT_HEADER.to_owned(),
        }
    });

    if problems.len() > before || names_refused {
        return None;
    }
    if !enabled {
        notices.push(Notice {
            severity: Severity::Info,
            field: field.to_owned(),
            message: format!("flow {source}->{target} is disabled (enabled=false)"),
        });
        return None;
    }
    Some(Mirror {
        source,
        target,
        policy,
        topics,
        groups,
        heartbeats_replication,
        refresh_topics,
        replication_factor,
        admin_timeout,
        start_from,
        clients,
        progress: progress?,
        heartbeats,
        offset_syncs,
        checkpoints,
        config_filter,
        sync_topic_configs,
        sync_topic_acls,
        provenance,
        exactly_once,
        scale_out,
    })
}

fn progress_settings(
    target: &Cluster,
    source: &ClusterAlias,
    problems: &mut Vec<Problem>,
) -> ProgressSettings {
    let field = |k: &str| format!("spec.clusters[{}].config.{k}", target.alias);
    let topic = target
        .worker
        .get("offset.storage.topic")
        .cloned()
        .unwrap_or_else(|| format!("mm2-offsets.{source}.internal"));
    let partitions = target
        .worker
        .get("offset.storage.partitions")
        .and_then(|v| parse_int(&field("offset.storage.partitions"), v, 1, problems))
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(25);
    let replication_factor = target
        .worker
        .get("offset.storage.replication.factor")
        .and_then(|v| replication_factor(&field("offset.storage.replication.factor"), v, problems))
        .unwrap_or(None);
    let flush_interval = target
        .worker
        .get("offset.flush.interval.ms")
        .and_then(|v| parse_int(&field("offset.flush.interval.ms"), v, 1, problems))
        .map_or(DEFAULT_FLUSH_INTERVAL, |ms| {
            Duration::from_millis(ms.unsigned_abs())
        });
    ProgressSettings {
        topic,
        partitions,
        replication_factor,
        flush_interval,
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Client properties with secret values replaced by `***`.
pub fn masked(props: &ClientProps) -> BTreeMap<String, String> {
    props
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if is_secret_key(k) {
                    "***".to_owned()
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

impl Config {
    /// The effective configuration for the start-up log: every setting that matters, with
    /// secrets masked (passwords, key contents; files are named, never read out).
    pub fn summary(&self) -> serde_json::Value {
        let clusters: Vec<serde_json::Value> = self
            .clusters
            .values()
            .map(|c| {
                serde_json::json!({
                    "alias": c.alias.as_str(),
                    "bootstrapServers": c.bootstrap_servers,
                    "tls": c.tls.as_ref().map(|t| serde_json::json!({
                        "trustedCertificates": t.trusted.iter().map(|s| match &s.value {
                            PemSource::File(p) => p.display().to_string(),
                            PemSource::Pattern { dir, pattern } => format!("{}/{pattern}", dir.display()),
                        }).collect::<Vec<_>>(),
                        "clientCertificate": t.client.as_ref().map(|c| c.certificate.display().to_string()),
                        "clientKey": t.client.as_ref().map(|c| c.key.display().to_string()),
                    })),
                    "sasl": c.sasl.as_ref().map(|s| serde_json::json!({
                        "mechanism": s.mechanism, "username": s.username, "password": "***",
                    })),
                    "config": masked(&c.common),
                    "producer": masked(&c.producer),
                    "consumer": masked(&c.consumer),
                    "admin": masked(&c.admin),
                })
            })
            .collect();
        let mirrors: Vec<serde_json::Value> = self
            .mirrors
            .iter()
            .map(|m| {
                serde_json::json!({
                    "flow": m.name(),
                    "policy": format!("{:?}", m.policy.kind()),
                    "separator": m.policy.separator(),
                    "topics": m.topics.include().as_str(),
                    "topicsExclude": m.topics.exclude().as_str(),
                    "refreshTopicsSeconds": m.refresh_topics.map(|d| d.as_secs()),
                    "syncTopicConfigsSeconds": m.sync_topic_configs.map(|d| d.as_secs()),
                    "syncTopicAclsSeconds": m.sync_topic_acls.map(|d| d.as_secs()),
                    "configPropertiesExclude": m.config_filter.exclude.as_str(),
                    "useDefaultsFrom": if m.config_filter.defaults_from_source { "source" } else { "target" },
                    "replicationFactor": m.replication_factor,
                    "startFrom": format!("{:?}", m.start_from),
                    "progressTopic": m.progress.topic,
                    "progressFlushMs": u64::try_from(m.progress.flush_interval.as_millis()).unwrap_or(u64::MAX),
                    "exactlyOnce": m.exactly_once.as_ref().map(|e| serde_json::json!({
                        "transactionalId": e.transactional_id,
                        "commitIntervalMs": u64::try_from(e.commit_interval.as_millis()).unwrap_or(u64::MAX),
                    })),
                    "scaleOut": m.scale_out.as_ref().map(|s| serde_json::json!({
                        "groupId": s.group_id,
                        "protocol": s.protocol.name(),
                        "sessionTimeoutMs": u64::try_from(s.session_timeout.as_millis()).unwrap_or(u64::MAX),
                    })),
                    "sourceConsumer": masked(&m.clients.source_consumer),
                    "targetProducer": masked(&m.clients.target_producer),
                    "sourceAll": masked(&m.clients.source_all),
                    "targetAll": masked(&m.clients.target_all),
                })
            })
            .collect();
        serde_json::json!({ "name": self.name, "clusters": clusters, "mirrors": mirrors })
    }
}
