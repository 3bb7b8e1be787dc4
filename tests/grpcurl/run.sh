#!/usr/bin/env bash
# Runs the commands of docs/grpcurl.md, as written, against each reference
# client in clients/, with a current grpcurl (1.9, reflection v1) and grpcurl
# 1.8.6 (reflection v1alpha only). A command is a line of a ```sh block of the
# doc that starts with `grpcurl` or `flows-bridge`; the `# expect:` line after it
# is a string its output must contain. `localhost:50051` becomes the client's
# free port; `flows-bridge` the binary just built.
#
#   tests/grpcurl/run.sh            # every client of tests/interop/clients.sh
#   tests/grpcurl/run.sh rust go    # only these
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=tests/interop/clients.sh
source tests/interop/clients.sh
DOC=docs/grpcurl.md

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flows-bridge-grpcurl.XXXXXX")
CLIENT_PID=
cleanup() {
  if [ -n "$CLIENT_PID" ]; then kill -TERM -- "-$CLIENT_PID" 2>/dev/null || kill -TERM "$CLIENT_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build -q -p flows-bridge --locked
BRIDGE="${CARGO_TARGET_DIR:-$ROOT/target}/debug/flows-bridge"
scripts/tools grpcurl --version >/dev/null
scripts/tools grpcurl-1.8 --version >/dev/null
# "label:path": 1.9.3 (built from source, prints no version) and 1.8.6.
GRPCURLS=("1.9.3:$ROOT/.tools/bin/grpcurl" "1.8.6:$ROOT/.tools/venv/bin/grpcurl")

# The doc's commands and expectations, as "command<TAB>expectation" lines.
mapfile -t STEPS < <(awk '
  /^```sh/ { inblock = 1; next }
  /^```/   { inblock = 0; next }
  inblock && /^(grpcurl|flows-bridge) / { command = $0; next }
  inblock && /^# expect:/ { sub(/^# expect: ?/, ""); print command "\t" $0 }
' "$DOC")
[ "${#STEPS[@]}" -ge 5 ] || { echo "found only ${#STEPS[@]} commands in $DOC" >&2; exit 1; }

PASSED=0 FAILED=0
selected=("$@")
if [ "${#selected[@]}" -eq 0 ]; then selected=("${CLIENTS[@]}"); fi
for name in "${selected[@]}"; do
  unset -f interop_setup interop_command
  # shellcheck source=/dev/null
  source "clients/$name/interop.sh"
  if declare -F interop_setup >/dev/null; then interop_setup >/dev/null; fi
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export PORT
  setsid bash -c "exec $(interop_command)" >"$WORK/$name.log" 2>&1 </dev/null &
  CLIENT_PID=$!
  for _ in $(seq 300); do grep -q '^listening on ' "$WORK/$name.log" && break; sleep 0.1; done
  grep -q '^listening on ' "$WORK/$name.log" || { cat "$WORK/$name.log" >&2; echo "$name did not start" >&2; exit 1; }

  for entry in "${GRPCURLS[@]}"; do
    version=${entry%%:*}
    grpcurl=${entry#*:}
    for step in "${STEPS[@]}"; do
      command=${step%%$'\t'*}
      expect=${step#*$'\t'}
      run=${command//localhost:50051/localhost:$PORT}
      run=${run//flows-bridge /$BRIDGE }
      run=${run//grpcurl /$grpcurl }
      if output=$(cd "$WORK" && ROOT=$ROOT bash -o pipefail -c "${run//tests\/vectors/$ROOT/tests/vectors}" 2>&1) \
        && [[ $output == *"$expect"* ]]; then
        PASSED=$((PASSED + 1))
        echo "PASS $name grpcurl-$version: $command"
      else
        FAILED=$((FAILED + 1))
        echo "FAIL $name grpcurl-$version: $command"
        echo "     expected output containing: $expect"
        echo "     got: ${output:0:600}"
      fi
    done
  done
  kill -TERM -- "-$CLIENT_PID" 2>/dev/null || kill -TERM "$CLIENT_PID" 2>/dev/null || true
  wait "$CLIENT_PID" 2>/dev/null || true
  CLIENT_PID=
done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
