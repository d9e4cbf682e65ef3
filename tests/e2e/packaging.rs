//! Packaging stays true to the binary: manifests parse, and the flags, ports, probe paths,
//! secret mounts, grace periods, build command and metric names they use are the real ones.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kmirror_engine::http::{DEFAULT_PORT, HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

fn run_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kmirror"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every `--flag` in `args` is a flag of `kmirror run`; returns the value after `flag`.
fn check_flags(args: &[String], what: &str) {
    let help = run_help();
    assert_eq!(
        args.first().map(String::as_str),
        Some("run"),
        "{what}: first argument must be `run`"
    );
    for a in args.iter().filter(|a| a.starts_with("--")) {
        let flag = a.split('=').next().unwrap();
        assert!(
            help.contains(flag),
            "{what}: `{flag}` is not a flag of kmirror run"
        );
    }
}

fn value_after(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_str()
                .map(ToOwned::to_owned)
                .unwrap_or_else(|| v.as_i64().unwrap().to_string())
        })
        .collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn seconds(d: &str) -> u64 {
    d.trim_end_matches('s').parse().unwrap()
}

#[test]
fn every_yaml_file_parses() {
    for rel in [
        "deploy/kubernetes/configmap.yaml",
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/service.yaml",
        "deploy/kubernetes/podmonitor.yaml",
        "deploy/kubernetes/pdb.yaml",
        "docker/compose.yaml",
        "docker/kmirror-compose.yaml",
        "config/kmirror.yaml",
        "config/strimzi-kafkamirrormaker2.yaml",
    ] {
        assert!(!yaml(rel).is_empty(), "{rel} is empty");
    }
}

