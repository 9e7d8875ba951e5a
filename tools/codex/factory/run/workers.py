"""Real workers for ``launch`` (without ``--dry-run``): worktrees, prompts, headless agents.

Per worker: a worktree on ``<prefix>/<RUN_ID>/<W>`` (see :mod:`worktrees`), ``PROMPT.md`` and
a PENDING ``STATUS.json`` in its bundle folder (the prompt is also copied to the worktree's
``.factory/PROMPT.md``), and ``RUNBOARD.md`` at the run root. Workers with an agent configured
(:mod:`agents`) are run in parallel, each bundle collected as soon as its agent exits; the
others are interactive and wait for ``bundle-collect``. Ctrl-C stops every agent's process
tree, collects what each left (STATUS INTERRUPTED), records ``run.interrupted`` and re-raises;
``launch --resume --run-id ID`` runs the workers without a finished bundle.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from tools.codex.factory.core.paths import LOGS_DIR, worker_dirname
from tools.codex.factory.errors import ArgumentError, BlockedError, FactoryError, UsageError
from tools.codex.factory.infra import gitops, jsonio, proc
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.ledger.store import Filter
from tools.codex.factory.records.plan import Plan
from tools.codex.factory.run import (
    agents,
    collect,
    gitdir,
    probes,
    runboard,
    stages,
    worktrees,
)
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.handle import RunHandle
from tools.codex.factory.run.stages import StageResult, run_own_stage

if TYPE_CHECKING:
    from tools.codex.factory.run.launch import LaunchRequest

Progress = Callable[[str], None]
FINISHED = ("DONE", "TIMEOUT", "CRASHED", "FAILED")  # INTERRUPTED and PENDING run again on --resume


def _config(ctx: Context) -> dict[str, Any]:
    return ctx.config.effective()


def check(ctx: Context, plan: Plan) -> None:
    """Everything that can be refused before a run is created: agents, branch prefix, folders."""
    cfg = _config(ctx)
    for w in plan.workers:
        spec = agents.resolve(w.as_dict(), cfg)
        if spec is not None:
            probes.require(probes.agent(spec))
        worktrees.branch_name(cfg["run"]["branch_prefix"], "r", w.id)
    worktrees.holdout_globs(list(cfg["security"]["holdout_paths"]))
    worktrees.check_root(ctx.repo, worktrees.root_dir(ctx.repo, cfg["paths"]["worktrees_dir"]))


def check_free(ctx: Context, run_id: str, plan: Plan) -> None:
    """Every branch and worktree folder the run would create is free (checked before the run
    folder or any ledger event exists): one line naming the first one that is taken."""
    cfg = _config(ctx)
    root = worktrees.root_dir(ctx.repo, cfg["paths"]["worktrees_dir"])
    heads = gitops.branches(ctx.repo)
    for w in plan.workers:
        branch = worktrees.branch_name(cfg["run"]["branch_prefix"], run_id, w.id)
        # git refuses a branch whose name is a folder of another (factory/x1 vs factory/x1/B) too.
        clash = sorted(
            h
            for h in heads
            if h == branch or branch.startswith(h + "/") or h.startswith(branch + "/")
        )
        if clash:
            what = (
                f"branch {branch} already exists"
                if clash[0] == branch
                else f"branch {clash[0]} exists and blocks branch {branch}"
            )
            raise BlockedError(
                f"{what} (left over from an earlier run?): clean up run {run_id} (`factory clean`) "
                "or choose another run ID"
            )
        path = worktrees.worktree_path(root, ctx.repo, run_id, w.id)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise BlockedError(
                f"worktree folder {path} of worker {w.id} exists and is not empty: "
                "remove it or choose another run ID"
            )


def _prompt(manifest: dict[str, Any], w: dict[str, Any], branch: str, headless: bool) -> str:
    cfg = manifest["config"]
    return runboard.render_prompt(
        run_id=manifest["run_id"],
        worker=w,
        branch=branch,
        base_ref=manifest["base_ref"],
        base_commit=manifest["base_commit"],
        holdout=list(cfg["security"]["holdout_paths"]),
        protected=list(cfg["security"]["protected_paths"]),
        headless=headless,
        crank=manifest.get("crank"),
    )


def prepare(
    ctx: Context,
    rec: Recorder,
    manifest: dict[str, Any],
    ids: list[str],
    guard: Callable[[str, str], None] | None = None,
) -> dict[str, str]:
    """Create the worktrees, prompts and PENDING statuses of ``ids``; return written artifacts.

    ``guard(worker, prompt)`` sees every prompt before it is written anywhere (a crank's
    holdout leak guard raises to stop the run)."""
    run_id, commit = manifest["run_id"], manifest["base_commit"]
    st = worktrees.settings(manifest)
    root = worktrees.root_dir(ctx.repo, st["worktrees_dir"])
    hidden = worktrees.hidden_paths(ctx.repo, commit, st["holdout"])
    run_dir = ctx.layout.run_dir(run_id)
    writer = GuardedWriter(run_dir)
    plans = collect.plan_workers(manifest)
    written: dict[str, str] = {}
    listing = gitops.worktree_list(ctx.repo)
    for w in manifest["plan"]["workers"]:
        wid = w["id"]
        if wid not in ids:
            continue
        branch = worktrees.branch_name(st["branch_prefix"], run_id, wid)
        path = worktrees.find(ctx.repo, branch, listing)
        if path is None:
            path = worktrees.worktree_path(root, ctx.repo, run_id, wid)
            worktrees.create(ctx.repo, path, branch, commit, hidden)
            # No path in the ledger: the worktree's folder depends on where the repository is.
            rec.emit(
                "worktree.created",
                "launch",
                f"{wid}_worker",
                worker=wid,
                branch=branch,
                hidden=len(hidden),
            )
        spec = agents.resolve(w, manifest["config"])
        prompt = _prompt(manifest, w, branch, spec is not None)
        if guard is not None:
            guard(wid, prompt)
        base = worker_dirname(wid)
        files = {
            f"{base}/{worktrees.PROMPT}": writer.write_text(f"{base}/{worktrees.PROMPT}", prompt)
        }
        GuardedWriter(path).write_text(f"{worktrees.NOTES_DIR}/{worktrees.PROMPT}", prompt)
        files[f"{base}/SCOPE_LOCK.json"] = writer.write(
            f"{base}/SCOPE_LOCK.json", jsonio.pretty(plans[wid].scope_lock())
        )
        if runboard.read_status(run_dir, wid) == "MISSING":
            how = (
                f"its agent ({spec.preset}) runs headless"
                if spec is not None
                else f"interactive: work in its worktree, then `factory bundle-collect --run-id {run_id} --workers {wid}`"
            )
            status_doc = {
                "schema_version": 1,
                "run_id": run_id,
                "worker": wid,
                "status": "PENDING",
                "dry_run": False,
                "source": "agent" if spec is not None else "collected",
                "rc": None,
                "timed_out": False,
                "reason": f"not collected yet; {how}",
            }
            files[f"{base}/STATUS.json"] = writer.write(
                f"{base}/STATUS.json", jsonio.pretty(status_doc)
            )
        rec.emit(
            "worker.prepared",
            "launch",
            f"{wid}_worker",
            worker=wid,
            branch=branch,
            mode="interactive" if spec is None else "headless",
            agent=None if spec is None else spec.preset,
            files=dict(sorted(files.items())),
        )
        written.update(files)
    runboard.refresh(ctx.repo, run_dir, manifest)
    return written


class _Live:
    """Shared state while agents run: one lock for the ledger, the runboard and progress."""

    def __init__(
        self, ctx: Context, rec: Recorder, manifest: dict[str, Any], progress: Progress | None
    ) -> None:
        self.ctx, self.rec, self.manifest, self.progress = ctx, rec, manifest, progress
        self.run_dir = ctx.layout.run_dir(manifest["run_id"])
        self.lock = threading.Lock()
        self.overrides: dict[str, str] = {}
        self.plans = collect.plan_workers(manifest)
        self.paths: dict[str, Path] = {}
        self.specs: dict[str, agents.AgentSpec] = {}

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    def refresh(self) -> None:
        runboard.refresh(self.ctx.repo, self.run_dir, self.manifest, dict(self.overrides))

    def on_start(self, job: agents.Job) -> None:
        spec = job.spec
        with self.lock:
            self.rec.emit(
                "worker.started",
                "launch",
                f"{job.worker}_worker",
                worker=job.worker,
                preset=spec.preset,
                source=spec.source,
                argv=list(spec.argv),
                prompt_via=spec.prompt_via,
                timeout_s=spec.timeout_s,
            )
            self.overrides[job.worker] = "RUNNING"
            self.refresh()
            self.say(
                f"factory: {worker_dirname(job.worker)} started ({spec.preset}, timeout {spec.timeout_s:g}s)"
            )

    def on_done(self, job: agents.Job, res: agents.JobResult) -> None:
        run_id = self.manifest["run_id"]
        spec = job.spec
        if res.interrupted:
            status = "INTERRUPTED"
            reason = (
                "interrupted (Ctrl-C) before its agent started"
                if not res.started
                else "interrupted (Ctrl-C): the agent's process tree was stopped"
            )
            reason += f"; run it again with `factory launch --resume --run-id {run_id}`"
        elif res.timed_out:
            status, reason = (
                "TIMEOUT",
                f"agent timed out after {spec.timeout_s:g}s (timeout_s of {spec.source})",
            )
        elif not res.started:
            status, reason = "CRASHED", res.error
        elif res.rc != 0:
            status, reason = "CRASHED", f"agent exited with rc={res.rc}"
        else:
            status, reason = "DONE", ""
        writer = GuardedWriter(self.run_dir)
        logs_rel = f"{worker_dirname(job.worker)}/{LOGS_DIR}"
        run_log = (
            "\n".join(
                [
                    f"worker {job.worker} agent: preset {spec.preset} ({spec.source})",
                    f"argv (template): {jsonio.canonical(list(spec.argv)).decode()}",
                    f"prompt via: {spec.prompt_via}",
                    f"timeout: {spec.timeout_s:g}s",
                    f"started: {str(res.started).lower()}",
                    f"rc: {res.rc}  timed_out: {str(res.timed_out).lower()}  interrupted: {str(res.interrupted).lower()}",
                    f"elapsed: {res.elapsed:.3f}s",
                ]
            )
            + "\n"
        )
        writer.write_text(f"{logs_rel}/agent.log", run_log)
        logs = {
            name: writer.record(f"{logs_rel}/{name}")
            for name in ("agent.stdout.log", "agent.stderr.log", "agent.log")
            if (self.run_dir / worker_dirname(job.worker) / LOGS_DIR / name).is_file()
        }
        with self.lock:  # other agents may still run: restore what they changed, first
            changed = gitdir.check_and_restore(self.ctx.repo, self.rec, self.run_dir, "launch")
            if changed:
                self.say(collect.git_dir_warning(changed))
        info = collect.collect_worker(
            self.run_dir,
            self.manifest,
            self.plans[job.worker],
            self.paths[job.worker],
            status=status,
            source="agent",
            rc=res.rc,
            timed_out=res.timed_out,
            reason=reason,
        )
        with self.lock:
            self.rec.emit(
                "worker.finished",
                "launch",
                f"{job.worker}_worker",
                worker=job.worker,
                status=info["status"],
                rc=res.rc,
                timed_out=res.timed_out,
                interrupted=res.interrupted,
                reason=info["reason"],
                logs=dict(sorted(logs.items())),
            )
            collect.emit_collected(self.rec, info, "PENDING", stage="launch")
            self.overrides.pop(job.worker, None)
            self.refresh()
            how = {
                "TIMEOUT": f"after {res.elapsed:.1f}s (limit {spec.timeout_s:g}s)",
                "INTERRUPTED": f"after {res.elapsed:.1f}s",
            }.get(info["status"], f"rc={res.rc} in {res.elapsed:.1f}s")
            self.say(
                f"factory: {worker_dirname(job.worker)} finished: {info['status']} {how}, "
                f"{len(info['files'])} file(s) changed"
            )


def _create_logs(writer: GuardedWriter, rels: tuple[str, str]) -> tuple[BinaryIO, BinaryIO]:
    """The agent's stdout and stderr logs, created fresh (a link planted there is removed)."""
    out = writer.create(rels[0])
    try:
        return out, writer.create(rels[1])
    except BaseException:
        out.close()
        raise


