#!/usr/bin/env bash
# Runs kmirror's whole test suite: unit tests, librdkafka mock-cluster fault tests, and
# end-to-end tests against real Apache Kafka clusters (KRaft, started from the Maven Central
# jars that scripts/kafka.sh resolves) on random loopback ports.
#
# KMIRROR_KAFKA_VERSION picks the Kafka version (default 4.1.1; 3.9.1 passes too).
set -euo pipefail
cd "$(dirname "$0")/.."
KMIRROR_KAFKA_HOME=$(scripts/kafka.sh)
export KMIRROR_KAFKA_HOME
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads=2
# The release build the container image runs must keep working.
scripts/build.sh
