#!/usr/bin/env bash
# Builds the release binary, exactly as the container image does (docker/Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p kmirror
