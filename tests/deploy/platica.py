"""What the deploy checks need to talk to a running bridge as Platica and as the
kubelet do: signed deliveries built from the shared vectors, HTTP GETs with a
deadline, readiness polling, and process accounting (RSS, CPU) from /proc.

Standard library only, so it runs under any python3 (and inside the private
namespaces of pod.py).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def merge_patch(target, patch):
    """RFC 7396 JSON merge patch (tests/vectors/README.md): objects merge, null removes."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def now_timestamp() -> str:
    """Now in UTC as Platica writes it: 2026-05-06T19:00:30.000Z."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def json_equal(a, b) -> bool:
    """JSON equality: key order and 199 vs 199.0 do not matter, types do."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def cases() -> list[dict]:
    """Every conformance vector of tests/vectors/cases, sorted by name."""
    out = []
    for path in sorted((VECTORS / "cases").glob("*.json")):
        out.append(json.loads(path.read_text(encoding="utf-8")))
    return out


def case(name: str) -> dict:
    return json.loads((VECTORS / "cases" / f"{name}.json").read_text(encoding="utf-8"))


def delivery_for(vector: dict) -> dict:
    """The vector's delivery, patched, with a fresh id and timestamp."""
    base = json.loads((VECTORS / "deliveries" / vector["delivery"]).read_text(encoding="utf-8"))
    delivery = merge_patch(base, vector.get("patch") or {})
    delivery["id"] = str(uuid.uuid4())
    delivery["timestamp"] = now_timestamp()
    return delivery


def encode(delivery: dict) -> bytes:
    return json.dumps(delivery, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(secret: bytes, body: bytes) -> str:
    """The X-Webhook-Signature value: HMAC-SHA256 over the exact bytes."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def headers_for(delivery: dict, body: bytes, secret: bytes | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Platica-Webhooks/1.0 (flows-bridge deploy test)",
        "X-Webhook-Event": delivery["event"],
        "X-Webhook-Event-Id": delivery["id"],
        "X-Webhook-Timestamp": delivery["timestamp"],
        "X-Webhook-Id": "wh_deploy",
    }
    if secret is not None:
        headers["X-Webhook-Signature"] = sign(secret, body)
    return headers


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
