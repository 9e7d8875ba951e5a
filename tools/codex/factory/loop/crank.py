"""``factory crank``: the convergence loop over one plan.

Each iteration is a normal run (its own run ID and folder, linked to the crank) whose headless
agents get their task, their scope and the previous iteration's feedback; its bundles are
validated and the passing ones integrated (Gate 1: the required checks; Gate 2: the advisory
ones, never blocking); the integrated tree is committed to the crank's own branch and the sealed
holdout scenarios run against it (Gate 3). The decision after each iteration, the satisfaction
and the feedback are pure functions of what the ledger records (``core.convergence``,
``core.feedback``), so replay recomputes them. The user's branches, HEAD, index and working
tree are never touched: the crank writes only ``refs/heads/<prefix>/crank/<CRANK_ID>``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.codex.factory.core import convergence, escalation, review, symptoms, testfailures
from tools.codex.factory.core import feedback as fb
from tools.codex.factory.core import gates as core_gates
from tools.codex.factory.core import manifest as core_manifest
from tools.codex.factory.core import units as core_units
from tools.codex.factory.core.ids import validate_run_id
from tools.codex.factory.core.paths import LOGS_DIR, Z_DIR
from tools.codex.factory.core.text import clip
from tools.codex.factory.errors import ArgumentError, BlockedError, FactoryError, UsageError
from tools.codex.factory.infra import fsutil, gitops, jsonio
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.ledger.store import Event, Filter
from tools.codex.factory.loop import evaluate, holdout, manifests
from tools.codex.factory.loop import gates as loop_gates
from tools.codex.factory.loop.gates import AwaitingReview, GateState
from tools.codex.factory.loop.holdout import Holdout
from tools.codex.factory.loop.service import SERVICE_KEYS, Service, ServiceDown, ServiceSpec
from tools.codex.factory.records.crank import (
    CheckOutcome,
    Decision,
    Iteration,
    Satisfaction,
    ScenarioResult,
)
from tools.codex.factory.records.manifest import UnitAttempt
from tools.codex.factory.records.plan import Plan
from tools.codex.factory.run import agents, clean, pipeline, plans
from tools.codex.factory.run import workers as real
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.handle import run_lock
from tools.codex.factory.run.launch import (
    CrankLink,
    LaunchRequest,
    ensure_runs_dir,
    next_run_id,
    resolve_plan,
)
from tools.codex.factory.run.plans import digest
from tools.codex.factory.run.runref import LATEST, nearest

KIND = "crank"
ACTOR = "Z_integrator"
STAGE = "crank"
REPORT = "CRANK_REPORT.md"
STATE = "CRANK.json"
MANIFEST_COPY = "MANIFEST.md"
PLAN = "PLAN.json"
MAX_PATCH = 512 * 1024 * 1024
CHECK_TAIL = 64 * 1024


class HoldoutLeak(BlockedError):
    """Text meant for an agent holds a line of a scenario or a canary: nothing is sent."""


class BranchMoved(BlockedError):
    """The crank branch is not at the commit the crank recorded last."""


@dataclass
class CrankRequest:
    plan_file: Path | None = None
    base_ref: str | None = None
    threshold: str | None = None
    max_iterations: int | None = None
    crank_id: str | None = None
    block_on_regression: bool | None = None
    resume: bool = False
    pr: bool = False  # open a pull request when it converges
    gates: str | None = None  # spec=..,plan=..,ship=.. (else crank.gates, else asked)
    ask: Callable[[str], str] | None = None  # asks the operator (a terminal), or None
    manifest_file: Path | None = None  # units and execution groups instead of a plan
    update_manifest: bool = False  # also mark progress in the operator's manifest file
    progress: Callable[[str], None] | None = None


@dataclass
class CrankSettings:
    threshold: tuple[int, int]
    max_iterations: int
    block_on_regression: bool
    detail: str
    scenarios: evaluate.Settings
    folder: str
    service: ServiceSpec | None = None

    def recorded(self) -> dict[str, Any]:
        s = self.scenarios
        svc = self.service
        return {
            "service": None
            if svc is None
            else {
                "start": list(svc.start),
                "health": svc.health if isinstance(svc.health, str) else list(svc.health),
                "port": svc.port,
                "restart_on": list(svc.restart_on),
            },
            "threshold": list(self.threshold),
            "max_iterations": self.max_iterations,
            "block_on_regression": self.block_on_regression,
            "detail": self.detail,
            "scenarios": {
                "dir": self.folder,
                "trials": s.trials,
                "pass_trials": s.need,
                "timeout_s": s.timeout_s,
                "parallel": s.parallel,
                "python": s.python,
            },
        }

    @classmethod
    def from_recorded(cls, p: dict[str, Any]) -> CrankSettings:
        """The settings a crank started with (``crank.started``): a resume uses these, never
        today's config."""
        s = p["scenarios"]
        return cls(
            threshold=(int(p["threshold"][0]), int(p["threshold"][1])),
            max_iterations=int(p["max_iterations"]),
            block_on_regression=bool(p["block_on_regression"]),
            detail=str(p["detail"]),
            scenarios=evaluate.Settings(
                trials=int(s["trials"]),
                need=int(s["pass_trials"]),
                timeout_s=int(s["timeout_s"]),
                parallel=int(s["parallel"]),
                python=str(s["python"]),
            ),
            folder=str(s["dir"]),
            service=ServiceSpec.of(dict(p.get("service") or {})),
        )


@dataclass
class CrankResult:
    crank_id: str
    decision: Decision
    trajectory: list[Iteration]
    branch: str
    tip: str
    runs: list[str]
    report: str | None  # repository-relative
    feedback: list[str] = field(default_factory=list)  # repository-relative, in order

    @property
    def status(self) -> str:
        return "PASS" if self.decision["decision"] == "CONVERGED" else "BLOCKED"


def settings(ctx: Context, req: CrankRequest) -> CrankSettings:
    """The crank's settings: the request's, else config's; every bad value is a usage error."""
    src = "threshold" if req.threshold is not None else ctx.source("crank.threshold")
    text = req.threshold if req.threshold is not None else str(ctx.config.get("crank.threshold"))
    threshold = convergence.parse_threshold(text, src)
    most = req.max_iterations
    if most is None:
        most = int(ctx.config.get("crank.max_iterations"))
    if not 1 <= most <= 1000:
        raise UsageError(f"maximum iterations {most}: give 1 to 1000")
    block = req.block_on_regression
    if block is None:
        block = bool(ctx.config.get("crank.block_on_regression"))
    folder = holdout.folder_of(
        str(ctx.config.get("scenarios.dir")), list(ctx.config.get("security.holdout_paths"))
    )
    values = {k: ctx.config.get(f"scenarios.{k}") for k in evaluate.SETTING_KEYS}
    detail = str(ctx.config.get("feedback.detail"))
    if detail not in fb.DETAILS:
        raise UsageError(f"feedback.detail {detail!r}: give one of {', '.join(fb.DETAILS)}")
    service = ServiceSpec.of({k: ctx.config.get(f"service.{k}") for k in SERVICE_KEYS})
    return CrankSettings(
        service=service,
        threshold=threshold,
        max_iterations=most,
        block_on_regression=block,
        detail=detail,
        scenarios=evaluate.Settings.of(values),
        folder=folder,
    )


