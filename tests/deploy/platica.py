"""What the deploy checks need to talk to a running bridge as Platica and as the
kubelet do: signed deliveries built from the shared vectors, HTTP GETs with a
deadline, readiness polling, and process accounting (RSS, CPU) from /proc.

Standard library only, so it runs under any python3 (and inside the private
namespaces of pod.py).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "vectors"))
from conformance import (  # noqa: E402,F401  (re-exported for measure.py and pod.py)
    VECTORS,
    delivery_for,
    encode,
    json_equal,
    merge_patch,
    now_timestamp,
    sign,
)
from conformance import headers_for as _headers_for  # noqa: E402


def cases() -> list[dict]:
    """Every conformance vector of tests/vectors/cases, sorted by name."""
    out = []
    for path in sorted((VECTORS / "cases").glob("*.json")):
        out.append(json.loads(path.read_text(encoding="utf-8")))
    return out


def case(name: str) -> dict:
    return json.loads((VECTORS / "cases" / f"{name}.json").read_text(encoding="utf-8"))


def headers_for(delivery: dict, body: bytes, secret: bytes | None) -> dict[str, str]:
    return _headers_for(delivery, body, secret, "deploy")


def request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 2.0,
) -> tuple[int, bytes, float]:
    """One HTTP/1.1 request on a new connection: (status, body, seconds)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), time.monotonic() - started
    finally:
        conn.close()


def post_delivery(
    host: str, port: int, path: str, delivery: dict, secret: bytes | None, timeout: float = 2.0
) -> tuple[int, object, float]:
    """POSTs a delivery as Platica does: (status, parsed JSON or raw bytes, seconds)."""
    body = encode(delivery)
    status, raw, took = request(host, port, "POST", path, body, headers_for(delivery, body, secret), timeout)
    try:
        return status, json.loads(raw), took
    except ValueError:
        return status, raw, took


def send_case(host: str, port: int, path: str, vector: dict, secret: bytes) -> str | None:
    """Sends one vector; None when the reply is the expected one, else what went wrong."""
    status, got, _ = post_delivery(host, port, path, delivery_for(vector), secret)
    expect = vector["expect"]
    if status == expect["status"] and json_equal(got, expect["body"]):
        return None
    return f"{vector['name']}: expected {expect['status']} {json.dumps(expect['body'])} got {status} {got!r}"


def wait_until(what: str, check, timeout: float, interval: float = 0.05, alive=None):
    """Polls `check()` until it returns a truthy value; raises with the last result."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process exited (last: {last!r})")
        try:
            last = check()
            if last:
                return last
        except OSError as error:
            last = error
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{what}: not within {timeout:g}s (last: {last!r})")
        time.sleep(interval)


def metric(host: str, port: int, series: str) -> float | None:
    """One series of /metrics (exact name with labels), or None when absent."""
    status, raw, _ = request(host, port, "GET", "/metrics")
    if status != 200:
        return None
    for line in raw.decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return None


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    after_name = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of proc(5) (utime, stime) are at 11, 12 after the name.
    return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")
