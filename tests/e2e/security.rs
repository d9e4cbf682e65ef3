//! Security against real brokers: mutual TLS against an SSL listener that requires client
//! certificates, SCRAM-SHA-512 over TLS, both from Strimzi-shaped Secrets in `--secrets-dir`;
//! kmirror's principals hold ACLs, not super-user rights; ACL sync creates ACLs on a target
//! with an authorizer. Bad credentials are reported (log line naming the cluster and the cause,
//! `/readyz`, a metric), nothing is copied meanwhile, and once fixed in place everything is.

use std::path::Path;
use std::time::{Duration, Instant};

use kmirror_admin::AclResource;
use kmirror_core::acl::{AclOperation, PatternType};

use crate::operations::{get, series};
use crate::support::certs::Pki;
use crate::support::secure::*;
use crate::support::*;

fn records(n: i32) -> Vec<(i32, TestRecord)> {
    (0..n)
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
        .collect()
}

/// The topic ACLs on `kafka` for `topic` (as sorted text).
fn topic_acls(kafka: &Kafka, topic: &str) -> Vec<String> {
    let admin = admin(&kafka.bootstrap);
    let mut acls: Vec<String> =
        kmirror_admin::describe_topic_acls(admin.inner(), Duration::from_secs(10))
            .unwrap()
            .into_iter()
            .filter(|a| a.topic == topic)
            .map(|a| {
                format!(
                    "{} {:?} {:?} {:?}",
                    a.principal, a.pattern, a.permission, a.operation
                )
            })
            .collect();
    acls.sort();
    acls
}

