"""Stage commands and ``oneshot``: each returns an Outcome for the CLI to print and exit on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.codex.factory.core import decisions, isolation
from tools.codex.factory.core.ids import validate_run_id
from tools.codex.factory.errors import BlockedError, FactoryError, LockHeldError, UsageError
from tools.codex.factory.infra.fsutil import read_file
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.records.status import Status
from tools.codex.factory.run import (
    clean,
    collect,
    integrate,
    preflight,
    probes,
    report,
    runboard,
    validate,
)
from tools.codex.factory.run import workers as real
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.handle import RunHandle, read_manifest, run_folder
from tools.codex.factory.run.launch import (
    LaunchRequest,
    check_request,
    launch,
    release_reservation,
    reserve_run_id,
    resolve_plan,
)
from tools.codex.factory.run.outcome import Outcome
from tools.codex.factory.run.stages import StageResult, ended, run_stage, skipped

STAGES = ("preflight", "launch", "bundle-validate", "integrate", "summary")
MAX_REPORT_BYTES = 64 * 1024 * 1024


def cmd_preflight(ctx: Context, base_ref: str | None, run_id: str | None) -> Outcome:
    ref = base_ref or ctx.config.get("run.base_ref")
    if run_id is not None:
        validate_run_id(run_id)
    result = preflight.preflight(ctx, None, ref, run_id)
    checks = result.data["checks"]
    return Outcome(
        Status(result.status), {"status": result.status, "checks": checks}, view="preflight"
    )


def cmd_launch(ctx: Context, req: LaunchRequest) -> Outcome:
    dirty = [] if req.resume else preflight.warnings([probes.working_tree(ctx).as_dict()])
    result, _rec = launch(ctx, req)
    d = result.data
    inputs: dict[str, Any] = {"verb": "resumed" if req.resume else "launched"}
    if not d.get("dry_run", True):
        inputs["runboard"] = _runboard(ctx, d["run_id"])
    messages = list(dirty)
    if req.dry_run and not req.no_agents and not req.resume:
        messages.append(
            "factory: dry run: no agent ran; every worker has an empty DONE bundle (to wait "
            "for imported patches instead, launch with --no-agents)"
        )
    data = {"status": "PASS", **d}
    return Outcome(Status.PASS, data, view="launch", view_inputs=inputs, messages=messages)


def _runboard(ctx: Context, run_id: str) -> dict[str, Any]:
    """What the terminal shows of RUNBOARD.md: where it is, its rows, its "next" line."""
    manifest, _sha = read_manifest(ctx, run_id)
    rows = runboard.rows(ctx.repo, ctx.layout.run_dir(run_id), manifest)
    return {
        "path": f"{ctx.layout.run_rel(run_id)}/RUNBOARD.md",
        "rows": rows,
        "next": runboard.next_line(run_id, rows),
    }


def _remove_worktrees(run: RunHandle, doc: dict[str, Any], keep: bool) -> list[str]:
    """After a PASS, a real run's worktrees and branches go (unless kept); messages for stderr.

    Runs after the verdict and never changes it: a removal that fails is recorded
    (``cleanup.failed``) and becomes one warning line; ``factory clean`` can retry.
    """
    manifest, run_id = run.manifest, run.run_id
    if manifest["dry_run"]:
        return []
    if doc["status"] != "PASS":
        return [
            f"factory: worktrees kept ({doc['status']}): fix the work there, then `factory "
            f"bundle-collect --run-id {run_id}`, `bundle-validate`, `integrate`; or remove them "
            f"with `factory clean --run-id {run_id}`"
        ]

    if keep:
        return [
            "factory: worktrees kept (--keep-worktrees); remove them with "
            f"`factory clean --run-id {run_id}`"
        ]
    rec = run.recorder
    try:
        return clean.remove_integrated(run.ctx, rec, manifest, run.workers)
    except (FactoryError, OSError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        rec.emit("cleanup.failed", "summary", kept=["worktree", "branch"], reason=why)
        return [
            f"factory: warning: could not remove the worktrees of {run_id}: {why}; kept them; the "
            f"verdict stands; retry with `factory clean --run-id {run_id}`"
        ]


def cmd_validate(ctx: Context, run_id: str, workers: list[str] | None) -> Outcome:
    with RunHandle.open(ctx, validate_run_id(run_id), workers, on_refused=_run_refused) as run:
        result = run_stage(run.recorder, "bundle-validate", lambda: validate.validate(run))
    if result.status == "FAIL" or "status" not in result.data:
        data = {"status": result.status, "reason": result.reason}
        return Outcome(Status(result.status), data, view="validation-stopped")
    return Outcome(Status(result.status), result.data, view="validation")


def _integrate_and_finish(run: RunHandle, before: list[StageResult]) -> dict[str, Any]:

    rec, writer = run.recorder, run.writer
    stages = list(before)
    holder: dict[str, Any] = {}

    def go() -> StageResult:
        res = integrate.integrate(run)
        holder.update(res.data)
        # A write the guarded writer refused during integration blocks the stage itself.
        status, reason = decisions.with_policy(res.status, res.reason, writer.violations)
        return StageResult(res.stage, status, reason, res.data)

    if any(s.status not in ("PASS",) for s in stages):
        stages.append(
            skipped(rec, "integrate", next(s.stage for s in stages if s.status != "PASS"))
        )
    else:
        stages.append(run_stage(rec, "integrate", go))
    return report.finalize(run, stages, holder)


def _refused(rec: Recorder, exc: BlockedError) -> None:
    """Integration refused at the door, on record. A held lock means another process is at
    work on the run; any other refusal (a manifest that is not the one launch wrote) ends the
    run as it stands: BLOCKED with the rule, so ``watch`` ends and replay sees why."""
    rec.emit("integrate.refused", "integrate", reason=str(exc))
    if isinstance(exc, LockHeldError):
        return
    result = StageResult("integrate", *decisions.integrate_refused(str(exc)))
    ended(rec, result)
    rec.run_finished([result.row()])


def _run_refused(rec: Recorder, exc: BlockedError) -> None:
    """Another stage refused at the door (bundle-validate, bundle-collect): a held lock is
    another process at work, nothing to record; any other refusal (the manifest is not the one
    launch wrote) means the run can never be integrated, and it ends on record as integrate's
    refusal does."""
    if not isinstance(exc, LockHeldError):
        _refused(rec, exc)


def cmd_integrate(
    ctx: Context, run_id: str, workers: list[str] | None, keep_worktrees: bool = False
) -> Outcome:
    with RunHandle.open(ctx, validate_run_id(run_id), workers, on_refused=_refused) as run:
        return _finish(run, [], keep_worktrees, validate_first=False)


def _finish(
    run: RunHandle,
    before: list[StageResult],
    keep_worktrees: bool,
    *,
    validate_first: bool,
) -> Outcome:
    """Under the run lock: (bundle-validate,) integrate, report, then the worktree clean-up.

    The outcome is the report's status: the clean-up after it only adds warning lines.
    """
    stages = list(before)
    if validate_first:
        stages.append(run_stage(run.recorder, "bundle-validate", lambda: validate.validate(run)))
    doc = _integrate_and_finish(run, stages)
    messages = _remove_worktrees(run, doc, keep_worktrees)
    out = _final_outcome(run.ctx, doc, run.manifest)
    out.messages.extend(messages)
    return out


def _final_outcome(ctx: Context, doc: dict[str, Any], manifest: dict[str, Any]) -> Outcome:
    run_id = doc["run_id"]
    head = ctx.ledger.read_head()
    data = {
        "run_id": run_id,
        "status": doc["status"],
        "stages": doc["stages"],
        # None when the report could not be written (the reasons say why).
        "report": (
            f"{ctx.layout.run_rel(run_id)}/Z_integrator/FINAL_REPORT.txt"
            if ctx.layout.report_path(run_id).is_file()
            else None
        ),
        "ledger_head": {"seq": head.seq, "hash": head.hash},
        "reasons": doc["reasons"],
        # What the verdict covers (a selection is never a full PASS) and what the checks said.
        "covers": doc["covers"],
        "left_out": doc["left_out"],
        "checks": doc["checks"],
    }
    # After culprit isolation: whom the failed checks are blamed on, as STATUS.json says.
    data.update({k: doc[k] for k in isolation.STATUS_KEYS if k in doc})
    command = report.land_command(run_id, doc["status"], manifest)
    if command:
        data["land"] = command
    return Outcome(Status(doc["status"]), data, view="run")


def cmd_oneshot(ctx: Context, req: LaunchRequest) -> Outcome:
    """preflight → launch → bundle-validate → integrate → summary; later stages SKIPPED on
    failure. A preflight WARN that concerns what is in the run (uncommitted work) is said on
    stderr first, whatever the outcome."""
    notes: list[str] = []
    out = _oneshot(ctx, req, notes)
    out.messages[:0] = notes
    return out


def _oneshot(ctx: Context, req: LaunchRequest, notes: list[str]) -> Outcome:
    check_request(req)
    plan = resolve_plan(
        ctx, req.plan_file, req.workers
    )  # a bad plan is a usage error before anything runs
    if not req.dry_run:
        real.check(ctx, plan)  # a missing agent CLI is a usage error before anything runs
    found = preflight.checks(ctx, req.base_ref, req.run_id)
    notes += preflight.warnings(found)
    planned: str | None = None
    if all(c["ok"] for c in found):
        # The ID is ours before anything is recorded under it. A taken worker branch is
        # refused here with one line, before any event or folder exists.
        planned = reserve_run_id(ctx, req)
    ledger_ok = next((c["ok"] for c in found if c["name"] == "ledger"), False)
    # A taken run ID belongs to another run: its preflight refusal is not that run's event.
    pinned_free = req.run_id is not None and not ctx.layout.run_dir(req.run_id).exists()
    own_id = planned or (req.run_id if pinned_free else "") or ""
    pre_rec = Recorder(ctx.ledger, own_id, req.kind) if ledger_ok else None
    if planned is None and not all(c["ok"] for c in found):

        def refused() -> StageResult:
            if pre_rec is not None:
                for c in found:
                    pre_rec.emit(
                        "preflight.check",
                        "preflight",
                        "operator",
                        name=c["name"],
                        ok=c["ok"],
                        detail=c["detail"],
                    )
            failed = [c for c in found if not c["ok"]]
            reason = "; ".join(f"{c['name']}: {c['detail']} (fix: {c['fix']})" for c in failed)
            return StageResult("preflight", "BLOCKED", reason, {"checks": found})

        pre = run_stage(pre_rec, "preflight", refused)
    else:
        pre = run_stage(
            pre_rec, "preflight", lambda: preflight.preflight(ctx, pre_rec, req.base_ref, None)
        )
        if pre.status != "PASS" and planned is not None:
            release_reservation(ctx, planned)
    if pre.status != "PASS":
        rows = [pre] + [
            StageResult(s, "SKIPPED", "skipped: preflight did not pass") for s in STAGES[1:]
        ]
        head = ctx.ledger.read_head() if ledger_ok else None
        status, reasons = decisions.final_verdict([s.row() for s in rows])
        data = {
            "run_id": planned or "",
            "status": status,
            "stages": [s.row() for s in rows],
            "report": None,
            "ledger_head": {"seq": head.seq, "hash": head.hash}
            if head
            else {"seq": None, "hash": None},
            "reasons": reasons,
        }
        _finish_early(pre_rec if own_id else None, pre.status, data)
        return Outcome(
            Status(pre.status), data, view="run-preflight", view_inputs={"checks": found}
        )
    stages: list[StageResult] = [pre]
    holder: dict[str, Any] = {}
    launch_finished: list[bool] = []

    def launch_failed(rec: Recorder, failed: StageResult) -> None:
        # launch failed after run.started: it records this oneshot's run.finished itself.
        rows = [pre, failed] + [
            StageResult(s, "SKIPPED", "skipped: launch did not pass") for s in STAGES[2:]
        ]
        rec.run_finished([r.row() for r in rows])
        launch_finished.append(True)

    def do_launch() -> StageResult:
        res, _ = launch(ctx, req, reserved_id=planned, finish=launch_failed)
        holder.update(res.data)
        return res

    lr = run_stage(None, "launch", do_launch)
    stages.append(lr)
    if lr.status != "PASS":
        stages += [StageResult(s, "SKIPPED", "skipped: launch did not pass") for s in STAGES[2:]]
        head = ctx.ledger.read_head()
        status, reasons = decisions.final_verdict([s.row() for s in stages])
        data = {
            "run_id": planned or "",
            "status": status,
            "stages": [s.row() for s in stages],
            "report": None,
            "ledger_head": {"seq": head.seq, "hash": head.hash},
            "reasons": reasons,
        }
        raced = "is taken" in lr.reason  # another process launched this run ID after preflight
        if pre_rec is not None and own_id and not raced and not launch_finished:
            # launch stopped before run.started: its stage still ends in the ledger (replay).
            ended(pre_rec, lr)
            _finish_early(pre_rec, lr.status, data)
        return Outcome(Status(lr.status), data, view="run")
    run_id = holder["run_id"]
    with RunHandle.open(ctx, run_id, on_refused=_refused) as run:
        if not req.dry_run and holder.get("pending"):
            if not req.wait:
                return _pending_outcome(ctx, run.recorder, run_id, stages, list(holder["pending"]))

            collect.wait_for_done(
                ctx, run.recorder, run.manifest, list(holder["pending"]), req.progress
            )
        return _finish(run, stages, req.keep_worktrees, validate_first=True)


def _finish_early(rec: Recorder | None, status: str, data: dict[str, Any]) -> None:
    """A oneshot that stops before integration still ends its run in the ledger (``watch``)."""
    if rec is not None:
        data["status"], data["reasons"] = rec.run_finished(data["stages"])
        head = rec.ledger.read_head()
        data["ledger_head"] = {"seq": head.seq, "hash": head.hash}


def _pending_outcome(
    ctx: Context, rec: Recorder, run_id: str, stages: list[StageResult], pending: list[str]
) -> Outcome:
    """Interactive workers still have to work: stop after launch, PENDING, exit 0."""
    why = f"waiting for interactive workers {', '.join(pending)}"
    rows = stages + [StageResult(s, "SKIPPED", why) for s in STAGES[2:]]
    rec.emit("run.pending", "launch", workers=pending, reason=why)
    head = ctx.ledger.read_head()
    nxt = (
        f"next: collect, validate, integrate: `factory bundle-collect --run-id {run_id}`, "
        f"`factory bundle-validate --run-id {run_id}`, `factory integrate --run-id {run_id}`"
    )
    status, reasons = decisions.final_verdict([s.row() for s in rows], pending=pending)
    data = {
        "run_id": run_id,
        "status": status,
        "stages": [s.row() for s in rows],
        "report": None,
        "ledger_head": {"seq": head.seq, "hash": head.hash},
        "reasons": reasons,
        "pending": pending,
        "runboard": f"{ctx.layout.run_rel(run_id)}/RUNBOARD.md",
        "next": nxt,
    }
    inputs = {"runboard": _runboard(ctx, run_id)}
    return Outcome(Status(status), data, view="run-pending", view_inputs=inputs)


def cmd_print_report(ctx: Context, run_id: str) -> Outcome:
    path = report.report_path(ctx, validate_run_id(run_id))
    shown = f"{ctx.layout.run_rel(run_id)}/Z_integrator/FINAL_REPORT.txt"
    try:
        raw = read_file(path, shown, limit=MAX_REPORT_BYTES)
    except UsageError as exc:  # a link or a FIFO planted at the report's name: refused
        raise BlockedError(str(exc)) from None
    text = raw.decode("utf-8", "replace")
    data = {"run_id": run_id, "path": _rel(ctx, path), "report": text}
    return Outcome(Status.PASS, data, view="report")


def cmd_open(ctx: Context, run_id: str, what: str, path: Path | None = None) -> Outcome:
    """Open a run's report, folder or ``path`` (a file of the run the caller found)."""
    if path is None:
        path = report.report_path(ctx, run_id) if what == "report" else run_folder(ctx, run_id)
    opened, how = report.open_path(path)
    data = {"run_id": run_id, "path": str(path), "opened": opened, "how": how}
    messages = [] if opened else [f"factory: not opening ({how}); path printed instead"]
    return Outcome(Status.PASS, data, messages=messages, view="open")


def _rel(ctx: Context, path: Path) -> str:
    return path.relative_to(ctx.repo).as_posix() if path.is_relative_to(ctx.repo) else str(path)
