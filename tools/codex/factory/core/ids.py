"""Run IDs: ``<kind>_<utc>_<base_hash>_<seq>`` and validation of operator-supplied IDs."""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections.abc import Sequence

from tools.codex.factory.core.timefmt import compact
from tools.codex.factory.errors import ArgumentError, UsageError

RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
KIND_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
WORKER_ID_RE = re.compile(r"[A-Y][A-Za-z0-9]{0,15}")
MAX_RUN_ID = 128


def _refuse(arg: str | None, source: str, detail: str) -> UsageError:
    """A refused ID: about the argument ``arg`` (the CLI names its option), or from ``source``
    (a config key, a plan field) named in the message."""
    if arg is not None:
        return ArgumentError(arg, detail)
    return UsageError(f"{source}: {detail}")


def validate_run_id(run_id: str, source: str = "") -> str:
    """Refuse anything that could act as a path: IDs become folder names."""
    if not run_id:
        problem = "run ID is empty; use letters, digits, '.', '_' or '-'"
    elif len(run_id) > MAX_RUN_ID:
        problem = f"run ID is {len(run_id)} characters; the limit is {MAX_RUN_ID}"
    elif ".." in run_id:
        problem = f"run ID {run_id!r} contains '..'"
    elif not RUN_ID_RE.fullmatch(run_id):
        problem = (
            f"run ID {run_id!r} must match [A-Za-z0-9][A-Za-z0-9._-]* (no '/', '\\', ':' or NUL)"
        )
    else:
        return run_id
    raise _refuse(None if source else "run_id", source, problem)


def validate_kind(kind: str, source: str = "") -> str:
    if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
        detail = f"kind {kind!r} must match [A-Za-z0-9][A-Za-z0-9-]{{0,31}}"
        raise _refuse(None if source else "kind", source, detail)
    return kind


def validate_worker_id(worker_id: str, source: str = "", *, arg: str = "workers") -> str:
    if not isinstance(worker_id, str) or not WORKER_ID_RE.fullmatch(worker_id):
        detail = (
            f"worker ID {worker_id!r} must be a capital A-Y then up to 15 letters or digits "
            "(Z is the integrator)"
        )
        raise _refuse(None if source else arg, source, detail)
    return worker_id


def select_workers(ids: Sequence[str], shown: str | None = None) -> list[str]:
    """A selection of workers (the CLI's ``A,C``, the API's list): valid IDs, at least one, none
    twice; sorted. ``shown`` is the selection as the operator wrote it, for the message."""
    chosen = [validate_worker_id(w) for w in ids]
    if not chosen:
        raise ArgumentError("workers", "give at least one worker ID, e.g. A,C", label="workers")
    if len(set(chosen)) != len(chosen):
        what = shown if shown is not None else ",".join(ids)
        raise ArgumentError("workers", f"{what!r} names a worker twice", label="workers")
    return sorted(chosen)


def base_hash(commit: str) -> str:
    """First 8 hex of sha256 of the resolved commit id."""
    return hashlib.sha256(commit.encode("ascii")).hexdigest()[:8]


def run_id_prefix(kind: str, now: _dt.datetime, commit: str) -> str:
    return f"{kind}_{compact(now)}_{base_hash(commit)}_"


def make_run_id(prefix: str, existing: int) -> str:
    """The next run ID after run number ``existing`` (the highest taken with this prefix)."""
    seq = existing + 1
    if seq > 999:
        raise UsageError(
            f"run ID prefix {prefix!r} already has 999 runs; choose a run ID or pin the clock"
        )
    return f"{prefix}{seq:03d}"
