"""Worktree cleanup: after a PASS integration, and ``clean`` for leftovers of crashed runs.

Leftovers are found through the ledger: every ``worktree.created`` event names a run, a
worker and a branch; whatever git still has for those branches (a registered worktree, or
just the branch) is a leftover. No work is lost: a worktree whose current diff differs from
the DIFF.patch collected in its bundle holds changes never collected, and is refused unless
``--force``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tools.codex.factory import gitops, runboard, worktrees
from tools.codex.factory.context import Context
from tools.codex.factory.errors import FactoryError, LockHeldError
from tools.codex.factory.events import Recorder
from tools.codex.factory.ids import validate_run_id
from tools.codex.factory.ledger import Filter
from tools.codex.factory.paths import worker_dirname
from tools.codex.factory.status import Outcome, Status


def leftover_worktrees(ctx: Context) -> list[dict[str, Any]]:
    """Every factory worktree or branch still present in this repository, found via the ledger.

    Each entry: ``path`` (absolute, '' if only the branch is left), ``run_id``, ``worker``,
    ``branch``, ``bytes`` (disk use of the worktree folder), ``exists`` (folder present),
    ``registered`` (git knows the worktree), ``status`` (the worker's STATUS.json status,
    ``MISSING`` without one: ``PENDING`` means an interactive worker may still be at work there)
    and ``run_finished`` (the run recorded ``run.finished``). Sorted by run ID, then worker.
    For ``doctor``.
    """
    created: dict[tuple[str, str], str] = {}
    for ev in ctx.ledger.select(Filter(event_type="worktree.created")):
        worker, branch = ev.payload.get("worker"), ev.payload.get("branch")
        if isinstance(worker, str) and isinstance(branch, str):
            created[(ev.run_id, worker)] = branch
    if not created:
        return []
    listing = {e["branch"]: e for e in gitops.worktree_list(ctx.repo) if e["branch"]}
    heads = gitops.branches(ctx.repo)
    out = []
    finished: set[str] | None = None
    for (run_id, worker), branch in sorted(created.items()):
        entry = listing.get(f"refs/heads/{branch}")
        if entry is None and branch not in heads:
            continue
        if finished is None:
            finished = {e.run_id for e in ctx.ledger.select(Filter(event_type="run.finished"))}
        run_dir = ctx.layout.run_dir(run_id)
        item: dict[str, Any] = {"run_id": run_id, "worker": worker, "branch": branch, "path": "", "exists": False,
                                "registered": False, "bytes": 0, "status": runboard.read_status(run_dir, worker),
                                "run_finished": run_id in finished}
        if entry is not None:
            path = Path(entry["path"])
            exists = path.is_dir()
            item.update(path=str(path), exists=exists, registered=True,
                        bytes=worktrees.disk_usage(path) if exists else 0)
        out.append(item)
    return out


def _run_info(ctx: Context, run_id: str) -> dict[str, Any]:
    """Base commit, kind and holdout globs of a run: its manifest, else its run.started event."""
    from tools.codex.factory.launch import read_manifest

    try:
        manifest = read_manifest(ctx, run_id)
    except FactoryError:
        manifest = None
    if manifest is not None:
        return {"commit": manifest["base_commit"], "kind": manifest["kind"],
                "holdout": worktrees.settings(manifest)["holdout"], "manifest": manifest}
    started = ctx.ledger.select(Filter(run_id=run_id, event_type="run.started"))
    payload = started[-1].payload if started else {}
    return {"commit": payload.get("base_commit"), "kind": payload.get("kind", "factory"),
            "holdout": list(ctx.config.get("security.holdout_paths")), "manifest": None}


def uncollected(ctx: Context, run_id: str, worker: str, path: Path, commit: str | None,
                holdout: list[str]) -> tuple[bool, str]:
    """(True, why) when the worktree holds changes its bundle's DIFF.patch does not have."""
    if commit is None:
        return True, "its run's base commit is unknown"
    current = worktrees.current_diff(path, commit, holdout)
    if not current:
        return False, ""
    bundle = ctx.layout.run_dir(run_id) / worker_dirname(worker) / "DIFF.patch"
    collected = bundle.read_bytes() if bundle.is_file() and runboard.read_status(ctx.layout.run_dir(run_id), worker) != "PENDING" else None
    now = hashlib.sha256(current).hexdigest()
    if collected is None:
        return True, f"changes (diff sha256 {now[:12]}) were never collected"
    if hashlib.sha256(collected).hexdigest() != now:
        return True, f"changes (diff sha256 {now[:12]}) differ from the collected DIFF.patch"
    return False, ""