def branch_of(ctx: Context, crank_id: str) -> str:
    return f"{ctx.config.get('run.branch_prefix')}/crank/{crank_id}"


# -- the loop --------------------------------------------------------------------------------------
def crank(ctx: Context, req: CrankRequest) -> CrankResult:
    """Run (or resume) a crank to its decision."""
    if req.resume:
        if req.crank_id is None:
            raise UsageError("a resume needs the crank's ID (see `factory crank-status`)")
        return _resume(ctx, req)
    cfg = settings(ctx, req)
    chosen = loop_gates.resolve(req.gates, ctx.config.get("crank.gates"), req.ask)
    base_ref = req.base_ref or str(ctx.config.get("run.base_ref"))
    commit = gitops.resolve_commit(ctx.repo, base_ref, "" if req.base_ref else "run.base_ref")
    loaded: manifests.Loaded | None = None
    if req.manifest_file is not None:
        if req.plan_file is not None:
            raise UsageError("give a plan or a manifest, not both")
        loaded = manifests.load(req.manifest_file)
        plan = loaded.plan
        if req.threshold is None:
            cfg.threshold = loaded.manifest.threshold
        if req.max_iterations is None:
            cfg.max_iterations = loaded.manifest.max_iterations
    else:
        plan = resolve_plan(ctx, req.plan_file, None)
    real.check(ctx, plan)
    effective = ctx.config.effective()
    interactive = [w.id for w in plan.workers if agents.resolve(w.as_dict(), effective) is None]
    if interactive:
        raise UsageError(
            f"worker(s) {', '.join(interactive)} have no headless agent: a crank runs its "
            "agents itself (set workers.agent in the config or an agent in the plan)"
        )
    sealed = holdout.seal(
        ctx.repo, commit, cfg.folder, int(ctx.config.get("limits.max_file_bytes"))
    )
    for w in plan.workers:  # the operator's own text goes into every prompt
        guard(sealed, f"the plan's task of worker {w.id}", w.task)
    if loaded is not None:
        units_known = {u.id for u in loaded.manifest.units}
        for s in sealed.scenarios:
            unit = core_units.unit_of_scenario(s.path, sealed.folder)
            if unit not in units_known:
                raise UsageError(
                    f"scenario {s.path} belongs to no unit of the manifest: put it under "
                    f"{sealed.folder}/<unit>/ (a unit's scenarios are what judge it)"
                )
    if req.progress is not None:  # what was understood, said back before anything runs
        req.progress(f"factory: gates: {core_gates.describe(chosen)}")
    ensure_runs_dir(ctx)
    with ctx.ledger.lock():
        crank_id = _claim(ctx, req.crank_id, commit)
        rec = Recorder(ctx.ledger, crank_id, KIND)
        branch = branch_of(ctx, crank_id)
        if gitops.branch_tip(ctx.repo, branch) is not None:
            ctx.layout.run_dir(crank_id).rmdir()  # still empty: nothing is recorded under it
            raise UsageError(f"branch {branch} exists already: choose another crank ID")
        mode: dict[str, Any] = {}
        if loaded is not None:
            mode = {
                "mode": "manifest",
                "manifest": dict(core_manifest.to_doc(loaded.manifest)),
                "manifest_format": "markdown" if loaded.markdown else "json",
            }
            if req.update_manifest and req.manifest_file is not None:
                # Where to mark progress, also after a pause: the operator asked for this write.
                mode["update_manifest"] = str(req.manifest_file.resolve())
        rec.emit(
            "crank.started", STAGE, ACTOR,
            base_ref=base_ref, base_commit=commit, branch=branch, plan=plan.as_dict(),
            plan_hash=digest(plan), workers=plan.ids(), **cfg.recorded(), **mode,
            gates=core_gates.as_dict(chosen),
        )  # fmt: skip
    loop = _Loop(ctx, req, cfg, rec, sealed, branch, commit, plan, commit)
    with loop.locked():
        loop.writer.write(PLAN, jsonio.pretty(dict(plan.as_dict())))  # for people: never read
        gitops.set_branch(ctx.repo, branch, commit, None)
        rec.emit(
            "holdout.sealed", STAGE, ACTOR,
            commit=commit, folder=cfg.folder, sha256=sealed.sha256, files=sealed.listing(),
            scenarios=sorted(s.id for s in sealed.scenarios),
        )  # fmt: skip
        loop.write_state()
        if loaded is not None:
            loop.writer.write(MANIFEST_COPY, loaded.data)
            if req.update_manifest and req.manifest_file is not None:
                loop.update_manifest = req.manifest_file.resolve()
            return loop.run_units(loaded, 1, [])
        return loop.run(1, [], "")


def _claim(ctx: Context, wanted: str | None, commit: str) -> str:
    """The crank's ID and its (new, empty) folder, claimed under the ledger lock."""
    if wanted == LATEST:
        raise ArgumentError(
            "crank_id",
            "that name refers to the newest crank, so it cannot be a new crank's ID; leave the "
            "crank ID out for a fresh one, or resume the newest crank",
            label="crank ID",
            value=LATEST,
        )
    crank_id = validate_run_id(wanted, "crank ID") if wanted else next_run_id(ctx, KIND, commit)
    folder = ctx.layout.run_dir(crank_id)
    try:
        folder.mkdir()
    except FileExistsError:
        raise UsageError(f"crank ID {crank_id!r} is taken: its folder exists") from None
    if ctx.ledger.run_row(crank_id) is not None:
        raise UsageError(f"crank ID {crank_id!r} is taken in the ledger")
    return crank_id


def guard(sealed: Holdout, where: str, text: str) -> None:
    """The leak guard: raise HoldoutLeak when ``text`` (for an agent, from us or an operator)
    holds a scenario's guarded line or a canary."""
    found = fb.leaks(text, sealed.scenarios)
    if found:
        first = found[0]
        raise HoldoutLeak(
            f"holdout-leak: {where}, line {first.line}, holds the {first.what} of scenario "
            f"{first.scenario} ({len(found)} place(s)); nothing was sent to any agent"
        )


