"""Worktree cleanup: after a PASS integration, and ``clean`` for leftovers of crashed runs.

Leftovers are found through the ledger: every ``worktree.created`` event names a run, a
worker and a branch; whatever git still has for those branches (a registered worktree, or
just the branch) is a leftover. No work is lost: without ``--force`` nothing is removed whose
content is not exactly what the worker's bundle holds (see :func:`uncollected`), nor anything
of a run that has not finished. Only our own worktree registrations are ever removed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tools.codex.factory.core.ids import RUN_ID_RE, validate_run_id
from tools.codex.factory.core.paths import worker_dirname
from tools.codex.factory.errors import FactoryError, LockHeldError, UnreadableError
from tools.codex.factory.infra import gitops
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.ledger.store import Event, Filter
from tools.codex.factory.records.status import Status
from tools.codex.factory.run import collect, runboard, worktrees
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.handle import read_manifest, run_lock
from tools.codex.factory.run.outcome import Outcome


def leftover_worktrees(ctx: Context, *, sizes: bool = True) -> list[dict[str, Any]]:
    """Every factory worktree or branch still present in this repository, found via the ledger.

    Each entry: ``path`` (absolute, '' if only the branch is left), ``run_id``, ``worker``,
    ``branch``, ``bytes`` (disk use of the worktree folder), ``exists`` (folder present),
    ``registered`` (git knows the worktree), ``status`` (the worker's STATUS.json status,
    ``MISSING`` without one: ``PENDING`` means an interactive worker may still be at work there),
    ``run_finished`` (the run recorded ``run.finished``) and ``kept_tip`` (the tip recorded when
    a PASS removed the worktree and kept the branch, else None). Sorted by run ID, then worker.
    For ``doctor``; ``sizes=False`` leaves ``bytes`` 0 (removing them needs no walk of every
    file in every worktree).
    """
    listing = {e["branch"]: e for e in gitops.worktree_list(ctx.repo) if e["branch"]}
    heads = gitops.branches(ctx.repo)
    present = heads | {b.removeprefix("refs/heads/") for b in listing}
    created = _created_worktrees(ctx, present)
    out = []
    for (run_id, worker), (branch, finished, kept_tip) in sorted(created.items()):
        entry = listing.get(f"refs/heads/{branch}")
        run_dir = ctx.layout.run_dir(run_id)
        item: dict[str, Any] = {
            "run_id": run_id,
            "worker": worker,
            "branch": branch,
            "path": "",
            "exists": False,
            "registered": False,
            "bytes": 0,
            "status": runboard.shown_status(run_dir, worker),
            "run_finished": finished,
            "kept_tip": kept_tip,
            "checked_out": "",
        }
        if entry is not None and not worktrees.is_factory_checkout(
            ctx.repo, run_id, worker, Path(entry["path"])
        ):
            item["checked_out"] = entry["path"]  # the operator's checkout: never removed
        elif entry is not None:
            path = Path(entry["path"])
            exists = path.is_dir()
            item.update(
                path=str(path),
                exists=exists,
                registered=True,
                bytes=worktrees.disk_usage(path) if exists and sizes else 0,
            )
        out.append(item)
    return out


def _created_worktrees(
    ctx: Context, present: set[str]
) -> dict[tuple[str, str], tuple[str, bool, str | None]]:
    """(run ID, worker) -> (branch, run finished, kept tip) for each factory worktree whose branch is
    still present. A branch is ``<prefix>/<RUN_ID>/<W>``; it is the factory's when that run's
    ``worktree.created`` event names it. The cost follows the branches present, not the
    ledger's length: each candidate run's events are read through the run index."""
    candidates: dict[str, list[tuple[str, str]]] = {}
    for branch in sorted(present):
        parts = branch.rsplit("/", 2)
        if len(parts) == 3 and parts[0]:
            candidates.setdefault(parts[1], []).append((parts[2], branch))
    out: dict[tuple[str, str], tuple[str, bool, str | None]] = {}
    for run_id, pairs in sorted(candidates.items()):
        if not RUN_ID_RE.fullmatch(run_id):
            continue
        events = ctx.ledger.run_events(run_id)
        finished = any(e.event_type == "run.finished" for e in events)
        named = {
            (e.payload.get("worker"), e.payload.get("branch"))
            for e in events
            if e.event_type == "worktree.created"
        }
        kept = kept_tips(events)
        for worker, branch in pairs:
            if (worker, branch) in named:
                out[(run_id, worker)] = (branch, finished, kept.get((worker, branch)))
    return out


def kept_tips(events: list[Event]) -> dict[tuple[str, str], str | None]:
    """(worker, branch) -> the tip recorded when its worktree went and its branch was kept
    (the last such record wins; a later removal of the branch forgets it)."""
    out: dict[tuple[str, str], str | None] = {}
    for e in events:
        if e.event_type != "worktree.removed":
            continue
        key = (str(e.payload.get("worker")), str(e.payload.get("branch")))
        if e.payload.get("branch_kept") and isinstance(e.payload.get("tip"), str):
            out[key] = str(e.payload["tip"])
        else:
            out.pop(key, None)
    return out


def checked_out(item: dict[str, Any]) -> str:
    """Why the branch must stay even with --force ('' when it may go): a checkout of the
    operator's has it (deleting it would leave that HEAD on a branch that no longer exists)."""
    where = item.get("checked_out")
    if not where:
        return ""
    return (
        f"it is checked out at {where}, a checkout of yours: switch that checkout to another "
        "branch first"
    )


