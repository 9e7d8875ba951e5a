"""What the crank and scenario commands hand back: a status, JSON data and the view the CLI
words it with."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from tools.codex.factory.core import convergence
from tools.codex.factory.core import gates as core_gates
from tools.codex.factory.core.ids import validate_run_id
from tools.codex.factory.core.paths import LOGS_DIR
from tools.codex.factory.core.text import clip, one_line
from tools.codex.factory.errors import UsageError
from tools.codex.factory.infra import gitops, jsonio, schemas
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.loop import crank as crank_mod
from tools.codex.factory.loop import evaluate, holdout, land, pr
from tools.codex.factory.loop.gates import GateState
from tools.codex.factory.records.crank import Iteration
from tools.codex.factory.records.status import Status
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.handle import RunHandle
from tools.codex.factory.run.outcome import Outcome
from tools.codex.factory.run.runref import LATEST, nearest, resolve

SCENARIOS_JSON = "SCENARIOS.json"
EXIT_STATUS = {"CONVERGED": Status.PASS}  # every other decision is BLOCKED (exit 3)


# -- crank -----------------------------------------------------------------------------------------
def cmd_crank(ctx: Context, req: crank_mod.CrankRequest) -> Outcome:
    res = crank_mod.crank(ctx, req)
    d = res.decision
    data = {
        "crank_id": res.crank_id,
        "decision": d["decision"],
        "kind": d["kind"],
        "reason": d["reason"],
        "evidence": d["evidence"],
        "advice": d["advice"],
        "regressions": d["regressions"],
        "trajectory": [_row(it) for it in res.trajectory],
        "branch": res.branch,
        "tip": res.tip,
        "runs": res.runs,
        "report": res.report,
        "feedback": res.feedback,
    }
    status = EXIT_STATUS.get(d["decision"], Status.BLOCKED)
    out = Outcome(status, data, view="crank")
    if req.pr and d["decision"] == "CONVERGED" and res.report:
        title = f"factory crank {res.crank_id}: {convergence.percent(res.trajectory[-1]['satisfaction'])}"
        out.messages += pr.open_pr(ctx.repo, res.branch, res.tip, title, ctx.repo / res.report)
    elif req.pr:
        out.messages.append(
            f"factory: no pull request: the crank did not converge ({d['decision']})"
        )
    return out


def _row(it: Iteration) -> dict[str, Any]:
    return {
        "iteration": it["iteration"],
        "run_id": it["run_id"],
        "gate1": it["gate1"],
        "satisfaction": f"{it['satisfaction']['passed']}/{it['satisfaction']['total']}",
        "percent": convergence.percent(it["satisfaction"]),
        "advisory": it["advisory"],
        "failing": it["failing"],
    }


def cmd_crank_status(ctx: Context, crank_id: str | None) -> Outcome:
    """The crank's state from the ledger alone: iteration, trajectory, last decision."""
    if crank_id is None:
        try:
            crank_id = resolve(ctx, LATEST, crank=True)
        except UsageError:
            raise UsageError("no crank in the ledger yet: start one with `factory crank`") from None
    crank_id = validate_run_id(crank_id, "crank ID")
    events = ctx.ledger.run_events(crank_id)
    if not any(e.event_type == "crank.started" for e in events):
        raise UsageError(f"no crank {crank_id} in the ledger{nearest(ctx, crank_id)}")
    decided = [e.payload for e in events if e.event_type == "iteration.decided"]
    finished = next((e.payload for e in events if e.event_type == "crank.finished"), None)
    started = [e.payload["iteration"] for e in events if e.event_type == "iteration.started"]
    last = decided[-1]["decision"] if decided else None
    waiting = GateState.of(events).awaiting
    data: dict[str, Any] = {
        "crank_id": crank_id,
        "state": "finished"
        if finished
        else (f"awaiting review at the {waiting} gate" if waiting else "running or stopped"),
        "iteration": max(started, default=0),
        "trajectory": [_row(p["inputs"]) for p in decided],
        "last_decision": last["decision"] if last else None,
        "decision": finished["decision"] if finished else None,
        "reason": finished["reason"] if finished else (last["reason"] if last else ""),
    }
    inputs = {"finished": bool(finished), "waiting": waiting}
    return Outcome(Status.PASS, data, view="crank-status", view_inputs=inputs)


# -- scenarios -------------------------------------------------------------------------------------
def _sealed(ctx: Context, commit: str) -> holdout.Holdout:
    folder = holdout.folder_of(
        str(ctx.config.get("scenarios.dir")), list(ctx.config.get("security.holdout_paths"))
    )
    return holdout.seal(ctx.repo, commit, folder, int(ctx.config.get("limits.max_file_bytes")))


