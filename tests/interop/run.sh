#!/usr/bin/env bash
# Interop: every FlowHandler client in clients/, each behind the real bridge
# binary, driven by the shared conformance vectors (tests/vectors/cases/).
#
#   tests/interop/run.sh              # every client in CLIENTS below
#   tests/interop/run.sh python       # only these
#   INTEROP_KEEP_LOGS=1 tests/interop/run.sh   # keep the logs even when all pass
#
# For each client: start it on a free port (it must print `listening on
# HOST:PORT` once it serves, and serve grpc.health.v1), start
# `flows-bridge serve` in front of it on free ports with a random secret, wait
# for the bridge's /readyz, send the vectors (send_vectors.py), stop both with
# SIGTERM. Prints a table at the end; exits 1 if any vector or client failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

# ---- the clients -------------------------------------------------------------
# Every client below runs in CI. Each one is described by its own
# clients/<name>/interop.sh, sourced from the repo root, which defines:
#   interop_setup     (optional) install / build / generate stubs; idempotent
#   interop_command   prints the command that starts the handler listening on
#                     127.0.0.1:$PORT and printing `listening on HOST:PORT`
# shellcheck source=tests/interop/clients.sh
source tests/interop/clients.sh

# ---- plumbing ----------------------------------------------------------------
STARTUP_TIMEOUT=30
PIDS=()
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/flows-bridge-interop.XXXXXX")
FAILED_ANY=0

