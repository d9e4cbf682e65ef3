//! Building librdkafka clients for a cluster: security, kmirror's defaults, user overrides.
//!
//! Precedence, low to high: kmirror's defaults for the role, the cluster's `config:` (common,
//! then `producer.`/`consumer.`/`admin.`), the mirror's connector overrides, then the settings
//! kmirror cannot work without (idempotence, manual progress). Security comes first so that
//! `config:` may still tune it (e.g. `ssl.endpoint.identification.algorithm`).

use std::sync::Mutex;

use kmirror_core::config::{ClientProps, Cluster};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

use crate::security::ClusterSecurity;

/// What a client is for; decides defaults and forced settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads the records to copy.
    ReplicationConsumer,
    /// Writes copied records and progress to the target.
    ReplicationProducer,
    /// Reads stored progress.
    ProgressReader,
    /// Admin requests and metadata.
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::ReplicationConsumer => "replication-consumer",
            Role::ReplicationProducer => "replication-producer",
            Role::ProgressReader => "progress-reader",
            Role::Admin => "admin",
        }
    }
}

/// Defaults of every client.
const COMMON_DEFAULTS: &[(&str, &str)] = &[
    // A KRaft broker that was fenced (paused, or cut off from the controller) is left out of
    // metadata responses, and librdkafka then forgets it. With a single broker, or all of them
    // fenced at once, a client knows no broker at all until it bootstraps again, after 5
    // minutes by default: its records in flight wait that long although the cluster is back.
    ("metadata.recovery.rebootstrap.trigger.ms", "10000"),
];

/// kmirror's defaults, chosen to keep memory bounded (about 128 MB for the whole process with
/// the defaults) and throughput high.
fn defaults(role: Role) -> &'static [(&'static str, &'static str)] {
    match role {
        Role::ReplicationConsumer => &[
            ("queued.max.messages.kbytes", "16384"),
            ("fetch.max.bytes", "16777216"),
            // librdkafka has no incremental fetch sessions: every fetch names every assigned
            // partition, and its answer too, so an idle consumer of 10,000 partitions spends a
            // tenth of a core on fetches at 500 ms. New records end the wait at once.
            ("fetch.wait.max.ms", "1000"),
            // Once the fetched records fill `queued.max.messages.kbytes` (or number
            // `queued.min.messages`), librdkafka fetches again only after this long (1 s by
            // default) even if the queue drained meanwhile: a copy that drains a queue in less
            // than a second would wait the rest of each second. 20 ms is below the time the
            // default queue (16 MiB) takes to drain at 150 MB/s, or a 4 MiB one (`--memory
            // 16MiB`) at 200 MB/s, so the copy never waits on it; while the queue stays full
            // (the target is slow or away), each broker thread looks at all its partitions 50
            // times a second, not 100 (10 ms copied no faster here).
            ("fetch.queue.backoff.ms", "20"),
            ("isolation.level", "read_committed"),
        ],
        Role::ReplicationProducer => &[
            ("acks", "all"),
            ("linger.ms", "5"),
            ("queue.buffering.max.kbytes", "32768"),
            ("queue.buffering.max.messages", "200000"),
            ("batch.size", "1000000"),
            ("max.in.flight.requests.per.connection", "5"),
            // Retriable errors are retried forever: a record is never dropped by a timeout.
            ("message.timeout.ms", "0"),
        ],
        Role::ProgressReader => &[
            ("isolation.level", "read_committed"),
            ("fetch.wait.max.ms", "10"),
        ],
        Role::Admin => &[],
    }
}

fn forced(role: Role) -> &'static [(&'static str, &'static str)] {
    match role {
        Role::ReplicationConsumer => &[
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            // An out-of-range position is reported and handled, never silently reset.
            ("auto.offset.reset", "error"),
            ("enable.partition.eof", "false"),
        ],
        Role::ReplicationProducer => &[
            ("enable.idempotence", "true"),
            // Every topic kmirror writes is created by kmirror with the right configs: a deleted
            // target or internal topic must not come back with the broker's defaults (a progress
            // topic without compaction expires, and everything is copied again).
            ("allow.auto.create.topics", "false"),
        ],
        Role::ProgressReader => &[
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "true"),
        ],
        Role::Admin => &[],
    }
}