def _remove(ctx: Context, rec: Recorder, item: dict[str, Any], reason: str, forced: bool) -> None:
    path = Path(item["path"]) if item["path"] else None
    worktrees.remove(ctx.repo, path if item["registered"] else None, item["branch"])
    rec.emit("worktree.removed", "clean" if reason == "clean" else "summary", f"{item['worker']}_worker",
             worker=item["worker"], branch=item["branch"], reason=reason, forced=forced)


def remove_integrated(ctx: Context, rec: Recorder, manifest: dict[str, Any], workers: list[str]) -> list[str]:
    """Remove the integrated workers' worktrees and branches; keep any with uncollected work."""
    run_id = manifest["run_id"]
    items = [i for i in leftover_worktrees(ctx) if i["run_id"] == run_id and i["worker"] in workers]
    holdout = worktrees.settings(manifest)["holdout"]
    messages: list[str] = []
    removed = 0
    for item in items:
        if item["exists"]:
            dirty, why = uncollected(ctx, run_id, item["worker"], Path(item["path"]), manifest["base_commit"], holdout)
            if dirty:
                rec.emit("clean.refused", "summary", f"{item['worker']}_worker", worker=item["worker"],
                         branch=item["branch"], reason=why)
                messages.append(f"factory: kept the worktree of {worker_dirname(item['worker'])} ({item['path']}): {why}; "
                                f"collect it again or run `factory clean --run-id {run_id} --force`")
                continue
        _remove(ctx, rec, item, "integrated", False)
        removed += 1
    if removed:
        messages.append(f"factory: removed {removed} worktree(s) and branch(es) of {run_id} (use --keep-worktrees to keep them)")
    if ctx.layout.run_dir(run_id).is_dir():
        runboard.refresh(ctx.repo, ctx.layout.run_dir(run_id), manifest)
    return messages


def cmd_clean(ctx: Context, run_id: str | None, force: bool) -> Outcome:
    """``clean [--run-id ID] [--force]``: remove leftover worktrees and branches of factory runs."""
    from tools.codex.factory.pipeline import run_lock

    if run_id is not None:
        validate_run_id(run_id)
    items = [i for i in leftover_worktrees(ctx) if run_id is None or i["run_id"] == run_id]
    removed: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    busy: list[str] = []
    messages: list[str] = []
    for rid in sorted({i["run_id"] for i in items}):
        info = _run_info(ctx, rid)
        rec = Recorder(ctx.ledger, rid, info["kind"])
        lock = run_lock(ctx, rid) if ctx.layout.run_dir(rid).is_dir() else None
        if lock is not None:
            try:
                lock.acquire()
            except LockHeldError:
                busy.append(rid)
                messages.append(f"factory: run {rid} is busy (a launch or integrate holds its lock): skipped")
                lock.close()
                continue
        try:
            for item in (i for i in items if i["run_id"] == rid):
                dirty, why = False, ""
                if item["exists"]:
                    dirty, why = uncollected(ctx, rid, item["worker"], Path(item["path"]), info["commit"], info["holdout"])
                if dirty and not force:
                    rec.emit("clean.refused", "clean", f"{item['worker']}_worker", worker=item["worker"],
                             branch=item["branch"], reason=why)
                    refused.append({**item, "reason": why})
                    messages.append(
                        f"factory: refused {item['path']}: worktree of {worker_dirname(item['worker'])} (run {rid}): {why}; "
                        f"run `factory bundle-collect --run-id {rid} --workers {item['worker']}` first, or pass --force to discard them"
                    )
                    continue
                _remove(ctx, rec, item, "clean", dirty)
                removed.append({**item, "forced": dirty})
            if info["manifest"] is not None:
                runboard.refresh(ctx.repo, ctx.layout.run_dir(rid), info["manifest"])
        finally:
            if lock is not None:
                lock.release()
                lock.close()
    status = Status.BLOCKED if refused else Status.PASS
    data = {"status": status.value, "removed": removed, "refused": refused, "busy": busy}
    lines = []
    for r in removed:
        what = r["path"] or f"branch {r['branch']}"
        lines.append(f"removed {what} ({worker_dirname(r['worker'])} of {r['run_id']}, {r['bytes']} bytes)"
                     + (" [forced: uncollected changes discarded]" if r["forced"] else ""))
    for r in refused:
        lines.append(f"refused {r['path']} ({worker_dirname(r['worker'])} of {r['run_id']}): {r['reason']}")
    if not items:
        lines.append("nothing to clean: no leftover factory worktrees or branches" + (f" for {run_id}" if run_id else ""))
    return Outcome(status, data, "\n".join(lines), messages)