@dataclass
class _Loop:
    ctx: Context
    req: CrankRequest
    cfg: CrankSettings
    rec: Recorder
    sealed: Holdout
    branch: str
    base: str
    plan: Plan  # as crank.started recorded it: every iteration launches from it
    tip: str  # the crank branch's last recorded commit: anything else there is refused
    runs: list[str] = field(default_factory=list)
    feedback_files: list[str] = field(default_factory=list)
    service: Service | None = None
    # A manifest crank narrows an iteration to some units: their workers and their scenarios.
    active: list[str] | None = None  # worker IDs to launch (None: the whole plan)
    judged: Holdout | None = None  # the scenarios evaluated (None: all sealed ones)
    by_worker: dict[str, str] | None = None  # per-worker feedback for the next launch
    update_manifest: Path | None = None  # the operator's manifest, when progress is marked there
    group: int | None = None  # the execution group at work

    @property
    def crank_id(self) -> str:
        return self.rec.run_id

    @property
    def folder(self) -> Path:
        return self.ctx.layout.run_dir(self.crank_id)

    @property
    def writer(self) -> GuardedWriter:
        return GuardedWriter(self.folder)

    @contextlib.contextmanager
    def locked(self) -> Any:
        lock = run_lock(self.ctx, self.crank_id)
        lock.acquire()
        try:
            yield
        finally:
            lock.release()
            lock.close()

    def say(self, line: str) -> None:
        if self.req.progress is not None:
            self.req.progress(line)

    def write_state(self) -> None:
        state = {
            "schema_version": 1,
            "crank_id": self.crank_id,
            "base_commit": self.base,
            "branch": self.branch,
            "holdout_sha256": self.sealed.sha256,
            **self.cfg.recorded(),
        }
        self.writer.write(STATE, jsonio.pretty(state))

    # -- gates ---------------------------------------------------------------------------------
    def gate(self, name: str, summary: str) -> None:
        """Pass the gate (auto, skip: recorded), or pause at it (review) until an operator
        approves or rejects it; a gate decided once is not asked again."""
        state = GateState.of(self.ctx.ledger.run_events(self.crank_id))
        if name in state.approved:
            return
        mode = state.mode(name)
        if mode != "review":
            self.rec.emit("gate.passed", STAGE, ACTOR, gate=name, mode=mode)
            return
        file = f"GATE_{name}.md"
        sha = self.writer.write_text(file, summary)
        self.rec.emit("gate.awaiting", STAGE, ACTOR, gate=name, file=file, sha256=sha)
        cid = self.crank_id
        raise AwaitingReview(
            name,
            f"crank {cid} awaits your review at the {name} gate "
            f"({self.ctx.layout.run_rel(cid)}/{file})",
        )

    def leak_pause(self, n: int, why: str) -> AwaitingReview:
        """A holdout leak always pauses (nothing was sent): approving it stops the crank."""
        try:
            self.escalate(n, [why], leak=True)
        except AwaitingReview as pause:
            return pause
        raise AssertionError("a leak always pauses")  # pragma: no cover

    def escalate(self, n: int, reasons: list[str], leak: bool = False) -> None:
        """Proactive escalation, whatever the gates say: pause after iteration ``n`` for any of
        ``reasons`` (once per iteration: an approval lets the crank go on). A holdout leak
        (``leak``) always pauses: nothing was sent, and approving it stops the crank."""
        if not reasons:
            return
        state = GateState.of(self.ctx.ledger.run_events(self.crank_id))
        if state.escalated == n and not leak:
            return
        text = "\n".join(
            [
                f"# Crank {self.crank_id}: escalation after iteration {n}",
                "",
                *[f"- {r}" for r in reasons],
                "",
            ]
        )
        file = f"GATE_escalation_{n}.md"
        sha = self.writer.write_text(file, text)
        self.rec.emit(
            "gate.awaiting", STAGE, ACTOR, gate="escalation", file=file, sha256=sha, iteration=n,
            reasons=reasons, leak=leak,
        )  # fmt: skip
        raise AwaitingReview("escalation", f"crank {self.crank_id} needs you: {reasons[0]}")

    def summary(self, gate: str, trajectory: list[Iteration]) -> str:
        """What the operator approves: what will be built (spec), how (plan), the result (ship)."""
        lines = [f"# Crank {self.crank_id}: the {gate} gate", ""]
        if gate == "spec":
            lines += ["What the workers are asked to build:", ""]
            lines += [f"## {w.id}\n\n{w.task}\n" for w in self.plan.workers]
        elif gate == "plan":
            lines += ["| Worker | Allow | Deny | Shared |", "|---|---|---|---|"]
            for w in self.plan.workers:
                lines.append(
                    f"| {w.id} | {', '.join(sorted(w.allow))} | {', '.join(sorted(w.deny)) or '-'} | "
                    f"{', '.join(sorted(w.shared)) or '-'} |"
                )
            lines += ["", f"Base: `{self.base}`; scenarios sealed: {len(self.sealed.scenarios)}."]
        else:
            last = trajectory[-1] if trajectory else None
            sat = convergence.percent(last["satisfaction"]) if last else "-"
            lines += [f"Satisfaction {sat}; branch `{self.branch}` at `{self.tip}`."]
        return "\n".join(lines) + "\n"

    def paused(self, trajectory: list[Iteration], exc: AwaitingReview) -> CrankResult:
        cid, gate = self.crank_id, exc.gate
        accept = "accept its decision (or let it go on)" if gate == "escalation" else "approve"
        advice = (
            f"to {accept}: `factory approve --crank-id {cid} --gate {gate}`; to give the agents "
            f"feedback and go on: `factory reject --crank-id {cid} --gate {gate} --feedback TEXT`"
        )
        decision = Decision(
            decision="AWAITING_REVIEW", kind=gate, reason=str(exc), evidence=[], advice=advice,
            regressions=[],
        )  # fmt: skip
        return CrankResult(
            crank_id=self.crank_id, decision=decision, trajectory=trajectory, branch=self.branch,
            tip=self.tip, runs=self.runs, report=None, feedback=self.feedback_files,
        )  # fmt: skip

    def _begin(self, trajectory: list[Iteration]) -> CrankResult | None:
        """The spec and plan gates (before the first iteration), then the scenarios' service;
        a pause returns the crank's outcome."""
        try:
            if not trajectory:
                self.gate("spec", self.summary("spec", trajectory))
                self.gate("plan", self.summary("plan", trajectory))
        except AwaitingReview as exc:
            return self.paused(trajectory, exc)
        if self.cfg.service is not None:
            self.service = Service(self.cfg.service, self.ctx.repo)
        return None

    def _drive(
        self, trajectory: list[Iteration], steps: Callable[[], Decision]
    ) -> Decision | CrankResult:
        """Run the iterations (``steps``) and map every way they stop short: a pause for
        review, a holdout leak (a pause too), a moved branch. The service never outlives it."""
        try:
            return steps()
        except AwaitingReview as exc:
            return self.paused(trajectory, exc)
        except HoldoutLeak as exc:
            return self.paused(trajectory, self.leak_pause(len(trajectory), str(exc)))
        except BranchMoved as exc:
            return convergence.halted("branch-moved", str(exc), [])
        finally:
            if self.service is not None:  # never left running: also on Ctrl-C and errors
                self.service.stop()

    def run(self, first: int, trajectory: list[Iteration], feedback_text: str) -> CrankResult:
        paused = self._begin(trajectory)
        if paused is not None:
            return paused

        def steps() -> Decision:
            n, text = first, feedback_text
            while True:
                it, checks, refused, tails = self.iteration(n, text)
                trajectory.append(it)
                decision = convergence.decide(
                    trajectory, self.cfg.threshold, self.cfg.max_iterations,
                    self.cfg.block_on_regression,
                )  # fmt: skip
                self.rec.emit(
                    "iteration.decided", STAGE, ACTOR,
                    iteration=n, inputs=it, decision=decision, checks=checks, refused=refused,
                )  # fmt: skip
                self.say(
                    f"crank {self.crank_id}: iteration {n}: gate 1 {it['gate1']}, satisfaction "
                    f"{convergence.percent(it['satisfaction'])} -> {decision['decision']}"
                )
                if decision["decision"] == "CONVERGED":
                    self.gate("ship", self.summary("ship", trajectory))
                if decision["decision"] == "CONTINUE":
                    text = self.compile(n, trajectory, checks, refused, tails, decision)
                self.escalate(
                    n,
                    escalation.escalation(
                        [], trajectory, decision, max_iterations=self.cfg.max_iterations
                    ),
                )
                if decision["decision"] != "CONTINUE":
                    return decision
                n += 1

        out = self._drive(trajectory, steps)
        return out if isinstance(out, CrankResult) else self.finish(trajectory, out)

    # -- a manifest crank: units and execution groups ----------------------------------------
    def run_units(
        self,
        loaded: manifests.Loaded,
        first: int,
        history: list[UnitAttempt],
        trajectory: list[Iteration] | None = None,
    ) -> CrankResult:
        """Groups in ascending order; a parallel group's open units work in each iteration
        together, a sequential group's one at a time, each on the result of the one before.
        Every decision is :mod:`core.units` over the recorded attempts."""
        m = loaded.manifest
        owners = unit_owners(self.sealed)
        workers = {u.id: core_manifest.worker_id(u.id) for u in m.units}
        checked = [u.id for u in m.units if u.done]
        trajectory = list(trajectory or [])
        paused = self._begin(trajectory)
        if paused is not None:
            return paused

        def steps() -> Decision:
            n = first
            while True:
                state = core_units.statuses(m, history, checked)
                verdict, why = core_units.decision(m, state)
                if verdict == "CONVERGED":
                    self.gate("ship", self.summary("ship", trajectory))
                if verdict != "CONTINUE":
                    return units_decision(verdict, why, state)
                found = core_units.next_units(m, state)
                assert found is not None  # CONTINUE means a unit is open
                group, active = found
                if self.service is not None and group != self.group:
                    self.service.stop()  # one service per execution group
                self.group = group
                self.active = sorted(workers[u] for u in active)
                self.judged = judged_for(self.sealed, owners, active)
                it, checks, refused, tails = self.iteration(n, "")
                trajectory.append(it)
                results = self._results(n)
                by_unit = core_units.satisfaction_by_unit(results, owners, active)
                made = core_units.attempts(
                    n, active, workers, it["gate1"], by_unit, results, owners, self.cfg.threshold
                )
                history.extend(made)
                state = core_units.statuses(m, history, checked)
                now = units_decision(*core_units.decision(m, state), state)
                self.rec.emit(
                    "iteration.decided", STAGE, ACTOR,
                    iteration=n, inputs=it, decision=now, checks=checks, refused=refused,
                    group=group, units=made, state=state,
                )  # fmt: skip
                self.writer.write(MANIFEST_COPY, manifests.marked(loaded, state, "in_progress"))
                self.say(
                    f"crank {self.crank_id}: iteration {n} (group {group}: "
                    f"{', '.join(active)}): " + ", ".join(f"{u} {state[u]}" for u in active)
                )
                self.by_worker = self.compile_units(
                    n, trajectory, checks, refused, tails, now, active, owners, state, workers
                )
                self.escalate(
                    n,
                    escalation.escalation(
                        history, trajectory, None, max_iterations=m.max_iterations
                    ),
                )
                n += 1

        out = self._drive(trajectory, steps)
        if isinstance(out, CrankResult):
            return out
        decision = out
        state = core_units.statuses(m, history, checked)
        final = "completed" if decision["decision"] == "CONVERGED" else "failed"
        data = manifests.marked(loaded, state, final)
        self.writer.write(MANIFEST_COPY, data)
        if self.update_manifest is not None:
            self.say(manifests.mark_file(self.update_manifest, loaded, state, final))
        return self.finish(trajectory, decision)

    def compile_units(
        self,
        n: int,
        trajectory: list[Iteration],
        checks: list[CheckOutcome],
        refused: list[fb.Refusal],
        tails: dict[str, str],
        decision: Decision,
        active: list[str],
        owners: dict[str, str],
        state: dict[str, str],
        workers: dict[str, str],
    ) -> dict[str, str]:
        """Each open unit's own feedback (its scenarios' one-line summaries, its refusals),
        through the leak guard; the worker ID -> text its next prompt holds."""
        out: dict[str, str] = {}
        results = self._results(n)
        for unit in sorted(u for u in active if state[u] != "completed"):
            mine = [r for r in results if owners.get(r["id"]) == unit]
            theirs = [r for r in refused if r["worker"] == workers[unit]]
            inp = feedback_input(
                n, trajectory, self.cfg, checks, mine, tails, decision, theirs, workers[unit]
            )
            text = fb.compile_feedback(inp)
            name = f"feedback_iter_{n}_{unit}.md"
            guard(self.sealed, name, text)
            sha = self.writer.write_text(name, text)
            self.feedback_files.append(f"{self.ctx.layout.run_rel(self.crank_id)}/{name}")
            extra = {"tails": inp["tails"]} if self.cfg.detail == "full" else {}
            self.rec.emit(
                "feedback.compiled", STAGE, ACTOR, iteration=n, file=name, sha256=sha,
                detail=self.cfg.detail, unit=unit, **extra,
            )  # fmt: skip
            out[workers[unit]] = text
        return out

    # -- one iteration ---------------------------------------------------------------------------
    def iteration(
        self, n: int, feedback_text: str
    ) -> tuple[Iteration, list[CheckOutcome], list[fb.Refusal], dict[str, str]]:
        parent = self.tip
        self._check_branch()
        run_id = self._run_id(n)
        said = loop_gates.operator_feedback(
            GateState.of(self.ctx.ledger.run_events(self.crank_id)).rejections
        )
        feedback_text = "\n".join(t for t in (said, feedback_text) if t)
        self.rec.emit("iteration.started", STAGE, ACTOR, iteration=n, run_id=run_id, base=parent)
        link = CrankLink(
            crank_id=self.crank_id,
            iteration=n,
            feedback=feedback_text,
            guard=lambda w, text: guard(self.sealed, f"the prompt of worker {w}", text),
            by_worker=None
            if self.by_worker is None
            else {w: "\n".join(t for t in (said, text) if t) for w, text in self.by_worker.items()},
        )
        launch = LaunchRequest(
            base_ref=parent, dry_run=False, run_id=run_id, kind=KIND, plan_file=None,
            workers=None, progress=self.req.progress, base_ref_source="the crank branch",
            crank=link, plan=self.plan.select(self.active),
        )  # fmt: skip
        self.runs.append(run_id)
        pipeline.cmd_launch(self.ctx, launch)
        refused = self._integrate(run_id)
        gate1 = gate1_of(self.ctx, run_id)
        tip = self._commit(n, run_id, parent, gate1)
        checks = self._checks(run_id)
        logs = self.writer
        self.rec.emit(
            "scenarios.started", STAGE, ACTOR, iteration=n, run_id=run_id, commit=tip,
            scenarios=len((self.judged or self.sealed).scenarios),
        )  # fmt: skip
        result = self._evaluate(n, parent, tip)
        logs.write_text(f"{LOGS_DIR}/iter_{n}/timing.log", result.timing)  # never recorded
        sat = convergence.satisfaction(result.results)
        self.rec.emit(
            "scenarios.finished", STAGE, ACTOR,
            iteration=n, run_id=run_id, commit=tip, results=result.results, satisfaction=sat,
            trials=result.trials, logs=result.logs,
        )  # fmt: skip
        it = _iteration(
            n, run_id, gate1, result.results, sat, gitops.tree_of(self.ctx.repo, tip), checks
        )
        self._clean(run_id)
        return it, checks, refused, result.tails

    def _evaluate(self, n: int, parent: str, tip: str) -> evaluate.Evaluated:
        """Gate 3. With a service, it is made ready (started, or restarted when the iteration
        changed a path of ``service.restart_on``) and health-checked first; a service that is
        not healthy makes every scenario an infrastructure failure, never a product one."""
        logs = self.writer
        env: dict[str, str] = {}
        if self.service is not None:
            try:
                self.service.ready(tip, gitops.changed_paths(self.ctx.repo, parent, tip))
            except ServiceDown as exc:
                logs.write_text(f"{LOGS_DIR}/iter_{n}/service.log", self.service.log_tail())
                return evaluate.unavailable(
                    self.judged or self.sealed, self.cfg.scenarios, str(exc)
                )
            env["FACTORY_SERVICE_URL"] = self.service.url
        return evaluate.evaluate(
            self.ctx.repo, tip, self.judged or self.sealed, self.cfg.scenarios,
            lambda name, data: logs.write(f"{LOGS_DIR}/iter_{n}/{name}", data), env,
        )  # fmt: skip

    def _run_id(self, n: int) -> str:
        base = f"{self.crank_id}.i{n}"
        k, run_id = 1, base
        while self.ctx.layout.run_dir(run_id).exists():  # an attempt a crash cut short
            k += 1
            run_id = f"{base}-{k}"
        return run_id

    def _integrate(self, run_id: str) -> list[fb.Refusal]:
        """Validate every bundle; integrate those that pass; the refused ones and why."""
        first = pipeline.cmd_validate(self.ctx, run_id, None)
        doc = first.data if isinstance(first.data, dict) else {}
        verdicts: dict[str, str] = dict(doc.get("verdicts", {}))
        refused = _refusals(doc)
        passing = sorted(w for w, v in verdicts.items() if v == "PASS")
        if passing:
            if len(passing) != len(verdicts):
                pipeline.cmd_validate(self.ctx, run_id, passing)
            pipeline.cmd_integrate(self.ctx, run_id, passing)
        return refused

    def _commit(self, n: int, run_id: str, parent: str, gate1: str) -> str:
        """The integrated tree on the crank branch (even when Gate 1 failed: the work is
        iterated on, not reverted); the branch stays where it was when nothing was merged."""
        patch = self._merged_patch(run_id)
        if not patch:
            return parent
        when = f"{int(self.ctx.clock.now().timestamp())} +0000"
        message = f"factory crank {self.crank_id}: iteration {n}\n\nRun {run_id}: {gate1}.\n"
        tip = gitops.commit_patch(self.ctx.repo, parent, patch, message, when)
        if tip != parent:
            self._check_branch()
            # Recorded before the branch moves: a crash in between leaves a branch a resume
            # recognises as this crank's own (and puts back), never a stranger's.
            self.rec.emit(
                "iteration.committed", STAGE, ACTOR, iteration=n, run_id=run_id, parent=parent,
                commit=tip,
            )  # fmt: skip
            gitops.set_branch(self.ctx.repo, self.branch, tip, parent)
            self.tip = tip
        return tip

    def _check_branch(self) -> None:
        """The crank branch must be where this crank left it: an agent (worktrees share the
        repository's refs) or anyone else moving it is refused, never built on."""
        now = gitops.branch_tip(self.ctx.repo, self.branch)
        if now != self.tip:
            raise BranchMoved(
                f"branch-moved: {self.branch} is at {(now or 'nothing')[:12]}, not at "
                f"{self.tip[:12]} where this crank left it; nothing was built on it"
            )

    def _merged_patch(self, run_id: str) -> bytes:
        """Z_integrator/DIFF.patch, only as the integration recorded it (its hash in
        ``report.written``): a file changed since is refused."""
        rel = f"{Z_DIR}/DIFF.patch"
        path = self.ctx.layout.run_dir(run_id) / rel
        written = self.ctx.ledger.select(Filter(run_id=run_id, event_type="report.written"), 1)
        recorded = written[-1].payload.get("files", {}).get(rel) if written else None
        if recorded is None:
            return b""
        data = fsutil.read_file(path, f"{run_id}/{rel}", limit=MAX_PATCH)
        if hashlib.sha256(data).hexdigest() != recorded:
            raise BlockedError(f"{run_id}/{rel} changed since the integration wrote it")
        return data

    def _checks(self, run_id: str) -> list[CheckOutcome]:
        events = self.ctx.ledger.select(Filter(run_id=run_id, event_type="check.finished"))
        run_dir = self.ctx.layout.run_dir(run_id)
        found = self.ctx.ledger.select(Filter(run_id=run_id, event_type="isolation.decided"), 1)
        blame = convergence.blame(found[-1].payload) if found else {}
        out = [_check(e, run_dir) for e in events]
        for c in out:
            said = blame.get(c["name"])
            if said is not None:
                c["caused_by"], c["cause"] = said["caused_by"], said["cause"]
        return out

    def _clean(self, run_id: str) -> None:
        """The iteration's worktrees go: its work is in the bundles and on the crank branch."""
        with contextlib.suppress(FactoryError, OSError):
            clean.cmd_clean(self.ctx, run_id, True)

    # -- feedback and the end --------------------------------------------------------------------
    def compile(
        self,
        n: int,
        trajectory: list[Iteration],
        checks: list[CheckOutcome],
        refused: list[fb.Refusal],
        tails: dict[str, str],
        decision: Decision,
    ) -> str:
        inp = feedback_input(
            n, trajectory, self.cfg, checks, self._results(n), tails, decision, refused
        )
        text = fb.compile_feedback(inp)
        guard(self.sealed, f"feedback_iter_{n}.md", text)
        name = f"feedback_iter_{n}.md"
        sha = self.writer.write_text(name, text)
        self.feedback_files.append(f"{self.ctx.layout.run_rel(self.crank_id)}/{name}")
        extra = {"tails": inp["tails"]} if self.cfg.detail == "full" else {}
        self.rec.emit(
            "feedback.compiled", STAGE, ACTOR, iteration=n, file=name, sha256=sha,
            detail=self.cfg.detail, **extra,
        )  # fmt: skip
        return text

    def _results(self, n: int) -> list[ScenarioResult]:
        for e in reversed(self.ctx.ledger.run_events(self.crank_id)):
            if e.event_type == "scenarios.finished" and e.payload.get("iteration") == n:
                return list(e.payload["results"])
        return []

    def finish(self, trajectory: list[Iteration], decision: Decision) -> CrankResult:
        tip = self.tip
        text = report_text(self.crank_id, self.branch, tip, trajectory, decision, self.cfg)
        sha = self.writer.write_text(REPORT, text)
        self.rec.emit(
            "crank.finished", STAGE, ACTOR,
            decision=decision["decision"], decision_kind=decision["kind"], reason=decision["reason"],
            iterations=len(trajectory), branch=self.branch, tip=tip, report_sha256=sha,
        )  # fmt: skip
        return CrankResult(
            crank_id=self.crank_id,
            decision=decision,
            trajectory=trajectory,
            branch=self.branch,
            tip=tip,
            runs=self.runs,
            report=f"{self.ctx.layout.run_rel(self.crank_id)}/{REPORT}",
            feedback=self.feedback_files,
        )


