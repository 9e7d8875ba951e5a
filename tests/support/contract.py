"""The JSON contract the RUNBOOK documents: the top-level keys of each command's JSON, and the
check a test makes of a command's output against it."""

from __future__ import annotations

from typing import Any

JSON_KEYS: dict[str, set[str] | None] = {  # None: a JSON array (of ledger events)
    "ledger": None,
    "runs": {"run_id", "kind", "status", "started", "finished", "workers", "head"},
    "ledger verify": {
        "ok",
        "lines",
        "head",
        "first_bad_seq",
        "reason",
        "torn_tail",
        "torn_bytes",
        "head_file",
        "notes",
        "path",
    },
    "ledger repair": {"repaired", "reason"},
    "ledger-replay": {
        "run_id",
        "ok",
        "chain_verified",
        "ledger",
        "state",
        "timeline",
        "divergences",
    },
    "print-report": {"run_id", "path", "report"},
    "report": {"run_id", "path", "report"},
    "report --html": {"run_id", "path", "abs_path", "sha256", "status"},
    "config show": {"config", "origins", "file", "file_source"},
    "doctor": {"status", "counts", "checks", "self_test"},
    "oneshot": {"run_id", "status", "stages", "report", "ledger_head", "reasons"},
    "integrate": {
        "run_id",
        "status",
        "stages",
        "report",
        "ledger_head",
        "reasons",
        "covers",
        "left_out",
        "checks",
    },
    "preflight": {"status", "checks"},
    "launch": {"status", "run_id", "base_commit", "workers", "run_dir"},
    "watch": {"run_id", "finished", "status", "timed_out", "events"},
    "self-test": {"status", "steps", "scratch"},
    "open-report": {"run_id", "path", "opened", "how"},
    "open-run": {"run_id", "path", "opened", "how"},
    "bundle-collect": {"run_id", "status", "workers", "runboard"},
    "bundle-import": {"run_id", "worker", "status", "format", "commits", "files", "diff_sha256"},
    "clean": {"status", "removed", "refused", "failed", "busy"},
    "land": {"run_id", "status", "branch", "commit", "base_commit", "next"},
    "crank": {
        "crank_id",
        "decision",
        "kind",
        "reason",
        "evidence",
        "advice",
        "regressions",
        "trajectory",
        "branch",
        "tip",
        "runs",
        "report",
        "feedback",
    },
    "crank-status": {
        "crank_id",
        "state",
        "iteration",
        "trajectory",
        "last_decision",
        "decision",
        "reason",
    },
    "scenarios check": {"commit", "sha256", "scenarios"},
    "gates": {"crank_id", "gates"},
    "scenarios run": {"commit", "holdout_sha256", "satisfaction", "percent", "results", "file"},
}

EVENT_KEYS = {"event_type", "hash", "payload", "prev_hash", "run_id", "seq", "stage", "ts_utc"}


# Commands whose JSON is an array of objects, each with these keys (JSON_KEYS).
ARRAYS = {"runs"}


def check_keys(name: str, data: Any) -> None:
    keys = JSON_KEYS[name]
    if name in ARRAYS:
        assert isinstance(data, list) and keys is not None
        assert all(keys <= set(e) for e in data), f"{name}: missing keys"
    elif keys is None:
        assert isinstance(data, list)
        assert all(set(e) == EVENT_KEYS for e in data)
    else:
        assert isinstance(data, dict)
        assert keys <= set(data), f"{name}: missing {keys - set(data)}"
