#!/usr/bin/env bash
# Shows kmirror mirroring between two local clusters: starts two tansu brokers on loopback,
# writes records to the source, runs kmirror, and prints what arrived on the target.
set -euo pipefail
cd "$(dirname "$0")/.."
TANSU=$(scripts/tansu.sh)
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
echo "== kmirror validate"
"$BIN/kmirror" validate --config "$work/kmirror.yaml"

echo "== writing 10,000 records to source topic orders (4 partitions)"
"$BIN/kmirror-demo-tool" produce --bootstrap 127.0.0.1:19092 --topic orders --partitions 4 --records 10000

echo "== kmirror run (logs below)"
"$BIN/kmirror" run --config "$work/kmirror.yaml" &
pids+=($!)
sleep 3
echo "== a topic created while kmirror runs: payments (2 partitions, 500 records)"
"$BIN/kmirror-demo-tool" produce --bootstrap 127.0.0.1:19092 --topic payments --partitions 2 --records 500
sleep 7
echo "== what the target has"
"$BIN/kmirror-demo-tool" count --bootstrap 127.0.0.1:29092 --topic orders --partitions 4
"$BIN/kmirror-demo-tool" count --bootstrap 127.0.0.1:29092 --topic payments --partitions 2
echo "== stopping kmirror with SIGTERM"
kill -TERM "${pids[2]}"; wait "${pids[2]}" || true