# -- pure pieces (replay calls them too) -----------------------------------------------------------
def unit_owners(sealed: Holdout) -> dict[str, str]:
    """Scenario ID -> the unit whose folder (``scenarios/<unit>/``) holds it."""
    out: dict[str, str] = {}
    for s in sealed.scenarios:
        unit = core_units.unit_of_scenario(s.path, sealed.folder)
        if unit is not None:
            out[s.id] = unit
    return out


def judged_for(sealed: Holdout, owners: dict[str, str], active: list[str]) -> Holdout:
    """The sealed holdout narrowed to the scenarios of ``active`` units (helper files kept)."""
    keep = {s.path for s in sealed.scenarios if owners.get(s.id) in active}
    return Holdout(
        sealed.commit,
        sealed.folder,
        tuple((p, d) for p, d in sealed.files if p in keep or not holdout.is_scenario_file(p)),
        tuple(s for s in sealed.scenarios if s.path in keep),
    )


def units_decision(verdict: str, why: str, state: dict[str, str]) -> Decision:
    failed = sorted(u for u, s in state.items() if s == "failed")
    return Decision(
        decision=verdict,
        kind="units" if verdict != "CONTINUE" else "",
        reason=why,
        evidence=[f"unit {u}: {s}" for u, s in sorted(state.items())],
        advice="escalate: adjust the unit's spec or scenarios, or split it" if failed else "",
        regressions=[],
    )


