//! Operations: metrics move with traffic, readiness follows the clusters, logs are JSON and
//! never carry secrets.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::*;

pub use crate::support::{http_get as get, series};

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

fn records(n: i32, from: i32) -> Vec<(i32, TestRecord)> {
    (from..from + n)
        .map(|i| {
            (
                i % 2,
                TestRecord {
                    key: Some(i.to_be_bytes().to_vec()),
                    value: Some(vec![7; 100]),
                    headers: Vec::new(),
                    timestamp: 1_700_000_000_000 + i64::from(i),
                },
            )
        })
        .collect()
}

#[test]
fn metrics_move_with_traffic_and_readiness_follows_the_target() {
    // The test stops the target: clusters of its own.
    let env = Env::dedicated();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("metrics-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, 2);
    produce(&source.bootstrap, &topic, &records(1_000, 0));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = env.config(&topic, "");
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &addr]);

    let mm2 = "kafka_connect_mirror_mirrorsourceconnector_record_count";
    let labels = |p: &'static str| {
        [
            ("source", env.src.as_str()),
            ("target", env.tgt.as_str()),
            ("topic", topic.as_str()),
            ("partition", p),
        ]
    };
    let total = |text: &str| {
        series(text, mm2, &labels("0")).unwrap_or(0.0)
            + series(text, mm2, &labels("1")).unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(20), || total(&get(port, "/metrics").1)
            >= 1_000.0),
        "record_count never reached 1000:\n{}",
        get(port, "/metrics").1
    );
    let (code, body) = get(port, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(port, "/healthz").0, 200);

    let text = get(port, "/metrics").1;
    for attr in kmirror_engine::metrics::MM2_SOURCE_ATTRIBUTES {
        let name = format!("kafka_connect_mirror_mirrorsourceconnector_{attr}");
        assert!(
            series(&text, &name, &labels("0")).is_some(),
            "missing {name} for partition 0"
        );
    }
    for name in [
        "kmirror_replication_lag_records",
        "kmirror_replication_lag_seconds",
        "kmirror_records_replicated_total",
    ] {
        assert!(
            series(&text, name, &labels("1")).is_some(),
            "missing {name}"
        );
    }
    assert!(series(
        &text,
        "kmirror_recovery_point_objective_seconds",
        &env.flow_labels()
    )
    .is_some());
    // Everything copied: the partition is caught up (once the source's watermarks are seen).
    assert!(
        wait_until(Duration::from_secs(10), || series(
            &get(port, "/metrics").1,
            "kmirror_partition_state",
            &[
                ("topic", topic.as_str()),
                ("partition", "0"),
                ("state", "caught_up")
            ]
        ) == Some(1.0)),
        "partition 0 is not reported caught up:\n{}",
        get(port, "/metrics").1
    );

    // More traffic: the counters move, and the lag returns to zero once it is copied.
    produce(&source.bootstrap, &topic, &records(1_000, 1_000));
    assert!(
        wait_until(Duration::from_secs(20), || total(&get(port, "/metrics").1)
            >= 2_000.0),
        "record_count did not move"
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            let t = get(port, "/metrics").1;
            series(&t, "kmirror_replication_lag_records", &labels("0")) == Some(0.0)
                && series(&t, "kmirror_replication_lag_records", &labels("1")) == Some(0.0)
        }),
        "lag did not return to 0"
    );

    // The target goes away: not ready, with a reason.
    target.stop_node(0);
    assert!(
        wait_until(Duration::from_secs(20), || get(port, "/readyz").0 == 503),
        "/readyz stayed 200 after the target stopped"
    );
    let (_, reason) = get(port, "/readyz");
    assert!(
        reason.contains(&format!("cluster {} is unreachable", env.tgt)),
        "{reason}"
    );
    assert_eq!(
        get(port, "/healthz").0,
        200,
        "liveness does not depend on the clusters"
    );
    kmirror.kill();
}

#[test]
fn json_logs_parse_and_carry_no_secrets() {
    let env = Env::shared();
    let dir = &env.dir;
    let password = format!("Pa55-{}-secret", rand_suffix());
    fs::write(dir.path().join("password.txt"), &password).unwrap();
    let key = crate::support::certs::Pki::new("ca").leaf("user", &[], false);
    fs::write(dir.path().join("user.key"), &key.key_pem).unwrap();
    fs::write(dir.path().join("user.crt"), &key.cert_pem).unwrap();
    let jaas_secret = format!("jaas-{}", rand_suffix());
    fs::write(
        dir.path().join("ca.crt"),
        fs::read_to_string(&env.target.ca_file).unwrap(),
    )
    .unwrap();
    // A wrong SCRAM password over TLS: the authentication error is logged, the password never.
    let text = format!(
        "clusters:\n  - alias: {src}\n    bootstrapServers: {}\n    config:\n      ssl.key.password: {jaas_secret}\n  - alias: {tgt}\n    bootstrapServers: {}\n    tls:\n      trustedCertificates:\n        - certificate: ca.crt\n    authentication:\n      type: scram-sha-512\n      username: kmirror\n      passwordSecret:\n        password: password.txt\nmirrors:\n  - sourceCluster: {src}\n    targetCluster: {tgt}\n    topicsPattern: \"secrets-{}\"\n",
        env.source.bootstrap,
        env.target.sasl_bootstrap,
        rand_suffix(),
        src = env.src,
        tgt = env.tgt,
    );
    let config = dir.path().join("kmirror.yaml");
    fs::write(&config, text).unwrap();
    let mut kmirror = Kmirror::start(&config, &["--log-format", "json"]);
    std::thread::sleep(Duration::from_secs(6));
    kmirror.kill();
    let logs = kmirror.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "expected log lines:\n{logs}");
    for line in &lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            parsed.get("level").is_some() && parsed.get("timestamp").is_some(),
            "{line}"
        );
    }
    assert!(logs.contains("effective configuration"), "{logs}");
    assert!(
        !logs.contains(&password),
        "the SASL password appears in the logs"
    );
    assert!(
        !logs.contains(&jaas_secret),
        "a secret client property appears in the logs"
    );
    for key_line in key.key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !logs.contains(key_line),
            "private key material appears in the logs"
        );
    }
}
