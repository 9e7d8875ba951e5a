"""Worker bundles: write the dry-run form, read any bundle into recorded facts.

Reading is split from judging: :func:`gather_facts` does all the I/O and returns plain JSON
(recorded in the ledger), and :mod:`decisions` judges those facts with pure functions, so
``ledger-replay`` can recompute every verdict from the ledger alone.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from tools.codex.factory.core.paths import (
    WORKER_FILES,
    PathRuleError,
    normalise_repo_path,
    worker_dirname,
)
from tools.codex.factory.infra import fsutil, jsonio, schemas
from tools.codex.factory.infra.writer import GuardedWriter, sha256_file
from tools.codex.factory.records.plan import WorkerPlan

JSON_FILES = {
    "STATUS.json": "worker_status",
    "FILES_CHANGED.json": "files_changed",
    "SCOPE_LOCK.json": "scope_lock",
    "HANDOFF_NOTE.json": "handoff_note",
    "LOGS/INDEX.json": "logs_index",
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


def bundle_hash(folder: Path) -> str:
    """sha256 over (relative path, content) of every entry in the bundle, sorted.

    Symlinks are hashed as their target text and never followed, special files by kind and
    unreadable files by errno, so hashing a hostile bundle neither escapes nor fails.
    """
    entries: list[list[str]] = []
    if folder.is_symlink():
        return hashlib.sha256(
            jsonio.canonical([[".", "symlink:" + os.readlink(folder)]])
        ).hexdigest()
    for entry in fsutil.walk(folder):
        rel, path, st = entry.rel, entry.path, entry.st
        try:
            if stat.S_ISLNK(st.st_mode):
                entries.append([rel, "symlink:" + os.readlink(path)])
            elif stat.S_ISREG(st.st_mode):
                entries.append([rel, sha256_file(path)])
            elif not stat.S_ISDIR(st.st_mode):
                entries.append([rel, "special"])
        except OSError as exc:
            entries.append([rel, f"unreadable:{exc.errno}"])
    entries.sort()
    return hashlib.sha256(jsonio.canonical(entries)).hexdigest()


def _read_regular(path: Path) -> bytes | None:
    """The bytes of a regular, non-symlinked file, or None (missing, special, unreadable)."""
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            return None
        return path.read_bytes()
    except OSError:
        return None


def file_hashes(folder: Path, prefix: str) -> list[tuple[str, str]]:
    """(path under the run folder, sha256) for every regular file below ``folder``."""
    out = []
    for entry in sorted(fsutil.walk(folder), key=lambda e: e.path):  # the order rglob gave
        if entry.is_regular:
            digest = hashlib.sha256(entry.path.read_bytes()).hexdigest()
            out.append((f"{prefix}/{entry.rel}", digest))
    return out


def gather_facts(run_dir: Path, worker: str, base_paths_lower: dict[str, str]) -> dict[str, Any]:
    """Read one bundle and return everything the judgement needs, as plain JSON."""
    from tools.codex.factory.core import patchparse

    folder = run_dir / worker_dirname(worker)
    facts: dict[str, Any] = {
        "worker": worker,
        "missing": [],
        "symlinks": [],
        "json_errors": [],
        "schema_errors": [],
        "status": None,
        "status_reason": "",
        "ids": {},
        "files_changed": [],
        "touched": [],
        "added": [],
        "patch_error": None,
        "section_hashes": {},
        "scope": None,
        "depends_on": [],
        "log_problems": [],
        "base_case_variants": {},
        "bundle_hash": bundle_hash(folder),
        "run_id": None,
    }
    patch_bytes = b""
    docs: dict[str, Any] = {}
    if folder.is_symlink() or (folder / "LOGS").is_symlink():
        # A symlinked bundle folder (or LOGS/) could point anywhere: read nothing through it.
        facts["symlinks"].append(worker_dirname(worker) if folder.is_symlink() else "LOGS")
        return facts
    for name in WORKER_FILES:
        path = folder / name
        if path.is_symlink():
            facts["symlinks"].append(name)
            continue
        data = _read_regular(path)
        if data is None:
            facts["missing"].append(name)
            continue
        if name in JSON_FILES:
            try:
                doc = jsonio.loads(data[3:] if data.startswith(b"\xef\xbb\xbf") else data)
            except Exception as exc:
                facts["json_errors"].append(
                    [name, str(exc).splitlines()[0] if str(exc) else "invalid JSON"]
                )
                continue
            problems = schemas.errors(JSON_FILES[name], doc)
            if problems:
                for where, msg in problems:
                    facts["schema_errors"].append([name, where, msg])
                continue
            docs[name] = doc
        elif name == "DIFF.patch":
            patch_bytes = data
    if "STATUS.json" in docs:
        facts["run_id"] = docs["STATUS.json"]["run_id"]
        facts["status"] = docs["STATUS.json"]["status"]
        facts["status_reason"] = docs["STATUS.json"].get("reason", "")
        facts["ids"]["STATUS.json"] = docs["STATUS.json"]["worker"]
    if "SCOPE_LOCK.json" in docs:
        sl = docs["SCOPE_LOCK.json"]
        facts["scope"] = {"allow": sl["allow"], "deny": sl["deny"], "shared": sl["shared"]}
        facts["ids"]["SCOPE_LOCK.json"] = sl["worker"]
    if "HANDOFF_NOTE.json" in docs:
        facts["depends_on"] = sorted(docs["HANDOFF_NOTE.json"]["depends_on"])
        facts["ids"]["HANDOFF_NOTE.json"] = docs["HANDOFF_NOTE.json"]["worker"]
    if "FILES_CHANGED.json" in docs:
        facts["files_changed"] = list(docs["FILES_CHANGED.json"]["files"])
    if "DIFF.patch" not in facts["missing"] and "DIFF.patch" not in facts["symlinks"]:
        try:
            patch = patchparse.parse(patch_bytes)
        except patchparse.PatchParseError as exc:
            facts["patch_error"] = str(exc)
        else:
            facts["touched"] = patch.touched()
            facts["added"] = sorted(
                {f.new_path for f in patch.files if f.new_path and f.new_path != f.old_path}
            )
            facts["section_hashes"] = {
                p: hashlib.sha256(raw).hexdigest()
                for p, raw in sorted(patch.sections_by_path().items())
            }
    deleted = set(facts["touched"]) - set(facts["added"])
    for p in facts["added"]:
        existing = base_paths_lower.get(p.lower())
        if existing is not None and existing != p and existing not in deleted:
            facts["base_case_variants"][p] = existing
    if "LOGS/INDEX.json" in docs:
        for entry in docs["LOGS/INDEX.json"]["logs"]:
            rel = entry["path"]
            try:
                normalise_repo_path(rel)
            except PathRuleError as exc:
                facts["log_problems"].append([rel, "log-path-invalid", str(exc)])
                continue
            log = folder / "LOGS" / rel
            inside = not any(p.is_symlink() for p in [log, *log.parents] if folder in p.parents)
            data = _read_regular(log) if inside else None
            if data is None:
                facts["log_problems"].append(
                    [
                        rel,
                        "log-missing",
                        "listed in LOGS/INDEX.json but absent or not a regular file",
                    ]
                )
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry["sha256"] or len(data) != entry["bytes"]:
                facts["log_problems"].append(
                    [
                        rel,
                        "log-hash-mismatch",
                        f"sha256 {digest[:12]}…/{len(data)} bytes, index says {entry['sha256'][:12]}…/{entry['bytes']}",
                    ]
                )
    return facts