def gate1_of(ctx: Context, run_id: str) -> str:
    """Gate 1 of an iteration: its run's recorded final status (BLOCKED when no bundle passed
    validation, so nothing was integrated and the run has no end yet)."""
    ended = ctx.ledger.select(Filter(run_id=run_id, event_type="run.finished"), 1)
    return convergence.gate1(str(ended[-1].payload.get("status")) if ended else None)


def _iteration(
    n: int,
    run_id: str,
    gate1: str,
    results: list[ScenarioResult],
    sat: Satisfaction,
    tree: str,
    checks: list[CheckOutcome],
) -> Iteration:
    return Iteration(
        iteration=n,
        run_id=run_id,
        gate1=gate1,
        satisfaction=sat,
        passing=sorted(r["id"] for r in results if r["passed"]),
        failing=sorted(r["id"] for r in results if not r["passed"] and r["outcome"] != "infra"),
        signatures={r["id"]: r["signature"] for r in results if r["signature"]},
        infra=sorted(r["id"] for r in results if r["outcome"] == "infra"),
        tree=tree,
        advisory=sum(1 for c in checks if not c["required"] and (c["rc"] != 0 or c["timed_out"])),
    )


def feedback_input(
    n: int,
    trajectory: list[Iteration],
    cfg: CrankSettings | dict[str, Any],
    checks: list[CheckOutcome],
    results: list[ScenarioResult],
    tails: dict[str, str],
    decision: Decision,
    refused: list[fb.Refusal],
    for_worker: str = "",
) -> fb.FeedbackInput:
    threshold = cfg.threshold if isinstance(cfg, CrankSettings) else tuple(cfg["threshold"])
    detail = cfg.detail if isinstance(cfg, CrankSettings) else str(cfg["detail"])
    failing = {r["id"] for r in results if not r["passed"]}
    return fb.FeedbackInput(
        iteration=n,
        trajectory=list(trajectory),
        threshold=[int(threshold[0]), int(threshold[1])],
        checks=checks,
        scenarios=results,
        tails={k: v for k, v in sorted(tails.items()) if k in failing} if detail == "full" else {},
        regressions=list(decision["regressions"]),
        refused=refused,
        detail=detail,
        for_worker=for_worker,
    )