def cmd_scenarios_check(ctx: Context, base_ref: str | None) -> Outcome:
    """Parse and list the scenarios (from a commit, as a crank seals them); run nothing."""
    ref = base_ref or str(ctx.config.get("run.base_ref"))
    commit = gitops.resolve_commit(ctx.repo, ref, "" if base_ref else "run.base_ref")
    sealed = _sealed(ctx, commit)
    rows = [
        {"id": s.id, "path": s.path, "name": s.name, "category": s.category, "language": s.language}
        for s in sorted(sealed.scenarios, key=lambda s: s.path)
    ]
    data = {"commit": commit, "sha256": sealed.sha256, "scenarios": rows}
    inputs = {"folder": sealed.folder}
    return Outcome(Status.PASS, data, view="scenarios-check", view_inputs=inputs)


def cmd_scenarios_run(ctx: Context, run_id: str | None, ref: str | None) -> Outcome:
    """Evaluate the scenarios against a run's integrated tree or a ref; print the score."""
    if (run_id is None) == (ref is None):
        raise UsageError("give exactly one of a run ID or a ref to evaluate")
    if ref is not None:
        commit = gitops.resolve_commit(ctx.repo, ref, "the ref to evaluate")
        base = gitops.resolve_commit(ctx.repo, str(ctx.config.get("run.base_ref")), "")
        sealed = _sealed(ctx, base)
        result = _evaluate(ctx, sealed, commit, None)
        return _scenarios_outcome(result, commit, sealed, None)
    rid = validate_run_id(str(run_id))
    with RunHandle.open(ctx, rid) as run:
        sealed = _sealed(ctx, run.base_commit)
        commit = _integrated(ctx, run)
        run.recorder.emit(
            "scenarios.started", "scenarios", run_id=rid, commit=commit,
            scenarios=len(sealed.scenarios),
        )  # fmt: skip
        result = _evaluate(ctx, sealed, commit, run)
        run.writer.write_text(f"{LOGS_DIR}/scenarios/timing.log", result.timing)
        sat = convergence.satisfaction(result.results)
        doc = {
            "schema_version": schemas.SCHEMA_VERSION,
            "run_id": rid,
            "commit": commit,
            "holdout_sha256": sealed.sha256,
            "satisfaction": sat,
            "results": result.results,
        }
        run.writer.write(SCENARIOS_JSON, jsonio.pretty(doc))
        run.recorder.emit(
            "scenarios.finished", "scenarios", run_id=rid, commit=commit,
            results=result.results, satisfaction=sat, logs=result.logs,
            holdout_sha256=sealed.sha256,
        )  # fmt: skip
        return _scenarios_outcome(
            result, commit, sealed, f"{ctx.layout.run_rel(rid)}/{SCENARIOS_JSON}"
        )


def _integrated(ctx: Context, run: RunHandle) -> str:
    """The run's integrated tree as a commit object (on no branch): base + Z's DIFF.patch as
    the integration recorded it."""
    return land.integrated_commit(ctx, run, f"factory: {run.run_id}")


def _evaluate(
    ctx: Context, sealed: holdout.Holdout, commit: str, run: RunHandle | None
) -> evaluate.Evaluated:
    values = {k: ctx.config.get(f"scenarios.{k}") for k in evaluate.SETTING_KEYS}
    settings = evaluate.Settings.of(values)
    if run is None:
        return evaluate.evaluate(ctx.repo, commit, sealed, settings, _no_log)
    writer = run.writer
    return evaluate.evaluate(
        ctx.repo, commit, sealed, settings,
        lambda name, data: writer.write(f"{LOGS_DIR}/scenarios/{name}", data),
    )  # fmt: skip