def moved_since_kept(ctx: Context, item: dict[str, Any]) -> str:
    """Why a kept branch must stay even with --force ('' when it may go): its tip is not the
    commit recorded when the factory kept it, so someone committed there since."""
    recorded = item.get("kept_tip")
    if recorded is None or item["exists"]:
        return ""
    tip = gitops.branch_tip(ctx.repo, item["branch"])
    if tip is None or tip == recorded:
        return ""
    return (
        f"branch {item['branch']} moved since the factory kept it (tip {tip[:12]}, recorded "
        f"{recorded[:12]}): it is no longer the factory's to delete; delete it yourself with "
        f"`git branch -D {item['branch']}` if you do not need it"
    )


def _run_info(ctx: Context, run_id: str) -> dict[str, Any]:
    """Base commit, kind and holdout globs of a run: its manifest, else its run.started event."""

    manifest: dict[str, Any] | None
    try:
        manifest, _sha = read_manifest(ctx, run_id)
    except FactoryError:
        manifest = None
    if manifest is not None:
        return {
            "commit": manifest["base_commit"],
            "kind": manifest["kind"],
            "holdout": worktrees.settings(manifest)["holdout"],
            "manifest": manifest,
            "plans": collect.plan_workers(manifest),
        }
    started = ctx.ledger.select(Filter(run_id=run_id, event_type="run.started"))
    payload = started[-1].payload if started else {}
    return {
        "commit": payload.get("base_commit"),
        "kind": payload.get("kind", "factory"),
        "holdout": list(ctx.config.get("security.holdout_paths")),
        "manifest": None,
        "plans": {},
    }


def _collected(ctx: Context, run_id: str, worker: str) -> Path | None:
    """The worker's bundle folder when it holds a collected (or imported) bundle."""
    run_dir = ctx.layout.run_dir(run_id)
    bundle = run_dir / worker_dirname(worker)
    if (
        runboard.read_status(run_dir, worker) in ("PENDING", "MISSING")
        or not (bundle / "DIFF.patch").is_file()
    ):
        return None
    return bundle