def _refusals(doc: dict[str, Any]) -> list[fb.Refusal]:
    """The workers whose work did not enter the tree, with their findings, and Gate 0's
    warnings on any worker's tests (fed back, never blocking)."""
    by_worker: dict[str, list[str]] = {}
    warned: dict[str, list[str]] = {}
    for f in doc.get("findings", []):
        line = clip(f"[{f['rule']}] {f['path']}: {f['message']}", 300)
        by_worker.setdefault(str(f["worker"]), []).append(line)
    for f in doc.get("warnings", []):
        if f["rule"] in review.RULES or f["rule"] == "review-agent":
            line = clip(f"[{f['rule']}] {f['message']}", 300)
            warned.setdefault(str(f["worker"]), []).append(line)
    blocked = {w for w, v in doc.get("verdicts", {}).items() if v != "PASS"}
    out: list[fb.Refusal] = []
    for w in sorted(blocked | set(warned)):
        ref = fb.Refusal(worker=w, findings=by_worker.get(w, [])[:20] if w in blocked else [])
        if w in warned:
            ref["warnings"] = warned[w][:20]
        out.append(ref)
    return out


def _check(e: Event, run_dir: Path) -> CheckOutcome:
    p = e.payload
    output = ""
    for rel in sorted(p.get("logs", {})):
        with contextlib.suppress(FactoryError, OSError):
            output += _tail(run_dir / rel)
    rc = p.get("rc")
    timed_out = bool(p.get("timed_out"))
    failed = rc != 0 or timed_out
    cls = symptoms.classify(output, rc, timed_out)[0] if failed else ""
    return CheckOutcome(
        name=str(p["name"]),
        required=bool(p["required"]),
        rc=rc,
        timed_out=timed_out,
        symptom_class=cls,
        failing_tests=_failing_tests(p, output) if failed else [],
        tail=clip(output[-2000:], 2000) if failed else "",
    )


