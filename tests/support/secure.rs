//! kmirror over mutual TLS and SCRAM, the way Strimzi configures it: a `KafkaMirrorMaker2`
//! resource, and Secrets as files under `<dir>/secrets/<secretName>/<key>`.

use std::path::{Path, PathBuf};

use super::certs::{write_secret, Pki};
use super::*;

/// How the test's kmirror reaches each cluster.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// PLAINTEXT (the harness's super user).
    Plain,
    /// Mutual TLS with the client certificate in Secret `<alias>-user`.
    Mtls,
    /// SCRAM-SHA-512 over TLS with the password in Secret `<alias>-user`.
    Scram,
}

/// Writes a Strimzi `KafkaMirrorMaker2` resource for the test's flow; Secrets are read from
/// `<dir>/secrets/<secretName>/<key>`.
pub fn strimzi_config(
    env: &Env,
    topics: &str,
    source: Access,
    target: Access,
    extra: &str,
) -> PathBuf {
    let cluster = |alias: &str, kafka: &Kafka, access: Access, config: &str| {
        let (bootstrap, security) = match access {
            Access::Plain => (kafka.bootstrap.clone(), String::new()),
            Access::Mtls => (
                kafka.ssl_bootstrap.clone(),
                format!(
                    "      tls:\n        trustedCertificates:\n          - secretName: {alias}-cluster-ca-cert\n            certificate: ca.crt\n      authentication:\n        type: tls\n        certificateAndKey:\n          secretName: {alias}-user\n          certificate: user.crt\n          key: user.key\n"
                ),
            ),
            Access::Scram => (
                kafka.sasl_bootstrap.clone(),
                format!(
                    "      tls:\n        trustedCertificates:\n          - secretName: {alias}-cluster-ca-cert\n            certificate: ca.crt\n      authentication:\n        type: scram-sha-512\n        username: {}\n        passwordSecret:\n          secretName: {alias}-user\n          password: password\n",
                    Kafka::SCRAM_USER
                ),
            ),
        };
        format!("    - alias: {alias}\n      bootstrapServers: {bootstrap}\n{security}{config}")
    };
    let text = format!(
        "apiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaMirrorMaker2\nmetadata:\n  name: dr\nspec:\n  connectCluster: {tgt}\n  clusters:\n{}{}  mirrors:\n    - sourceCluster: {src}\n      targetCluster: {tgt}\n      topicsPattern: \"{topics}\"\n      groupsPattern: \"{topics}.*\"\n      sourceConnector:\n        config:\n          replication.policy.class: org.apache.kafka.connect.mirror.IdentityReplicationPolicy\n          replication.factor: -1\n          refresh.topics.interval.seconds: 1\n          offset-syncs.topic.replication.factor: -1\n          heartbeats.topic.replication.factor: -1\n          checkpoints.topic.replication.factor: -1\n{extra}",
        cluster(&env.src, &env.source, source, ""),
        cluster(
            &env.tgt,
            &env.target,
            target,
            // librdkafka statistics on: the dashboard's broker round-trip panel needs them.
            "      config:\n        offset.storage.partitions: 3\n        offset.flush.interval.ms: 500\n        statistics.interval.ms: 2000\n"
        ),
        src = env.src,
        tgt = env.tgt,
    );
    let path = env.dir.path().join("kmirror-strimzi.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn secrets(env: &Env) -> PathBuf {
    env.dir.path().join("secrets")
}

/// The cluster's CA as Secret `<alias>-cluster-ca-cert`.
pub fn write_ca(env: &Env, alias: &str, ca_pem: &str) {
    write_secret(
        &secrets(env),
        &format!("{alias}-cluster-ca-cert"),
        &[("ca.crt", ca_pem)],
    );
}

/// A client certificate (CN=`cn`) from `pki` as Secret `<alias>-user`; returns the principal.
pub fn write_client_cert(env: &Env, alias: &str, pki: &Pki, cn: &str) -> String {
    let leaf = pki.leaf(cn, &[], false);
    write_secret(
        &secrets(env),
        &format!("{alias}-user"),
        &[("user.crt", &leaf.cert_pem), ("user.key", &leaf.key_pem)],
    );
    format!("User:CN={cn}")
}

pub fn write_password(env: &Env, alias: &str, password: &str) {
    write_secret(
        &secrets(env),
        &format!("{alias}-user"),
        &[("password", password)],
    );
}

pub fn start_secure(config: &Path, env: &Env, port: u16) -> Kmirror {
    Kmirror::start(
        config,
        &[
            "--secrets-dir",
            secrets(env).to_str().unwrap(),
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
    )
}
