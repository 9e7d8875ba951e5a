"""``launch``: allocate the run ID, create the run folder, manifest and one bundle per worker."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.codex.factory.core.ids import (
    make_run_id,
    run_id_prefix,
    select_workers,
    validate_kind,
    validate_run_id,
)
from tools.codex.factory.core.paths import ATTEST_DIR, LOCKS_DIR, MANIFEST, Z_DIR
from tools.codex.factory.errors import ArgumentError, BlockedError
from tools.codex.factory.infra import gitops, jsonio, schemas
from tools.codex.factory.infra.clock import format_ts
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.ledger.recorder import OPERATOR, Recorder
from tools.codex.factory.records.plan import Plan
from tools.codex.factory.run import bundles
from tools.codex.factory.run import workers as real
from tools.codex.factory.run.config import check_runs_dir
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.handle import MANIFEST_EVENT, run_lock
from tools.codex.factory.run.plans import default_plan, digest, load_plan
from tools.codex.factory.run.runref import LATEST
from tools.codex.factory.run.stages import StageResult, run_own_stage
from tools.codex.factory.version import __version__


@dataclass
class LaunchRequest:
    base_ref: str
    dry_run: bool
    run_id: str | None
    kind: str
    plan_file: Path | None
    workers: list[str] | None
    resume: bool = False  # launch --resume: run the workers of --run-id without a finished bundle
    no_agents: bool = False  # launch --no-agents: no agent; workers PENDING until imported
    wait: bool = False  # oneshot --wait: poll interactive workers until each marks itself done
    keep_worktrees: bool = False  # oneshot --keep-worktrees: keep them after a PASS
    progress: Callable[[str], None] | None = (
        None  # one line per worker event (stderr; None with --json)
    )
    base_ref_source: str | None = None  # where base_ref came from, for messages (default: config)
    crank: CrankLink | None = None  # the crank iteration this run is (its feedback, its guard)
    plan: Plan | None = None  # a plan already read and checked (a crank's, as it recorded it)


@dataclass(frozen=True)
class CrankLink:
    """What a crank gives the run of one of its iterations: its trace, the feedback of the
    iteration before (in every worker's prompt) and the holdout leak guard, which sees each
    prompt before it is written (it raises to stop the run; nothing is sent)."""

    crank_id: str
    iteration: int
    feedback: str
    guard: Callable[[str, str], None]
    by_worker: Mapping[str, str] | None = None  # a manifest crank's feedback, unit by unit


def parse_workers(text: str | None) -> list[str] | None:
    """The CLI's comma-separated selection, checked by the API's one rule (select_workers)."""
    if text is None:
        return None
    return select_workers([p.strip() for p in text.split(",") if p.strip()], shown=text)


def check_request(req: LaunchRequest) -> None:
    """The request's own inputs, whoever made it (CLI or API): the kind and a pinned run ID
    become folder names, the worker selection follows the one rule (UsageError otherwise)."""
    validate_kind(req.kind)
    if req.no_agents and req.resume:
        raise ArgumentError("resume", "a run without agents has nothing to resume", label="resume")
    if req.no_agents:
        req.dry_run = True  # no worktree, no agent: the bundles come from bundle-import
    if req.run_id == LATEST and not req.resume:
        raise ArgumentError(
            "run_id",
            "that name refers to the newest run, so it cannot be a new run's ID; leave the "
            "run ID out for a fresh one, or resume the newest run",
            label="run ID",
            value=LATEST,
        )
    if req.run_id is not None:
        validate_run_id(req.run_id)
    if req.workers is not None:
        req.workers = select_workers(req.workers)


def resolve_plan(ctx: Context, plan_file: Path | None, workers: list[str] | None) -> Plan:
    plan = (
        load_plan(plan_file)
        if plan_file is not None
        else default_plan(list(ctx.config.get("workers.ids")))
    )
    return plan.select(workers)


def highest_run_number(ctx: Context, prefix: str, since: str) -> int:
    """The highest run number taken with this prefix (by a run.started event or a folder).

    A run with this prefix started at or after the prefix's own second (``since``), so only
    the ledger's tail from that instant on needs reading.
    """
    taken = {
        int(r[len(prefix) :])
        for r in ctx.ledger.run_ids_since("run.started", since)
        if r.startswith(prefix) and r[len(prefix) :].isdigit()
    }
    # Stray folders (a run whose events were lost): the numbered names after the highest
    # recorded one are probed in turn, so the cost follows this second's runs, not the size
    # of the runs folder.
    n = max(taken, default=0)
    while n < 999 and (ctx.layout.runs_dir / f"{prefix}{n + 1:03d}").is_dir():
        n += 1
    return n


def next_run_id(ctx: Context, kind: str, commit: str) -> str:
    now = ctx.clock.now()
    prefix = run_id_prefix(kind, now, commit)
    floor = format_ts(now.replace(microsecond=0))
    return make_run_id(prefix, highest_run_number(ctx, prefix, floor))


def ensure_runs_dir(ctx: Context) -> None:
    """Create the runs folder so that it ignores itself (git status stays clean).

    A configured runs folder holding the user's tracked files is refused first: its
    ``.gitignore`` of ``*`` would hide their future files.
    """

    check_runs_dir(ctx.repo, ctx.config)
    runs = ctx.layout.runs_dir
    runs.mkdir(parents=True, exist_ok=True)
    ignore = runs / ".gitignore"
    if not ignore.exists() and not ignore.is_symlink():  # a link there is left alone
        GuardedWriter(runs).write(
            ".gitignore", b"# created by the factory: run artifacts are not source\n*\n"
        )


Finish = Callable[[Recorder, StageResult], None]


def _claim(ctx: Context, req: LaunchRequest, commit: str, plan: Plan) -> str:
    """Under the ledger lock: choose the run ID and create its (empty) folder atomically."""
    run_id = (
        validate_run_id(req.run_id)
        if req.run_id is not None
        else next_run_id(ctx, req.kind, commit)
    )
    run_dir = ctx.layout.run_dir(run_id)
    if not req.dry_run and not run_dir.exists():
        real.check_free(
            ctx, run_id, plan
        )  # a taken branch or worktree folder: refused before anything exists
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise BlockedError(
            f"run ID {run_id} is taken: {ctx.layout.run_rel(run_id)} exists; choose another run ID"
        ) from None
    return run_id


def reserve_run_id(ctx: Context, req: LaunchRequest) -> str:
    """Claim the run ID for a oneshot before its preflight events are recorded under it.

    Concurrent oneshots each get their own ID (the claim and the ledger scan share one
    lock), instead of computing the same next ID and refusing each other.
    """
    commit = gitops.resolve_commit(
        ctx.repo, req.base_ref, req.base_ref_source or ctx.source("run.base_ref")
    )
    plan = resolve_plan(ctx, req.plan_file, req.workers)
    ensure_runs_dir(ctx)
    with ctx.ledger.lock():
        return _claim(ctx, req, commit, plan)


def release_reservation(ctx: Context, run_id: str) -> None:
    """A claimed run that never started: remove its still-empty folder (nothing else)."""
    with contextlib.suppress(OSError):
        ctx.layout.run_dir(run_id).rmdir()


def launch(
    ctx: Context, req: LaunchRequest, reserved_id: str | None = None, finish: Finish | None = None
) -> tuple[StageResult, Recorder | None]:
    """Create the run; returns the stage result and the run's recorder.

    Without ``dry_run`` each worker gets a worktree and a prompt, headless agents run (see
    :mod:`workers`); ``resume`` continues an existing run instead of creating one.
    Every worker's branch and worktree folder is checked free before the run folder or any
    event exists. A failure after ``run.started`` records ``stage.finished`` and (through
    ``finish``, by default a run of this one stage) ``run.finished``, so ``watch`` ends, then
    re-raises (:func:`stages.run_own_stage`); Ctrl-C is recorded where it lands
    (``run.interrupted``), and the run can be resumed.
    """
    check_request(req)
    if req.resume:
        return real.resume(ctx, req)
    commit = gitops.resolve_commit(
        ctx.repo, req.base_ref, req.base_ref_source or ctx.source("run.base_ref")
    )
    plan = req.plan if req.plan is not None else resolve_plan(ctx, req.plan_file, req.workers)
    if not req.dry_run:
        real.check(
            ctx, plan
        )  # agents, branch prefix, worktrees folder: refused before anything exists
    ensure_runs_dir(ctx)
    ledger = ctx.ledger
    with ledger.lock():
        # A reserved ID was claimed by reserve_run_id: its (empty) folder exists and is ours.
        run_id = reserved_id if reserved_id is not None else _claim(ctx, req, commit, plan)
        rec = Recorder(ledger, run_id, req.kind)
        rec.emit(
            "run.started",
            "launch",
            OPERATOR,
            base_ref=req.base_ref,
            base_commit=commit,
            dry_run=req.dry_run,
            plan_hash=digest(plan),
            workers=plan.ids(),
        )
    with contextlib.ExitStack() as held:  # the run lock, until the stage's end is recorded
        result = run_own_stage(
            rec,
            "launch",
            lambda: _create(ctx, req, rec, held, run_id, commit, plan),
            lambda failed: (finish or _finish_alone)(rec, failed),
        )
    return result, rec


def _finish_alone(rec: Recorder, failed: StageResult) -> None:
    rec.run_finished([failed.row()])


def _create(
    ctx: Context,
    req: LaunchRequest,
    rec: Recorder,
    held: contextlib.ExitStack,
    run_id: str,
    commit: str,
    plan: Plan,
) -> StageResult:
    """Write the run folder under the run lock (no other stage can read a half-made run); the
    lock goes with ``held``, once the stage's end is recorded."""
    run_dir = ctx.layout.run_dir(run_id)
    writer = GuardedWriter(run_dir)
    for sub in (LOCKS_DIR, ATTEST_DIR, Z_DIR):
        writer.mkdir(sub)
    lock = run_lock(ctx, run_id)
    lock.acquire()
    held.callback(lock.close)
    held.callback(lock.release)
    return _create_locked(ctx, req, rec, writer, run_id, commit, plan)


def _create_locked(
    ctx: Context,
    req: LaunchRequest,
    rec: Recorder,
    writer: GuardedWriter,
    run_id: str,
    commit: str,
    plan: Plan,
) -> StageResult:
    manifest = build_manifest(ctx, run_id, req, commit, plan)
    manifest_sha = writer.write(MANIFEST, jsonio.pretty(manifest))
    # Every later stage refuses a manifest whose bytes differ from these.
    rec.emit(MANIFEST_EVENT, "launch", sha256=manifest_sha)
    written: dict[str, str] = {MANIFEST: manifest_sha}
    if not req.dry_run:
        guard = req.crank.guard if req.crank is not None else None
        written.update(real.launch_real(ctx, rec, manifest, plan.ids(), req.progress, guard))
        rec.emit("artifacts.written", "launch", files=dict(sorted(written.items())))
        return StageResult("launch", "PASS", "", real.result_data(ctx, manifest))
    for w in plan.workers:
        if req.no_agents:
            files = bundles.write_awaiting_bundle(writer, run_id, w)
        else:
            files = bundles.write_dry_run_bundle(writer, run_id, w, commit)
        extra = {"awaiting_import": True} if req.no_agents else {}
        written.update(files)
        rec.emit(
            "bundle.created",
            "launch",
            f"{w.id}_worker",
            worker=w.id,
            dry_run=True,
            files=dict(sorted(files.items())),
            **extra,
        )
    rec.emit("artifacts.written", "launch", files=dict(sorted(written.items())))
    data: dict[str, Any] = {
        "run_id": run_id,
        "base_commit": commit,
        "workers": plan.ids(),
        "run_dir": ctx.layout.run_rel(run_id),
    }
    if req.no_agents:
        data["pending"] = plan.ids()
        data["next"] = (
            f"next: import each worker's patch (`factory bundle-import --run-id {run_id} "
            f"--worker W --patch FILE`), then `factory bundle-validate --run-id {run_id}`, "
            f"`factory integrate --run-id {run_id}`, `factory land --run-id {run_id}`"
        )
    return StageResult("launch", "PASS", "", data)


def build_manifest(
    ctx: Context, run_id: str, req: LaunchRequest, commit: str, plan: Plan
) -> dict[str, Any]:
    manifest = _manifest(ctx, run_id, req, commit, plan)
    if req.crank is not None:
        manifest["crank"] = {
            "crank_id": req.crank.crank_id,
            "iteration": req.crank.iteration,
            "feedback": req.crank.feedback,
        }
        if req.crank.by_worker is not None:
            manifest["crank"]["feedback_by_worker"] = dict(sorted(req.crank.by_worker.items()))
    return manifest


def _effective(ctx: Context, req: LaunchRequest) -> dict[str, Any]:
    """The config the run is judged by, with the kind and base ref this launch used (an API
    call's arguments or a crank's are not in the config layers): the manifest never says two
    things about one setting."""
    config = ctx.config.effective()
    config["run"] = {**config["run"], "kind": req.kind, "base_ref": req.base_ref}
    return config


def _manifest(
    ctx: Context, run_id: str, req: LaunchRequest, commit: str, plan: Plan
) -> dict[str, Any]:
    return {
        "schema_version": schemas.SCHEMA_VERSION,
        "run_id": run_id,
        "kind": req.kind,
        "base_ref": req.base_ref,
        "base_commit": commit,
        "dry_run": req.dry_run,
        "created_utc": ctx.clock.now_ts(),
        "factory_version": __version__,
        "config": {"schema_version": schemas.SCHEMA_VERSION, **_effective(ctx, req)},
        "plan": plan.as_dict(),
        "plan_hash": digest(plan),
        "plan_source": "default" if plan.source == "default" else "file",
        "workers": plan.ids(),
        "scope_lock_hashes": {
            w.id: hashlib.sha256(jsonio.pretty(w.scope_lock())).hexdigest() for w in plan.workers
        },
    }
