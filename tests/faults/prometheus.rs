//! A real Prometheus (Debian's package, installed by scripts/deploy-check.sh) scrapes a kmirror
//! that copies between real clusters over mutual TLS and SCRAM: every query of the Grafana
//! dashboard returns data, and the alert rules of deploy/prometheus fire on a real outage of the
//! target and resolve after it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kmirror_admin::AclResource;
use kmirror_core::acl::{AclOperation, PatternType};

use crate::support::secure::*;
use crate::support::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The prometheus binary: `KMIRROR_PROMETHEUS`, or where scripts/deploy-check.sh puts it.
fn prometheus_binary() -> PathBuf {
    if let Ok(p) = std::env::var("KMIRROR_PROMETHEUS") {
        return p.into();
    }
    let cache = std::env::var("XDG_CACHE_HOME").map_or_else(
        |_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"),
        PathBuf::from,
    );
    let p = cache.join("kmirror/tools/prometheus/prometheus");
    assert!(
        p.exists(),
        "no prometheus at {}: scripts/deploy-check.sh installs it (scripts/test.sh runs it first), or set KMIRROR_PROMETHEUS",
        p.display()
    );
    p
}

/// A Prometheus server on loopback, scraping one kmirror every second and evaluating `rules`.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(kmirror_port: u16, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules_file = dir.path().join("rules.yaml");
        std::fs::write(&rules_file, rules).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: kmirror\n    static_configs:\n      - targets: [\"127.0.0.1:{kmirror_port}\"]\n",
                rules_file.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", prometheus_binary().display()));
        let p = Prometheus { child, port, dir };
        wait_for("prometheus ready", Duration::from_secs(30), || {
            match p.get("/-/ready") {
                Some((200, _)) => Ok(()),
                other => Err(format!("{other:?}\n{}", p.log())),
            }
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// One HTTP/1.0 GET (the server closes the connection after the answer).
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((code, body))
    }

    /// The result of an instant query, or the error Prometheus gave.
    fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let (code, body) = self
            .get(&format!("/api/v1/query?query={}", encode(expr)))
            .ok_or("no answer")?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("HTTP {code}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("HTTP {code}: {body}"));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// `(alertname, topic or cluster)` of every firing alert.
    fn firing(&self) -> Vec<(String, String)> {
        let Some((200, body)) = self.get("/api/v1/alerts") else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let l = &a["labels"];
                let what = l["topic"].as_str().or(l["cluster"].as_str()).unwrap_or("");
                (
                    l["alertname"].as_str().unwrap_or("").to_owned(),
                    what.to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every PromQL expression of the dashboard, with its panel title, variables set to "All".
fn dashboard_queries() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root().join("deploy/grafana/kmirror-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    let mut panels: Vec<serde_json::Value> =
        dashboard["panels"].as_array().cloned().unwrap_or_default();
    while let Some(panel) = panels.pop() {
        // Rows hold panels of their own.
        panels.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        for target in panel["targets"].as_array().cloned().unwrap_or_default() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((
                    panel["title"].as_str().unwrap_or("").to_owned(),
                    expr.replace("$source", ".*").replace("$target", ".*"),
                ));
            }
        }
    }
    assert!(out.len() >= 10, "the dashboard has queries: {out:?}");
    out
}

/// The alert rules with every `for:` shortened to 2 s: the expressions are what this test
/// checks against real metrics (the durations have promtool unit tests).
fn quick_rules() -> String {
    let text =
        std::fs::read_to_string(root().join("deploy/prometheus/kmirror-rules.yaml")).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let trimmed = l.trim_start();
            if trimmed.starts_with("for: ") {
                format!("{}for: 2s", &l[..l.len() - trimmed.len()])
            } else {
                l.to_owned()
            }
        })
        .collect();
    let out = lines.join("\n");
    assert!(out.contains("for: 2s"), "the rules have durations");
    out
}

fn rec(i: i32, size: usize) -> TestRecord {
    TestRecord {
        key: Some(format!("k{i}").into_bytes()),
        value: Some(vec![b'v'; size]),
        headers: Vec::new(),
        timestamp: 1_000 + i64::from(i),
    }
}

#[test]
fn a_real_prometheus_answers_every_dashboard_query_and_the_alerts_fire_on_an_outage_and_resolve() {
    let env = Env::dedicated();
    let id = rand_suffix();
    let prefix = format!("prom{id}");
    let (a, b) = (format!("{prefix}-a"), format!("{prefix}-b"));
    // Topic a: a non-default config the target principal may not set there (a refused config
    // change). Topic b: its target accepts 100 KB, and its record 10 is 200 KB (a failed
    // partition).
    create_topic_with(
        &env.source.bootstrap,
        &a,
        2,
        &[("retention.ms", "86400000")],
    );
    create_topic(&env.source.bootstrap, &b, 1);
    create_topic(&env.target.bootstrap, &a, 2);
    create_topic_with(
        &env.target.bootstrap,
        &b,
        1,
        &[("max.message.bytes", "100000")],
    );
    let sent = spread(1_000, 2);
    produce(&env.source.bootstrap, &a, &sent);
    let refused: Vec<(i32, TestRecord)> = (0..16)
        .map(|i| (0, rec(i, if i == 10 { 200_000 } else { 100 })))
        .collect();
    produce(&env.source.bootstrap, &b, &refused);
    commit(
        &env.source.bootstrap,
        &format!("{prefix}-g"),
        &a,
        &[(0, 100), (1, 200)],
    );

    // Source over mutual TLS (a client certificate: its expiry is a metric), target over SCRAM.
    write_ca(&env, &env.src, &env.source.pki.ca_pem);
    let source_principal =
        write_client_cert(&env, &env.src, &env.source.pki, &format!("kmirror-{id}"));
    env.source
        .grant_source(&source_principal, &prefix, &env.tgt);
    write_ca(&env, &env.tgt, &env.target.pki.ca_pem);
    write_password(&env, &env.tgt, &env.target.scram_password);
    let target_principal = format!("User:{}", Kafka::SCRAM_USER);
    env.target
        .grant_target(&target_principal, &prefix, &env.src);
    env.target.deny(
        &target_principal,
        AclResource::Topic,
        &a,
        PatternType::Literal,
        &[AclOperation::AlterConfigs],
    );
    // An ACL on the source topic, for the ACL sync to copy.
    env.source.grant(
        &format!("User:reader-{id}"),
        AclResource::Topic,
        &a,
        PatternType::Literal,
        &[AclOperation::Read],
    );

    let config = strimzi_config(
        &env,
        &format!("{prefix}.*"),
        Access::Mtls,
        Access::Scram,
        "          sync.topic.acls.interval.seconds: 2\n          sync.topic.configs.interval.seconds: 2\n          emit.checkpoints.interval.seconds: 1\n          refresh.groups.interval.seconds: 1\n          config.properties.exclude: \"max\\\\.message\\\\.bytes\"\n",
    );
    let kmirror_port = free_port();
    let mut kmirror = Kmirror::start(
        &config,
        &[
            "--secrets-dir",
            secrets(&env).to_str().unwrap(),
            "--metrics-addr",
            &format!("127.0.0.1:{kmirror_port}"),
            "--stall-after",
            "2s",
        ],
    );
    let prometheus = Prometheus::start(kmirror_port, &quick_rules());
    let got = consume(
        &env.target.bootstrap,
        &a,
        2,
        sent.len(),
        Duration::from_secs(60),
    );
    assert_same(&by_partition(&sent, 2), &got, &a);

    // Every dashboard query returns series (waiting for the jobs' first rounds and a few
    // scrapes); none is an error.
    let queries = dashboard_queries();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<String> = Vec::new();
    for (title, expr) in &queries {
        loop {
            match prometheus.query(expr) {
                Ok(result) if !result.is_empty() => break,
                Ok(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500))
                }
                Ok(_) => {
                    missing.push(format!("{title}: {expr}: no series"));
                    break;
                }
                Err(e) => {
                    missing.push(format!("{title}: {expr}: {e}"));
                    break;
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} dashboard queries:\n{}\nkmirror:\n{}",
        missing.len(),
        queries.len(),
        missing.join("\n"),
        kmirror.logs()
    );
    // The partition that failed is alerted on; nothing stalls while the target answers.
    wait_for(
        "the failed partition's alert",
        Duration::from_secs(30),
        || {
            let firing = prometheus.firing();
            if firing.contains(&("KmirrorPartitionFailed".into(), b.clone())) {
                Ok(())
            } else {
                Err(format!("{firing:?}"))
            }
        },
    );
    let firing = prometheus.firing();
    assert!(
        !firing
            .iter()
            .any(|(n, _)| n == "KmirrorClusterUnreachable" || n == "KmirrorReplicationStalled"),
        "{firing:?}"
    );

    // The target goes down while records are written: the cluster and the stalled partitions
    // are alerted on.
    env.target.stop_node(0);
    let more = numbered_batch(1_000, 1_200, 2, 100);
    produce(&env.source.bootstrap, &a, &more);
    wait_for("the outage's alerts", Duration::from_secs(120), || {
        let firing = prometheus.firing();
        let unreachable = firing.contains(&("KmirrorClusterUnreachable".into(), env.tgt.clone()));
        let stalled = firing.contains(&("KmirrorReplicationStalled".into(), a.clone()));
        if unreachable && stalled {
            Ok(())
        } else {
            Err(format!("{firing:?}"))
        }
    });

    // Back: everything arrives and both alerts resolve.
    env.target.restart_node(0);
    let mut want = sent.clone();
    want.extend(more.iter().cloned());
    let got = consume(
        &env.target.bootstrap,
        &a,
        2,
        want.len(),
        Duration::from_secs(120),
    );
    assert_same(&by_partition(&want, 2), &got, &a);
    wait_for(
        "the outage's alerts to resolve",
        Duration::from_secs(120),
        || {
            let firing = prometheus.firing();
            if firing
                .iter()
                .any(|(n, _)| n == "KmirrorClusterUnreachable" || n == "KmirrorReplicationStalled")
            {
                Err(format!("{firing:?}"))
            } else {
                Ok(())
            }
        },
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}