/// Builds client configs for one cluster.
#[derive(Clone)]
pub struct ClientFactory {
    cluster: Cluster,
    security: ClusterSecurity,
    client_id: String,
    /// Bytes the flow's record buffers may take, if set.
    memory: Option<usize>,
}

impl ClientFactory {
    /// A factory for `cluster` with checked `security`; `client_id` prefixes every client id.
    pub fn new(cluster: Cluster, security: ClusterSecurity, client_id: impl Into<String>) -> Self {
        Self {
            cluster,
            security,
            client_id: client_id.into(),
            memory: None,
        }
    }

    /// The same factory with the replication clients' buffers sized from `memory` bytes: a
    /// quarter for fetched records waiting to be copied (`queued.max.messages.kbytes`), a
    /// thirty-second for one fetch response (`fetch.max.bytes`, at least 1 MiB; a compressed
    /// one grows by its ratio as it is decompressed; 2 MiB copied faster than 4 or 1 in the
    /// benchmark, and the zstd row's peak fell by 12 MB), and half for copied records waiting for the
    /// target's acknowledgement (`queue.buffering.max.kbytes` of each producer that carries
    /// full batches). Properties the operator set take precedence.
    #[must_use]
    pub fn with_memory(mut self, memory: Option<usize>) -> Self {
        self.memory = memory;
        self
    }

    /// The settings [`Self::with_memory`] derives for `role`.
    fn budget(&self, role: Role) -> Vec<(&'static str, String)> {
        let Some(memory) = self.memory else {
            return Vec::new();
        };
        match role {
            Role::ReplicationConsumer => vec![
                (
                    "queued.max.messages.kbytes",
                    (memory / 4 / 1024).to_string(),
                ),
                ("fetch.max.bytes", (memory / 32).max(1 << 20).to_string()),
            ],
            Role::ReplicationProducer => vec![
                (
                    "queue.buffering.max.kbytes",
                    (memory / 2 / 1024).to_string(),
                ),
                (
                    "queue.buffering.max.messages",
                    budget_messages(memory).to_string(),
                ),
            ],
            Role::ProgressReader | Role::Admin => Vec::new(),
        }
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The checked security material.
    pub fn security(&self) -> &ClusterSecurity {
        &self.security
    }

    /// The same factory with security material read again (rotated Secrets).
    #[must_use]
    pub fn with_security(&self, security: ClusterSecurity) -> Self {
        Self {
            security,
            ..self.clone()
        }
    }

    /// The config for a client of `role`, with `overrides` applied in order.
    pub fn config(&self, role: Role, overrides: &[&ClientProps]) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set_log_level(RDKafkaLogLevel::Warning);
        cfg.set("bootstrap.servers", &self.cluster.bootstrap_servers);
        cfg.set("client.id", format!("{}|{}", self.client_id, role.name()));
        let tls = self.cluster.tls.is_some();
        let protocol = match (tls, self.security.sasl.is_some()) {
            (true, true) => "SASL_SSL",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (false, false) => "PLAINTEXT",
        };
        cfg.set("security.protocol", protocol);
        if let Some(ca) = &self.security.ca_pem {
            cfg.set("ssl.ca.pem", ca);
        }
        if let Some((cert, key)) = &self.security.client_cert {
            cfg.set("ssl.certificate.location", cert.display().to_string());
            cfg.set("ssl.key.location", key.display().to_string());
        }
        if let Some(sasl) = &self.security.sasl {
            cfg.set("sasl.mechanism", sasl.mechanism);
            cfg.set("sasl.username", &sasl.username);
            cfg.set("sasl.password", &sasl.password);
        }
        for (k, v) in COMMON_DEFAULTS.iter().chain(defaults(role)) {
            cfg.set(*k, *v);
        }
        for (k, v) in self.budget(role) {
            cfg.set(k, v);
        }
        let role_props = match role {
            Role::ReplicationConsumer | Role::ProgressReader => &self.cluster.consumer,
            Role::ReplicationProducer => &self.cluster.producer,
            Role::Admin => &self.cluster.admin,
        };
        for props in [&self.cluster.common, role_props]
            .into_iter()
            .chain(overrides.iter().copied())
        {
            for (k, v) in props {
                cfg.set(k, v);
            }
        }
        let operator_set = |key: &str| {
            [&self.cluster.common, role_props]
                .into_iter()
                .chain(overrides.iter().copied())
                .any(|p| p.contains_key(key))
        };
        fit_budget(&mut cfg, role, self.memory.is_some(), operator_set);
        for (k, v) in forced(role) {
            cfg.set(*k, *v);
        }
        if matches!(role, Role::ReplicationConsumer | Role::ProgressReader) {
            // librdkafka needs a group id to assign partitions; kmirror never commits with it.
            cfg.set("group.id", format!("{}|{}", self.client_id, role.name()));
        }
        cfg
    }
}

