//! Converting MM2's dedicated-mode `mm2.properties` into a kmirror configuration.
//!
//! Flows (`A->B.enabled`), clusters (`A.bootstrap.servers`, `A.*` client settings, PEM or
//! PKCS#12 security, SASL), top-level connector keys and `A->B.*` overrides are carried over.
//! Every key without an equivalent produces a warning that names it; nothing is dropped
//! silently. Whether a client property exists in librdkafka is decided by the caller.

use std::collections::BTreeMap;

use crate::config::keys::{self, WORKER_KEYS};
use crate::properties::last;

/// The converted configuration and what could not be carried over.
#[derive(Debug)]
pub struct Imported {
    /// A kmirror configuration file (YAML).
    pub yaml: String,
    /// One line per key that has no equivalent, naming it.
    pub warnings: Vec<String>,
}

/// A flow `(source, target)` and its connector keys.
type FlowConfig = ((String, String), BTreeMap<String, String>);

#[derive(Default)]
struct ClusterOut {
    bootstrap: Option<String>,
    trusted: Vec<String>,
    cert_key: Option<(String, String)>,
    config: BTreeMap<String, String>,
}

/// Keys with no meaning for kmirror that MM2 files commonly carry.
const NO_EQUIVALENT: &[(&str, &str)] = &[
    (
        "dedicated.mode.enable.internal.rest",
        "kmirror has no REST API; replicas coordinate through a consumer group (scale.out.enabled)",
    ),
    ("listeners", "kmirror has no REST API"),
    (
        "config.providers",
        "config providers are not supported; put values or file paths in the kmirror config",
    ),
];

