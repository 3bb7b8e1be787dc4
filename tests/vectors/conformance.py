"""The conformance vectors (tests/vectors/README.md) as Platica would send
them: a delivery patched by its vector (RFC 7396), a fresh id and timestamp,
compact JSON, signed over the exact bytes, with Platica's headers.

Shared by tests/interop/send_vectors.py, tests/deploy/platica.py and
fuzz/make_corpus.py. Standard library only.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import json
import uuid
from pathlib import Path

VECTORS = Path(__file__).resolve().parent


def merge_patch(target, patch):
    """RFC 7396 JSON merge patch: objects merge, `null` removes, anything else replaces."""
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
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def json_equal(a, b) -> bool:
    """JSON equality: bools are not numbers, 199 equals 199.0, key order is ignored."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def load_delivery(name: str) -> dict:
    """A delivery of tests/vectors/deliveries, by file name."""
    return json.loads((VECTORS / "deliveries" / name).read_text(encoding="utf-8"))


def delivery_for(vector: dict) -> dict:
    """The vector's delivery, patched, with a fresh id and timestamp."""
    delivery = merge_patch(load_delivery(vector["delivery"]), vector.get("patch") or {})
    delivery["id"] = str(uuid.uuid4())
    delivery["timestamp"] = now_timestamp()
    return delivery


def encode(delivery: dict) -> bytes:
    """Compact JSON, UTF-8, as Platica serialises a delivery."""
    return json.dumps(delivery, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(secret: bytes, body: bytes) -> str:
    """The X-Webhook-Signature value: HMAC-SHA256 over the exact bytes."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def headers_for(delivery: dict, body: bytes, secret: bytes | None, sender: str) -> dict[str, str]:
    """Platica's headers for `body`; `sender` names the caller in User-Agent and X-Webhook-Id."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Platica-Webhooks/1.0 (flows-bridge {sender})",
        "X-Webhook-Event": delivery["event"],
        "X-Webhook-Event-Id": delivery["id"],
        "X-Webhook-Timestamp": delivery["timestamp"],
        "X-Webhook-Id": f"wh_{sender}",
    }
    # Platica repeats these in headers too; the bridge checks them when present.
    for header, key in (("X-Webhook-Resource-Type", "resourceType"), ("X-Webhook-Resource-Id", "resourceId")):
        if isinstance(delivery.get(key), str):
            headers[header] = delivery[key]
    if secret is not None:
        headers["X-Webhook-Signature"] = sign(secret, body)
    return headers