def _failing_tests(payload: dict[str, Any], output: str) -> list[str]:
    """The names integrate recorded for a failed check (from the hashed log bytes, or its JUnit
    XML); a check recorded by an earlier release: the names its output shows."""
    recorded = payload.get("failing_tests")
    if isinstance(recorded, list):
        return [str(t) for t in recorded]
    return testfailures.failing_tests(output.encode("utf-8"), b"")


def _tail(path: Path) -> str:
    data = fsutil.read_file(path, path.name, limit=64 * 1024 * 1024)
    return data[-CHECK_TAIL:].decode("utf-8", "replace")


def report_text(
    crank_id: str,
    branch: str,
    tip: str,
    trajectory: list[Iteration],
    decision: Decision,
    cfg: CrankSettings,
) -> str:
    """CRANK_REPORT.md, in the shape of a pull request's body."""
    last = trajectory[-1] if trajectory else None
    score = convergence.percent(last["satisfaction"]) if last else "-"
    num, den = cfg.threshold
    lines = [
        f"# Crank {crank_id}: {decision['decision']}",
        "",
        f"- Satisfaction: **{score}** "
        + (
            f"({last['satisfaction']['passed']}/{last['satisfaction']['total']} scenarios)"
            if last
            else ""
        ),
        f"- Threshold: {num}/{den}; iterations: {len(trajectory)} of {cfg.max_iterations}",
        f"- Branch: `{branch}` at `{tip[:12]}`",
        f"- Decision: {decision['decision']}"
        + (f" ({decision['kind']})" if decision["kind"] else "")
        + f": {decision['reason']}",
    ]
    if decision["advice"]:
        lines.append(f"- What to do: {decision['advice']}")
    lines += [
        "",
        "## Trajectory",
        "",
        "| Iteration | Run | Gate 1 | Satisfaction | Advisory findings |",
        "|---|---|---|---|---|",
    ]
    for it in trajectory:
        lines.append(
            f"| {it['iteration']} | `{it['run_id']}` | {it['gate1']} | "
            f"{convergence.percent(it['satisfaction'])} | {it['advisory']} |"
        )
    if decision["evidence"]:
        lines += ["", "## Evidence", ""] + [f"- {e}" for e in decision["evidence"]]
    if decision["regressions"]:
        lines += ["", "## Regressions", ""] + [f"- {r}" for r in decision["regressions"]]
    lines += [
        "",
        "## Before you merge",
        "",
        "- [ ] Read the diff of the crank branch against its base",
        "- [ ] Gate 2 (advisory checks) findings reviewed",
        "- [ ] The holdout scenarios still describe what you want",
        f"- [ ] `factory ledger-replay --run-id {crank_id}` says REPLAY OK",
        "",
    ]
    return "\n".join(lines)


# -- resume ----------------------------------------------------------------------------------------
def last_commit(events: Sequence[Event], base: str) -> str:
    """The crank branch's commit as the ledger last recorded it: the commit the scenarios of
    the last decided iteration ran against (the base before any)."""
    decided = {e.payload["inputs"]["run_id"] for e in events if e.event_type == "iteration.decided"}
    tip = base
    for e in events:
        if e.event_type == "scenarios.finished" and e.payload.get("run_id") in decided:
            tip = str(e.payload["commit"])
    return tip