/// Converts parsed properties. `client_key_ok(key, value)` says whether librdkafka accepts a
/// client property. Fails if the file defines no clusters or no enabled flow.
pub fn convert(
    props: &[(String, String)],
    client_key_ok: &dyn Fn(&str, &str) -> bool,
) -> Result<Imported, String> {
    let aliases: Vec<String> = last(props, "clusters")
        .ok_or("no `clusters` key: this is not an MM2 dedicated-mode file")?
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if aliases.is_empty() {
        return Err("`clusters` is empty".into());
    }
    let mut warnings = Vec::new();
    let mut warn = |key: &str, why: &str| warnings.push(format!("{key}: {why}"));

    // Keys in file order, last value wins.
    let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in props {
        latest.insert(k, v);
    }

    let mut top_connector: BTreeMap<String, String> = BTreeMap::new();
    let mut top_worker: BTreeMap<String, String> = BTreeMap::new();
    let mut top_security: BTreeMap<String, String> = BTreeMap::new();
    let mut cluster_keys: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut flow_keys: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    let mut flow_order: Vec<(String, String)> = Vec::new();

    for (&key, &value) in &latest {
        if key == "clusters" {
            continue;
        }
        if let Some((pair, rest)) = split_flow(key, &aliases) {
            if rest == "enabled" {
                if value.trim().eq_ignore_ascii_case("true") && !flow_order.contains(&pair) {
                    flow_order.push(pair.clone());
                }
                continue;
            }
            flow_keys
                .entry(pair)
                .or_default()
                .insert(rest.to_owned(), value.to_owned());
            continue;
        }
        if let Some((alias, rest)) = split_cluster(key, &aliases) {
            cluster_keys
                .entry(alias)
                .or_default()
                .insert(rest.to_owned(), value.to_owned());
            continue;
        }
        if keys::status_of(key).is_some() || key.starts_with("replication.policy.") {
            top_connector.insert(key.to_owned(), value.to_owned());
        } else if WORKER_KEYS.contains(&key) {
            top_worker.insert(key.to_owned(), value.to_owned());
        } else if key == "security.protocol" || key.starts_with("ssl.") || key.starts_with("sasl.")
        {
            top_security.insert(key.to_owned(), value.to_owned());
        } else if let Some(rest) = ["producer.", "consumer.", "admin."]
            .iter()
            .find_map(|p| key.strip_prefix(p).map(|r| (*p, r)))
        {
            if client_key_ok(rest.1, value) {
                top_connector.insert(key.to_owned(), value.to_owned());
            } else {
                warn(key, "no librdkafka equivalent; not carried over");
            }
        } else if let Some((_, why)) = NO_EQUIVALENT
            .iter()
            .find(|(k, _)| *k == key || key.starts_with("rest."))
        {
            warn(key, why);
        } else if key.starts_with("rest.") {
            warn(key, "kmirror has no REST API");
        } else {
            warn(key, "not an MM2 key kmirror knows; not carried over");
        }
    }
    if flow_order.is_empty() {
        return Err("no flow is enabled (set A->B.enabled = true)".into());
    }

    let mut clusters: BTreeMap<String, ClusterOut> = BTreeMap::new();
    for alias in &aliases {
        let mut out = ClusterOut::default();
        let mut own = top_security.clone();
        own.extend(cluster_keys.remove(alias).unwrap_or_default());
        security(alias, &mut own, &mut out, client_key_ok, &mut warn);
        for (k, v) in own {
            let full = format!("{alias}.{k}");
            if k == "bootstrap.servers" {
                out.bootstrap = Some(v);
            } else if WORKER_KEYS.contains(&k.as_str()) {
                out.config.insert(k, v);
            } else if let Some((prefix, rest)) = ["producer.", "consumer.", "admin."]
                .iter()
                .find_map(|p| k.strip_prefix(p).map(|r| (*p, r)))
            {
                if client_key_ok(rest, &v) {
                    out.config.insert(format!("{prefix}{rest}"), v);
                } else {
                    warn(&full, "no librdkafka equivalent; not carried over");
                }
            } else if keys::status_of(&k).is_some() {
                warn(
                    &full,
                    "connector keys per cluster are not supported; set it per flow (A->B.key)",
                );
            } else if client_key_ok(&k, &v) {
                out.config.insert(k, v);
            } else {
                warn(&full, "no librdkafka equivalent; not carried over");
            }
        }
        clusters.insert(alias.clone(), out);
    }
    for (_, target) in &flow_order {
        if let Some(c) = clusters.get_mut(target) {
            for (k, v) in &top_worker {
                c.config.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }

    let mut mirrors = Vec::new();
    for pair in &flow_order {
        let mut config = top_connector.clone();
        for (k, v) in flow_keys.remove(pair).unwrap_or_default() {
            let full = format!("{}->{}.{k}", pair.0, pair.1);
            let client = keys::CLIENT_PREFIXES.iter().any(|(p, _)| k.starts_with(p));
            if keys::status_of(&k).is_some() || k.starts_with("replication.policy.") || client {
                config.insert(k, v);
            } else {
                warn(
                    &full,
                    "not an MM2 connector key kmirror knows; not carried over",
                );
            }
        }
        mirrors.push((pair.clone(), config));
    }
    for ((s, t), rest) in flow_keys {
        for k in rest.keys() {
            warn(
                &format!("{s}->{t}.{k}"),
                "belongs to a flow that is not enabled; not carried over",
            );
        }
    }

    let used: Vec<&String> = aliases
        .iter()
        .filter(|a| flow_order.iter().any(|(s, t)| s == *a || t == *a))
        .collect();
    for a in &aliases {
        if !used.contains(&a) {
            warn(a, "cluster is in no enabled flow; left out");
        } else if clusters.get(a).is_none_or(|c| c.bootstrap.is_none()) {
            return Err(format!("{a}.bootstrap.servers is missing"));
        }
    }
    Ok(Imported {
        yaml: render(&used, &clusters, &mirrors),
        warnings,
    })
}

fn split_flow(key: &str, aliases: &[String]) -> Option<((String, String), String)> {
    let (source, rest) = key.split_once("->")?;
    let target = aliases
        .iter()
        .filter(|a| rest.starts_with(&format!("{a}.")))
        .max_by_key(|a| a.len())?;
    aliases.iter().any(|a| a == source).then(|| {
        (
            (source.to_owned(), target.clone()),
            rest[target.len() + 1..].to_owned(),
        )
    })
}

fn split_cluster<'k>(key: &'k str, aliases: &[String]) -> Option<(String, &'k str)> {
    let alias = aliases
        .iter()
        .filter(|a| key.starts_with(&format!("{a}.")))
        .max_by_key(|a| a.len())?;
    Some((alias.clone(), &key[alias.len() + 1..]))
}

/// Moves the security keys of one cluster into `out`, leaving the rest in `own`.
fn security(
    alias: &str,
    own: &mut BTreeMap<String, String>,
    out: &mut ClusterOut,
    client_key_ok: &dyn Fn(&str, &str) -> bool,
    warn: &mut dyn FnMut(&str, &str),
) {
    let mut take = |k: &str| own.remove(k);
    let truststore_type = take("ssl.truststore.type")
        .unwrap_or_else(|| "JKS".into())
        .to_ascii_uppercase();
    if let Some(location) = take("ssl.truststore.location") {
        if truststore_type == "PEM" {
            out.trusted.push(location);
        } else {
            warn(&format!("{alias}.ssl.truststore.location"), &format!("{truststore_type} trust stores are Java-only: export the CA as PEM (keytool -exportcert -rfc) and list it under tls.trustedCertificates"));
        }
    }
    if let Some(pem) = take("ssl.truststore.certificates") {
        out.config.insert("ssl.ca.pem".into(), pem);
    }
    let _ = take("ssl.truststore.password");
    let keystore_type = take("ssl.keystore.type")
        .unwrap_or_else(|| "JKS".into())
        .to_ascii_uppercase();
    if let Some(location) = take("ssl.keystore.location") {
        match keystore_type.as_str() {
            "PEM" => out.cert_key = Some((location.clone(), location)),
            "PKCS12" => {
                out.config.insert("ssl.keystore.location".into(), location);
                if let Some(p) = take("ssl.keystore.password") {
                    out.config.insert("ssl.keystore.password".into(), p);
                }
            }
            other => warn(
                &format!("{alias}.ssl.keystore.location"),
                &format!("{other} key stores are Java-only: convert to PEM or PKCS#12"),
            ),
        }
    }
    let _ = take("ssl.keystore.password");
    if let Some(chain) = take("ssl.keystore.certificate.chain") {
        out.config.insert("ssl.certificate.pem".into(), chain);
    }
    if let Some(key) = take("ssl.keystore.key") {
        out.config.insert("ssl.key.pem".into(), key);
    }
    if let Some(alg) = take("ssl.endpoint.identification.algorithm") {
        let v = if alg.trim().is_empty() {
            "none".to_owned()
        } else {
            alg
        };
        out.config
            .insert("ssl.endpoint.identification.algorithm".into(), v);
    }
    for k in [
        "ssl.protocol",
        "ssl.enabled.protocols",
        "ssl.keymanager.algorithm",
        "ssl.trustmanager.algorithm",
        "ssl.secure.random.implementation",
    ] {
        if take(k).is_some() {
            warn(&format!("{alias}.{k}"), "Java TLS setting without a librdkafka equivalent; librdkafka negotiates TLS 1.2/1.3 itself");
        }
    }
    if let Some(jaas) = take("sasl.jaas.config") {
        match (jaas_field(&jaas, "username"), jaas_field(&jaas, "password")) {
            (Some(u), Some(p)) => {
                out.config.insert("sasl.username".into(), u);
                out.config.insert("sasl.password".into(), p);
            }
            _ => warn(
                &format!("{alias}.sasl.jaas.config"),
                "only username/password login modules convert; set librdkafka sasl.* keys by hand",
            ),
        }
    }
    if let Some(m) = own.get("sasl.mechanism") {
        if m.eq_ignore_ascii_case("GSSAPI") {
            warn(
                &format!("{alias}.sasl.mechanism"),
                "Kerberos: set librdkafka's sasl.kerberos.* keys by hand",
            );
        }
    }
    let _ = client_key_ok;
}

fn jaas_field(jaas: &str, field: &str) -> Option<String> {
    let start = jaas.find(&format!("{field}="))? + field.len() + 1;
    let rest = &jaas[start..];
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_owned())
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn render(
    used: &[&String],
    clusters: &BTreeMap<String, ClusterOut>,
    mirrors: &[FlowConfig],
) -> String {
    let mut y = String::from("# kmirror configuration converted from an MM2 dedicated-mode properties file.\n# Check it with: kmirror validate --config FILE\nclusters:\n");
    for alias in used {
        let Some(c) = clusters.get(*alias) else {
            continue;
        };
        y.push_str(&format!(
            "  - alias: {}\n    bootstrapServers: {}\n",
            q(alias),
            q(c.bootstrap.as_deref().unwrap_or_default())
        ));
        if !c.trusted.is_empty() || c.cert_key.is_some() {
            y.push_str("    tls:\n      trustedCertificates:\n");
            for t in &c.trusted {
                y.push_str(&format!("        - certificate: {}\n", q(t)));
            }
            if c.trusted.is_empty() {
                y.push_str("        []\n");
            }
        }
        if let Some((cert, key)) = &c.cert_key {
            y.push_str(&format!("    authentication:\n      type: tls\n      certificateAndKey:\n        certificate: {}\n        key: {}\n", q(cert), q(key)));
        }
        if !c.config.is_empty() {
            y.push_str("    config:\n");
            for (k, v) in &c.config {
                y.push_str(&format!("      {}: {}\n", q(k), q(v)));
            }
        }
    }
    y.push_str("mirrors:\n");
    for ((s, t), config) in mirrors {
        y.push_str(&format!(
            "  - sourceCluster: {}\n    targetCluster: {}\n",
            q(s),
            q(t)
        ));
        if !config.is_empty() {
            y.push_str("    sourceConnector:\n      config:\n");
            for (k, v) in config {
                y.push_str(&format!("        {}: {}\n", q(k), q(v)));
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::properties::parse;

    #[test]
    fn flows_clusters_and_warnings() {
        let text = "clusters = A, B\nA.bootstrap.servers = a:9092\nB.bootstrap.servers = b:9092\nA->B.enabled = true\nA->B.topics = orders.*\nB->A.enabled = false\nreplication.factor = 1\noffset.storage.replication.factor = 1\nA.producer.max.request.size = 5\ndedicated.mode.enable.internal.rest = true\nA.ssl.truststore.location = /x.jks\nB.sasl.mechanism = SCRAM-SHA-512\nB.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username=\"u\" password=\"p\";\n";
        let ok = |k: &str, _: &str| !k.contains("max.request.size");
        let out = convert(&parse(text), &ok).expect("converts");
        assert!(out.yaml.contains("sourceCluster: \"A\""));
        assert!(out.yaml.contains("\"topics\": \"orders.*\""));
        assert!(out.yaml.contains("\"replication.factor\": \"1\""));
        assert!(out
            .yaml
            .contains("\"offset.storage.replication.factor\": \"1\""));
        assert!(out.yaml.contains("\"sasl.password\": \"p\""));
        assert!(!out.yaml.contains("B->A"));
        let w = out.warnings.join("\n");
        assert!(
            w.contains("A.producer.max.request.size: no librdkafka equivalent"),
            "{w}"
        );
        assert!(w.contains("dedicated.mode.enable.internal.rest"), "{w}");
        assert!(
            w.contains("A.ssl.truststore.location: JKS trust stores"),
            "{w}"
        );
    }

    /// MM2 drops a top-level `use.defaults.from` (MM2-COMPAT §4.3, §11); kmirror carries it
    /// to every flow, where a flow's own value still wins.
    #[test]
    fn top_level_use_defaults_from_reaches_every_flow() {
        let text = "clusters = A, B, C\nA.bootstrap.servers = a:1\nB.bootstrap.servers = b:1\nC.bootstrap.servers = c:1\nA->B.enabled = true\nA->C.enabled = true\nuse.defaults.from = source\nA->C.use.defaults.from = target\nconfig.properties.blacklist = segment\\..*\n";
        let out = convert(&parse(text), &|_, _| true).expect("converts");
        let flows: Vec<&str> = out.yaml.split("- sourceCluster").skip(1).collect();
        assert_eq!(flows.len(), 2, "{}", out.yaml);
        assert!(
            flows[0].contains("\"use.defaults.from\": \"source\""),
            "{}",
            out.yaml
        );
        assert!(
            flows[1].contains("\"use.defaults.from\": \"target\""),
            "{}",
            out.yaml
        );
        for f in flows {
            assert!(
                f.contains("\"config.properties.blacklist\""),
                "{}",
                out.yaml
            );
        }
        assert!(out
            .warnings
            .iter()
            .all(|w| !w.contains("use.defaults.from")));
    }

    #[test]
    fn no_flow_is_an_error() {
        let p = parse("clusters = A, B\nA.bootstrap.servers = a:1\n");
        assert!(convert(&p, &|_, _| true).is_err());
    }
}