/// What librdkafka keeps for each record waiting for the target's acknowledgement besides its
/// key and value, which `queue.buffering.max.kbytes` counts alone: the message, its header list
/// and the origin header (a heap profile at 10,000 partitions: 48 MB for 200,000 records).
const RECORD_OVERHEAD: usize = 256;

/// `queue.buffering.max.messages` for a budget of `memory` bytes: the records' overhead takes
/// at most an eighth of it (64 MiB: 32,768 records, as many as the producer's half holds
/// records of 1 KiB).
pub(crate) fn budget_messages(memory: usize) -> usize {
    (memory / 8 / RECORD_OVERHEAD).max(1_000)
}

/// librdkafka's largest `queued.max.messages.kbytes`.
const MAX_QUEUED_KBYTES: u64 = 2_097_151;

/// Keeps the sizes the memory budget chose within what librdkafka accepts and what the
/// operator's other settings need: one fetch response holds at least one record of
/// `message.max.bytes` (and fits `receive.message.max.bytes`), and a producer queue holds at
/// least two of the largest batches or records, so that no record waits forever for room.
/// Sizes the operator set are left alone.
fn fit_budget(
    cfg: &mut ClientConfig,
    role: Role,
    budgeted: bool,
    operator_set: impl Fn(&str) -> bool,
) {
    if !budgeted {
        return;
    }
    let num =
        |cfg: &ClientConfig, key: &str| cfg.get(key).and_then(|v| v.trim().parse::<u64>().ok());
    let max_record = num(cfg, "message.max.bytes").unwrap_or(1_000_000);
    match role {
        Role::ReplicationConsumer => {
            if !operator_set("fetch.max.bytes") {
                let mut fetch = num(cfg, "fetch.max.bytes").unwrap_or(0).max(max_record);
                if let Some(receive) = num(cfg, "receive.message.max.bytes") {
                    fetch = fetch.min(receive.saturating_sub(512)).max(max_record);
                }
                cfg.set(
                    "fetch.max.bytes",
                    fetch.min(i32::MAX as u64 - 512).to_string(),
                );
            }
            if !operator_set("queued.max.messages.kbytes") {
                let queued = num(cfg, "queued.max.messages.kbytes").unwrap_or(MAX_QUEUED_KBYTES);
                cfg.set(
                    "queued.max.messages.kbytes",
                    queued.clamp(1, MAX_QUEUED_KBYTES).to_string(),
                );
            }
        }
        Role::ReplicationProducer => {
            if !operator_set("queue.buffering.max.kbytes") {
                let batch = num(cfg, "batch.size").unwrap_or(1_000_000);
                let floor = 2 * batch.max(max_record) / 1024 + 1;
                let queue = num(cfg, "queue.buffering.max.kbytes").unwrap_or(floor);
                cfg.set(
                    "queue.buffering.max.kbytes",
                    queue.max(floor).min(i32::MAX as u64).to_string(),
                );
            }
        }
        Role::ProgressReader | Role::Admin => {}
    }
}

/// Checks that librdkafka knows every property (no network). Returns the offending key's
/// error text.
pub fn check_properties(cfg: &ClientConfig) -> Result<(), String> {
    cfg.create_native_config()
        .map(|_| ())
        .map_err(|e| redact(cfg, &e.to_string()))
}

/// Replaces the values of secret properties in `message` (librdkafka quotes values in its
/// configuration errors).
pub fn redact(cfg: &ClientConfig, message: &str) -> String {
    let mut out = message.to_owned();
    for (k, v) in cfg.config_map() {
        if kmirror_core::config::is_secret_key(k) && !v.is_empty() {
            out = out.replace(v, "***");
        }
    }
    out
}

