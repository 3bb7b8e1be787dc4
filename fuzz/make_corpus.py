#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/corpus/ from tests/vectors/ (standard library
only; deterministic). Run it again after the vectors change:

    python3 fuzz/make_corpus.py

Seeds found by fuzzing (crashes turned regressions, interesting inputs) are
kept by hand in the same folders with names starting with `found-`, and this
script leaves them alone.
"""

import hashlib
import hmac
import json
import math
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
CORPUS = ROOT / "fuzz" / "corpus"

sys.path.insert(0, str(VECTORS))
from conformance import merge_patch  # noqa: E402


def compact(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# --- protobuf wire format, just what ExchangeResponse needs -----------------

def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, wire_type, payload):
    key = varint(number << 3 | wire_type)
    if wire_type == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def pb_value(v):
    if v is None:
        return field(1, 0, varint(0))
    if isinstance(v, bool):
        return field(4, 0, varint(int(v)))
    if isinstance(v, (int, float)):
        return field(2, 1, struct.pack("<d", float(v)))
    if isinstance(v, str):
        return field(3, 2, v.encode())
    if isinstance(v, dict):
        return field(5, 2, pb_struct(v))
    if isinstance(v, list):
        return field(6, 2, b"".join(field(1, 2, pb_value(x)) for x in v))
    raise TypeError(v)


def pb_struct(d):
    return b"".join(
        field(1, 2, field(1, 2, k.encode()) + field(2, 2, pb_value(v))) for k, v in d.items()
    )


def pb_reply(screen=None, data=None):
    out = b""
    if screen is not None:
        out += field(1, 2, screen.encode())
    if data is not None:
        out += field(2, 2, pb_struct(data))
    return out


WRITTEN = set()


def write(target, name, content):
    """Writes a seed, unless the same bytes are already a seed of `target`."""
    if (target, content) in WRITTEN:
        return
    WRITTEN.add((target, content))
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


def main():
    for folder in CORPUS.glob("*"):
        for seed in folder.glob("*"):
            if not seed.name.startswith("found-"):
                seed.unlink()

    deliveries = {p.name: json.loads(p.read_text()) for p in sorted((VECTORS / "deliveries").glob("*.json"))}
    cases = [json.loads(p.read_text()) for p in sorted((VECTORS / "cases").glob("*.json"))]

    # --- delivery: the seed deliveries, each case's delivery, and edges -----
    for name, body in deliveries.items():
        write("delivery", f"vector-{name}", json.dumps(body, ensure_ascii=False, indent=2).encode())
    for case in cases:
        body = compact(merge_patch(deliveries[case["delivery"]], case.get("patch", {})))
        write("delivery", f"case-{case['name']}.json", body)

    init = deliveries["init.json"]
    full = deliveries["screen_advance_full.json"]

    def with_payload(text):
        return compact(init).replace(b'"payload":{}', b'"payload":' + text)

    edges = {
        "numbers": with_payload(
            b'{"a":9007199254740992,"b":9007199254740993,"c":-0,"d":-0.0,"e":1e308,'
            b'"f":1.7976931348623157e308,"g":5e-324,"h":1e-400,"i":18446744073709551615,'
            b'"j":-9223372036854775808,"k":1.2345678901234567e-300,"l":0.30000000000000004,"m":1E+2}'
        ),
        "strings": with_payload(
            '{"":"","é":"\\u00e9\\ud83d\\ude00\\u0000\\n\\"\\\\\\/","😀":"\u2028\ufeff"}'.encode()
        ),
        "nested": with_payload(b'{"a":[[],{},[{"b":[null,true,false,1.5,"x"]}]],"c":{"d":{"e":{}}}}'),
        "duplicate-keys": with_payload(b'{"a":1,"a":2}'),
        "payload-array": with_payload(b"[1,2]"),
        "payload-null": compact(init).replace(b'"payload":{}', b'"payload":null'),
        "minimal": b'{"id":"1","event":"whatsapp.flows.x","timestamp":"2026-05-06T19:00:00Z","data":{"flowExchange":{"action":""}}}',
        "timestamps": compact(
            merge_patch(full, {
                "timestamp": "0001-01-01T00:00:00Z",
                "data": {
                    "client": {"creationDate": "9999-12-31T23:59:59.999999999Z", "lastUpdate": "2026-05-06t19:00:00+14:00"},
                    "flow": {"creationDate": "2026-05-06T19:00:00.123456789-23:59", "lastUpdate": "1969-12-31T23:59:59.999Z"},
                    "flowResponse": {"sentAt": "2026-02-29T00:00:00Z", "openedAt": "2026-05-06T24:00:00Z"},
                },
            })
        ),
        "wrong-types": compact(
            merge_patch(full, {
                "workspaceId": 1,
                "changes": {"a": [1]},
                "data": {
                    "client": {"id": 1, "creationDate": "yesterday", "email": False},
                    "conversation": {"messageCount": "3", "owners": {"x": 1}, "tags": "t", "canSendDirectMessage": "yes"},
                    "flow": {"categories": ["A", 1], "lastSyncAt": 0},
                    "flowResponse": {"status": ["IN_PROGRESS"]},
                    "flowExchange": {"screen": 5, "version": 3.0, "payload": "x", "nonce": 7},
                    "newData": [1, "x"],
                },
                "newTop": {"a": 1},
            })
        ),
        "message-count-edges": compact(merge_patch(full, {"data": {"conversation": {"messageCount": 9223372036854775807}}})).replace(
            b"9223372036854775807", b"9223372036854775808"
        ),
        "levels-not-objects": compact(merge_patch(init, {"data": {"client": [], "conversation": 1, "flow": "f", "flowResponse": True}})),
        # Known bug B2: 33 objects deep is the deepest payload a protobuf
        # decoder reads; 34 parses but cannot be decoded by the handler.
        "depth-33": with_payload(b'{"k":' * 32 + b"{}" + b"}" * 32),
        "depth-34": with_payload(b'{"k":' * 33 + b"{}" + b"}" * 33),
        "depth-120-arrays": with_payload(b"[" * 120 + b"]" * 120),
    }
    for name, body in edges.items():
        write("delivery", f"edge-{name}.json", body)

    # --- signature: secrets line, header line, body --------------------------
    body = compact(init)
    tag = hmac.new(b"topsecret", body, hashlib.sha256).hexdigest()
    headers = {
        "valid": f"sha256={tag}".encode(),
        "uppercase-hex": f"sha256={tag.upper()}".encode(),
        "spaces": f"  sha256={tag}\t".encode(),
        "nbsp": f"\u00a0sha256={tag}\u3000".encode(),
        "uppercase-prefix": f"SHA256={tag}".encode(),
        "sha1": b"sha1=" + tag[:40].encode(),
        "truncated": f"sha256={tag[:62]}".encode(),
        "odd": f"sha256={tag[:63]}".encode(),
        "too-long": f"sha256={tag}00".encode(),
        "two-values": f"sha256={tag},sha256={tag}".encode(),
        "prefix-only": b"sha256=",
        "empty": b"",
        "not-utf8": b"sha256=\xff\xfe" + tag[4:].encode(),
        "mask-zero": b"@",
        "mask-bit": b"@" + b"\0" * 7 + b"\x01",
        "mask-append": b"@" + b"\0" * 71 + b" ",
    }
    for name, header in headers.items():
        write("signature", f"{name}", b"topsecret\n" + header + b"\n" + body)
    write("signature", "rotation", b"old, topsecret ,new\n" + headers["valid"] + b"\n" + body)
    write("signature", "no-secret", b" , \n@\n" + body)
    write("signature", "empty-body", b"s\n@\n")
    write("signature", "empty", b"")

    # --- reply: mode byte 0 + wire bytes, or 1 + arbitrary bytes -------------
    replies = {
        "fallback": pb_reply(data={"acknowledged": True}),
        "screen-only": pb_reply(screen="DONE"),
        "empty-screen-data": pb_reply(screen="", data={}),
        "empty": b"",
        "numbers": pb_reply(
            screen="S",
            data={"a": 499, "b": -0.0, "c": 2.0**53, "d": 2.0**53 + 2, "e": 1e308, "f": 5e-324, "g": 0.1, "h": 1e300},
        ),
        "nan": pb_reply(screen="S", data={"n": math.nan}),
        "infinity": pb_reply(data={"l": [1, {"x": math.inf}]}),
        "null-kinds": pb_reply(data={"n": None}) + field(2, 2, field(1, 2, field(1, 2, b"unset") + field(2, 2, b""))),
        "null-value-7": pb_reply(data={}) + field(2, 2, field(1, 2, field(1, 2, b"n") + field(2, 2, field(1, 0, varint(7))))),
    }
    for case in cases:
        expected = case["expect"]["body"]
        replies[f"case-{case['name']}"] = pb_reply(expected.get("screen"), expected.get("data"))
    for name, wire in replies.items():
        write("reply", f"wire-{name}", b"\x00" + wire)
    for i, seed in enumerate([b"", b"\x00" * 16, b"\xff" * 64, bytes(range(256))]):
        write("reply", f"arbitrary-{i}", b"\x01" + seed)


if __name__ == "__main__":
    main()