def uncollected(ctx: Context, item: dict[str, Any], info: dict[str, Any]) -> str:
    """Why removing ``item`` would lose work never collected ('' when it would not).

    Lost work is anything not exactly in the worker's bundle: a worktree whose current diff is
    not the collected DIFF.patch, notes in ``.factory/`` the bundle does not hold, or (the
    worktree folder gone) a branch with commits beyond the base whose diff is not DIFF.patch.
    """
    run_id, worker, branch = item["run_id"], item["worker"], item["branch"]
    commit = info["commit"]
    if commit is None:
        return "its run's base commit is unknown (no manifest, no run.started event)"
    try:
        bundle = _collected(ctx, run_id, worker)
    except UnreadableError as exc:  # whether it was collected is unknown: nothing may go
        return f"whether its work was collected is unknown: {exc}"
    collected = (bundle / "DIFF.patch").read_bytes() if bundle is not None else None
    if item["exists"]:
        path = Path(item["path"])
        current = worktrees.current_diff(path, commit, info["holdout"])
        now = hashlib.sha256(current).hexdigest()
        if current and collected is None:
            return f"its changes (diff sha256 {now[:12]}) were never collected"
        if current and collected is not None and hashlib.sha256(collected).hexdigest() != now:
            return f"its changes (diff sha256 {now[:12]}) differ from the collected DIFF.patch"
        plans = info["plans"]
        if worker in plans:
            for name, data in sorted(collect.notes_as_collected(path, plans[worker]).items()):
                kept = bundle / name if bundle is not None else None
                if kept is None or not kept.is_file() or kept.read_bytes() != data:
                    return f"its note {worktrees.NOTES_DIR}/{name} was never collected"
        return ""
    tip = gitops.branch_tip(ctx.repo, branch)
    if tip is None or tip == commit:
        return ""
    if collected is not None and gitops.commit_diff(ctx.repo, commit, tip) == collected:
        return ""
    return (
        f"its worktree folder is gone, but branch {branch} has commits beyond the base "
        f"(tip {tip[:12]}) that were never collected"
    )


def keep_reason(ctx: Context, item: dict[str, Any], info: dict[str, Any]) -> str:
    """Why ``item`` must stay without --force ('' when it can go): uncollected work, or a run
    that has not finished (its workers may be at work: what doctor calls "in use")."""
    why = uncollected(ctx, item, info)
    if why:
        return why
    if not item["run_finished"]:
        return (
            f"run {item['run_id']} has not finished (no run.finished; status {item['status']}): "
            "its worker may still be at work there"
        )
    return ""