# shellcheck disable=SC2329 # the EXIT trap
cleanup() {
  local status=$?
  local pid
  for pid in "${PIDS[@]}"; do stop_process "$pid"; done
  if [ "$FAILED_ANY" = 0 ] && [ "$status" = 0 ] && [ -z "${INTEROP_KEEP_LOGS:-}" ]; then
    rm -rf "$LOGS"
  else
    echo "logs kept in $LOGS" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Each process runs in its own session (setsid), so its group (a `go run`'s
# child, say) goes with it. TERM, then KILL after 5 s.
start_process() { # log_file command...
  local log=$1; shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

stop_process() { # pid
  local pid=$1 p rest=()
  # Forget it first: once reaped, its pid may be reused by someone else's process.
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || rest+=("$p"); done
  PIDS=("${rest[@]}")
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "pid $pid did not stop on SIGTERM; killing it" >&2
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# N distinct free TCP ports on 127.0.0.1 (all bound at once, then released).
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()' "$1"
}

wait_for_line() { # pid log pattern
  local pid=$1 log=$2 pattern=$3 deadline=$((SECONDS + STARTUP_TIMEOUT))
  until grep -q "$pattern" "$log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "exited before printing '$pattern'" >&2; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "no '$pattern' within ${STARTUP_TIMEOUT}s" >&2; return 1; }
    sleep 0.1
  done
}

wait_for_ready() { # pid url
  local pid=$1 url=$2
  python3 - "$pid" "$url" "$STARTUP_TIMEOUT" <<'EOF'
import os, sys, time, urllib.error, urllib.request
pid, url, deadline = int(sys.argv[1]), sys.argv[2], time.monotonic() + float(sys.argv[3])
last = "no answer"
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(f"the bridge exited before {url} said 200")
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except urllib.error.HTTPError as e:
        last = f"{e.code} {e.read().decode(errors='replace')}"
    except OSError as e:
        last = str(e)
    time.sleep(0.1)
sys.exit(f"{url} not 200 within {sys.argv[3]}s (last: {last})")
EOF
}

show_logs() { # files...
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "---- last lines of $(basename "$f") ----" >&2
    tail -n 20 "$f" >&2
  done
}

# ---- run -----------------------------------------------------------------------
selected=("$@")
declare -A RESULT_PASSED RESULT_FAILED RESULT_STATUS
ORDER=()

echo "==> cargo build -p flows-bridge --locked"
cargo build -p flows-bridge --locked
BRIDGE="${CARGO_TARGET_DIR:-$ROOT/target}/debug/flows-bridge"

run_client() { # name
  local name=$1 command client_pid bridge_pid port listen admin
  local client_log="$LOGS/$name-client.log" bridge_log="$LOGS/$name-bridge.log"
  local vectors_log="$LOGS/$name-vectors.log"
  RESULT_PASSED[$name]=-; RESULT_FAILED[$name]=-; RESULT_STATUS[$name]=error

  unset -f interop_setup interop_command
  # shellcheck source=/dev/null
  source "clients/$name/interop.sh"
  if declare -F interop_setup >/dev/null; then
    echo "==> $name: setup"
    interop_setup || { echo "$name: interop_setup failed" >&2; return 1; }
  fi
  command=$(interop_command)

  read -r port listen admin < <(free_ports 3)
  echo "==> $name: client on 127.0.0.1:$port"
  start_process "$client_log" env PORT="$port" bash -c "exec $command"
  client_pid=$STARTED_PID
  wait_for_line "$client_pid" "$client_log" "^listening on " || {
    stop_process "$client_pid"
    show_logs "$client_log"
    return 1
  }

  echo "==> $name: bridge on 127.0.0.1:$listen (admin 127.0.0.1:$admin)"
  SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  start_process "$bridge_log" env \
    FLOWS_BRIDGE_LISTEN="127.0.0.1:$listen" \
    FLOWS_BRIDGE_ADMIN_LISTEN="127.0.0.1:$admin" \
    FLOWS_BRIDGE_UPSTREAM="http://127.0.0.1:$port" \
    FLOWS_BRIDGE_SECRET="$SECRET" \
    FLOWS_BRIDGE_READY_INTERVAL=100ms \
    FLOWS_BRIDGE_LOG_FORMAT=json \
    "$BRIDGE" serve
  bridge_pid=$STARTED_PID
  wait_for_ready "$bridge_pid" "http://127.0.0.1:$admin/readyz" || {
    stop_process "$bridge_pid"
    stop_process "$client_pid"
    show_logs "$client_log" "$bridge_log"
    return 1
  }

  echo "==> $name: vectors"
  local rc=0
  FLOWS_BRIDGE_SECRET="$SECRET" python3 tests/interop/send_vectors.py \
    --url "http://127.0.0.1:$listen/" | tee "$vectors_log" || rc=$?
  local summary
  summary=$(tail -n 1 "$vectors_log")
  if [[ $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    RESULT_PASSED[$name]=${BASH_REMATCH[1]}
    RESULT_FAILED[$name]=${BASH_REMATCH[2]}
  fi

  stop_process "$bridge_pid"
  stop_process "$client_pid"
  if [ "$rc" = 0 ]; then
    RESULT_STATUS[$name]=ok
  else
    RESULT_STATUS[$name]=FAIL
    show_logs "$client_log"
    echo "---- warnings and errors of $name-bridge.log ----" >&2
    grep -v '"level":"INFO"' "$bridge_log" | tail -n 20 >&2 || true
    return 1
  fi
}

# Names on the command line run those clients (listed in CLIENTS or not yet).
if [ "${#selected[@]}" -eq 0 ]; then selected=("${CLIENTS[@]}"); fi
for name in "${selected[@]}"; do
  if [ ! -f "clients/$name/interop.sh" ]; then
    echo "no clients/$name/interop.sh" >&2
    FAILED_ANY=1
    continue
  fi
  ORDER+=("$name")
  run_client "$name" || FAILED_ANY=1
done

if [ "${#ORDER[@]}" = 0 ]; then
  echo "no client matches: ${selected[*]}" >&2
  exit 2
fi

echo
printf '%-10s %7s %7s  %s\n' client passed failed result
for name in "${ORDER[@]}"; do
  printf '%-10s %7s %7s  %s\n' "$name" "${RESULT_PASSED[$name]}" "${RESULT_FAILED[$name]}" "${RESULT_STATUS[$name]}"
done
exit "$FAILED_ANY"
