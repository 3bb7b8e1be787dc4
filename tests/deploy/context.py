#!/usr/bin/env python3
"""Lays out a Docker build context as `docker build` would send it: the
repository filtered by a .dockerignore, so the build commands of a Dockerfile
can run on exactly the files the image build sees.

    python3 tests/deploy/context.py deploy/Dockerfile.dockerignore .tools/deploy/context/bridge

Rules as in Docker (moby/patternmatcher): one pattern per line, `#` comments,
`!` re-includes, Go filepath.Match globs plus `**`, a pattern that matches a
directory matches everything under it, and the last matching line decides.
The destination is synchronised (unchanged files keep their modification
time, so cargo does not rebuild them; files that left the context are removed).
Prints the number of files and bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def translate(pattern: str) -> re.Pattern:
    """A Go filepath.Match pattern (with `**`) as an anchored regex."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if pattern.startswith("/", i):  # `**/` also matches no directory at all
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ValueError(f"unterminated [ in {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "!" + body[1:]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 1
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def read_rules(path: Path) -> list[tuple[bool, re.Pattern, str]]:
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
        rules.append((negate, translate(pattern), pattern))
    return rules


def excluded(rel: str, rules) -> bool:
    """Docker's decision for one path: the last rule matching it or a parent wins."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, regex, _ in rules:
        if any(regex.match(p) for p in prefixes):
            result = not negate
    return result


def context_files(rules) -> list[str]:
    negations = [pattern for negate, _, pattern in rules if negate]
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(dirpath, ROOT)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in dirnames:
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if d == ".git":
                continue
            # Prune an excluded directory unless a `!` rule may re-include something under it.
            if excluded(rel, rules) and not any(n.startswith((rel + "/", "*")) for n in negations):
                continue
            keep.append(d)
        dirnames[:] = sorted(keep)
        for f in sorted(filenames):
            rel = f"{rel_dir}/{f}" if rel_dir else f
            if not excluded(rel, rules):
                files.append(rel)
    return files


def sync(files: list[str], dest: Path) -> tuple[int, int]:
    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(files)
    total = 0
    for rel in files:
        src, dst = ROOT / rel, dest / rel
        st = src.stat()
        total += st.st_size
        try:
            dt = dst.stat()
            if dt.st_size == st.st_size and int(dt.st_mtime) == int(st.st_mtime):
                continue
        except FileNotFoundError:
            pass
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    for dirpath, dirnames, filenames in os.walk(dest, topdown=False):
        for f in filenames:
            rel = os.path.relpath(os.path.join(dirpath, f), dest)
            if rel not in wanted:
                os.unlink(os.path.join(dirpath, f))
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.listdir(full):
                os.rmdir(full)
    return len(files), total


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    rules = read_rules(Path(sys.argv[1]))
    count, size = sync(context_files(rules), Path(sys.argv[2]))
    print(f"context {sys.argv[1]}: {count} files, {size / 1024:.0f} KiB -> {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