def _remove(ctx: Context, rec: Recorder, item: dict[str, Any], reason: str, forced: bool) -> str:
    """Remove one worktree and branch; '' when done, else one line saying what was kept and why.

    A failure is recorded (``cleanup.failed``) and never raised: what was decided before
    (a PASS verdict) stands, and ``factory clean`` can retry.
    """
    path = Path(item["path"]) if item["path"] else None
    stage = {"clean": "clean", "landed": "land"}.get(reason, "summary")
    actor = f"{item['worker']}_worker"
    try:
        if item.get("kept_tip") and not item["registered"]:
            _delete_kept(ctx, item)
        else:
            worktrees.remove(ctx.repo, path if item["registered"] else None, item["branch"])
    except (FactoryError, OSError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kept = []
        if path is not None and path.exists():
            kept.append("worktree")
        if gitops.branch_exists(ctx.repo, item["branch"]):
            kept.append("branch")
        rec.emit(
            "cleanup.failed",
            stage,
            actor,
            worker=item["worker"],
            branch=item["branch"],
            kept=kept,
            reason=why,
        )
        what = (
            " and ".join(
                ([f"worktree {path}"] if "worktree" in kept else [])
                + ([f"branch {item['branch']}"] if "branch" in kept else [])
            )
            or "nothing"
        )
        return (
            f"could not remove the worktree of {worker_dirname(item['worker'])}: {why}; kept {what}"
        )
    rec.emit(
        "worktree.removed",
        stage,
        actor,
        worker=item["worker"],
        branch=item["branch"],
        reason=reason,
        forced=forced,
    )
    return ""


def _delete_kept(ctx: Context, item: dict[str, Any]) -> None:
    """Delete a kept branch only while its tip is the recorded one (never a branch moved since)."""
    branch, tip = item["branch"], str(item["kept_tip"])
    if not gitops.delete_branch_at(ctx.repo, branch, tip) and gitops.branch_exists(
        ctx.repo, branch
    ):
        raise FactoryError(f"branch {branch} is no longer at the recorded tip {tip[:12]}")


def _retire(ctx: Context, rec: Recorder, item: dict[str, Any]) -> str:
    """After a PASS: remove the worktree, keep the branch (its commits stay until the result is
    landed or the run cleaned) and record its tip; '' when done, else a line saying what failed."""
    path = Path(item["path"]) if item["path"] else None
    actor = f"{item['worker']}_worker"
    try:
        if path is not None and item["registered"]:
            worktrees.remove_worktree(ctx.repo, path)
    except (FactoryError, OSError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kept = ["worktree", "branch"] if path is not None and path.exists() else ["branch"]
        rec.emit(
            "cleanup.failed", "summary", actor, worker=item["worker"], branch=item["branch"],
            kept=kept, reason=why,
        )  # fmt: skip
        return f"could not remove the worktree of {worker_dirname(item['worker'])}: {why}"
    tip = gitops.branch_tip(ctx.repo, item["branch"])
    extra: dict[str, Any] = {"branch_kept": True, "tip": tip} if tip is not None else {}
    rec.emit(
        "worktree.removed", "summary", actor, worker=item["worker"], branch=item["branch"],
        reason="integrated", forced=False, **extra,
    )  # fmt: skip
    return ""


def remove_kept_branches(
    ctx: Context, rec: Recorder, manifest: dict[str, Any], reason: str
) -> list[str]:
    """The run's worker branches kept after its PASS, deleted (``land``): each only while its
    tip is the recorded one; a branch moved since is kept and named. Messages for stderr."""
    run_id = manifest["run_id"]
    items = [i for i in leftover_worktrees(ctx, sizes=False) if i["run_id"] == run_id]
    messages: list[str] = []
    removed = 0
    for item in items:
        why = (
            checked_out(item)
            or moved_since_kept(ctx, item)
            or ("" if item.get("kept_tip") and not item["exists"] else "it was not kept by a PASS")
        )
        if why:
            messages.append(f"factory: kept branch {item['branch']}: {why}")
            continue
        failed = _remove(ctx, rec, item, reason, False)
        if failed:
            messages.append(
                f"factory: warning: {failed}; the result is landed all the same; "
                f"retry with `factory clean --run-id {run_id}`"
            )
            continue
        removed += 1
    if removed:
        messages.append(f"factory: removed {removed} worker branch(es) of {run_id}")
    if ctx.layout.run_dir(run_id).is_dir():
        runboard.refresh(ctx.repo, ctx.layout.run_dir(run_id), manifest)
    return messages


def remove_integrated(
    ctx: Context, rec: Recorder, manifest: dict[str, Any], workers: list[str]
) -> list[str]:
    """Remove the integrated workers' worktrees, keep their branches (until ``land`` or
    ``clean``); keep any worktree with uncollected work.

    Never raises for a removal that fails: it is recorded and becomes a warning line.
    """
    run_id = manifest["run_id"]
    items = [
        i
        for i in leftover_worktrees(ctx, sizes=False)
        if i["run_id"] == run_id and i["worker"] in workers
    ]
    info = _run_info(ctx, run_id)
    messages: list[str] = []
    removed = 0
    for item in items:
        if not item["registered"] and item.get("kept_tip"):
            continue  # kept by an earlier PASS of this run: nothing left to retire
        why = uncollected(ctx, item, info)
        if why:
            rec.emit(
                "clean.refused",
                "summary",
                f"{item['worker']}_worker",
                worker=item["worker"],
                branch=item["branch"],
                reason=why,
            )
            where = item["path"] or f"branch {item['branch']}"
            messages.append(
                f"factory: kept the worktree of {worker_dirname(item['worker'])} ({where}): {why}; "
                f"collect it again or run `factory clean --run-id {run_id} --force`"
            )
            continue
        failed = _retire(ctx, rec, item)
        if failed:
            messages.append(
                f"factory: warning: {failed}; the verdict stands; "
                f"retry with `factory clean --run-id {run_id}`"
            )
            continue
        removed += 1
    if removed:
        messages.append(
            f"factory: removed {removed} worktree(s) of {run_id} (use --keep-worktrees to keep "
            f"them); their branches stay until `factory land --run-id {run_id}` or "
            f"`factory clean --run-id {run_id}`"
        )
    if ctx.layout.run_dir(run_id).is_dir():
        runboard.refresh(ctx.repo, ctx.layout.run_dir(run_id), manifest)
    return messages


def _refusal(rid: str, item: dict[str, Any], where: str, why: str, moved: bool) -> str:
    """The one line (stderr) saying what ``clean`` kept and how to go on."""
    head = (
        f"factory: refused {where}: worktree of {worker_dirname(item['worker'])} (run {rid}): {why}"
    )
    if moved:
        return head
    advice = (
        "finish the run (collect, validate, integrate) first"
        if why.startswith("run ")
        else f"run `factory bundle-collect --run-id {rid} --workers {item['worker']}` first"
    )
    discard = "discard it" if not why.startswith("run ") else "remove it anyway"
    return f"{head}; {advice}, or pass --force to {discard}"


def cmd_clean(ctx: Context, run_id: str | None, force: bool) -> Outcome:
    """``clean [--run-id ID] [--force]``: remove leftover worktrees and branches of factory runs.

    Without ``--force`` a worktree or branch is removed only when nothing is lost: its content
    is exactly what its bundle holds and its run has finished (see :func:`keep_reason`);
    anything else is refused (exit 3), one line each, naming the worker and why.
    """

    if run_id is not None:
        validate_run_id(run_id)
    items = [
        i for i in leftover_worktrees(ctx, sizes=False) if run_id is None or i["run_id"] == run_id
    ]
    removed: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    busy: list[str] = []
    messages: list[str] = []
    for rid in sorted({i["run_id"] for i in items}):
        info = _run_info(ctx, rid)
        rec = Recorder(ctx.ledger, rid, info["kind"])
        lock = run_lock(ctx, rid) if ctx.layout.run_dir(rid).is_dir() else None
        if lock is not None:
            try:
                lock.acquire()
            except LockHeldError as exc:
                busy.append(rid)
                messages.append(f"factory: {exc}: its worktrees were left alone; clean again later")
                lock.close()
                continue
        try:
            for item in (i for i in items if i["run_id"] == rid):
                moved = checked_out(item) or moved_since_kept(ctx, item)
                why = moved or keep_reason(ctx, item, info)
                where = item["path"] or f"branch {item['branch']}"
                if moved or (why and not force):
                    rec.emit(
                        "clean.refused",
                        "clean",
                        f"{item['worker']}_worker",
                        worker=item["worker"],
                        branch=item["branch"],
                        reason=why,
                    )
                    refused.append({**item, "reason": why})
                    messages.append(_refusal(rid, item, where, why, bool(moved)))
                    continue
                problem = _remove(ctx, rec, item, "clean", bool(why))
                if problem:
                    failed.append({**item, "reason": problem})
                    messages.append(f"factory: {problem}")
                    continue
                removed.append({**item, "forced": bool(why), "forced_reason": why})
            if info["manifest"] is not None:
                runboard.refresh(ctx.repo, ctx.layout.run_dir(rid), info["manifest"])
        finally:
            if lock is not None:
                lock.release()
                lock.close()
    # A busy run is refused like a second stage of it (BLOCKED), never passed over in silence.
    status = Status.FAIL if failed else Status.BLOCKED if refused or busy else Status.PASS
    data = {
        "status": status.value,
        "removed": removed,
        "refused": refused,
        "failed": failed,
        "busy": busy,
    }
    inputs = {"found": bool(items), "run_id": run_id}
    return Outcome(status, data, messages=messages, view="clean", view_inputs=inputs)