/// A TLS or authentication failure, explained for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// `tls` or `authentication` (the `kind` label of the error counter).
    pub kind: &'static str,
    /// One line naming the cluster, the cause and the files or settings involved.
    pub message: String,
}

/// Client context shared by kmirror's clients: turns librdkafka's error callbacks into log
/// lines that name the cluster, and remembers the last TLS or authentication failure so that
/// start-up and the health probe can report it with the files involved.
pub struct ClusterContext {
    alias: String,
    ca_files: Vec<String>,
    client_cert: Option<String>,
    last_fatal: Mutex<Option<Diagnosis>>,
    /// Leave logging the diagnosis to the caller (probes retried in a loop).
    quiet: bool,
}

impl ClusterContext {
    /// A context for clients of `factory`'s cluster.
    pub fn new(factory: &ClientFactory) -> Self {
        Self {
            alias: factory.cluster.alias.to_string(),
            ca_files: factory
                .security
                .ca_files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            client_cert: factory
                .security
                .client_cert
                .as_ref()
                .map(|(c, _)| c.display().to_string()),
            last_fatal: Mutex::new(None),
            quiet: false,
        }
    }

    /// A context for another client of the same cluster.
    pub fn sibling(&self) -> Self {
        Self {
            alias: self.alias.clone(),
            ca_files: self.ca_files.clone(),
            client_cert: self.client_cert.clone(),
            last_fatal: Mutex::new(None),
            quiet: self.quiet,
        }
    }

    /// A context whose diagnosis the caller logs.
    fn quiet(factory: &ClientFactory) -> Self {
        Self {
            quiet: true,
            ..Self::new(factory)
        }
    }

    /// A context for a cluster known only by name (no TLS material), e.g. in tests.
    pub fn named(alias: impl Into<String>) -> Self {
        Self {
            alias: alias.into(),
            ca_files: Vec::new(),
            client_cert: None,
            last_fatal: Mutex::new(None),
            quiet: false,
        }
    }

    /// The last TLS/authentication failure seen, explained.
    pub fn diagnosis(&self) -> Option<Diagnosis> {
        self.last_fatal.lock().ok().and_then(|g| g.clone())
    }

    /// Forgets the last failure (the cluster answered since).
    pub fn clear_diagnosis(&self) {
        if let Ok(mut g) = self.last_fatal.lock() {
            *g = None;
        }
    }

    fn explain(&self, reason: &str) -> Option<Diagnosis> {
        let (kind, message) = self.explain_text(reason)?;
        Some(Diagnosis { kind, message })
    }

    fn explain_text(&self, reason: &str) -> Option<(&'static str, String)> {
        let r = reason.to_ascii_lowercase();
        if r.contains("certificate verify failed") || r.contains("unable to get local issuer") {
            let cas = if self.ca_files.is_empty() {
                "the system trust store".to_owned()
            } else {
                self.ca_files.join(", ")
            };
            return Some((
                "tls",
                format!(
                    "cluster {}: the broker's TLS certificate is not signed by a CA in {cas} ({reason})",
                    self.alias
                ),
            ));
        }
        if r.contains("ssl") && (r.contains("alert") || r.contains("handshake")) {
            let who = self.client_cert.as_deref().map_or_else(String::new, |c| {
                format!("; check that the broker trusts the client certificate {c}")
            });
            return Some((
                "tls",
                format!(
                    "cluster {}: TLS handshake failed ({reason}){who}",
                    self.alias
                ),
            ));
        }
        if r.contains("sasl") && r.contains("authentication") {
            return Some((
                "authentication",
                format!(
                    "cluster {}: SASL authentication failed ({reason}); check the user name and password",
                    self.alias
                ),
            ));
        }
        None
    }
}

impl rdkafka::producer::ProducerContext for ClusterContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, (): ()) {}
}

