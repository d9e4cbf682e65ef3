//! `kmirror import`: MM2's dedicated-mode file becomes a config that `validate` accepts.

use std::fs;
use std::process::Command;

fn kmirror(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kmirror"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/mm2-dedicated.properties"
);

#[test]
fn mm2_dedicated_example_converts_to_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kmirror.yaml");
    let (code, _, stderr) = kmirror(&["import", EXAMPLE, "--output", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let text = fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("sourceCluster: \"A\"") && text.contains("sourceCluster: \"B\""),
        "{text}"
    );
    let (code, stdout, stderr) = kmirror(&["validate", "--config", out.to_str().unwrap()]);
    assert_eq!(
        code,
        Some(0),
        "validate rejected the import:\n{stderr}\n{text}"
    );
    assert!(stdout.contains("2 flow(s): A->B, B->A"), "{stdout}");
}

#[test]
fn unsupported_keys_are_named_in_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mm2.properties");
    let mut text = fs::read_to_string(EXAMPLE).unwrap();
    text.push_str("dedicated.mode.enable.internal.rest = true\nA.ssl.truststore.location = /etc/kafka/truststore.jks\nA.producer.buffer.memory = 33554432\n");
    fs::write(&input, text).unwrap();
    let (code, stdout, stderr) = kmirror(&["import", input.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: dedicated.mode.enable.internal.rest:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: A.ssl.truststore.location: JKS trust stores are Java-only"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: A.producer.buffer.memory: no librdkafka equivalent"),
        "{stderr}"
    );
    assert!(stdout.contains("clusters:"), "{stdout}");
}
