//! The configuration as written: the Strimzi `KafkaMirrorMaker2` resource (or just its `spec`).
//!
//! Plain serde data with `deny_unknown_fields`; nothing here is validated. [`super::resolve`]
//! turns it into checked, typed settings.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// A whole Strimzi resource: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resource {
    /// `kafka.strimzi.io/v1beta2` (any value is accepted).
    pub api_version: Option<String>,
    /// Must be `KafkaMirrorMaker2`.
    pub kind: String,
    /// Name and namespace, used in logs.
    pub metadata: Option<Metadata>,
    /// The mirroring specification.
    pub spec: Spec,
    /// Written by the Strimzi operator; ignored.
    pub status: Option<IgnoredAny>,
}

/// `metadata` of the resource. Labels and annotations are ignored.
#[derive(Debug, Deserialize)]
pub struct Metadata {
    /// Resource name.
    pub name: Option<String>,
    /// Resource namespace.
    pub namespace: Option<String>,
}

/// `spec` of a `KafkaMirrorMaker2` resource, also the shape of a plain kmirror file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// Kafka Connect version Strimzi would run; ignored by kmirror.
    pub version: Option<String>,
    /// Number of Connect pods; with kmirror, set the replica count on the Deployment instead.
    pub replicas: Option<u32>,
    /// The cluster Strimzi runs Connect against (normally the target); informational.
    pub connect_cluster: Option<String>,
    /// The Kafka clusters, by alias.
    #[serde(default)]
    pub clusters: Vec<ClusterSpec>,
    /// The replication flows.
    #[serde(default)]
    pub mirrors: Vec<MirrorSpec>,
    /// Pod settings of Strimzi's Connect deployment; they have no meaning for kmirror.
    pub image: Option<IgnoredAny>,
    /// See `image`.
    pub resources: Option<IgnoredAny>,
    /// See `image`.
    pub liveness_probe: Option<IgnoredAny>,
    /// See `image`.
    pub readiness_probe: Option<IgnoredAny>,
    /// See `image`.
    pub jvm_options: Option<IgnoredAny>,
    /// See `image`.
    pub jmx_options: Option<IgnoredAny>,
    /// See `image`.
    pub logging: Option<IgnoredAny>,
    /// See `image`.
    pub client_rack_init_image: Option<IgnoredAny>,
    /// See `image`.
    pub rack: Option<IgnoredAny>,
    /// See `image`.
    pub tracing: Option<IgnoredAny>,
    /// See `image`.
    pub template: Option<IgnoredAny>,
    /// See `image`.
    pub external_configuration: Option<IgnoredAny>,
    /// See `image`.
    pub metrics_config: Option<IgnoredAny>,
}

/// One entry of `spec.clusters`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// The name mirrors use for this cluster.
    pub alias: String,
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// TLS to the brokers; absent means plaintext.
    pub tls: Option<TlsSpec>,
    /// Client authentication.
    pub authentication: Option<AuthenticationSpec>,
    /// Client properties (librdkafka names) for every client on this cluster, and Connect
    /// worker keys (`offset.storage.*`, `offset.flush.interval.ms`, ...).
    #[serde(default)]
    pub config: BTreeMap<String, Scalar>,
}

/// `tls` of a cluster.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// CA certificates that sign the brokers' certificates.
    #[serde(default)]
    pub trusted_certificates: Vec<CertificateSource>,
}

/// A certificate: `secretName` + `certificate` (a key in the Secret), or a file path in
/// `certificate` when `secretName` is absent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateSource {
    /// The Kubernetes Secret holding the certificate.
    pub secret_name: Option<String>,
    /// Key in the Secret, or a file path without `secretName`.
    pub certificate: Option<String>,
    /// Glob of keys in the Secret (`*.crt`).
    pub pattern: Option<String>,
}

/// `authentication` of a cluster.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationSpec {
    /// `tls`, `scram-sha-256`, `scram-sha-512` or `plain`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `tls`: the client certificate and key.
    pub certificate_and_key: Option<CertificateAndKey>,
    /// For SASL types: the user name.
    pub username: Option<String>,
    /// For SASL types: where the password is.
    pub password_secret: Option<PasswordSecret>,
}

/// A client certificate and its private key.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateAndKey {
    /// The Secret holding both; without it, `certificate` and `key` are file paths.
    pub secret_name: Option<String>,
    /// The certificate (PEM).
    pub certificate: String,
    /// The private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// A password in a Secret (or a file path without `secretName`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordSecret {
    /// The Secret holding the password.
    pub secret_name: Option<String>,
    /// Key in the Secret, or a file path.
    pub password: String,
}

/// One entry of `spec.mirrors`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorSpec {
    /// Alias of the cluster to copy from.
    pub source_cluster: String,
    /// Alias of the cluster to copy to.
    pub target_cluster: String,
    /// Topics to mirror (MM2 `topics`).
    pub topics_pattern: Option<String>,
    /// Topics not to mirror (MM2 `topics.exclude`).
    pub topics_exclude_pattern: Option<String>,
    /// Deprecated Strimzi name of `topicsExcludePattern`.
    pub topics_blacklist_pattern: Option<String>,
    /// Consumer groups to checkpoint (MM2 `groups`).
    pub groups_pattern: Option<String>,
    /// Consumer groups not to checkpoint (MM2 `groups.exclude`).
    pub groups_exclude_pattern: Option<String>,
    /// Deprecated Strimzi name of `groupsExcludePattern`.
    pub groups_blacklist_pattern: Option<String>,
    /// MirrorSourceConnector settings.
    pub source_connector: Option<ConnectorSpec>,
    /// MirrorCheckpointConnector settings.
    pub checkpoint_connector: Option<ConnectorSpec>,
    /// MirrorHeartbeatConnector settings.
    pub heartbeat_connector: Option<ConnectorSpec>,
}

/// A connector block of a mirror.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectorSpec {
    /// Connect task count; kmirror runs one pipeline per partition and ignores it.
    pub tasks_max: Option<u32>,
    /// MM2 connector keys.
    #[serde(default)]
    pub config: BTreeMap<String, Scalar>,
    /// Strimzi connector state; ignored.
    pub pause: Option<bool>,
    /// Strimzi connector state; ignored.
    pub state: Option<String>,
    /// Strimzi auto-restart; kmirror restarts failed work on its own.
    pub auto_restart: Option<IgnoredAny>,
}

/// A YAML scalar as a config value: Kafka configs are strings, but YAML writes `true` and `3`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A decimal number.
    Float(f64),
    /// Anything else.
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) => f.write_str(s),
        }
    }
}