def _resume(ctx: Context, req: CrankRequest) -> CrankResult:
    crank_id = validate_run_id(str(req.crank_id), "crank ID")
    events = ctx.ledger.run_events(crank_id)
    started = next((e for e in events if e.event_type == "crank.started"), None)
    if started is None:
        raise UsageError(
            f"no crank {crank_id} in the ledger{nearest(ctx, crank_id)} (see `factory crank-status`)"
        )
    if any(e.event_type == "crank.finished" for e in events):
        raise UsageError(f"crank {crank_id} has finished; start a new one")
    p = started.payload
    cfg = CrankSettings.from_recorded(p)
    plan = plans.from_dict(dict(p["plan"]), f"the plan crank {crank_id} started with")
    if digest(plan) != p["plan_hash"]:
        raise BlockedError(f"crank {crank_id}: its recorded plan does not hash as recorded")
    sealed = holdout.seal(
        ctx.repo, p["base_commit"], cfg.folder, int(ctx.config.get("limits.max_file_bytes"))
    )
    recorded = next((e for e in events if e.event_type == "holdout.sealed"), None)
    if recorded is None or recorded.payload["sha256"] != sealed.sha256:
        raise BlockedError(f"crank {crank_id}: the holdout differs from the one sealed at start")
    rec = Recorder(ctx.ledger, crank_id, KIND)
    tip = last_commit(events, str(p["base_commit"]))
    loop = _Loop(ctx, req, cfg, rec, sealed, str(p["branch"]), str(p["base_commit"]), plan, tip)
    trajectory = [e.payload["inputs"] for e in events if e.event_type == "iteration.decided"]
    feedback_text = ""
    gate_state = GateState.of(events)
    if gate_state.awaiting is not None:
        raise UsageError(
            f"crank {crank_id} awaits review at the {gate_state.awaiting} gate: approve or reject "
            "it first (see `factory crank-status`)"
        )
    leak = _leak_verdict(events, gate_state)
    if leak is not None:
        verdict, why = leak
        if verdict == "approved":  # the operator accepts the stop
            with loop.locked():
                rec.emit("crank.resumed", STAGE, ACTOR, iteration=len(trajectory) + 1)
                if p.get("mode") == "manifest":
                    _mark_stopped(ctx, loop, events, p)
                return loop.finish(list(trajectory), convergence.halted("holdout-leak", why, []))
        if p.get("mode") != "manifest":  # go on with the operator's feedback alone
            with loop.locked():
                _reset_own_commit(ctx, loop, events)
                rec.emit("crank.resumed", STAGE, ACTOR, iteration=len(trajectory) + 1)
                return loop.run(len(trajectory) + 1, list(trajectory), "")
    if p.get("mode") == "manifest":
        return _resume_units(ctx, loop, events, p, len(trajectory) + 1)
    decided = [e.payload["decision"] for e in events if e.event_type == "iteration.decided"]
    last_n = len(trajectory)
    final = decided[-1]["decision"] in ("STALLED", "EXHAUSTED") if decided else False
    if final and gate_state.escalated == last_n and gate_state.verdicts:
        with loop.locked():
            rec.emit("crank.resumed", STAGE, ACTOR, iteration=last_n + 1)
            if gate_state.verdicts.get(last_n) == "approved":  # the operator accepts the stop
                return loop.finish(list(trajectory), decided[-1])
            return loop.run(last_n + 1, list(trajectory), "")  # go on with their feedback
    if decided and decided[-1]["decision"] == "CONVERGED":
        with loop.locked():
            rec.emit("crank.resumed", STAGE, ACTOR, iteration=len(trajectory) + 1)
            if "ship" in gate_state.approved:
                return loop.finish(list(trajectory), decided[-1])
            return loop.run(len(trajectory) + 1, list(trajectory), "")  # ship was rejected
    if trajectory:
        n = trajectory[-1]["iteration"]
        name = f"feedback_iter_{n}.md"
        done = [
            e for e in events if e.event_type == "feedback.compiled" and e.payload["iteration"] == n
        ]
        if not done:
            raise BlockedError(f"crank {crank_id}: iteration {n} has no compiled feedback")
        data = fsutil.read_file(loop.folder / name, name, limit=MAX_PATCH)
        if hashlib.sha256(data).hexdigest() != done[-1].payload["sha256"]:
            raise BlockedError(f"crank {crank_id}: {name} changed since it was compiled")
        feedback_text = data.decode("utf-8")
    with loop.locked():
        _reset_own_commit(ctx, loop, events)
        rec.emit("crank.resumed", STAGE, ACTOR, iteration=len(trajectory) + 1)
        return loop.run(len(trajectory) + 1, list(trajectory), feedback_text)


def _mark_stopped(ctx: Context, loop: _Loop, events: Sequence[Event], p: dict[str, Any]) -> None:
    """A manifest crank stopped outside its loop (an approved leak): its copy of the manifest,
    and the operator's file when asked, are marked as the recorded attempts leave them."""
    found = core_manifest.from_doc(p["manifest"], "the recorded manifest")
    data = fsutil.read_file(
        loop.folder / MANIFEST_COPY, MANIFEST_COPY, limit=core_manifest.MAX_BYTES
    )
    loaded = manifests.Loaded(found, data, p.get("manifest_format") != "json", loop.plan, {})
    history: list[UnitAttempt] = [
        a for e in events if e.event_type == "iteration.decided" for a in e.payload["units"]
    ]
    state = core_units.statuses(found, history, [u.id for u in found.units if u.done])
    loop.writer.write(MANIFEST_COPY, manifests.marked(loaded, state, "failed"))
    if p.get("update_manifest"):
        loop.say(manifests.mark_file(Path(str(p["update_manifest"])), loaded, state, "failed"))


def _leak_verdict(events: Sequence[Event], state: GateState) -> tuple[str, str] | None:
    """(approved | rejected, the leak) when the last escalation was a holdout leak an operator
    decided; None otherwise."""
    last = [e for e in events if e.event_type == "gate.awaiting"]
    if not last or last[-1].payload.get("gate") != "escalation" or not last[-1].payload.get("leak"):
        return None
    if any(e.event_type == "iteration.decided" and e.seq > last[-1].seq for e in events):
        return None  # the crank went on after it: resume as after any iteration
    verdict = (state.verdicts or {}).get(int(last[-1].payload["iteration"]))
    return None if verdict is None else (verdict, str(last[-1].payload["reasons"][0]))


def _reset_own_commit(ctx: Context, loop: _Loop, events: Sequence[Event]) -> None:
    """A crash between recording an iteration's commit and deciding the iteration leaves that
    commit on the branch: it is put back (the iteration runs again); anything else is not."""
    now = gitops.branch_tip(ctx.repo, loop.branch)
    undecided = {
        str(e.payload["commit"])
        for e in events
        if e.event_type == "iteration.committed" and e.payload["parent"] == loop.tip
    }
    if now != loop.tip and now in undecided:
        gitops.set_branch(ctx.repo, loop.branch, loop.tip, now)


def _resume_units(
    ctx: Context, loop: _Loop, events: Sequence[Event], p: dict[str, Any], first: int
) -> CrankResult:
    """A manifest crank goes on from its recorded attempts: completed units are skipped; each
    open unit gets the feedback its last attempt left (checked against its recorded hash)."""
    found = core_manifest.from_doc(p["manifest"], "the recorded manifest")
    data = fsutil.read_file(
        loop.folder / MANIFEST_COPY, MANIFEST_COPY, limit=core_manifest.MAX_BYTES
    )
    loaded = manifests.Loaded(found, data, p.get("manifest_format") != "json", loop.plan, {})
    history: list[UnitAttempt] = [
        a for e in events if e.event_type == "iteration.decided" for a in e.payload["units"]
    ]
    by_worker: dict[str, str] = {}
    for e in events:
        pl = e.payload
        if e.event_type == "feedback.compiled" and pl.get("unit"):
            text = fsutil.read_file(loop.folder / str(pl["file"]), str(pl["file"]), limit=MAX_PATCH)
            if hashlib.sha256(text).hexdigest() != pl["sha256"]:
                raise BlockedError(
                    f"crank {loop.crank_id}: {pl['file']} changed since it was compiled"
                )
            by_worker[core_manifest.worker_id(str(pl["unit"]))] = text.decode("utf-8")
    loop.by_worker = by_worker
    if p.get("update_manifest"):
        loop.update_manifest = Path(str(p["update_manifest"]))
    with loop.locked():
        _reset_own_commit(ctx, loop, events)
        loop.rec.emit("crank.resumed", STAGE, ACTOR, iteration=first)
        trajectory = [e.payload["inputs"] for e in events if e.event_type == "iteration.decided"]
        return loop.run_units(loaded, first, history, trajectory)
