//! `kmirror validate`: the Strimzi example passes; every bad input is one clear line, exit 2.

use std::fs;
use std::path::Path;

use crate::support::certs::{write_secret, Pki};
use crate::support::kmirror_command;

fn validate(config: &Path, secrets: &Path) -> (Option<i32>, String, String) {
    kmirror_command(&[
        "validate",
        "--config",
        config.to_str().unwrap(),
        "--secrets-dir",
        secrets.to_str().unwrap(),
    ])
}

/// Lays out the Secrets the Strimzi example names, as Kubernetes mounts them.
fn strimzi_secrets(dir: &Path) {
    for cluster in ["source", "dest"] {
        let ca = Pki::new(&format!("{cluster} cluster CA"));
        let users = Pki::new(&format!("{cluster} clients CA"));
        let user = users.leaf(&format!("{cluster}-user"), &[], false);
        write_secret(
            dir,
            &format!("{cluster}-cluster-cluster-ca-cert"),
            &[("ca.crt", &ca.ca_pem)],
        );
        write_secret(
            dir,
            &format!("{cluster}-user"),
            &[("user.crt", &user.cert_pem), ("user.key", &user.key_pem)],
        );
    }
}

fn example() -> String {
    fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/strimzi-kafkamirrormaker2.yaml"
    ))
    .unwrap()
}

#[test]
fn strimzi_example_passes_with_mounted_secrets() {
    let dir = tempfile::tempdir().unwrap();
    strimzi_secrets(dir.path());
    let config = dir.path().join("mm2.yaml");
    fs::write(&config, example()).unwrap();
    let (code, stdout, stderr) = validate(&config, dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("configuration OK: 1 flow(s): source->dest"),
        "{stdout}"
    );
    // Every key of the example is implemented: nothing is reported as ignored.
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn use_defaults_from_must_be_source_or_target() {
    expect_problem(
        |_, t| {
            t.replace(
                "sync.topic.acls.enabled: \"false\"",
                "sync.topic.acls.enabled: \"false\"\n          use.defaults.from: sideways",
            )
        },
        "use.defaults.from: `sideways` is neither `source` nor `target`",
    );
}

#[test]
fn config_properties_exclude_and_its_old_name_conflict() {
    expect_problem(
        |_, t| {
            t.replace(
                "sync.topic.acls.enabled: \"false\"",
                "sync.topic.acls.enabled: \"false\"\n          config.properties.exclude: \"retention\\\\..*\"\n          config.properties.blacklist: \"segment\\\\..*\"",
            )
        },
        "is the old name of `config.properties.exclude`, which is set too; keep one",
    );
}

/// Runs validate on `text` (the example, edited) with the example's Secrets mounted.
fn validate_text(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    strimzi_secrets(dir.path());
    let config = dir.path().join("mm2.yaml");
    fs::write(&config, text).unwrap();
    validate(&config, dir.path())
}

/// Runs validate on the example after `edit`, expecting exit 2 and a line containing `needle`.
fn expect_problem(edit: impl FnOnce(&Path, String) -> String, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    strimzi_secrets(dir.path());
    let config = dir.path().join("mm2.yaml");
    let text = edit(dir.path(), example());
    fs::write(&config, text).unwrap();
    let (code, _, stderr) = validate(&config, dir.path());
    assert_eq!(
        code,
        Some(2),
        "expected exit 2 for `{needle}`, got {code:?}:\n{stderr}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "no error line contains `{needle}`:\n{stderr}"
    );
}

#[test]
fn origin_header_without_a_name() {
    expect_problem(
        |_, t| {
            t.replace(
                "sync.topic.acls.enabled: \"false\"",
                "sync.topic.acls.enabled: \"false\"\n          provenance.header.name: \" \"",
            )
        },
        "the origin header needs a name (or set provenance.header.enabled: false)",
    );
}

#[test]
fn unknown_cluster_alias() {
    expect_problem(
        |_, t| t.replace("targetCluster: dest", "targetCluster: nope"),
        "unknown cluster alias `nope`",
    );
}

#[test]
fn mirror_to_itself() {
    expect_problem(
        |_, t| t.replace("targetCluster: dest", "targetCluster: source"),
        "to itself",
    );
}

#[test]
fn bad_regex() {
    expect_problem(
        |_, t| t.replace("topicsPattern: \".*\"", "topicsPattern: \"orders(\""),
        "spec.mirrors[0].topicsPattern: invalid regular expression",
    );
}

#[test]
fn unsupported_policy_class() {
    expect_problem(
        |_, t| {
            t.replacen(
                "org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
                "com.example.MyPolicy",
                1,
            )
        },
        "unsupported replication policy `com.example.MyPolicy`",
    );
}

#[test]
fn unknown_connector_key() {
    expect_problem(
        |_, t| t.replace("sync.topic.acls.enabled", "sync.topic.acl.enabled"),
        "unknown MirrorMaker 2 key (did you mean `sync.topic.acls.enabled`?)",
    );
}

#[test]
fn missing_key_file() {
    expect_problem(
        |dir, t| {
            fs::remove_file(dir.join("source-user/user.key")).unwrap();
            t
        },
        "source-user/user.key: cannot read the private key",
    );
}

#[test]
fn key_of_another_certificate() {
    expect_problem(
        |dir, t| {
            let other = Pki::new("other").leaf("someone-else", &[], false);
            fs::write(dir.join("dest-user/user.key"), other.key_pem).unwrap();
            t
        },
        "dest-user/user.key: this private key does not belong to the certificate",
    );
}

#[test]
fn expired_certificate() {
    expect_problem(
        |dir, t| {
            let old = Pki::new("old").leaf("source-user", &[], true);
            fs::write(dir.join("source-user/user.crt"), old.cert_pem).unwrap();
            fs::write(dir.join("source-user/user.key"), old.key_pem).unwrap();
            t
        },
        "source-user/user.crt: certificate `CN=source-user` expired on",
    );
}

#[test]
fn not_a_certificate() {
    expect_problem(
        |dir, t| {
            fs::write(dir.join("dest-cluster-cluster-ca-cert/ca.crt"), "hello").unwrap();
            t
        },
        "dest-cluster-cluster-ca-cert/ca.crt: no PEM certificate",
    );
}

#[test]
fn secrets_without_secrets_dir_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mm2.yaml");
    fs::write(&config, example()).unwrap();
    let (code, _, stderr) = kmirror_command(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("pass --secrets-dir DIR"), "{stderr}");
}

