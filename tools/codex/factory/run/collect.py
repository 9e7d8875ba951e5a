"""``bundle-collect``: the harness writes a worker's bundle from its worktree.

The agent never writes its bundle. DIFF.patch is computed from the worktree against the base
commit (see :func:`gitops.worktree_diff`), FILES_CHANGED.json from that diff, STATUS.json
from what happened to the worker, LOGS/INDEX.json over every log. SUMMARY.md,
SUGGESTIONS.md and HANDOFF_NOTE.json come from the worktree's ``.factory/`` folder when the
worker left them, else they are generated.

A HANDOFF_NOTE.json the worker left but that is not valid JSON, breaks its schema or names
another worker is kept **as the worker wrote it**: bundle-validate then blocks on it
(json-invalid / schema-violation / worker-id-mismatch), because a dependency the worker tried
to declare must not be silently dropped. The collection itself records the problem
(``handoff_error`` in ``bundle.collected``) and warns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.codex.factory.core import patchparse
from tools.codex.factory.core.ids import validate_run_id
from tools.codex.factory.core.paths import LOGS_DIR, worker_dirname
from tools.codex.factory.core.text import clip, is_utf8
from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.infra import fsutil, gitops, jsonio, schemas
from tools.codex.factory.infra.clock import sleep
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.records.plan import WorkerPlan
from tools.codex.factory.records.status import Status
from tools.codex.factory.run import bundles, gitdir, runboard, worktrees
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.facts import Limits, recorded_paths
from tools.codex.factory.run.handle import RunHandle, run_setting
from tools.codex.factory.run.outcome import Outcome
from tools.codex.factory.run.plans import from_dict

Progress = Callable[[str], None]


def plan_workers(manifest: dict[str, Any]) -> dict[str, WorkerPlan]:
    plan = from_dict(manifest["plan"], "RUN_MANIFEST.json plan")
    return {w.id: w for w in plan.workers}


def _handoff(
    raw: bytes | None, worker: WorkerPlan
) -> tuple[dict[str, Any] | None, bytes | None, str]:
    """(valid note, raw bytes to keep verbatim, problem) for ``.factory/HANDOFF_NOTE.json``."""
    if raw is None:
        return None, None, ""
    try:
        # The one JSON-document reader (BOM, duplicate keys, UTF-16), as validation reads it.
        doc = jsonio.loads_document(raw, unique_keys=True)
    except ValueError as exc:
        return (
            None,
            raw,
            f".factory/HANDOFF_NOTE.json is not valid JSON: {str(exc).splitlines()[0] if str(exc) else 'invalid'}",
        )
    problems = schemas.errors("handoff_note", doc)
    if problems:
        where, msg = problems[0]
        return None, raw, f".factory/HANDOFF_NOTE.json at {where}: {msg}"
    if doc["worker"] != worker.id:
        return (
            None,
            raw,
            f".factory/HANDOFF_NOTE.json names worker {doc['worker']!r}, not {worker.id!r}",
        )
    return dict(doc), None, ""


def notes_as_collected(path: Path, worker: WorkerPlan) -> dict[str, bytes]:
    """The bundle bytes that collecting now would write for each note the worker left in
    ``.factory/`` (name -> bytes); notes it did not leave are absent. ``clean`` compares these
    with the bundle to know whether the notes were collected."""
    out: dict[str, bytes] = {}
    for name in ("SUMMARY.md", "SUGGESTIONS.md"):
        raw = worktrees.read_note(path, name)
        if raw is not None:
            out[name] = raw.decode("utf-8", "replace").encode("utf-8")
    handoff, handoff_raw, _problem = _handoff(
        worktrees.read_note(path, "HANDOFF_NOTE.json"), worker
    )
    if handoff_raw is not None:
        out["HANDOFF_NOTE.json"] = handoff_raw
    elif handoff is not None:
        out["HANDOFF_NOTE.json"] = jsonio.pretty(handoff)
    return out


def _change_lines(patch: patchparse.Patch) -> list[str]:
    out = []
    for f in patch.files:
        if f.status == "renamed":
            out.append(f"- renamed `{f.old_path}` -> `{f.new_path}`")
        elif f.status == "copied":
            out.append(f"- copied `{f.old_path}` -> `{f.new_path}`")
        else:
            path = f.new_path or f.old_path
            kind = {"mode": "mode changed"}.get(f.status, f.status)
            out.append(f"- {kind} `{path}`" + (" (binary)" if f.binary else ""))
    return out


def generated_summary(
    worker: WorkerPlan, status: str, reason: str, source: str, patch: patchparse.Patch
) -> str:
    lines = [
        f"# {worker_dirname(worker.id)}",
        "",
        f"Task: {worker.task or '(none)'}",
        "",
        f"Status: {status}",
    ]
    if reason:
        lines.append(f"Reason: {reason}")
    if source == "imported":
        note = "This summary was generated by the factory from the imported patch (no --summary given)."
    else:
        where = "the agent's worktree" if source == "agent" else "the worker's worktree"
        note = f"This summary was generated by the factory (collected from {where}): the worker left no `.factory/SUMMARY.md`."
    lines += ["", note, ""]
    changes = _change_lines(patch)
    lines.append(f"Files changed ({len(changes)}):" if changes else "No files changed.")
    lines += changes
    return "\n".join(lines) + "\n"


def existing_logs(run_dir: Path, worker: str) -> dict[str, bytes]:
    logs_dir = run_dir / worker_dirname(worker) / LOGS_DIR
    out: dict[str, bytes] = {}
    for entry in fsutil.walk(logs_dir):
        if not is_utf8(entry.rel):
            continue  # left where it is: bundle-validate refuses it (name-not-utf8)
        if entry.is_regular and entry.rel != "INDEX.json" and not entry.path.name.startswith("."):
            out[entry.rel] = entry.path.read_bytes()
    return out


def collect_worker(
    run_dir: Path,
    manifest: dict[str, Any],
    worker: WorkerPlan,
    path: Path,
    *,
    status: str,
    source: str,
    rc: int | None = None,
    timed_out: bool = False,
    reason: str = "",
) -> dict[str, Any]:
    """Write ``worker``'s complete bundle from its worktree at ``path``; return the facts."""
    st = worktrees.settings(manifest)
    commit = manifest["base_commit"]
    branch = worktrees.branch_name(st["branch_prefix"], manifest["run_id"], worker.id)
    try:
        diff = worktrees.current_diff(path, commit, st["holdout"])
        parsed = patchparse.parse(diff)
    except (FactoryError, patchparse.PatchParseError) as exc:
        diff, parsed = b"", patchparse.parse(b"")
        status, reason = "FAILED", f"the factory could not compute the worker's diff: {exc}"
    files = parsed.touched()
    notes: dict[str, str] = {}
    summary_raw = worktrees.read_note(path, "SUMMARY.md")
    suggestions_raw = worktrees.read_note(path, "SUGGESTIONS.md")
    handoff, handoff_raw, handoff_error = _handoff(
        worktrees.read_note(path, "HANDOFF_NOTE.json"), worker
    )
    notes["SUMMARY.md"] = "worker" if summary_raw is not None else "generated"
    notes["SUGGESTIONS.md"] = "worker" if suggestions_raw is not None else "generated"
    notes["HANDOFF_NOTE.json"] = (
        "invalid" if handoff_error else ("worker" if handoff is not None else "generated")
    )
    summary = (
        summary_raw.decode("utf-8", "replace")
        if summary_raw is not None
        else generated_summary(worker, status, reason, source, parsed)
    )
    suggestions = (
        suggestions_raw.decode("utf-8", "replace")
        if suggestions_raw is not None
        else ("# Suggestions\n\nNone left by the worker.\n")
    )
    diff_sha = hashlib.sha256(diff).hexdigest()
    log_lines = [
        f"collected worker {worker.id} of run {manifest['run_id']}",
        f"branch: {branch}",
        f"base commit: {commit}",
        f"status: {status}" + (f" ({reason})" if reason else ""),
        f"files changed: {len(files)}",
        f"DIFF.patch sha256: {diff_sha}",
        "notes: " + ", ".join(f"{k}={v}" for k, v in sorted(notes.items())),
    ]
    if handoff_error:
        log_lines.append(
            f"handoff problem: {handoff_error} (kept as written; bundle-validate will block)"
        )
    logs = existing_logs(run_dir, worker.id)
    logs["collect.log"] = ("\n".join(log_lines) + "\n").encode("utf-8")
    writer = GuardedWriter(run_dir)
    written = bundles.write_bundle(
        writer,
        manifest["run_id"],
        worker,
        status=status,
        patch=diff,
        files=files,
        dry_run=False,
        source=source,
        summary=summary,
        suggestions=suggestions,
        handoff=handoff,
        logs=logs,
        rc=rc,
        timed_out=timed_out,
        reason=reason,
    )
    if handoff_raw is not None:
        rel = f"{worker_dirname(worker.id)}/HANDOFF_NOTE.json"
        written[rel] = writer.write(rel, handoff_raw)
    bounds = Limits.from_settings(lambda dotted: run_setting(manifest, dotted))
    return {
        "worker": worker.id,
        "status": status,
        "reason": clip(reason, bounds.max_text_chars),
        "source": source,
        "files": files,
        # What the ledger and the output carry: the agent decides how many paths there are.
        "recorded": recorded_paths(files, bounds),
        "diff_sha256": diff_sha,
        "notes": notes,
        "handoff_error": clip(handoff_error, bounds.max_text_chars),
        "artifacts": dict(sorted(written.items())),
    }