def execute(
    ctx: Context, rec: Recorder, manifest: dict[str, Any], ids: list[str], progress: Progress | None
) -> None:
    """Run the headless agents of ``ids`` in parallel; collect each bundle when its agent exits."""
    live = _Live(ctx, rec, manifest, progress)
    run_id = manifest["run_id"]
    jobs: list[agents.Job] = []
    listing = gitops.worktree_list(ctx.repo)
    st = worktrees.settings(manifest)
    # Agents know their trace: the run (and the crank) they work for.
    trace = {"FACTORY_RUN_ID": run_id}
    if manifest.get("crank"):
        trace["FACTORY_CRANK_ID"] = str(manifest["crank"]["crank_id"])
    env = gitops.sparse_env(proc.base_env(trace))
    for w in manifest["plan"]["workers"]:
        wid = w["id"]
        if wid not in ids:
            continue
        spec = agents.resolve(w, manifest["config"])
        if spec is None:
            continue
        path = worktrees.find(
            ctx.repo, worktrees.branch_name(st["branch_prefix"], run_id, wid), listing
        )
        if path is None:
            raise FactoryError(
                f"{worker_dirname(wid)}: its worktree disappeared before its agent could start"
            )
        prompt_file = path / worktrees.NOTES_DIR / worktrees.PROMPT
        values = {
            "prompt_file": str(prompt_file),
            "worktree": str(path),
            "worker_id": wid,
            "run_id": run_id,
            "base_ref": manifest["base_ref"],
            "base_commit": manifest["base_commit"],
            "python": sys.executable,
        }
        writer = GuardedWriter(live.run_dir)
        logs_rel = f"{worker_dirname(wid)}/{LOGS_DIR}"
        logs = (f"{logs_rel}/agent.stdout.log", f"{logs_rel}/agent.stderr.log")
        for rel in logs:
            writer.target(rel)  # a name refused by the checks is refused before any agent starts
        live.paths[wid], live.specs[wid] = path, spec
        jobs.append(
            agents.Job(
                worker=wid,
                spec=spec,
                argv=agents.expand(spec.argv, values),
                cwd=path,
                env=env,
                stdin=prompt_file.read_bytes() if spec.prompt_via == "stdin" else None,
                open_logs=functools.partial(_create_logs, writer, logs),
            )
        )
    if not jobs:
        return
    runner = agents.Runner(
        max_parallel=int(manifest["config"]["workers"]["max_parallel"]),
        clock=ctx.clock,
        on_start=live.on_start,
        on_done=live.on_done,
    )
    interrupted = runner.run(jobs)
    if interrupted:
        previous = agents.ignore_sigint()  # a second Ctrl-C must not cut the record short
        try:
            sts = {j.worker: runboard.shown_status(live.run_dir, j.worker) for j in jobs}
            stopped = sorted(w for w, s in sts.items() if s == "INTERRUPTED")
            with live.lock:
                rec.emit(
                    "run.interrupted",
                    "launch",
                    workers=stopped,
                    reason="SIGINT (Ctrl-C)",
                    statuses=dict(sorted(sts.items())),
                )
                stages.interrupted(rec, "launch")
                live.refresh()
        finally:
            agents.restore_sigint(previous)
        how = (
            f"factory crank --resume --crank-id {manifest['crank']['crank_id']}"
            if manifest.get("crank")
            else f"factory launch --resume --run-id {run_id}"
        )
        live.say(f"factory: interrupted: agents stopped, bundles collected; resume with `{how}`")
        raise KeyboardInterrupt
    if runner.errors:
        exc = runner.errors[0]
        if isinstance(exc, FactoryError):
            raise exc
        raise FactoryError(f"internal error while running agents: {type(exc).__name__}: {exc}")