#[test]
fn mirrors_over_mutual_tls_and_scram_with_acls_and_syncs_acls() {
    let env = Env::shared();
    let topic = format!("secure-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 2);
    let sent = records(1_000);
    produce(&env.source.bootstrap, &topic, &sent);

    // Source over mutual TLS, target over SCRAM-SHA-512: each principal with the ACLs the flow
    // needs, granted on the test's own names.
    write_ca(&env, &env.src, &env.source.pki.ca_pem);
    let source_principal = write_client_cert(
        &env,
        &env.src,
        &env.source.pki,
        &format!("kmirror-{}", rand_suffix()),
    );
    env.source.grant_source(&source_principal, &topic, &env.tgt);
    write_ca(&env, &env.tgt, &env.target.pki.ca_pem);
    write_password(&env, &env.tgt, &env.target.scram_password);
    let target_principal = format!("User:{}", Kafka::SCRAM_USER);
    env.target.grant_target(&target_principal, &topic, &env.src);

    // A literal ACL on the source topic: copied (MM2's rules). ALLOW WRITE never is.
    let reader = format!("User:reader-{}", rand_suffix());
    let writer = format!("User:writer-{}", rand_suffix());
    env.source.grant(
        &reader,
        AclResource::Topic,
        &topic,
        PatternType::Literal,
        &[AclOperation::Read],
    );
    env.source.grant(
        &writer,
        AclResource::Topic,
        &topic,
        PatternType::Literal,
        &[AclOperation::Write],
    );

    let config = strimzi_config(
        &env,
        &topic,
        Access::Mtls,
        Access::Scram,
        "          sync.topic.acls.enabled: \"true\"\n          sync.topic.acls.interval.seconds: 2\n",
    );
    let port = free_port();
    let mut kmirror = start_secure(&config, &env, port);
    let got = consume(
        &env.target.bootstrap,
        &topic,
        2,
        sent.len(),
        Duration::from_secs(60),
    );
    assert_same(&by_partition(&sent, 2), &got, &topic);

    wait_for(
        "the reader's ACL on the target",
        Duration::from_secs(20),
        || {
            let acls = topic_acls(&env.target, &topic);
            if acls.contains(&format!("{reader} Literal Allow Read")) {
                Ok(())
            } else {
                Err(format!("{acls:?}"))
            }
        },
    );
    // A later ACL follows within an interval.
    let auditor = format!("User:auditor-{}", rand_suffix());
    env.source.grant(
        &auditor,
        AclResource::Topic,
        &topic,
        PatternType::Literal,
        &[AclOperation::Describe],
    );
    wait_for(
        "the auditor's ACL on the target",
        Duration::from_secs(20),
        || {
            let acls = topic_acls(&env.target, &topic);
            if acls.contains(&format!("{auditor} Literal Allow Describe")) {
                Ok(())
            } else {
                Err(format!("{acls:?}"))
            }
        },
    );
    let acls = topic_acls(&env.target, &topic);
    assert!(
        !acls.iter().any(|a| a.starts_with(&writer)),
        "ALLOW WRITE is never copied: {acls:?}"
    );
    let (code, body) = get(port, "/readyz");
    assert_eq!(code, 200, "{body}");
    let metrics = get(port, "/metrics").1;
    assert_eq!(
        series(&metrics, "kmirror_acls_created_total", &env.flow_labels()),
        Some(2.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains("kmirror_missing_permission{"),
        "no permission is missing:\n{metrics}"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

/// A misconfiguration, its expected report, and its fix.
struct Case<'a> {
    /// Which side is broken.
    source_side: bool,
    /// The log line's cause (after `cluster <alias>: `).
    cause: &'a str,
    /// The `kind` label of `kmirror_errors_total`.
    kind: &'a str,
    /// The (resource, operation) `kmirror_missing_permission` shows, if any.
    missing: Option<(&'a str, &'a str)>,
}

/// Starts kmirror broken; checks that within 30 s it says so (log, `/readyz`, metric) and copies
/// nothing; fixes it in place; checks that everything arrives.
fn broken_then_fixed(env: &Env, topic: &str, config: &Path, case: &Case<'_>, fix: impl FnOnce()) {
    let sent = records(400);
    produce(&env.source.bootstrap, topic, &sent);
    let port = free_port();
    let mut kmirror = start_secure(config, env, port);
    let alias = if case.source_side { &env.src } else { &env.tgt };
    let expected = format!("cluster {alias}: {}", case.cause);
    let started = Instant::now();
    wait_for("the error line", Duration::from_secs(30), || {
        let logs = kmirror.logs();
        if logs
            .lines()
            .any(|l| l.contains(" ERROR ") && l.contains(&expected))
        {
            Ok(())
        } else {
            Err(logs)
        }
    });
    wait_for(
        "/readyz and the metrics",
        Duration::from_secs(30) - started.elapsed().min(Duration::from_secs(25)),
        || {
            let (code, reasons) = get(port, "/readyz");
            let metrics = get(port, "/metrics").1;
            let counted = series(
                &metrics,
                "kmirror_errors_total",
                &[
                    ("source", env.src.as_str()),
                    ("target", env.tgt.as_str()),
                    ("kind", case.kind),
                ],
            )
            .unwrap_or(0.0);
            let permission_shown = case.missing.is_none_or(|(resource, operation)| {
                series(
                    &metrics,
                    "kmirror_missing_permission",
                    &[
                        ("cluster", alias.as_str()),
                        ("resource", resource),
                        ("operation", operation),
                    ],
                ) == Some(1.0)
            });
            if code == 503 && reasons.contains(&expected) && counted >= 1.0 && permission_shown {
                Ok(())
            } else {
                Err(format!("{code} {reasons}\n{metrics}"))
            }
        },
    );
    eprintln!("reported after {:?}", started.elapsed());
    let copied = consume_until_quiet(&env.target.bootstrap, topic, 2, Duration::from_secs(1));
    assert_eq!(
        copied.values().map(Vec::len).sum::<usize>(),
        0,
        "nothing is copied while broken"
    );

    fix();
    let fixed = Instant::now();
    let got = consume(
        &env.target.bootstrap,
        topic,
        2,
        sent.len(),
        Duration::from_secs(60),
    );
    if got.values().map(Vec::len).sum::<usize>() < sent.len() {
        eprintln!(
            "records missing after the fix; /readyz: {:?}\n/metrics:\n{}",
            get(port, "/readyz"),
            get(port, "/metrics").1
        );
    }
    assert_same(&by_partition(&sent, 2), &got, topic);
    eprintln!("everything copied {:?} after the fix", fixed.elapsed());
    wait_for("/readyz after the fix", Duration::from_secs(30), || {
        let (code, reasons) = get(port, "/readyz");
        if code == 200 {
            Ok(())
        } else {
            Err(reasons)
        }
    });
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

#[test]
fn a_ca_that_did_not_sign_the_broker_is_reported_and_picked_up_once_fixed() {
    let env = Env::shared();
    let topic = format!("badca-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 2);
    let stranger = Pki::new("some other CA");
    write_ca(&env, &env.tgt, &stranger.ca_pem);
    let principal = write_client_cert(
        &env,
        &env.tgt,
        &env.target.pki,
        &format!("kmirror-{}", rand_suffix()),
    );
    env.target.grant_target(&principal, &topic, &env.src);
    let config = strimzi_config(&env, &topic, Access::Plain, Access::Mtls, "");
    let ca_file = secrets(&env)
        .join(format!("{}-cluster-ca-cert", env.tgt))
        .join("ca.crt");
    let cause = format!(
        "the broker's TLS certificate is not signed by a CA in {}",
        ca_file.display()
    );
    let case = Case {
        source_side: false,
        cause: &cause,
        kind: "tls",
        missing: None,
    };
    broken_then_fixed(&env, &topic, &config, &case, || {
        write_ca(&env, &env.tgt, &env.target.pki.ca_pem);
    });
}

#[test]
fn a_client_certificate_from_another_ca_is_reported_and_picked_up_once_fixed() {
    let env = Env::shared();
    let topic = format!("badcert-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 2);
    write_ca(&env, &env.src, &env.source.pki.ca_pem);
    let cn = format!("kmirror-{}", rand_suffix());
    let stranger = Pki::new("untrusted clients CA");
    let principal = write_client_cert(&env, &env.src, &stranger, &cn);
    env.source.grant_source(&principal, &topic, &env.tgt);
    let config = strimzi_config(&env, &topic, Access::Mtls, Access::Plain, "");
    let case = Case {
        source_side: true,
        cause: "TLS handshake failed",
        kind: "tls",
        missing: None,
    };
    broken_then_fixed(&env, &topic, &config, &case, || {
        write_client_cert(&env, &env.src, &env.source.pki, &cn);
    });
}

#[test]
fn a_wrong_scram_password_is_reported_and_picked_up_once_fixed() {
    let env = Env::shared();
    let topic = format!("badpass-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 2);
    write_ca(&env, &env.tgt, &env.target.pki.ca_pem);
    write_password(&env, &env.tgt, "not-the-password");
    env.target
        .grant_target(&format!("User:{}", Kafka::SCRAM_USER), &topic, &env.src);
    let config = strimzi_config(&env, &topic, Access::Plain, Access::Scram, "");
    let case = Case {
        source_side: false,
        cause: "SASL authentication failed",
        kind: "authentication",
        missing: None,
    };
    broken_then_fixed(&env, &topic, &config, &case, || {
        write_password(&env, &env.tgt, &env.target.scram_password);
    });
}

#[test]
fn a_missing_acl_is_named_with_operation_and_resource_and_copying_starts_once_granted() {
    let env = Env::shared();
    let topic = format!("noacl-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 2);
    write_ca(&env, &env.src, &env.source.pki.ca_pem);
    let principal = write_client_cert(
        &env,
        &env.src,
        &env.source.pki,
        &format!("kmirror-{}", rand_suffix()),
    );
    // Everything kmirror needs on the source but READ on the topic: it may see and describe it.
    env.source
        .grant_source(&principal, &format!("other-{topic}"), &env.tgt);
    env.source.grant(
        &principal,
        AclResource::Topic,
        &topic,
        PatternType::Literal,
        &[AclOperation::Describe, AclOperation::DescribeConfigs],
    );
    let config = strimzi_config(&env, &topic, Access::Mtls, Access::Plain, "");
    let cause = format!("not authorized to READ TOPIC {topic}");
    let resource = format!("TOPIC {topic}");
    let case = Case {
        source_side: true,
        cause: &cause,
        kind: "authorization",
        missing: Some((&resource, "READ")),
    };
    let source = std::sync::Arc::clone(&env.source);
    let granted_topic = topic.clone();
    let granted_to = principal.clone();
    broken_then_fixed(&env, &topic, &config, &case, move || {
        source.grant(
            &granted_to,
            AclResource::Topic,
            &granted_topic,
            PatternType::Literal,
            &[AclOperation::Read],
        );
    });
}

/// The permission check learns whether the target lets kmirror create ACLs (ALTER on the
/// cluster) with a CreateAcls request that creates nothing: a principal without the right is
/// told no, then yes once it is granted, and no binding is left behind.
#[test]
fn the_right_to_create_acls_is_probed_without_creating_any() {
    let env = Env::shared();
    let cn = format!("prober-{}", rand_suffix());
    let leaf = env.target.pki.leaf(&cn, &[], false);
    let principal = format!("User:CN={cn}");
    let prober: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &env.target.ssl_bootstrap)
            .set("security.protocol", "ssl")
            .set("ssl.ca.pem", &env.target.pki.ca_pem)
            .set("ssl.certificate.pem", &leaf.cert_pem)
            .set("ssl.key.pem", &leaf.key_pem)
            .create()
            .unwrap();
    let timeout = Duration::from_secs(10);
    let may = || kmirror_admin::may_create_acls(prober.inner(), timeout);
    assert_eq!(may(), Ok(false), "nothing granted yet");
    env.target.grant(
        &principal,
        AclResource::Cluster,
        "kafka-cluster",
        PatternType::Literal,
        &[AclOperation::Alter],
    );
    wait_for(
        "ALTER on the cluster",
        Duration::from_secs(20),
        || match may() {
            Ok(true) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let left: Vec<String> =
        kmirror_admin::describe_topic_acls(admin(&env.target.bootstrap).inner(), timeout)
            .unwrap()
            .into_iter()
            .filter(|a| a.topic.is_empty() || a.principal.contains("permission-probe"))
            .map(|a| a.to_string())
            .collect();
    assert!(left.is_empty(), "the probe left bindings: {left:?}");
}