def emit_collected(
    rec: Recorder, info: dict[str, Any], previous: str, stage: str = "bundle-collect"
) -> None:
    rec.emit(
        "bundle.collected",
        stage,
        f"{info['worker']}_worker",
        worker=info["worker"],
        status=info["status"],
        reason=info["reason"],
        source=info["source"],
        previous_status=previous,
        **info["recorded"],
        diff_sha256=info["diff_sha256"],
        notes=info["notes"],
        handoff_error=info["handoff_error"],
        artifacts=info["artifacts"],
    )


def locate(ctx: Context, manifest: dict[str, Any], workers: list[str]) -> dict[str, Path]:
    """Each worker's worktree, found by branch; one clear error if any is missing."""

    if manifest["dry_run"]:
        raise UsageError(f"run {manifest['run_id']} is a dry run: it has no worktrees to collect")
    st = worktrees.settings(manifest)
    listing = gitops.worktree_list(ctx.repo)
    found: dict[str, Path] = {}
    for w in workers:
        branch = worktrees.branch_name(st["branch_prefix"], manifest["run_id"], w)
        path = worktrees.find(ctx.repo, branch, listing)
        if path is None or not path.is_dir():
            raise UsageError(
                f"{worker_dirname(w)}: no worktree on branch {branch} (removed after integration or by `clean`?); "
                f"import a patch for worker {w} instead (`factory bundle-import`)"
            )
        found[w] = path
    return found