def launch_real(
    ctx: Context,
    rec: Recorder,
    manifest: dict[str, Any],
    ids: list[str],
    progress: Progress | None,
    guard: Callable[[str, str], None] | None = None,
) -> dict[str, str]:
    """Prepare the worktrees and run the agents; the caller holds the run lock."""

    run_dir = ctx.layout.run_dir(manifest["run_id"])
    if not rec.ledger.select(Filter(run_id=rec.run_id, event_type=gitdir.RECORDED), limit=1):
        # What the shared git folder holds before any agent runs (checked at validation).
        gitdir.record(ctx.repo, rec, GuardedWriter(run_dir))
    try:
        written = prepare(ctx, rec, manifest, ids, guard)
    except KeyboardInterrupt:
        rec.emit(
            "run.interrupted",
            "launch",
            workers=[],
            reason="SIGINT (Ctrl-C) while preparing the worktrees",
            statuses=statuses(ctx, manifest),
        )
        stages.interrupted(rec, "launch")
        raise
    execute(ctx, rec, manifest, ids, progress)
    return written


def statuses(ctx: Context, manifest: dict[str, Any]) -> dict[str, str]:
    run_dir = ctx.layout.run_dir(manifest["run_id"])
    return {w: runboard.shown_status(run_dir, w) for w in manifest["workers"]}


