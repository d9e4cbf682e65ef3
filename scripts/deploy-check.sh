#!/usr/bin/env bash
# Checks everything under deploy/ without a cluster, and exits non-zero on any failure:
#   - the alerting rules (deploy/prometheus/kmirror-rules.yaml): promtool check rules, every
#     alert's shape and metrics, and the promtool unit tests in deploy/prometheus/tests/;
#   - the PrometheusRule and the Helm chart's copy of the rules, generated from that file: up to
#     date, valid, and passing the same unit tests;
#   - the Helm chart (deploy/helm/kmirror): helm lint, and helm template with every value set in
#     its ci/ folder, each manifest decoded strictly into the Kubernetes and Prometheus Operator
#     types and cross-checked (scripts/kubevalidate); the settings it must refuse;
#   - the plain manifests (deploy/kubernetes/*.yaml), the same way;
#   - the systemd unit (deploy/systemd): systemd-analyze verify and security, and its sysusers
#     file.
#
#   scripts/deploy-check.sh           check
#   scripts/deploy-check.sh --write   regenerate the generated files first, then check
#
# Tools are installed on first use into ${XDG_CACHE_HOME:-~/.cache}/kmirror/tools (the first run
# builds Helm from the Go module proxy: about 5 minutes on 2 cores; later runs take seconds):
# promtool from Debian's prometheus package, Helm with `go install`, kubevalidate from
# scripts/kubevalidate with `go build`. Needs Go, and apt-get (or promtool on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
# The Kubernetes version that Helm's release builds assume (its client-go is v0.37): set the
# same way as Helm's Makefile does, since `go install` does not run it.
HELM_KUBE_MAJOR=1
HELM_KUBE_MINOR=37
TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/kmirror/tools"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

WRITE=0
case "${1:-}" in
  --write) WRITE=1 ;;
  "") ;;
  *) echo "usage: $0 [--write]" >&2; exit 2 ;;
esac

start=$(date +%s)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=()

# check NAME COMMAND...: runs COMMAND, prints one line, and its output indented if it failed.
check() {
  local name=$1
  shift
  if "$@" >"$TMP/out" 2>&1; then
    printf '  ok    %s\n' "$name"
  else
    printf '  FAIL  %s\n' "$name"
    sed 's/^/        /' "$TMP/out"
    failures+=("$name")
  fi
}

# refuses NAME PATTERN COMMAND...: COMMAND must fail with PATTERN in its output.
refuses() {
  local name=$1 pattern=$2
  shift 2
  if "$@" >"$TMP/out" 2>&1; then
    printf '  FAIL  %s (accepted)\n' "$name"
    failures+=("$name")
  elif grep -q -- "$pattern" "$TMP/out"; then
    printf '  ok    %s\n' "$name"
  else
    printf '  FAIL  %s (refused, without "%s")\n' "$name" "$pattern"
    sed 's/^/        /' "$TMP/out"
    failures+=("$name")
  fi
}

section() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
section "tools (cached in $TOOLS)"
mkdir -p "$TOOLS"

# Go 1.26 or later builds Helm and kubevalidate: the machine's, or the toolchain module that
# the Go module proxy serves (the archive `go` itself downloads with GOTOOLCHAIN).
GO_TOOLCHAIN=go1.26.8
need_go() {
  local have
  have=$(go env GOVERSION 2>/dev/null || true)
  if [ -n "$have" ] && [ "$(printf '%s\n' go1.26 "$have" | sort -V | head -1)" = go1.26 ]; then
    return
  fi
  local dir="$TOOLS/$GO_TOOLCHAIN"
  if [ ! -x "$dir/bin/go" ]; then
    echo "  fetching the Go $GO_TOOLCHAIN toolchain from the Go module proxy (for $1; found: ${have:-no Go})"
    curl -sSfL -o "$TMP/go.zip" \
      "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-$GO_TOOLCHAIN.linux-amd64.zip"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    python3 - "$TMP/go.zip" "$dir.tmp" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        # golang.org/toolchain@v0.0.1-goX.linux-amd64/<path>
        rel = info.filename.split(".linux-amd64/", 1)[1] if ".linux-amd64/" in info.filename else ""
        if not rel or info.is_dir():
            continue
        dest = os.path.join(sys.argv[2], rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, "wb") as out:
            out.write(src.read())
        mode = info.external_attr >> 16
        if mode & 0o111 or rel.startswith("bin/") or rel.startswith("pkg/tool/"):
            os.chmod(dest, 0o755)
PY
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  export PATH="$dir/bin:$PATH" GOTOOLCHAIN=local
}