def cmd_collect(ctx: Context, run_id: str, workers: list[str] | None) -> Outcome:

    # The run lock: BLOCKED at once while a launch runs this run's agents.
    with RunHandle.open(ctx, validate_run_id(run_id), workers) as run:
        return _collect_locked(run)


def _collect_locked(run: RunHandle) -> Outcome:
    ctx, manifest, chosen, rec = run.ctx, run.manifest, run.workers, run.recorder
    run_id = run.run_id
    paths = locate(ctx, manifest, chosen)
    plans = plan_workers(manifest)
    run_dir = run.run_dir
    results: dict[str, Any] = {}
    messages = []
    restored: set[str] = set()
    for w in chosen:
        previous = runboard.shown_status(run_dir, w)
        restored.update(gitdir.check_and_restore(ctx.repo, rec, run_dir, "bundle-collect"))
        info = collect_worker(
            run_dir, manifest, plans[w], paths[w], status="DONE", source="collected"
        )
        emit_collected(rec, info, previous)
        results[w] = info
        if info["handoff_error"]:
            messages.append(
                f"factory: warning: {worker_dirname(w)}: {info['handoff_error']}; "
                "kept as written, bundle-validate will block until it is fixed and collected again"
            )
    if restored:
        messages.append(git_dir_warning(sorted(restored)))
    rows = runboard.refresh(ctx.repo, run_dir, manifest)
    data = {
        "run_id": run_id,
        "status": "PASS",
        "workers": {
            w: {
                **{
                    k: results[w][k]
                    for k in ("status", "reason", "diff_sha256", "notes", "handoff_error")
                },
                **results[w]["recorded"],
            }
            for w in chosen
        },
        "runboard": f"{ctx.layout.run_rel(run_id)}/RUNBOARD.md",
    }
    inputs = {"workers": chosen, "next": runboard.next_line(run_id, rows)}
    return Outcome(Status.PASS, data, messages=messages, view="collect", view_inputs=inputs)


def git_dir_warning(changed: list[str]) -> str:
    return (
        f"factory: warning: the repository's shared git folder changed while the run was open "
        f"({', '.join(f'.git/{rel}' for rel in changed)}): restored before collecting; "
        "bundle-validate will block every worker (git-dir-changed)"
    )


def wait_for_done(
    ctx: Context,
    rec: Recorder,
    manifest: dict[str, Any],
    pending: list[str],
    progress: Progress | None,
    poll_s: float = 1.0,
) -> None:
    """Poll the interactive workers' worktrees; collect each when it writes ``.factory/DONE``."""
    run_dir = ctx.layout.run_dir(manifest["run_id"])
    plans = plan_workers(manifest)
    left = list(pending)
    if progress:
        progress(
            f"factory: waiting for {', '.join(worker_dirname(w) for w in left)} "
            f"(each creates .factory/{worktrees.DONE_MARKER} in its worktree when done; Ctrl-C stops waiting)"
        )
    try:
        while left:
            paths = locate(ctx, manifest, left)
            for w in list(left):
                if worktrees.marked_done(paths[w]):
                    previous = runboard.shown_status(run_dir, w)
                    changed = gitdir.check_and_restore(ctx.repo, rec, run_dir, "launch")
                    if changed and progress:
                        progress(git_dir_warning(changed))
                    info = collect_worker(
                        run_dir, manifest, plans[w], paths[w], status="DONE", source="collected"
                    )
                    emit_collected(rec, info, previous, stage="launch")
                    runboard.refresh(ctx.repo, run_dir, manifest)
                    left.remove(w)
                    if progress:
                        progress(
                            f"factory: {worker_dirname(w)} marked done: collected, {len(info['files'])} file(s) changed"
                        )
            if left:
                sleep(poll_s)
    except KeyboardInterrupt:
        statuses = {w: runboard.shown_status(run_dir, w) for w in manifest["workers"]}
        rec.emit(
            "run.interrupted",
            "launch",
            workers=[],
            reason=f"SIGINT (Ctrl-C) while waiting for interactive workers {', '.join(left)}",
            statuses=statuses,
        )
        raise
