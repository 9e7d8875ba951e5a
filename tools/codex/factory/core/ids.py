"""Run IDs: ``<kind>_<utc>_<base_hash>_<seq>`` and validation of operator-supplied IDs."""

from __future__ import annotations

import datetime as _dt
import hashlib
import re

from tools.codex.factory.core.timefmt import compact
from tools.codex.factory.errors import UsageError

RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
KIND_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
WORKER_ID_RE = re.compile(r"[A-Y][A-Za-z0-9]{0,15}")
MAX_RUN_ID = 128


def validate_run_id(run_id: str, source: str = "--run-id") -> str:
    """Refuse anything that could act as a path: IDs become folder names."""
    if not run_id:
        raise UsageError(f"{source}: run ID is empty; use letters, digits, '.', '_' or '-'")
    if len(run_id) > MAX_RUN_ID:
        raise UsageError(f"{source}: run ID is {len(run_id)} characters; the limit is {MAX_RUN_ID}")
    if ".." in run_id:
        raise UsageError(f"{source}: run ID {run_id!r} contains '..'")
    if not RUN_ID_RE.fullmatch(run_id):
        raise UsageError(
            f"{source}: run ID {run_id!r} must match [A-Za-z0-9][A-Za-z0-9._-]* (no '/', '\\', ':' or NUL)"
        )
    return run_id


def validate_kind(kind: str, source: str = "--kind") -> str:
    if not KIND_RE.fullmatch(kind):
        raise UsageError(f"{source}: kind {kind!r} must match [A-Za-z0-9][A-Za-z0-9-]{{0,31}}")
    return kind


def validate_worker_id(worker_id: str, source: str = "--workers") -> str:
    if not WORKER_ID_RE.fullmatch(worker_id):
        raise UsageError(
            f"{source}: worker ID {worker_id!r} must be a capital A-Y then up to 15 letters or digits (Z is the integrator)"
        )
    return worker_id


def base_hash(commit: str) -> str:
    """First 8 hex of sha256 of the resolved commit id."""
    return hashlib.sha256(commit.encode("ascii")).hexdigest()[:8]


def run_id_prefix(kind: str, now: _dt.datetime, commit: str) -> str:
    return f"{kind}_{compact(now)}_{base_hash(commit)}_"


def make_run_id(prefix: str, existing: int) -> str:
    """The next run ID after run number ``existing`` (the highest taken with this prefix)."""
    seq = existing + 1
    if seq > 999:
        raise UsageError(f"run ID prefix {prefix!r} already has 999 runs; pass --run-id or --now")
    return f"{prefix}{seq:03d}"