#[test]
fn exactly_once_mode_validates_with_mm2s_keys() {
    let text = example()
        .replace(
            "config.storage.replication.factor: 3",
            "config.storage.replication.factor: 3\n        exactly.once.source.support: enabled",
        )
        .replace(
            "sync.topic.acls.enabled: \"false\"",
            "sync.topic.acls.enabled: \"false\"\n          exactly.once.support: required\n          transaction.boundary: interval\n          transaction.boundary.interval.ms: 750",
        );
    let (code, stdout, stderr) = validate_text(&text);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    // No key of the mode is reported as ignored.
    assert!(
        !stderr.contains("exactly.once") && !stderr.contains("transaction."),
        "{stderr}"
    );
}

#[test]
fn exactly_once_with_a_read_uncommitted_source_consumer_is_refused() {
    expect_problem(
        |_, t| {
            t.replace(
                "config.storage.replication.factor: 3",
                "config.storage.replication.factor: 3\n        exactly.once.source.support: enabled",
            )
            .replace(
                "sync.topic.acls.enabled: \"false\"",
                "sync.topic.acls.enabled: \"false\"\n          source.consumer.isolation.level: read_uncommitted",
            )
        },
        "exactly-once mode needs `read_committed` on the source consumer (it is `read_uncommitted`)",
    );
}

#[test]
fn exactly_once_required_without_the_target_worker_enabling_it_is_refused() {
    expect_problem(
        |_, t| {
            t.replace(
                "sync.topic.acls.enabled: \"false\"",
                "sync.topic.acls.enabled: \"false\"\n          exactly.once.support: required",
            )
        },
        "exactly.once.support: exactly-once copying needs `exactly.once.source.support: enabled` in the config of the target cluster `dest`",
    );
}

#[test]
fn exactly_once_values_are_checked_as_mm2_does() {
    expect_problem(
        |_, t| {
            t.replace(
                "sync.topic.acls.enabled: \"false\"",
                "sync.topic.acls.enabled: \"false\"\n          transaction.boundary: connector",
            )
        },
        "transaction.boundary: MirrorSourceConnector does not define transaction boundaries",
    );
    expect_problem(
        |_, t| {
            t.replace(
                "sync.topic.acls.enabled: \"false\"",
                "sync.topic.acls.enabled: \"false\"\n          exactly.once.support: always",
            )
        },
        "`always` is not a value of exactly.once.support (requested or required)",
    );
}

#[test]
fn exactly_once_requested_and_disabled_run_at_least_once() {
    let text = example()
        .replace(
            "config.storage.replication.factor: 3",
            "config.storage.replication.factor: 3\n        exactly.once.source.support: disabled",
        )
        .replace(
            "sync.topic.acls.enabled: \"false\"",
            "sync.topic.acls.enabled: \"false\"\n          exactly.once.support: requested\n          transaction.boundary: poll",
        );
    let (code, stdout, stderr) = validate_text(&text);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(
        stderr.contains("transaction.boundary: applies to exactly-once mode only"),
        "{stderr}"
    );
}

#[test]
fn strimzi_replicas_turn_scale_out_on() {
    let (code, stdout, stderr) =
        validate_text(&example().replace("  replicas: 1", "  replicas: 3"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("source->dest: scale-out: replicas share its partitions through the group `kmirror-source-dest` on dest (classic protocol)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("3 replicas: scale-out is on for every flow"),
        "{stderr}"
    );
}

#[test]
fn scale_out_keys_are_checked() {
    expect_problem(
        |_, t| {
            t.replace(
                "sync.topic.acls.enabled: \"false\"",
                "sync.topic.acls.enabled: \"false\"\n          scale.out.enabled: true\n          scale.out.group.protocol: eager",
            )
        },
        "scale.out.group.protocol: `eager` is not a group protocol (classic, or consumer on Kafka 4.0 and later)",
    );
}

#[test]
fn exactly_once_with_replicas_stands_by() {
    let text = example()
        .replace(
            "config.storage.replication.factor: 3",
            "config.storage.replication.factor: 3\n        exactly.once.source.support: enabled",
        )
        .replace("  replicas: 1", "  replicas: 2");
    let (code, stdout, stderr) = validate_text(&text);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("source->dest: scale-out: exactly-once: one replica copies, the others stand by to take over, through the group `kmirror-source-dest`"),
        "{stdout}"
    );
}