# promtool here, and prometheus for the end-to-end test that scrapes a running kmirror
# (tests/faults/prometheus.rs finds it in this folder).
PROMTOOL="$TOOLS/prometheus/promtool"
PROMETHEUS="$TOOLS/prometheus/prometheus"
if [ ! -x "$PROMTOOL" ] || [ ! -x "$PROMETHEUS" ]; then
  if command -v apt-get >/dev/null; then
    echo "  installing promtool and prometheus from Debian's prometheus package (apt-get download; nothing else is installed)"
    mkdir -p "$TMP/deb"
    if ! (cd "$TMP/deb" && apt-get download prometheus) >"$TMP/apt.log" 2>&1; then
      $SUDO apt-get update -qq >>"$TMP/apt.log" 2>&1 || true
      (cd "$TMP/deb" && apt-get download prometheus) >>"$TMP/apt.log" 2>&1 || {
        cat "$TMP/apt.log" >&2
        exit 1
      }
    fi
    dpkg-deb -x "$TMP"/deb/prometheus_*.deb "$TMP/deb/x"
    mkdir -p "$TOOLS/prometheus"
    install -m 0755 "$TMP/deb/x/usr/bin/promtool" "$PROMTOOL"
    install -m 0755 "$TMP/deb/x/usr/bin/prometheus" "$PROMETHEUS"
  elif command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    PROMTOOL=$(command -v promtool)
  else
    echo "promtool and prometheus are missing and apt-get is not available to install them" >&2
    exit 1
  fi
fi
echo "  promtool: $("$PROMTOOL" --version 2>&1 | head -1)"

HELM="$TOOLS/helm-$HELM_VERSION/helm"
if [ ! -x "$HELM" ]; then
  need_go "Helm"
  echo "  installing Helm $HELM_VERSION: go install from the Go module proxy (about 5 minutes the first time)"
  GOBIN="$TOOLS/helm-$HELM_VERSION" go install -ldflags "-w -s \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HELM_KUBE_MAJOR \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_KUBE_MINOR \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HELM_KUBE_MAJOR \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_KUBE_MINOR" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$TMP/go.log" 2>&1 || {
    cat "$TMP/go.log" >&2
    exit 1
  }
fi
echo "  helm: $("$HELM" version --short)"

