#!/usr/bin/env python3
"""Sends every conformance vector (tests/vectors/cases/*.json) to a running
flows-bridge, signed as Platica signs, and checks each reply.

    FLOWS_BRIDGE_SECRET=... tests/interop/send_vectors.py --url http://127.0.0.1:8080/

For each vector: load its delivery, apply its JSON merge patch (RFC 7396), give
it a fresh `id` (uuid4) and `timestamp` (now, `2026-05-06T19:00:30.000Z`),
serialise it, sign the exact bytes (HMAC-SHA256, `X-Webhook-Signature:
sha256=<hex>`), POST it with Platica's headers, and compare the status and the
parsed JSON body with `expect` (JSON equality: object key order and number
spelling do not matter, types do: `true` is not `1`).

Prints `PASS name` or `FAIL name: expected ... got ...` per vector, then one
line `N passed, M failed`; exits 1 when any failed. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "vectors"))
from conformance import VECTORS, delivery_for, encode, headers_for, json_equal  # noqa: E402


def compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def load_case(path: Path) -> dict:
    case = json.loads(path.read_text(encoding="utf-8"))
    for key in ("name", "delivery", "expect"):
        if key not in case:
            raise ValueError(f"{path.name}: missing {key!r}")
    if "status" not in case["expect"] or "body" not in case["expect"]:
        raise ValueError(f"{path.name}: expect needs status and body")
    return case


def send(url: str, secret: bytes, delivery: dict, timeout: float) -> tuple[int, bytes]:
    body = encode(delivery)
    request = urllib.request.Request(
        url, data=body, headers=headers_for(delivery, body, secret, "interop"), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:  # non-2xx still has a status and a body
        return error.code, error.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the bridge's webhook URL, e.g. http://127.0.0.1:8080/")
    parser.add_argument(
        "--secret-env",
        default="FLOWS_BRIDGE_SECRET",
        help="environment variable holding the signing secret (default FLOWS_BRIDGE_SECRET)",
    )
    parser.add_argument("--cases", type=Path, default=VECTORS / "cases", help="directory of vectors")
    parser.add_argument("--only", action="append", default=[], help="run only this vector (repeatable)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    args = parser.parse_args()

    secret = os.environ.get(args.secret_env)
    if not secret:
        print(f"send_vectors: ${args.secret_env} is not set", file=sys.stderr)
        return 2
    paths = sorted(args.cases.glob("*.json"))
    if args.only:
        paths = [p for p in paths if p.stem in args.only]
    if not paths:
        print(f"send_vectors: no vectors in {args.cases}", file=sys.stderr)
        return 2

    passed = failed = 0
    for path in paths:
        name = path.stem
        try:
            case = load_case(path)
            name = case["name"]
            status, raw = send(args.url, secret.encode(), delivery_for(case), args.timeout)
        except Exception as error:  # a broken vector or a dead bridge: a failure, not a crash
            failed += 1
            print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)
            continue
        try:
            got = json.loads(raw)
            got_text = compact(got)
        except ValueError:
            got, got_text = None, repr(raw[:500])
        expect = case["expect"]
        if status == expect["status"] and got is not None and json_equal(got, expect["body"]):
            passed += 1
            print(f"PASS {name}", flush=True)
        else:
            failed += 1
            print(
                f"FAIL {name}: expected {expect['status']} {compact(expect['body'])} got {status} {got_text}",
                flush=True,
            )
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
