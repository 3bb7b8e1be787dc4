#!/usr/bin/env python3
"""Measures what the bridge needs in a pod, to size its resource requests and
limits (deploy/kubernetes/base/deployment.yaml, numbers in deploy/README.md).

    tests/deploy/measure.sh            # after tests/deploy/run.sh built the binaries
    python3 tests/deploy/measure.py --manifest RENDERED --bridge BIN --handler BIN [--duration 20]

Runs the static release binary (the image's) in front of the Go reference
FlowHandler on loopback, with the manifest's flows-bridge env except the
addresses and the secret's path, and reports for each phase the bridge's RSS (VmRSS), its peak (VmHWM), and its CPU
time per delivery (utime + stime from /proc):

1. idle, after start;
2. wrk, 16 then 64 connections, each DURATION seconds of unique signed
   deliveries (screen_advance_full, the handler's busiest path): enough
   distinct ids to fill the idempotency cache (10 000 entries by default);
3. 64 connections each uploading a body of FLOWS_BRIDGE_MAX_BODY (1 MiB) with a
   bad signature at the same time (an unauthenticated client can make the
   bridge buffer that much before the HMAC check refuses it);
4. idle again.

wrk comes from Debian (`apt-get install wrk`). Load generator, handler and bridge
share the machine's cores: CPU per delivery is the number to size from, not
the throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import platica

WRK_SCRIPT = r"""
-- One unique, signed delivery per request: ids and signatures precomputed by
-- measure.py (HMAC needs the secret), the body assembled around the id.
local prefix, suffix, stamp, event
local ids, sigs = {}, {}
local counter, stride = 0, 1
local count = 0
function setup(thread)
  count = count + 1
  thread:set("tid", count - 1)