#[test]
fn kubernetes_manifests_match_the_binary() {
    let deployment = &yaml("deploy/kubernetes/deployment.yaml")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    check_flags(&args, "deployment.yaml");
    let port = port_of(&value_after(&args, "--metrics-addr").expect("--metrics-addr"));
    assert_eq!(port, DEFAULT_PORT);
    assert_eq!(
        container["ports"][0]["containerPort"].as_i64(),
        Some(i64::from(port))
    );
    let port_name = container["ports"][0]["name"].as_str().unwrap();
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some(HEALTHZ_PATH)
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some(READYZ_PATH)
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["port"].as_str(),
        Some(port_name)
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["port"].as_str(),
        Some(port_name)
    );
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    let shutdown =
        seconds(&value_after(&args, "--shutdown-timeout").unwrap_or_else(|| "30s".into()));
    assert!(
        u64::try_from(grace).unwrap() > shutdown,
        "terminationGracePeriodSeconds must exceed --shutdown-timeout"
    );
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));

    let service = &yaml("deploy/kubernetes/service.yaml")[0];
    assert_eq!(
        service["spec"]["ports"][0]["port"].as_i64(),
        Some(i64::from(port))
    );
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_str(),
        Some(port_name)
    );
    let monitor = &yaml("deploy/kubernetes/podmonitor.yaml")[0];
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["port"].as_str(),
        Some(port_name)
    );
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["path"].as_str(),
        Some(METRICS_PATH)
    );

    // The config file and every Secret the resource names are mounted where the args say.
    let config_path = value_after(&args, "--config").unwrap();
    let secrets_dir = value_after(&args, "--secrets-dir").unwrap();
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["mountPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        mounts.iter().any(|(_, p)| *p == config_path),
        "{config_path} is not mounted"
    );
    let configmap = &yaml("deploy/kubernetes/configmap.yaml")[0];
    let key = Path::new(&config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let resource_text = configmap["data"][key]
        .as_str()
        .expect("the ConfigMap holds the config file");
    let resource = &YamlLoader::load_from_str(resource_text).unwrap()[0];
    // The Deployment runs as many replicas as the resource says (above 1, the resource turns
    // scale-out on, so that they share the partitions).
    assert_eq!(
        deployment["spec"]["replicas"].as_i64(),
        resource["spec"]["replicas"].as_i64()
    );
    let mut secrets = BTreeSet::new();
    collect_secret_names(resource, &mut secrets);
    assert!(!secrets.is_empty());
    let volumes = pod["volumes"].as_vec().unwrap();
    for secret in &secrets {
        let expected = format!("{secrets_dir}/{secret}");
        let (volume, _) = mounts
            .iter()
            .find(|(_, p)| *p == expected)
            .unwrap_or_else(|| panic!("Secret {secret} is not mounted at {expected}"));
        assert!(
            volumes.iter().any(|v| v["name"].as_str() == Some(volume)
                && v["secret"]["secretName"].as_str() == Some(secret.as_str())),
            "volume {volume} is not Secret {secret}"
        );
    }

    // And the resource itself validates with those Secrets present.
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::support::certs::Pki::new("ca");
    let user = ca.leaf("user", &[], false);
    for secret in &secrets {
        crate::support::certs::write_secret(
            dir.path(),
            secret,
            &[
                ("ca.crt", &ca.ca_pem),
                ("user.crt", &user.cert_pem),
                ("user.key", &user.key_pem),
            ],
        );
    }
    let file = dir.path().join("kmirror.yaml");
    fs::write(&file, resource_text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kmirror"))
        .args([
            "validate",
            "--config",
            file.to_str().unwrap(),
            "--secrets-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn collect_secret_names(y: &Yaml, out: &mut BTreeSet<String>) {
    match y {
        Yaml::Hash(h) => {
            for (k, v) in h {
                if k.as_str() == Some("secretName") {
                    out.insert(v.as_str().unwrap().to_owned());
                }
                collect_secret_names(v, out);
            }
        }
        Yaml::Array(a) => a.iter().for_each(|v| collect_secret_names(v, out)),
        _ => {}
    }
}

#[test]
fn compose_file_matches_the_binary() {
    let compose = &yaml("docker/compose.yaml")[0];
    let kmirror = &compose["services"]["kmirror"];
    let args = strings(&kmirror["command"]);
    check_flags(&args, "compose.yaml");
    let port = port_of(&value_after(&args, "--metrics-addr").unwrap());
    assert_eq!(
        kmirror["ports"][0].as_str(),
        Some(format!("{port}:{port}").as_str())
    );
    let config_path = value_after(&args, "--config").unwrap();
    let volume = kmirror["volumes"][0].as_str().unwrap();
    let (host, container) = volume.split_once(':').unwrap();
    assert!(
        container.starts_with(&config_path),
        "{volume} does not mount {config_path}"
    );
    for service in ["kafka-source", "kafka-target"] {
        assert!(compose["services"][service]["image"]
            .as_str()
            .unwrap()
            .starts_with("apache/kafka"));
    }
    let mounted = root().join("docker").join(host);
    let out = Command::new(env!("CARGO_BIN_EXE_kmirror"))
        .args(["validate", "--config", mounted.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = &yaml("docker/kmirror-compose.yaml")[0];
    let bootstraps: Vec<&str> = config["clusters"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|c| c["bootstrapServers"].as_str().unwrap())
        .collect();
    for b in bootstraps {
        let host = b.split(':').next().unwrap();
        assert!(
            !compose["services"][host].is_badvalue(),
            "{b} is not a compose service"
        );
    }
}

#[test]
fn dockerfile_and_systemd_unit_match_the_binary() {
    let dockerfile = read("docker/Dockerfile");
    assert!(
        dockerfile.contains("RUN scripts/build.sh"),
        "the image must build with scripts/build.sh"
    );
    assert!(
        read("scripts/test.sh").contains("scripts/build.sh"),
        "the test command must run the image's build command"
    );
    assert!(read("scripts/build.sh").contains("cargo build --release --locked -p kmirror"));
    assert!(dockerfile.contains(&format!("EXPOSE {DEFAULT_PORT}")));
    assert!(dockerfile.contains("USER 10001"), "non-root user");
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/kmirror\"]"));
    let cmd = dockerfile.lines().find(|l| l.starts_with("CMD ")).unwrap();
    let cmd: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD ")).unwrap();
    check_flags(&cmd, "Dockerfile CMD");

    let unit = read("deploy/systemd/kmirror.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let args: Vec<String> = exec
        .split_whitespace()
        .skip(1)
        .map(ToOwned::to_owned)
        .collect();
    check_flags(&args, "kmirror.service");
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(stop > seconds(&value_after(&args, "--shutdown-timeout").unwrap()));
    for hardening in [
        "User=kmirror",
        "ReadOnlyPaths=/etc/kmirror",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(hardening), "missing {hardening}");
    }
    // The example config is well formed: only its (absent) certificate files are missing.
    let out = Command::new(env!("CARGO_BIN_EXE_kmirror"))
        .args([
            "validate",
            "--config",
            root().join("config/kmirror.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| l.starts_with("error:")) {
        assert!(line.contains("cannot read"), "config/kmirror.yaml: {line}");
    }
}

#[test]
fn grafana_dashboard_uses_real_metric_names() {
    let text = read("deploy/grafana/kmirror-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("kmirror_") || word.starts_with("kafka_connect_mirror_") {
                    used.insert(word.trim_end_matches("_bucket").to_owned());
                }
            }
        }
    }
    assert!(used.len() >= 8, "{used:?}");
    let mm2: Vec<String> = kmirror_engine::metrics::MM2_SOURCE_ATTRIBUTES
        .iter()
        .map(|a| format!("{}_{a}", kmirror_engine::metrics::names::MM2_SOURCE))
        .collect();
    for name in &used {
        assert!(
            kmirror_engine::metrics::names::ALL_OWN.contains(&name.as_str()) || mm2.contains(name),
            "the dashboard uses unknown metric {name}"
        );
    }
}