def result_data(ctx: Context, manifest: dict[str, Any]) -> dict[str, Any]:
    sts = statuses(ctx, manifest)
    run_id = manifest["run_id"]
    return {
        "run_id": run_id,
        "base_commit": manifest["base_commit"],
        "workers": list(manifest["workers"]),
        "run_dir": ctx.layout.run_rel(run_id),
        "dry_run": False,
        "statuses": sts,
        "pending": sorted(w for w, s in sts.items() if s in ("PENDING", "MISSING")),
        "runboard": f"{ctx.layout.run_rel(run_id)}/RUNBOARD.md",
    }


def _refuse_passed(ctx: Context, run_id: str) -> None:
    """A run whose last verdict is PASS is done: resuming it would reopen a finished result."""
    ends = [e for e in ctx.ledger.run_events(run_id) if e.event_type == "run.finished"]
    if ends and ends[-1].payload.get("status") == "PASS":
        raise UsageError(
            f"run {run_id} already finished: status PASS; there is nothing to resume: land its "
            "result or launch a new run"
        )


def resume(ctx: Context, req: LaunchRequest) -> tuple[StageResult, Recorder]:
    """``launch --resume --run-id ID``: run the workers whose bundle is not finished."""

    if req.run_id is None:
        raise ArgumentError("resume", "give the run ID of the run to continue", label="resume")
    if req.dry_run:
        raise ArgumentError(
            "resume", "a dry run has no workers to resume: resume without dry run", label="resume"
        )
    if req.plan_file is not None:
        raise ArgumentError(
            "resume", "it uses the run's recorded plan: give no plan file", label="resume"
        )
    with RunHandle.open(ctx, req.run_id, req.workers) as run:
        manifest = run.manifest
        if manifest["dry_run"]:
            raise UsageError(f"run {req.run_id} is a dry run: there is nothing to resume")
        chosen = run.workers
        todo = [w for w in chosen if runboard.read_status(run.run_dir, w) not in FINISHED]
        done = [w for w in chosen if w not in todo]
        _refuse_passed(ctx, req.run_id)
        for w in manifest["plan"]["workers"]:
            if w["id"] in todo:
                spec = agents.resolve(w, manifest["config"])
                if spec is not None:
                    probes.require(probes.agent(spec))
        rec = run.recorder
        rec.emit("run.resumed", "launch", workers=todo, finished=done)

        def go() -> StageResult:
            if req.progress is not None and done:
                names = ", ".join(worker_dirname(w) for w in done)
                req.progress(f"factory: resume: {names} already finished")
            launch_real(ctx, rec, manifest, todo, req.progress)
            return StageResult("launch", "PASS", "", result_data(ctx, manifest))

        return run_own_stage(rec, "launch", go, None), rec