end
function init(args)
  local f = assert(io.open(args[1]))
  prefix = f:read("*l"); suffix = f:read("*l"); stamp = f:read("*l"); event = f:read("*l")
  for line in f:lines() do
    local id, sig = line:match("^(%S+) (%S+)$")
    ids[#ids + 1] = id; sigs[#sigs + 1] = sig
  end
  f:close()
  stride = tonumber(args[2])
end
function request()
  local i = (tid + counter * stride) % #ids + 1
  counter = counter + 1
  return wrk.format("POST", "/", {
    ["Content-Type"] = "application/json",
    ["X-Webhook-Signature"] = sigs[i],
    ["X-Webhook-Event-Id"] = ids[i],
    ["X-Webhook-Event"] = event,
    ["X-Webhook-Timestamp"] = stamp,
    ["X-Webhook-Id"] = "wh_measure",
  }, prefix .. ids[i] .. suffix)
end
"""


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def write_deliveries(path: Path, secret: bytes, count: int) -> None:
    """The wrk data file: body prefix, suffix, timestamp, event, then `id signature` lines."""
    delivery = platica.delivery_for(platica.case("seed_screen_advance_full"))
    marker = "@@ID@@"
    delivery["id"] = marker
    prefix, suffix = platica.encode(delivery).split(marker.encode())
    with path.open("wb") as out:
        for line in (prefix, suffix, delivery["timestamp"].encode(), delivery["event"].encode()):
            out.write(line + b"\n")
        for _ in range(count):
            ident = str(uuid.uuid4()).encode()
            out.write(ident + b" " + platica.sign(secret, prefix + ident + suffix).encode() + b"\n")


def manifest_env(path: Path) -> dict[str, str]:
    """The flows-bridge container's env in a rendered manifest (needs PyYAML)."""
    import yaml

    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "Deployment":
            for c in doc["spec"]["template"]["spec"].get("initContainers") or []:
                if c["name"] == "flows-bridge":
                    return {e["name"]: str(e["value"]) for e in c.get("env") or []}
    raise SystemExit(f"{path}: no flows-bridge container")


def parse_wrk(text: str) -> dict:
    out = {}
    m = re.search(r"(\d+) requests in ([\d.]+)s", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", text, re.MULTILINE)
        if m:
            value = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            out[f"p{pct}_ms"] = round(value, 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bridge", required=True, type=Path)
    parser.add_argument("--handler", required=True, type=Path, help="the Go reference FlowHandler binary")
    parser.add_argument("--duration", type=int, default=20, help="seconds of each wrk run")
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--manifest", type=Path, help="rendered manifest: run with its flows-bridge env")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the bridge (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("measure: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="flows-bridge-measure."))
    procs: list[subprocess.Popen] = []
    try:
        handler_port, listen, admin = free_ports(3)
        secret = os.urandom(32).hex().encode()
        secret_dir = work / "secret"
        secret_dir.mkdir()
        (secret_dir / "current").write_bytes(secret + b"\n")

        handler_log = (work / "handler.log").open("wb")
        handler = subprocess.Popen(
            [str(args.handler), "--host", "127.0.0.1", "--port", str(handler_port), "--log-level", "warn"],
            stdout=handler_log,
            stderr=subprocess.STDOUT,
        )
        procs.append(handler)
        bridge_log = (work / "bridge.log").open("wb")
        env = manifest_env(args.manifest) if args.manifest else {}
        env.update(
            {
                "FLOWS_BRIDGE_LISTEN": f"127.0.0.1:{listen}",
                "FLOWS_BRIDGE_ADMIN_LISTEN": f"127.0.0.1:{admin}",
                "FLOWS_BRIDGE_UPSTREAM": f"http://127.0.0.1:{handler_port}",
                "FLOWS_BRIDGE_SECRET_FILE": str(secret_dir),
                "FLOWS_BRIDGE_LOG_FORMAT": "json",
                # The manifest's level (info: one log line per delivery, written here
                # to a file); MEASURE_LOG=warn shows what the logging itself costs.
                "FLOWS_BRIDGE_LOG": os.environ.get("MEASURE_LOG", env.get("FLOWS_BRIDGE_LOG", "info")),
            }
        )
        for item in args.env:
            key, _, value = item.partition("=")
            env[key] = value
        bridge = subprocess.Popen([str(args.bridge), "serve"], env=env, stdout=bridge_log, stderr=subprocess.STDOUT)
        procs.append(bridge)
        alive = lambda: bridge.poll() is None
        platica.wait_until(
            "bridge ready",
            lambda: platica.request("127.0.0.1", admin, "GET", "/readyz")[0] == 200,
            timeout=30,
            alive=alive,
        )
        time.sleep(3)
        print(json.dumps({"env": {k: v for k, v in env.items() if "SECRET" not in k}}), flush=True)
        results: dict = {
            "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()[0]},
            "bridge": str(args.bridge),
            "env": {k: v for k, v in env.items() if "SECRET" not in k},
            "log_filter": env["FLOWS_BRIDGE_LOG"],
            "phases": [],
        }

        def snapshot(name: str, extra: dict | None = None) -> dict:
            rss, hwm = platica.rss_kib(bridge.pid)
            phase = {"phase": name, "rss_mib": round(rss / 1024, 1), "peak_rss_mib": round(hwm / 1024, 1)}
            phase.update(extra or {})
            results["phases"].append(phase)
            print(json.dumps(phase), flush=True)
            return phase

        snapshot("idle after start")

        for connections in [int(c) for c in args.connections.split(",")]:
            data = work / "deliveries.txt"
            # Enough unique ids for ~15k deliveries/s; past that they repeat (cache hits).
            write_deliveries(data, secret, 15_000 * args.duration)
            lua = work / "deliveries.lua"
            lua.write_text(WRK_SCRIPT)
            threads = 2
            cpu0, handler_cpu0 = platica.cpu_seconds(bridge.pid), platica.cpu_seconds(handler.pid)
            wrk = subprocess.run(
                [
                    "wrk",
                    f"-t{threads}",
                    f"-c{connections}",
                    f"-d{args.duration}s",
                    "--latency",
                    "-s",
                    str(lua),
                    f"http://127.0.0.1:{listen}/",
                    "--",
                    str(data),
                    str(threads),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            cpu = platica.cpu_seconds(bridge.pid) - cpu0
            handler_cpu = platica.cpu_seconds(handler.pid) - handler_cpu0
            stats = parse_wrk(wrk.stdout)
            requests = max(stats.get("requests", 0), 1)
            stats.update(
                {
                    "connections": connections,
                    "bridge_cpu_s": round(cpu, 2),
                    "bridge_cpu_us_per_delivery": round(cpu / requests * 1e6, 1),
                    "bridge_cores_busy": round(cpu / args.duration, 2),
                    "handler_cpu_us_per_delivery": round(handler_cpu / requests * 1e6, 1),
                }
            )
            snapshot(f"wrk {connections} connections, {args.duration}s", stats)

        outcomes = {}
        for outcome in ("reply", "fallback", "rejected"):
            value = platica.metric(
                "127.0.0.1", admin, f'flows_bridge_requests_total{{event="screen_advance",outcome="{outcome}"}}'
            )
            outcomes[outcome] = int(value or 0)
        results["outcomes"] = outcomes
        results["duplicates"] = int(platica.metric("127.0.0.1", admin, "flows_bridge_duplicates_total") or 0)
        print(json.dumps({"outcomes": outcomes, "duplicates": results["duplicates"]}), flush=True)

        # 64 unauthenticated 1 MiB uploads at once: buffered whole, then 401.
        big = b'{"id":"' + b"x" * (1024 * 1024 - 16) + b'"}'
        statuses: list[int] = []

        def upload() -> None:
            try:
                status, _, _ = platica.request(
                    "127.0.0.1",
                    listen,
                    "POST",
                    "/",
                    big,
                    {"Content-Type": "application/json", "X-Webhook-Signature": "sha256=" + "0" * 64},
                    timeout=30,
                )
                statuses.append(status)
            except OSError:
                statuses.append(0)

        uploaders = [threading.Thread(target=upload) for _ in range(64)]
        for t in uploaders:
            t.start()
        for t in uploaders:
            t.join()
        snapshot("64 x 1 MiB unsigned uploads at once", {"statuses": sorted(set(statuses))})

        time.sleep(10)
        snapshot("idle 10 s later")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
