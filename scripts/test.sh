#!/usr/bin/env bash
# Runs kmirror's whole test suite: unit tests, librdkafka mock-cluster fault tests, and
# end-to-end tests against real Apache Kafka clusters (KRaft, started from the Maven Central
# jars that scripts/kafka.sh resolves) on random loopback ports, then the release build.
#
# The end-to-end tests run once per Kafka version in KMIRROR_KAFKA_VERSIONS (default
# "4.1.1 3.9.1": the current line and the last 3.x line, which most Strimzi users run).
set -euo pipefail
cd "$(dirname "$0")/.."
versions=${KMIRROR_KAFKA_VERSIONS:-4.1.1 3.9.1}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Alert rules, Helm chart, Kubernetes manifests and systemd unit; installs promtool and the
# prometheus that tests/faults/prometheus.rs runs.
scripts/deploy-check.sh
first=1
for version in $versions; do
  KMIRROR_KAFKA_VERSION=$version
  KMIRROR_KAFKA_HOME=$(scripts/kafka.sh "$version")
  export KMIRROR_KAFKA_VERSION KMIRROR_KAFKA_HOME
  echo "== tests on Apache Kafka $version" >&2
  if [ "$first" = 1 ]; then
    cargo test --workspace -- --test-threads=2
    first=0
  else
    cargo test -p kmirror --test e2e -- --test-threads=2
  fi
done
# The release build the container image runs must keep working.
scripts/build.sh
