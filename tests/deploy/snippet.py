#!/usr/bin/env python3
"""The paste-in snippet (deploy/kubernetes/snippet/deployment.yaml) must say
what the base says: the same sidecar, Secret volume, pod securityContext,
grace period and app preStop. Fails on any difference, so the documented
snippet cannot drift from the manifests CI runs.

    python3 tests/deploy/snippet.py rendered-base.yaml deploy/kubernetes/snippet/deployment.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def pod_spec(path: Path) -> dict:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Deployment"]
    if len(docs) != 1:
        raise SystemExit(f"{path}: expected one Deployment, found {len(docs)}")
    return docs[0]["spec"]["template"]["spec"]


def by_name(items: list[dict], name: str) -> dict | None:
    return next((i for i in items or [] if i.get("name") == name), None)


def main() -> int:
    base, snippet = pod_spec(Path(sys.argv[1])), pod_spec(Path(sys.argv[2]))
    pairs = {
        "the flows-bridge sidecar": (
            by_name(base.get("initContainers"), "flows-bridge"),
            by_name(snippet.get("initContainers"), "flows-bridge"),
        ),
        "the webhook-secret volume": (
            by_name(base.get("volumes"), "webhook-secret"),
            by_name(snippet.get("volumes"), "webhook-secret"),
        ),
        "the pod securityContext": (base.get("securityContext"), snippet.get("securityContext")),
        "terminationGracePeriodSeconds": (
            base.get("terminationGracePeriodSeconds"),
            snippet.get("terminationGracePeriodSeconds"),
        ),
        "the app's preStop": (
            (base["containers"][0].get("lifecycle") or {}).get("preStop"),
            (snippet["containers"][0].get("lifecycle") or {}).get("preStop"),
        ),
    }
    failed = 0
    for what, (a, b) in pairs.items():
        if a is None or a != b:
            failed += 1
            print(
                f"FAIL snippet differs from the base in {what}:\n  base:    {json.dumps(a)}\n  snippet: {json.dumps(b)}"
            )
        else:
            print(f"ok   snippet = base: {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
