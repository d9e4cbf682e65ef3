//! Reading a configuration file (YAML, JSON or TOML) with environment overrides.
//!
//! The file is either a Strimzi `KafkaMirrorMaker2` resource or a plain file shaped like its
//! `spec`. Environment variables `KMIRROR_CONFIG__<PATH>` override scalar values of the
//! document: path segments separated by `__`, each in snake case, e.g.
//! `KMIRROR_CONFIG__SPEC__CONNECT_CLUSTER=dest` sets `spec.connectCluster` (list entries and
//! keys containing dots cannot be overridden this way).

use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat, Value, ValueKind};
use kmirror_core::config::raw::{Resource, Spec};
use kmirror_core::config::{resolve, Config, Problem, ResolveContext};

/// Environment-variable prefix for overrides.
pub const ENV_PREFIX: &str = "KMIRROR_CONFIG";

/// Loads and validates a configuration file. Every problem found is returned.
pub fn load(path: &Path, secrets_dir: Option<&Path>) -> Result<Config, Vec<Problem>> {
    let field = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem::new(
            &field,
            format!("cannot read the config file: {e}"),
        )]
    })?;
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => FileFormat::Json,
        Some("toml") => FileFormat::Toml,
        _ => FileFormat::Yaml,
    };
    let config_dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let ctx = ResolveContext {
        secrets_dir: secrets_dir.map(Path::to_path_buf),
        config_dir,
    };
    let (spec, name) = parse(&text, format, &field, true)?;
    resolve(&spec, name, &ctx)
}

/// Parses a document (no validation). `env` applies `KMIRROR_*` overrides.
pub fn parse(
    text: &str,
    format: FileFormat,
    field: &str,
    env: bool,
) -> Result<(Spec, Option<String>), Vec<Problem>> {
    let mut builder = config::Config::builder().add_source(File::from_str(text, format));
    if env {
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .convert_case(config::Case::Camel)
                .try_parsing(true),
        );
    }
    let doc = builder
        .build()
        .map_err(|e| vec![Problem::new(field, format!("not a valid document: {e}"))])?;
    let is_resource = doc
        .get::<Value>("kind")
        .is_ok_and(|v| !matches!(v.kind, ValueKind::Nil));
    if is_resource {
        let resource: Resource = doc
            .try_deserialize()
            .map_err(|e| vec![Problem::new(field, deserialize_message(&e))])?;
        if resource.kind != "KafkaMirrorMaker2" {
            return Err(vec![Problem::new(
                format!("{field}: kind"),
                format!("`{}` is not KafkaMirrorMaker2", resource.kind),
            )]);
        }
        let name = resource.metadata.and_then(|m| m.name);
        Ok((resource.spec, name))
    } else {
        let spec: Spec = doc
            .try_deserialize()
            .map_err(|e| vec![Problem::new(field, deserialize_message(&e))])?;
        Ok((spec, None))
    }
}

fn deserialize_message(e: &config::ConfigError) -> String {
    let text = e.to_string();
    if text.contains("unknown field") {
        format!("{text} (unknown keys are errors: check the spelling against the config reference)")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config/strimzi-kafkamirrormaker2.yaml");

    #[test]
    fn strimzi_example_parses_with_case_and_dots_intact() {
        let (spec, name) = parse(EXAMPLE, FileFormat::Yaml, "example", false).expect("parses");
        assert_eq!(name.as_deref(), Some("my-mm2-cluster"));
        assert_eq!(spec.connect_cluster.as_deref(), Some("dest"));
        assert_eq!(spec.clusters.len(), 2);
        assert_eq!(
            spec.clusters[0].bootstrap_servers,
            "prod-kafka-bootstrap.example.internal:443"
        );
        assert!(spec.clusters[0]
            .config
            .contains_key("config.storage.replication.factor"));
        let source = spec.mirrors[0]
            .source_connector
            .as_ref()
            .expect("source connector");
        assert_eq!(
            source
                .config
                .get("sync.topic.acls.enabled")
                .map(ToString::to_string)
                .as_deref(),
            Some("false")
        );
        assert_eq!(
            source
                .config
                .get("replication.factor")
                .map(ToString::to_string)
                .as_deref(),
            Some("3")
        );
    }

    #[test]
    fn environment_overrides_camel_case_fields() {
        // Only this test sets this variable; other KMIRROR_* variables must not interfere.
        std::env::set_var("KMIRROR_CONFIG__SPEC__CONNECT_CLUSTER", "source");
        std::env::set_var("KMIRROR_TANSU_BIN_UNRELATED", "/nowhere");
        let result = parse(EXAMPLE, FileFormat::Yaml, "example", true);
        std::env::remove_var("KMIRROR_CONFIG__SPEC__CONNECT_CLUSTER");
        std::env::remove_var("KMIRROR_TANSU_BIN_UNRELATED");
        let (spec, _) = result.expect("parses");
        assert_eq!(spec.connect_cluster.as_deref(), Some("source"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = "clusters: []\nmirrors: []\nbogus: 1\n";
        let err = parse(text, FileFormat::Yaml, "f", false).expect_err("unknown key");
        assert!(err[0].message.contains("bogus"), "{}", err[0]);
    }
}