def _no_log(name: str, data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _scenarios_outcome(
    result: evaluate.Evaluated, commit: str, sealed: holdout.Holdout, written: str | None
) -> Outcome:
    sat = convergence.satisfaction(result.results)
    data = {
        "commit": commit,
        "holdout_sha256": sealed.sha256,
        "satisfaction": sat,
        "percent": convergence.percent(sat),
        "results": result.results,
        "file": written,
    }
    status = Status.PASS if sat["passed"] == sat["total"] else Status.FAIL
    return Outcome(status, data, view="scenarios-run")


# -- gates -----------------------------------------------------------------------------------------
def _waiting(ctx: Context, crank_id: str) -> tuple[str, GateState]:
    cid = validate_run_id(crank_id, "crank ID")
    events = ctx.ledger.run_events(cid)
    if not any(e.event_type == "crank.started" for e in events):
        raise UsageError(f"no crank {cid} in the ledger{nearest(ctx, cid)}")
    if any(e.event_type == "crank.finished" for e in events):
        raise UsageError(f"crank {cid} has finished")
    return cid, GateState.of(events)


def _who(ctx: Context, by: str | None) -> str:
    who = (by or gitops.user_identity(ctx.repo) or "").strip()
    if not who:
        raise UsageError("who decides? set git's user.name, or give the name (by)")
    return clip(one_line(who), 200)


def cmd_approve(
    ctx: Context,
    crank_id: str,
    gate: str | None,
    rest: str | None,
    note: str,
    by: str | None,
    progress: Callable[[str], None] | None,
) -> Outcome:
    """Approve the gate a crank waits at (and, with ``rest``, set every later gate), then go on."""
    cid, state = _waiting(ctx, crank_id)
    if state.awaiting is None:
        raise UsageError(f"crank {cid} is not waiting for a review")
    if gate is not None and gate != state.awaiting:
        raise UsageError(f"crank {cid} waits at the {state.awaiting} gate, not at {gate}")
    later = [g for g in core_gates.GATES if g not in state.approved and g != state.awaiting]
    changed = (
        core_gates.parse(",".join(f"{g}={rest}" for g in later), state.gates)
        if rest is not None and later
        else None
    )  # checked before anything is recorded
    who = _who(ctx, by)
    rec = Recorder(ctx.ledger, cid, crank_mod.KIND)
    rec.emit(
        "gate.approved", crank_mod.STAGE, "operator",
        gate=state.awaiting, by=who, note=clip(note, 2000),
    )  # fmt: skip
    if changed is not None:
        rec.emit(
            "gate.changed", crank_mod.STAGE, "operator",
            gates=core_gates.as_dict(changed), by=who,
        )  # fmt: skip
    return cmd_crank(ctx, crank_mod.CrankRequest(resume=True, crank_id=cid, progress=progress))


def cmd_reject(
    ctx: Context,
    crank_id: str,
    gate: str,
    feedback: str,
    by: str | None,
    progress: Callable[[str], None] | None,
) -> Outcome:
    """Reject the gate a crank waits at: the feedback goes to the agents in the next iteration
    (through the leak guard, with every prompt), and the crank goes on."""
    cid, state = _waiting(ctx, crank_id)
    if state.awaiting != gate:
        raise UsageError(f"crank {cid} does not wait at the {gate} gate")
    if not feedback.strip():
        raise UsageError("a rejection needs feedback for the agents")
    events = ctx.ledger.run_events(cid)
    started = next(e.payload for e in events if e.event_type == "crank.started")
    if started.get("mode") == "manifest":
        decided = [e.payload for e in events if e.event_type == "iteration.decided"]
        states = decided[-1].get("state", {}) if decided else {}
        if gate == "ship" or any(s == "failed" for s in states.values()):
            raise UsageError(
                f"crank {cid}: no unit of its manifest can work again (they are completed, or "
                "one used its attempts): approve, or start a new crank"
            )
    sealed = holdout.seal(
        ctx.repo, str(started["base_commit"]), str(started["scenarios"]["dir"]),
        int(ctx.config.get("limits.max_file_bytes")),
    )  # fmt: skip
    crank_mod.guard(sealed, "the rejection's feedback", feedback)  # nothing recorded on a leak
    rec = Recorder(ctx.ledger, cid, crank_mod.KIND)
    rec.emit(
        "gate.rejected", crank_mod.STAGE, "operator",
        gate=gate, by=_who(ctx, by), feedback=clip(feedback, 20000),
    )  # fmt: skip
    return cmd_crank(ctx, crank_mod.CrankRequest(resume=True, crank_id=cid, progress=progress))


def cmd_gates(ctx: Context, crank_id: str, settings: str, by: str | None) -> Outcome:
    """Change the gates a crank has not passed yet (e.g. ``ship=auto``: "just finish up")."""
    cid, state = _waiting(ctx, crank_id)
    changed = core_gates.parse(settings, state.gates)
    moved = [g for g in core_gates.GATES if getattr(changed, g) != getattr(state.gates, g)]
    done = sorted(g for g in moved if g in state.approved)
    if done:
        raise UsageError(f"crank {cid} has passed the {', '.join(done)} gate(s) already")
    Recorder(ctx.ledger, cid, crank_mod.KIND).emit(
        "gate.changed", crank_mod.STAGE, "operator",
        gates=core_gates.as_dict(changed), by=_who(ctx, by),
    )  # fmt: skip
    data = {"crank_id": cid, "gates": core_gates.as_dict(changed)}
    return Outcome(Status.PASS, data, view="gates")
