#!/usr/bin/env bash
# Instructions per delivery in flows-bridge, counted by callgrind (repeatable
# on a shared, noisy machine where wall-clock and CPU time are not).
#
#   benches/callgrind.sh [BRIDGE_BINARY] [REQUESTS] [CAPACITY]
#
# Starts the bench handler and the bridge under callgrind, fills the
# idempotency cache to its capacity (production steady state: every delivery
# evicts one), zeroes the counters, sends REQUESTS signed deliveries on 4
# connections, and prints user-space instructions per request. Kernel time
# (syscalls, loopback TCP) is not counted. The profile stays in
# $OUT (callgrind_annotate it).
set -euo pipefail
cd "$(dirname "$0")/.."
bridge=${1:-target/release/flows-bridge}
requests=${2:-4000}
capacity=${3:-10000}
bench=target/release/flows-bench
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(port); bp=$(port); ap=$(port)
"$bench" handler --listen "127.0.0.1:$hp" >"$out/handler.log" 2>&1 &
handler=$!
FLOWS_BRIDGE_LISTEN=127.0.0.1:$bp FLOWS_BRIDGE_ADMIN_LISTEN=127.0.0.1:$ap \
FLOWS_BRIDGE_UPSTREAM=http://127.0.0.1:$hp FLOWS_BRIDGE_SECRET=flows-bench-secret \
FLOWS_BRIDGE_IDEMPOTENCY_CAPACITY=$capacity FLOWS_BRIDGE_LOG_FORMAT=json \
FLOWS_BRIDGE_WORKER_THREADS=2 MALLOC_ARENA_MAX=2 \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out" \
  "$bridge" serve 2>"$out/bridge.log" &
bridge_pid=$!
trap 'kill $bridge_pid $handler 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ap/readyz" >/dev/null && break; sleep 0.2; done
# Fill the cache (capacity + 10%), untimed and uncounted.
fill=$(( capacity + capacity / 10 ))
"$bench" load --target bridge --addr "127.0.0.1:$bp" -c 4 --seconds 600 --warmup 0 --count "$fill" >/dev/null
callgrind_control -i on "$bridge_pid" >/dev/null
"$bench" load --target bridge --addr "127.0.0.1:$bp" -c 4 --seconds 600 --warmup 0 --count "$requests" >"$out/load.json"
callgrind_control -i off "$bridge_pid" >/dev/null
callgrind_control -d "$bridge_pid" >/dev/null
sleep 1
total=$(callgrind_annotate "$out"/callgrind.out.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
sha=$(callgrind_annotate "$out"/callgrind.out.1 2>/dev/null | awk '!/=>/ && /:sha2::sha256::compress256( |$)/ {gsub(",","",$1); s+=$1} END {print s+0}')
echo "instructions per delivery: $(( total / requests )) ($total over $requests; profile in $out)"
# Valgrind's CPU has no SHA extensions: sha2 falls back to its software
# rounds, which cost ~10x what they do on the real CPU. Shown apart.
echo "of which sha256 (software under valgrind): $(( sha / requests )); without it: $(( (total - sha) / requests ))"