/// Checks that a cluster answers a metadata request, as a client with `cfg` would see it.
/// On failure returns the error and, if the cause is TLS or authentication, an explanation
/// naming the files involved (not logged: the caller decides). Blocking.
pub fn probe(
    factory: &ClientFactory,
    cfg: &ClientConfig,
    timeout: std::time::Duration,
) -> Result<(), (String, Option<Diagnosis>)> {
    use rdkafka::producer::{BaseProducer, Producer};
    let producer: BaseProducer<ClusterContext> = cfg
        .create_with_context(ClusterContext::quiet(factory))
        .map_err(|e| (e.to_string(), None))?;
    match producer.client().fetch_metadata(None, timeout) {
        Ok(_) => Ok(()),
        Err(e) => {
            // librdkafka queues its logs and errors; serving them fills in the diagnosis.
            producer.poll(std::time::Duration::from_millis(200));
            Err((e.to_string(), producer.context().diagnosis()))
        }
    }
}

impl ClusterContext {
    fn remember(&self, explained: Diagnosis) {
        if let Ok(mut g) = self.last_fatal.lock() {
            if g.is_none() && !self.quiet {
                tracing::error!(cluster = %self.alias, "{}", explained.message);
            }
            *g = Some(explained);
        }
    }
}

impl ClientContext for ClusterContext {
    /// Statistics of the clients with this context (admin, heartbeat, checkpoint and offset-sync
    /// clients) are not used: skip parsing them. (rdkafka's default logs each one at INFO.)
    fn stats_raw(&self, _statistics: &[u8]) {}

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // Connection failures reach clients that do not poll their main queue only as logs.
        if let Some(explained) = self.explain(log_message) {
            self.remember(explained);
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", cluster = %self.alias, "{fac}: {log_message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", cluster = %self.alias, "{fac}: {log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", cluster = %self.alias, "{fac}: {log_message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", cluster = %self.alias, "{fac}: {log_message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(explained) = self.explain(reason) {
            self.remember(explained);
        } else {
            tracing::warn!(cluster = %self.alias, error = %error, "{reason}");
        }
    }
}

/// Whether librdkafka accepts `key = value` as a client property (no network).
pub fn is_known_property(key: &str, value: &str) -> bool {
    let mut cfg = ClientConfig::new();
    cfg.set_log_level(RDKafkaLogLevel::Emerg);
    cfg.set(key, value);
    cfg.create_native_config().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgeted_sizes_fit_librdkafka_and_the_largest_record() {
        let mut cfg = ClientConfig::new();
        cfg.set("fetch.max.bytes", "4194304")
            .set("message.max.bytes", "8000000")
            .set("queued.max.messages.kbytes", "99999999");
        fit_budget(&mut cfg, Role::ReplicationConsumer, true, |_| false);
        assert_eq!(cfg.get("fetch.max.bytes"), Some("8000000"));
        assert_eq!(cfg.get("queued.max.messages.kbytes"), Some("2097151"));
        assert!(check_properties(&cfg).is_ok());

        let mut cfg = ClientConfig::new();
        cfg.set("queue.buffering.max.kbytes", "512");
        fit_budget(&mut cfg, Role::ReplicationProducer, true, |_| false);
        assert_eq!(cfg.get("queue.buffering.max.kbytes"), Some("1954"));

        // Small records: their count is bounded too, not only their bytes.
        let factory = ClientFactory::new(
            Cluster {
                alias: kmirror_core::types::ClusterAlias::new("t"),
                bootstrap_servers: "127.0.0.1:9".into(),
                tls: None,
                sasl: None,
                common: ClientProps::default(),
                producer: ClientProps::default(),
                consumer: ClientProps::default(),
                admin: ClientProps::default(),
                worker: std::collections::BTreeMap::new(),
            },
            ClusterSecurity::default(),
            "t",
        )
        .with_memory(Some(64 << 20));
        let cfg = factory.config(Role::ReplicationProducer, &[]);
        assert_eq!(cfg.get("queue.buffering.max.kbytes"), Some("32768"));
        assert_eq!(cfg.get("queue.buffering.max.messages"), Some("32768"));
        assert!(check_properties(&cfg).is_ok());

        // What the operator set stays.
        let mut cfg = ClientConfig::new();
        cfg.set("queue.buffering.max.kbytes", "512");
        fit_budget(&mut cfg, Role::ReplicationProducer, true, |k| {
            k == "queue.buffering.max.kbytes"
        });
        assert_eq!(cfg.get("queue.buffering.max.kbytes"), Some("512"));
    }
}