# kubevalidate is rebuilt whenever its sources change.
kv_hash=$(cat scripts/kubevalidate/go.mod scripts/kubevalidate/go.sum scripts/kubevalidate/*.go | sha256sum | cut -c1-16)
KUBEVALIDATE="$TOOLS/kubevalidate-$kv_hash/kubevalidate"
if [ ! -x "$KUBEVALIDATE" ]; then
  need_go "scripts/kubevalidate"
  echo "  building scripts/kubevalidate"
  (cd scripts/kubevalidate && go build -mod=readonly -o "$KUBEVALIDATE.tmp" . >"$TMP/go.log" 2>&1 &&
    mv "$KUBEVALIDATE.tmp" "$KUBEVALIDATE") || {
    cat "$TMP/go.log" >&2
    exit 1
  }
  find "$TOOLS" -maxdepth 1 -name 'kubevalidate-*' ! -name "kubevalidate-$kv_hash" -exec rm -rf {} +
fi
echo "  kubevalidate: $(grep -E '^\s+(k8s.io/api|github.com/prometheus-operator)' scripts/kubevalidate/go.mod | awk '{print $1 " " $2}' | paste -sd, -)"

if ! command -v systemd-analyze >/dev/null; then
  echo "  installing systemd (for systemd-analyze)"
  $SUDO apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
echo "  systemd-analyze: $(systemd-analyze --version | head -1)"

# ---------------------------------------------------------------------------------------------
section "generated files (scripts/deploy-check.sh --write regenerates them)"
RULES=deploy/prometheus/kmirror-rules.yaml
PROMRULE=deploy/prometheus/kmirror-prometheusrule.yaml
CHART=deploy/helm/kmirror
CHART_RULES=$CHART/files/kmirror-rules.yaml

generate_prometheusrule() {
  cat <<'EOF'
# GENERATED from deploy/prometheus/kmirror-rules.yaml by scripts/deploy-check.sh --write: edit
# that file, not this one. The same alerting rules as a Prometheus Operator PrometheusRule; add
# the labels your Prometheus's ruleSelector expects (kube-prometheus-stack: release: <name>).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: kmirror
  labels:
    app.kubernetes.io/name: kmirror
spec:
EOF
  # The rule file without its leading comment, indented under spec.
  awk 'started || !/^#/ { started = 1; if ($0 == "") print; else print "  " $0 }' "$RULES"
}

generate_prometheusrule >"$TMP/prometheusrule.yaml"
if [ "$WRITE" = 1 ]; then
  cp "$TMP/prometheusrule.yaml" "$PROMRULE"
  cp "$RULES" "$CHART_RULES"
  echo "  wrote $PROMRULE and $CHART_RULES"
fi
check "$PROMRULE is generated from $RULES" diff -u "$PROMRULE" "$TMP/prometheusrule.yaml"
check "$CHART_RULES is a copy of $RULES" diff -u "$CHART_RULES" "$RULES"

# ---------------------------------------------------------------------------------------------
section "alerting rules"
check "promtool check rules $RULES" "$PROMTOOL" check rules "$RULES"
check "every alert: for, severity, summary, description, exported metrics only, a firing and a quiet test" \
  "$KUBEVALIDATE" lint-rules --metrics crates/kmirror-engine/src/metrics.rs "$RULES" deploy/prometheus/tests/*.yaml
check "promtool test rules deploy/prometheus/tests/*.yaml" "$PROMTOOL" test rules deploy/prometheus/tests/*.yaml

# rules_of_prometheusrule NAME FILE: checks the rules a PrometheusRule holds and runs the unit
# tests against them.
rules_of_prometheusrule() {
  local name=$1 file=$2 dir="$TMP/rules-$1"
  mkdir -p "$dir/tests"
  cp deploy/prometheus/tests/*.yaml "$dir/tests/"
  if ! "$KUBEVALIDATE" rules "$file" >"$dir/kmirror-rules.yaml" 2>"$TMP/out"; then
    printf '  FAIL  rules of %s\n' "$file"
    sed 's/^/        /' "$TMP/out"
    failures+=("rules of $file")
    return
  fi
  check "promtool check rules on the spec of $name" "$PROMTOOL" check rules "$dir/kmirror-rules.yaml"
  check "promtool test rules against the spec of $name" "$PROMTOOL" test rules "$dir"/tests/*.yaml
}

check "kubevalidate $PROMRULE" "$KUBEVALIDATE" manifests "$PROMRULE"
rules_of_prometheusrule prometheusrule "$PROMRULE"

# ---------------------------------------------------------------------------------------------
section "Helm chart $CHART"
check "helm lint --strict $CHART" "$HELM" lint --strict "$CHART"
for values in "$CHART"/ci/*-values.yaml; do
  set_name=$(basename "$values" -values.yaml)
  out="$TMP/helm-$set_name.yaml"
  check "helm lint --strict -f $values" "$HELM" lint --strict "$CHART" -f "$values"
  if "$HELM" template kmirror "$CHART" --namespace kafka -f "$values" >"$out" 2>"$TMP/out"; then
    printf '  ok    helm template -f %s (%s)\n' "$values" \
      "$(grep '^kind:' "$out" | awk '{print $2}' | paste -sd' ' -)"
  else
    printf '  FAIL  helm template -f %s\n' "$values"
    sed 's/^/        /' "$TMP/out"
    failures+=("helm template -f $values")
    continue
  fi
  check "kubevalidate: helm template -f $values" "$KUBEVALIDATE" manifests "$out"
  if grep -q '^kind: PrometheusRule' "$out"; then
    awk '/^---/ { n++ } { print > ("'"$TMP"'/split-" n ".yaml") }' "$out"
    rule_doc=$(grep -l '^kind: PrometheusRule' "$TMP"/split-*.yaml | head -1)
    rules_of_prometheusrule "helm-$set_name" "$rule_doc"
    rm -f "$TMP"/split-*.yaml
  fi
done
refuses "the chart refuses replicas=3 without scale-out in the configuration" "does not turn scale-out on" \
  "$HELM" template kmirror "$CHART" --set replicas=3
refuses "the chart refuses a ServiceMonitor without its Service" "needs service.enabled" \
  "$HELM" template kmirror "$CHART" --set serviceMonitor.enabled=true --set service.enabled=false
refuses "the chart refuses an unknown value" "additional properties" \
  "$HELM" template kmirror "$CHART" --set replica=1

# ---------------------------------------------------------------------------------------------
section "plain manifests deploy/kubernetes"
check "kubevalidate deploy/kubernetes/*.yaml" "$KUBEVALIDATE" manifests deploy/kubernetes/*.yaml

# ---------------------------------------------------------------------------------------------
section "systemd deploy/systemd"
# verify needs ExecStart's binary: a stub stands in for /usr/local/bin/kmirror. It exits 0 on
# problems it only warns about, so any output fails the check.
mkdir -p "$TMP/systemd"
printf '#!/bin/sh\nexit 0\n' >"$TMP/systemd/kmirror"
chmod +x "$TMP/systemd/kmirror"
sed "s#/usr/local/bin/kmirror#$TMP/systemd/kmirror#g" deploy/systemd/kmirror.service >"$TMP/systemd/kmirror.service"
verify_unit() {
  local out
  out=$(systemd-analyze verify "$TMP/systemd/kmirror.service" 2>&1) || {
    echo "$out"
    return 1
  }
  [ -z "$out" ] || {
    echo "$out"
    return 1
  }
}
check "systemd-analyze verify deploy/systemd/kmirror.service" verify_unit
check "systemd-analyze security: exposure at most 2.0 on the 0-10 scale ($(systemd-analyze security --offline=yes "$TMP/systemd/kmirror.service" 2>/dev/null | grep -o 'level for kmirror.service: [0-9.]*' | awk '{print $NF}'))" \
  systemd-analyze security --offline=yes --threshold=20 "$TMP/systemd/kmirror.service"
sysusers_check() {
  local out
  mkdir -p "$TMP/sysroot/etc"
  out=$(systemd-sysusers --root="$TMP/sysroot" --dry-run --inline "$(grep -v '^#' deploy/systemd/kmirror.sysusers)" 2>&1) || {
    echo "$out"
    return 1
  }
  echo "$out"
  grep -q "Creating user 'kmirror'" <<<"$out"
}
check "systemd-sysusers --dry-run deploy/systemd/kmirror.sysusers" sysusers_check

# ---------------------------------------------------------------------------------------------
echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "deploy-check: ${#failures[@]} check(s) failed in $(($(date +%s) - start))s:"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
echo "deploy-check: all checks passed in $(($(date +%s) - start))s"
