"""Worker bundles: write a complete bundle (dry run, collected, imported).

Reading a bundle back is :mod:`run.facts`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tools.codex.factory.core.paths import (
    worker_dirname,
)
from tools.codex.factory.infra import jsonio, schemas
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.records.plan import WorkerPlan


def logs_index_from_hashes(hashes: dict[str, str], sizes: dict[str, int]) -> dict[str, Any]:
    """LOGS/INDEX.json from each log's sha256 and size (logs that were streamed, not held)."""
    return {
        "schema_version": schemas.SCHEMA_VERSION,
        "logs": [
            {"path": name, "sha256": hashes[name], "bytes": sizes[name]} for name in sorted(hashes)
        ],
    }


def logs_index(entries: dict[str, bytes]) -> dict[str, Any]:
    return {
        "schema_version": schemas.SCHEMA_VERSION,
        "logs": [
            {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in sorted(entries.items())
        ],
    }


def write_bundle(
    writer: GuardedWriter,
    run_id: str,
    worker: WorkerPlan,
    *,
    status: str,
    patch: bytes,
    files: list[str],
    dry_run: bool,
    source: str,
    summary: str,
    suggestions: str,
    handoff: dict[str, Any] | None = None,
    logs: dict[str, bytes] | None = None,
    rc: int | None = None,
    timed_out: bool = False,
    reason: str = "",
) -> dict[str, str]:
    """Write a complete bundle for ``worker``; return {relative path: sha256}."""
    base = worker_dirname(worker.id)
    logs = dict(logs or {})
    status_doc = {
        "schema_version": schemas.SCHEMA_VERSION,
        "run_id": run_id,
        "worker": worker.id,
        "status": status,
        "dry_run": dry_run,
        "source": source,
        "rc": rc,
        "timed_out": timed_out,
        "reason": reason,
    }
    note = handoff or {
        "schema_version": schemas.SCHEMA_VERSION,
        "worker": worker.id,
        "depends_on": sorted(worker.depends_on),
        "notes": "",
    }
    out: dict[str, str] = {}
    out[f"{base}/STATUS.json"] = writer.write(f"{base}/STATUS.json", jsonio.pretty(status_doc))
    out[f"{base}/SUMMARY.md"] = writer.write_text(f"{base}/SUMMARY.md", summary)
    out[f"{base}/FILES_CHANGED.json"] = writer.write(
        f"{base}/FILES_CHANGED.json",
        jsonio.pretty({"schema_version": schemas.SCHEMA_VERSION, "files": sorted(set(files))}),
    )
    out[f"{base}/DIFF.patch"] = writer.write(f"{base}/DIFF.patch", patch)
    out[f"{base}/SUGGESTIONS.md"] = writer.write_text(f"{base}/SUGGESTIONS.md", suggestions)
    out[f"{base}/SCOPE_LOCK.json"] = writer.write(
        f"{base}/SCOPE_LOCK.json", jsonio.pretty(worker.scope_lock())
    )
    out[f"{base}/HANDOFF_NOTE.json"] = writer.write(
        f"{base}/HANDOFF_NOTE.json", jsonio.pretty(note)
    )
    for name, data in sorted(logs.items()):
        out[f"{base}/LOGS/{name}"] = writer.write(f"{base}/LOGS/{name}", data)
    out[f"{base}/LOGS/INDEX.json"] = writer.write(
        f"{base}/LOGS/INDEX.json", jsonio.pretty(logs_index(logs))
    )
    return out


def write_dry_run_bundle(
    writer: GuardedWriter, run_id: str, worker: WorkerPlan, base_commit: str
) -> dict[str, str]:
    log = f"dry run: no agent invoked for worker {worker.id} at base {base_commit}\n".encode()
    return write_bundle(
        writer,
        run_id,
        worker,
        status="DONE",
        patch=b"",
        files=[],
        dry_run=True,
        source="dry-run",
        summary=f"# {worker_dirname(worker.id)} (dry run)\n\nNo agent was invoked; the patch is empty.\n\nTask: {worker.task}\n",
        suggestions="# Suggestions\n\nNone: dry run.\n",
        logs={"launch.log": log},
        reason="dry run: no agent invoked",
    )


def write_awaiting_bundle(writer: GuardedWriter, run_id: str, worker: WorkerPlan) -> dict[str, str]:
    """A run launched without agents: the worker is PENDING until ``bundle-import`` brings its
    bundle, so a worker never imported blocks validation (``worker-not-done``), never passes
    empty."""
    how = f"factory bundle-import --run-id {run_id} --worker {worker.id} --patch FILE"
    return write_bundle(
        writer,
        run_id,
        worker,
        status="PENDING",
        patch=b"",
        files=[],
        dry_run=True,
        source="dry-run",
        summary=f"# {worker_dirname(worker.id)} (waiting for an import)\n\nNo agent runs for this "
        f"worker: import its patch with `{how}`.\n\nTask: {worker.task}\n",
        suggestions="# Suggestions\n\nNone yet: waiting for an imported bundle.\n",
        reason=f"waiting for an imported bundle: `{how}`",
    )
