"""Generates the Python stubs of ../../proto into gen/ (gitignored).

    python gen_stubs.py          # regenerate if the protos changed
    python gen_stubs.py --force  # regenerate anyway

`flow_handler.py` calls `ensure()` at import, so running this by hand is
optional. Generation uses `python -m grpc_tools.protoc` (grpcio-tools) and is
skipped while gen/.stamp matches the protos and the grpcio-tools version.
A file lock makes concurrent starts (a server and pytest) safe.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
GEN = HERE / "gen"
STAMP = GEN / ".stamp"
LOCK = HERE / ".gen.lock"


def _proto_files() -> list[Path]:
    files = sorted(PROTO_ROOT.rglob("*.proto"))
    if not files:
        raise SystemExit(f"gen_stubs: no .proto files under {PROTO_ROOT}")
    return files


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    digest.update(metadata.version("grpcio-tools").encode())
    for path in files:
        digest.update(str(path.relative_to(PROTO_ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def ensure(force: bool = False) -> Path:
    """Makes gen/ current and importable (on sys.path); returns its path."""
    files = _proto_files()
    wanted = _fingerprint(files)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = STAMP.read_text() if STAMP.exists() else None
        if force or current != wanted:
            shutil.rmtree(GEN, ignore_errors=True)
            GEN.mkdir()
            command = [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"--proto_path={PROTO_ROOT}",
                f"--python_out={GEN}",
                f"--pyi_out={GEN}",
                f"--grpc_python_out={GEN}",
                *(str(path.relative_to(PROTO_ROOT)) for path in files),
            ]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                shutil.rmtree(GEN, ignore_errors=True)
                raise SystemExit(
                    f"gen_stubs: protoc failed ({result.returncode}):\n{result.stderr}"
                )
            STAMP.write_text(wanted)
    if str(GEN) not in sys.path:
        sys.path.insert(0, str(GEN))
    return GEN


if __name__ == "__main__":
    print(ensure(force="--force" in sys.argv[1:]))
