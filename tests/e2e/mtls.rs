//! Mirroring over mutual TLS, and clear errors when the TLS material is wrong.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::support::certs::Pki;
use crate::support::tls_proxy::TlsProxy;
use crate::support::*;

struct Setup {
    _source: Broker,
    _target: Broker,
    _proxy: TlsProxy,
    source: String,
    proxy_port: u16,
    server_ca: Pki,
    client_ca: Pki,
}

fn setup() -> Setup {
    let source = Broker::start("source", "KMIRROR_TEST_SOURCE_BOOTSTRAP");
    let proxy_port = free_port();
    let broker_port = free_port();
    let target = Broker::start_advertising("target", broker_port, proxy_port);
    let server_ca = Pki::new("target cluster CA");
    let client_ca = Pki::new("target clients CA");
    let server = server_ca.leaf("broker", &["127.0.0.1", "localhost"], false);
    let proxy = TlsProxy::start(
        proxy_port,
        format!("127.0.0.1:{broker_port}").parse().unwrap(),
        &server.cert_pem,
        &server.key_pem,
        &client_ca.ca_pem,
    );
    Setup {
        source: source.bootstrap.clone(),
        _source: source,
        _target: target,
        _proxy: proxy,
        proxy_port,
        server_ca,
        client_ca,
    }
}

/// A config whose target is reached over mutual TLS with certificates given as file paths.
fn tls_config(
    dir: &Path,
    s: &Setup,
    topic: &str,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> std::path::PathBuf {
    fs::write(dir.join("ca.crt"), ca_pem).unwrap();
    let auth = match client {
        Some((cert, key)) => {
            fs::write(dir.join("user.crt"), cert).unwrap();
            fs::write(dir.join("user.key"), key).unwrap();
            "    authentication:\n      type: tls\n      certificateAndKey:\n        certificate: user.crt\n        key: user.key\n".to_owned()
        }
        None => String::new(),
    };
    let text = format!(
        "clusters:\n  - alias: source\n    bootstrapServers: {src}\n  - alias: target\n    bootstrapServers: 127.0.0.1:{port}\n    tls:\n      trustedCertificates:\n        - certificate: ca.crt\n{auth}    config:\n      offset.storage.partitions: 1\nmirrors:\n  - sourceCluster: source\n    targetCluster: target\n    topicsPattern: \"{topic}\"\n    sourceConnector:\n      config:\n        replication.policy.class: IdentityReplicationPolicy\n        replication.factor: -1\n",
        src = s.source,
        port = s.proxy_port,
    );
    let path = dir.join("kmirror.yaml");
    fs::write(&path, text).unwrap();
    path
}

fn wait_exit(k: &mut Kmirror) -> (Option<i32>, String) {
    for _ in 0..300 {
        if let Some(code) = k.exit_code() {
            return (Some(code), k.logs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (None, k.logs())
}

#[test]
fn mirrors_over_mutual_tls() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("tls-{}", rand_suffix());
    create_topic(&s.source, &topic, 2);
    let records: Vec<(i32, TestRecord)> = (0..1_000)
        .map(|i| {
            (
                i % 2,
                TestRecord {
                    key: Some(format!("k{i}").into_bytes()),
                    value: Some(format!("v{i}").into_bytes()),
                    headers: vec![("h".into(), Some(b"x".to_vec()))],
                    timestamp: 5_000 + i64::from(i),
                },
            )
        })
        .collect();
    produce(&s.source, &topic, &records);
    let client = s.client_ca.leaf("kmirror", &[], false);
    let config = tls_config(
        dir.path(),
        &s,
        &topic,
        &s.server_ca.ca_pem,
        Some((&client.cert_pem, &client.key_pem)),
    );
    let mut kmirror = Kmirror::start(&config, &[]);

    // Read back through the same proxy with librdkafka and the same client certificate.
    let mut verify = client_tls(s.proxy_port, dir.path());
    verify.set("group.id", format!("verify-{}", rand_suffix()));
    let got = consume_with(verify, &topic, 2, records.len(), Duration::from_secs(60));
    let mut want: BTreeMap<i32, Vec<TestRecord>> = BTreeMap::new();
    for (p, r) in &records {
        want.entry(*p).or_default().push(r.clone());
    }
    assert_same(&want, &got, &topic);
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

fn client_tls(port: u16, dir: &Path) -> rdkafka::ClientConfig {
    let mut c = client(&format!("127.0.0.1:{port}"));
    c.set("security.protocol", "SSL")
        .set("ssl.ca.location", dir.join("ca.crt").to_str().unwrap())
        .set(
            "ssl.certificate.location",
            dir.join("user.crt").to_str().unwrap(),
        )
        .set("ssl.key.location", dir.join("user.key").to_str().unwrap());
    c
}

#[test]
fn wrong_ca_is_one_clear_error_naming_the_file() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let client = s.client_ca.leaf("kmirror", &[], false);
    let stranger = Pki::new("some other CA");
    let config = tls_config(
        dir.path(),
        &s,
        "x",
        &stranger.ca_pem,
        Some((&client.cert_pem, &client.key_pem)),
    );
    let mut kmirror = Kmirror::start(&config, &[]);
    let (code, logs) = wait_exit(&mut kmirror);
    assert_eq!(code, Some(2), "{logs}");
    let ca_file = dir.path().join("ca.crt").display().to_string();
    assert!(
        logs.contains("not signed by a CA in") && logs.contains(&ca_file),
        "{logs}"
    );
}

#[test]
fn client_without_certificate_is_refused() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(dir.path(), &s, "x", &s.server_ca.ca_pem, None);
    let mut kmirror = Kmirror::start(&config, &[]);
    let (code, logs) = wait_exit(&mut kmirror);
    assert_eq!(code, Some(2), "{logs}");
    assert!(logs.contains("TLS handshake failed"), "{logs}");
}

#[test]
fn client_certificate_from_another_ca_is_refused() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let stranger = Pki::new("untrusted clients CA").leaf("kmirror", &[], false);
    let config = tls_config(
        dir.path(),
        &s,
        "x",
        &s.server_ca.ca_pem,
        Some((&stranger.cert_pem, &stranger.key_pem)),
    );
    let mut kmirror = Kmirror::start(&config, &[]);
    let (code, logs) = wait_exit(&mut kmirror);
    assert_eq!(code, Some(2), "{logs}");
    assert!(
        logs.contains("TLS handshake failed") && logs.contains("user.crt"),
        "{logs}"
    );
}
