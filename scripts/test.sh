#!/usr/bin/env bash
# Runs kmirror's whole test suite: unit tests, librdkafka mock-cluster fault tests, and
# end-to-end tests against two real tansu brokers started on random loopback ports.
#
# To run the end-to-end tests against your own clusters instead, set
# KMIRROR_TEST_SOURCE_BOOTSTRAP and KMIRROR_TEST_TARGET_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")/.."
KMIRROR_TANSU_BIN=$(scripts/tansu.sh)
export KMIRROR_TANSU_BIN
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads=2
# The release build the container image runs must keep working.
scripts/build.sh
