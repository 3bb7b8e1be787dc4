#!/usr/bin/env bash
# Measures the bridge's memory and CPU with the base manifest's settings, to
# size its resources (numbers and method: deploy/README.md, "Resources").
# Not part of CI: it loads both cores for ~45 s.
#
#   tests/deploy/run.sh             # first: builds the static binary and the Go app
#   tests/deploy/measure.sh [--duration 20] [--json results.json]
#
# Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/../.."
TOOLS=.tools/deploy
BRIDGE=$TOOLS/flows-bridge  # the static binary run.sh built and checked
for f in "$BRIDGE" "$TOOLS/flow-handler" "$TOOLS/venv/bin/kubectl"; do
  [ -x "$f" ] || { echo "measure: $f is missing; run tests/deploy/run.sh first" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "measure: wrk is missing (apt-get install wrk)" >&2; exit 2; }
rendered=$(mktemp "${TMPDIR:-/tmp}/flows-bridge-base.XXXXXX.yaml")
trap 'rm -f "$rendered"' EXIT
"$TOOLS/venv/bin/kubectl" kustomize deploy/kubernetes/base >"$rendered"
"$TOOLS/venv/bin/python" tests/deploy/measure.py --manifest "$rendered" \
  --bridge "$BRIDGE" --handler "$TOOLS/flow-handler" "$@"
