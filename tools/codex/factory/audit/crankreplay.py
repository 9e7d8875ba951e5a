"""Replay of a crank: every decision recomputed from what the ledger recorded, with the same pure
functions the live loop used, and every file the crank wrote checked against its hash.

Recomputed: the sealed holdout (from the base commit's objects), each scenario's class and
symptom (from its log, when the log still hashes as recorded), each scenario's outcome (from its
trials), satisfaction, gate 1 (from the iteration run's recorded end), each iteration's inputs
and decision (the stall protocol included), each feedback file, and the final decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.codex.factory.audit.fold import Divergence, divergence
from tools.codex.factory.core import convergence, symptoms
from tools.codex.factory.core import feedback as fb
from tools.codex.factory.core import manifest as core_manifest
from tools.codex.factory.core import units as core_units
from tools.codex.factory.core.paths import LOGS_DIR, REPORT_HTML, Z_DIR
from tools.codex.factory.core.scenarios import scenario_id
from tools.codex.factory.errors import FactoryError
from tools.codex.factory.infra import fsutil, gitops
from tools.codex.factory.infra.writer import sha256_file
from tools.codex.factory.ledger.store import Event, Filter
from tools.codex.factory.loop import crank, holdout
from tools.codex.factory.loop.gates import GateState
from tools.codex.factory.records.crank import Blame, Decision, Iteration, ScenarioResult
from tools.codex.factory.records.manifest import Manifest, UnitAttempt
from tools.codex.factory.run import plans
from tools.codex.factory.run.context import Context

MAX_READ = 64 * 1024 * 1024


def is_crank(events: Sequence[Event]) -> bool:
    return any(e.event_type == "crank.started" for e in events)


def check(
    ctx: Context, crank_id: str, events: Sequence[Event]
) -> tuple[dict[str, Any], list[Divergence]]:
    """(state, divergences) of the crank whose events are ``events`` (in chain order)."""
    folder = ctx.layout.run_dir(crank_id)
    out: list[Divergence] = []
    started = [e for e in events if e.event_type == "crank.started"]
    if len(started) != 1:
        return {"crank": crank_id}, [divergence(None, "crank.started", "one", str(len(started)))]
    p = started[0].payload
    threshold = (int(p["threshold"][0]), int(p["threshold"][1]))
    cfg = {"threshold": list(threshold), "detail": p["detail"]}
    out += _check_seal(ctx, events, p)
    out += _check_branch(ctx, events, p)
    out += check_html(folder, events)
    gate_log, found = _check_gates(events)
    out += found
    trajectory: list[Iteration] = []
    results_of: dict[int, list[ScenarioResult]] = {}
    last: dict[str, Any] | None = None
    units = _Units.of(ctx, events, p)
    for e in events:
        pl = e.payload
        if e.event_type == "scenarios.finished":
            need = int(p["scenarios"]["pass_trials"])
            results_of[int(pl["iteration"])] = _check_scenarios(e, folder, need, out)
        elif e.event_type == "iteration.decided":
            n = int(pl["iteration"])
            results = results_of.get(n, [])
            recorded: Iteration = pl["inputs"]
            gate1 = crank.gate1_of(ctx, recorded["run_id"])
            tree = _tree(ctx, events, recorded["run_id"])
            again = crank._iteration(
                n, recorded["run_id"], gate1, results, convergence.satisfaction(results), tree,
                pl["checks"],
            )  # fmt: skip
            if again != recorded:
                out.append(
                    divergence(e.seq, f"iteration {n} inputs", _short(again), _short(recorded))
                )
            out += _check_checks(ctx, e)
            trajectory.append(recorded)
            if units is not None:
                decided = units.decide(e, results, gate1, threshold, out)
            else:
                decided = convergence.decide(
                    trajectory, threshold, int(p["max_iterations"]),
                    bool(p["block_on_regression"]),
                )  # fmt: skip
            if decided != pl["decision"]:
                out.append(
                    divergence(
                        e.seq, f"iteration {n} decision", decided["decision"],
                        str(pl["decision"].get("decision")),
                    )
                )  # fmt: skip
            last = {"decision": decided, "checks": pl["checks"], "refused": pl["refused"]}
        elif e.event_type == "feedback.compiled":
            if units is not None and pl.get("unit") and str(pl["unit"]) not in units.workers:
                out.append(
                    divergence(
                        e.seq, f"{pl['file']} unit", "a unit of the crank's manifest", pl["unit"]
                    )
                )
            elif units is not None and last is not None and pl.get("unit"):
                theirs = {**last, "refused": units.refused(last, str(pl["unit"]))}
                mine = units.results(results_of, int(pl["iteration"]), str(pl["unit"]))
                me = units.workers[str(pl["unit"])]
                out += _check_feedback(e, folder, trajectory, cfg, mine, theirs, me)
            else:
                out += _check_feedback(e, folder, trajectory, cfg, results_of, last)
        elif e.event_type == "crank.finished":
            out += _check_finished(e, folder, last)
    state = {
        "crank": crank_id,
        "gates": gate_log,
        "iterations": len(trajectory),
        "trajectory": [convergence.percent(it["satisfaction"]) for it in trajectory],
        "decision": next(
            (e.payload["decision"] for e in events if e.event_type == "crank.finished"), None
        ),
    }
    return state, out


def check_html(folder: Path, events: Sequence[Event]) -> list[Divergence]:
    """REPORT.html must hash to what its last ``report.html.written`` recorded; one on disk
    that no event records is named too."""
    written = [e for e in events if e.event_type == "report.html.written"]
    path = folder / REPORT_HTML
    there = path.exists() or path.is_symlink()
    if not written:
        if not there:
            return []
        return [
            divergence(
                None,
                f"{REPORT_HTML} (no report.html.written event records it)",
                "a report.html.written event with its sha256",
                "none in the ledger: write it with `factory report --html`",
            )
        ]
    last = written[-1]
    want = str(last.payload.get("sha256"))
    what = f"{REPORT_HTML} (recorded by report.html.written)"
    if not path.is_file() or path.is_symlink():
        return [divergence(last.seq, what, f"sha256 {want}", "the file is missing")]
    now = sha256_file(path)
    return [] if now == want else [divergence(last.seq, what, f"sha256 {want}", f"sha256 {now}")]


def _check_branch(ctx: Context, events: Sequence[Event], p: dict[str, Any]) -> list[Divergence]:
    """The crank branch's history as recorded: each iteration starts at the commit the one
    before left, each commit is its parent plus that iteration's integrated patch (as the
    integration recorded it), the scenarios ran against it, each iteration's run launched the
    crank's plan, and the branch is still at the recorded tip."""
    out: list[Divergence] = []
    tip = str(p["base_commit"])
    pending: dict[str, str] = {}  # run ID -> parent, of a started iteration
    for e in events:
        pl = e.payload
        if e.event_type == "iteration.started":
            run_id = str(pl["run_id"])
            if pl["base"] != tip:
                out.append(divergence(e.seq, f"{run_id} base", tip, str(pl["base"])))
            pending[run_id] = tip
            started = ctx.ledger.select(Filter(run_id=run_id, event_type="run.started"), 1)
            if started:
                want = _plan_hash(p, list(started[-1].payload.get("workers", [])))
                found = started[-1].payload.get("plan_hash")
                if found != want:
                    out.append(divergence(e.seq, f"{run_id} plan", want, str(found)))
        elif e.event_type == "iteration.committed":
            out += _check_commit(ctx, e)
        elif e.event_type == "scenarios.finished":
            run_id = str(pl.get("run_id"))
            parent = pending.get(run_id, tip)
            committed = [
                c.payload["commit"]
                for c in events
                if c.event_type == "iteration.committed" and c.payload["run_id"] == run_id
            ]
            want = committed[-1] if committed else parent
            if pl["commit"] != want:
                out.append(divergence(e.seq, f"{run_id} tree under test", want, str(pl["commit"])))
            tip = str(pl["commit"])
        elif e.event_type == "crank.finished":
            if pl["tip"] != tip:
                out.append(divergence(e.seq, "crank tip", tip, str(pl["tip"])))
            now = gitops.branch_tip(ctx.repo, str(p["branch"]))
            if now is not None and now != pl["tip"]:
                out.append(
                    divergence(e.seq, f"branch {p['branch']}", str(pl["tip"]), f"{now} (moved)")
                )
    return out


def _check_commit(ctx: Context, e: Event) -> list[Divergence]:
    pl = e.payload
    run_id, commit, parent = str(pl["run_id"]), str(pl["commit"]), str(pl["parent"])
    rel = f"{Z_DIR}/DIFF.patch"
    written = ctx.ledger.select(Filter(run_id=run_id, event_type="report.written"), 1)
    want = written[-1].payload.get("files", {}).get(rel) if written else None
    data = _read(ctx.layout.run_dir(run_id) / rel)
    if data is None or hashlib.sha256(data).hexdigest() != want:
        return [divergence(e.seq, f"{run_id}/{rel}", f"sha256 {want}", "missing or changed")]
    try:
        if gitops.parents(ctx.repo, commit) != [parent]:
            return [divergence(e.seq, f"commit {commit[:12]}", f"parent {parent}", "another")]
        expected = gitops.tree_with_patch(ctx.repo, parent, data)
        found = gitops.tree_of(ctx.repo, commit)
    except (FactoryError, OSError) as exc:
        return [divergence(e.seq, f"commit {commit[:12]}", "readable", str(exc))]
    if expected != found:
        return [divergence(e.seq, f"commit {commit[:12]} tree", expected, found)]
    return []


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 300 else text[:297] + "..."


def _check_seal(ctx: Context, events: Sequence[Event], p: dict[str, Any]) -> list[Divergence]:
    sealed_ev = next((e for e in events if e.event_type == "holdout.sealed"), None)
    if sealed_ev is None:
        return [divergence(None, "holdout.sealed", "recorded", "missing")]
    s = sealed_ev.payload
    try:
        again = holdout.seal(
            ctx.repo, str(p["base_commit"]), str(s["folder"]),
            int(ctx.config.get("limits.max_file_bytes")),
        )  # fmt: skip
    except (FactoryError, OSError) as exc:
        return [divergence(sealed_ev.seq, "holdout (from the base commit)", "readable", str(exc))]
    if again.sha256 != s["sha256"] or again.listing() != s["files"]:
        return [divergence(sealed_ev.seq, "sealed holdout", s["sha256"], again.sha256)]
    return []


def _check_scenarios(
    e: Event, folder: Path, need: int, out: list[Divergence]
) -> list[ScenarioResult]:
    """The recorded results, after recomputing each one from its trials (and each failed
    trial's class and symptom from its log, when the log hashes as recorded)."""
    pl = e.payload
    n = int(pl["iteration"])
    results: list[ScenarioResult] = list(pl["results"])
    for r in results:
        trials = pl.get("trials", {}).get(r["id"], [])
        again = convergence.scenario_result(r["id"], r["category"], trials, need, r.get("name", ""))
        if again != r:
            out.append(
                divergence(e.seq, f"iteration {n} scenario {r['id']}", _short(again), _short(r))
            )
        for k, t in enumerate(trials, 1):
            name = f"{r['id']}.trial{k}.log"
            if t["infra"] and name not in pl.get("logs", {}):
                continue  # nothing ran (the service was down): no log was written
            rel = f"{LOGS_DIR}/iter_{n}/{name}"
            want = pl.get("logs", {}).get(name)
            data = _read(folder / rel)
            if data is None or hashlib.sha256(data).hexdigest() != want:
                out.append(divergence(e.seq, f"{rel}", f"sha256 {want}", "missing or changed"))
                continue
            if t["infra"] or (t["rc"] == 0 and not t["timed_out"]):
                continue
            body = data.split(b"\n", 1)[1] if b"\n" in data else b""
            cls, symptom = symptoms.classify(
                body.decode("utf-8", "replace"), t["rc"], t["timed_out"]
            )
            if (cls, symptom) != (t["symptom_class"], t["symptom"]):
                out.append(
                    divergence(e.seq, f"{rel} class", f"{cls}: {symptom}", t["symptom_class"])
                )
    sat = convergence.satisfaction(results)
    if sat != pl["satisfaction"]:
        out.append(
            divergence(e.seq, f"iteration {n} satisfaction", str(sat), str(pl["satisfaction"]))
        )
    return results


def _check_checks(ctx: Context, e: Event) -> list[Divergence]:
    """An iteration's checks must be what its run recorded: each one's name, required, rc and
    timed_out (and the failing tests, when its ``check.finished`` names them) as in that
    event, and its blame (``caused_by``, ``cause``) what the run's ``isolation.decided`` says
    (the run's own replay recomputes both). The feedback is recompiled from these checks, so a
    change here would otherwise pass unseen. A check with no blame keys was recorded by a
    release before blame."""
    run_id = str(e.payload["inputs"]["run_id"])
    n = int(e.payload["iteration"])
    # As the crank read them when it decided (a later integration of that run is no part).
    finished = [
        f
        for f in ctx.ledger.select(Filter(run_id=run_id, event_type="check.finished"))
        if f.seq < e.seq
    ]
    found = [
        f
        for f in ctx.ledger.select(Filter(run_id=run_id, event_type="isolation.decided"))
        if f.seq < e.seq
    ]
    blame = convergence.blame(found[-1].payload) if found else {}
    checks = list(e.payload.get("checks", []))
    if len(checks) != len(finished):
        return [divergence(e.seq, f"iteration {n} checks", str(len(finished)), str(len(checks)))]
    out: list[Divergence] = []
    for c, ran in zip(checks, finished, strict=True):
        name = str(ran.payload.get("name"))
        for key, want in sorted(_recorded(ran.payload, blame.get(name), c).items()):
            if c.get(key) != want:
                what = _CHECK_WHAT.get(key, key)
                out.append(
                    divergence(e.seq, f"iteration {n} check {name} {what}", want, c.get(key))
                )
    return out


# How a divergence names a field of an iteration's check.
_CHECK_WHAT = {"caused_by": "blame", "cause": "blame cause", "failing_tests": "tests"}


def _recorded(ran: dict[str, Any], said: Blame | None, c: dict[str, Any]) -> dict[str, object]:
    """The fields of an iteration's check its run's events fix."""
    failed = ran.get("rc") != 0 or bool(ran.get("timed_out"))
    want: dict[str, object] = {
        "name": ran.get("name"),
        "required": bool(ran.get("required")),
        "rc": ran.get("rc"),
        "timed_out": bool(ran.get("timed_out")),
    }
    if isinstance(ran.get("failing_tests"), list):
        want["failing_tests"] = [str(t) for t in ran["failing_tests"]] if failed else []
    if "caused_by" in c or "cause" in c:
        want["caused_by"] = said["caused_by"] if said else None
        want["cause"] = said["cause"] if said else None
    return want


def _tree(ctx: Context, events: Sequence[Event], run_id: str) -> str:
    for e in events:
        if e.event_type == "scenarios.finished" and e.payload.get("run_id") == run_id:
            try:
                return gitops.tree_of(ctx.repo, str(e.payload["commit"]))
            except (FactoryError, OSError):
                return "(commit missing)"
    return ""


def _check_feedback(
    e: Event,
    folder: Path,
    trajectory: list[Iteration],
    cfg: dict[str, Any],
    results_of: dict[int, list[ScenarioResult]],
    last: dict[str, Any] | None,
    for_worker: str = "",
) -> list[Divergence]:
    pl = e.payload
    n = int(pl["iteration"])
    if last is None:
        return [divergence(e.seq, str(pl["file"]), "after a decision", "before any")]
    inp = crank.feedback_input(
        n, trajectory, {**cfg, "detail": pl["detail"]}, last["checks"], results_of.get(n, []),
        dict(pl.get("tails", {})), last["decision"], last["refused"], for_worker,
    )  # fmt: skip
    text = fb.compile_feedback(inp)
    again = hashlib.sha256(text.encode("utf-8")).hexdigest()
    out: list[Divergence] = []
    if again != pl["sha256"]:
        out.append(divergence(e.seq, f"{pl['file']} (recompiled)", pl["sha256"], again))
    data = _read(folder / str(pl["file"]))
    if data is None or hashlib.sha256(data).hexdigest() != pl["sha256"]:
        out.append(divergence(e.seq, f"{pl['file']} on disk", pl["sha256"], "missing or changed"))
    return out


def _check_finished(e: Event, folder: Path, last: dict[str, Any] | None) -> list[Divergence]:
    pl = e.payload
    out: list[Divergence] = []
    decided = last["decision"]["decision"] if last else None
    if pl["decision"] != "HALTED" and pl["decision"] != decided:
        out.append(divergence(e.seq, "final decision", str(decided), str(pl["decision"])))
    data = _read(folder / crank.REPORT)
    if data is None or hashlib.sha256(data).hexdigest() != pl.get("report_sha256"):
        out.append(
            divergence(e.seq, crank.REPORT, str(pl.get("report_sha256")), "missing or changed")
        )
    return out


def _read(path: Path) -> bytes | None:
    try:
        return fsutil.read_file(path, path.name, limit=MAX_READ)
    except (FactoryError, OSError):
        return None


def _plan_hash(p: dict[str, Any], workers: list[str]) -> str:
    """The hash of the crank's recorded plan narrowed to the workers a run launched (a
    manifest crank launches some units at a time; a plan crank all of its workers)."""
    plan = plans.from_dict(dict(p["plan"]), "the crank's recorded plan")
    try:
        return plans.digest(plan.select(sorted(workers)))
    except (KeyError, FactoryError):
        return "(workers outside the crank's plan)"


@dataclass
class _Units:
    """A manifest crank's replay: each unit's attempts, statuses and the decision recomputed
    with :mod:`core.units` from the recorded results."""

    manifest: Manifest
    owners: dict[str, str]
    workers: dict[str, str]
    history: list[UnitAttempt]

    @classmethod
    def of(cls, ctx: Context, events: Sequence[Event], p: dict[str, Any]) -> _Units | None:
        if p.get("mode") != "manifest":
            return None
        found = core_manifest.from_doc(p["manifest"], "the recorded manifest")
        sealed = next((e.payload for e in events if e.event_type == "holdout.sealed"), None)
        owners: dict[str, str] = {}
        for path, _sha in (sealed or {}).get("files", []):
            unit = core_units.unit_of_scenario(path, str(sealed["folder"])) if sealed else None
            if unit is not None and holdout.is_scenario_file(path):
                owners[scenario_id(path)] = unit
        workers = {u.id: core_manifest.worker_id(u.id) for u in found.units}
        return cls(found, owners, workers, [])

    def decide(
        self,
        e: Event,
        results: list[ScenarioResult],
        gate1: str,
        threshold: tuple[int, int],
        out: list[Divergence],
    ) -> Decision:
        pl = e.payload
        n = int(pl["iteration"])
        active = sorted({a["unit"] for a in pl.get("units", [])})
        by_unit = core_units.satisfaction_by_unit(results, self.owners, active)
        made = core_units.attempts(
            n, active, self.workers, gate1, by_unit, results, self.owners, threshold
        )
        if made != pl.get("units"):
            out.append(
                divergence(
                    e.seq, f"iteration {n} unit attempts", _short(made), _short(pl.get("units"))
                )
            )
        self.history += made
        checked = [u.id for u in self.manifest.units if u.done]
        state = core_units.statuses(self.manifest, self.history, checked)
        if state != pl.get("state"):
            out.append(
                divergence(
                    e.seq, f"iteration {n} unit statuses", _short(state), _short(pl.get("state"))
                )
            )
        return crank.units_decision(*core_units.decision(self.manifest, state), state)

    def results(
        self, results_of: dict[int, list[ScenarioResult]], n: int, unit: str
    ) -> dict[int, list[ScenarioResult]]:
        return {n: [r for r in results_of.get(n, []) if self.owners.get(r["id"]) == unit]}

    def refused(self, last: dict[str, Any], unit: str) -> list[Any]:
        return [r for r in last["refused"] if r["worker"] == self.workers[unit]]


def _check_gates(events: Sequence[Event]) -> tuple[list[str], list[Divergence]]:
    """Who decided which gate, when; and whether each pause and pass is what the gates in force
    at that moment (the crank's start, then every change) made it."""
    start = next(e for e in events if e.event_type == "crank.started")
    if "gates" not in start.payload:
        return [], []  # a crank recorded before gates existed
    state: GateState | None = None
    log: list[str] = []
    out: list[Divergence] = []
    seen: set[str] = set()  # gates passed, or paused at and then decided
    for e in events:
        if state is None:
            state = GateState.of([start])
            continue
        pl = e.payload
        if e.event_type == "gate.passed" or (
            e.event_type in ("gate.approved", "gate.rejected") and pl.get("gate") != "ship"
        ):
            seen.add(str(pl.get("gate")))
        if e.event_type == "gate.approved" and pl.get("gate") == "ship":
            seen.add("ship")
        if e.event_type == "iteration.started" and not {"spec", "plan"} <= seen:
            missing = ", ".join(g for g in ("spec", "plan") if g not in seen)
            out.append(divergence(e.seq, f"{missing} gate", "passed or decided first", "not"))
            seen |= {"spec", "plan"}  # said once
        if (
            e.event_type == "crank.finished"
            and pl.get("decision") == "CONVERGED"
            and "ship" not in seen
        ):
            out.append(divergence(e.seq, "ship gate", "passed or approved first", "not"))
        gate = str(pl.get("gate", ""))
        if e.event_type == "gate.awaiting" and gate == "escalation":
            log.append(
                f"{e.ts_utc} escalation after iteration {pl['iteration']}: {pl['reasons'][0]}"
            )
        elif e.event_type == "gate.awaiting" and state.mode(gate) != "review":
            out.append(divergence(e.seq, f"{pl['gate']} gate", "passed (not review)", "paused"))
        if e.event_type == "gate.passed" and state.mode(gate) == "review":
            out.append(divergence(e.seq, f"{pl['gate']} gate", "paused for review", "passed"))
        if e.event_type in ("gate.approved", "gate.rejected") and gate != state.awaiting:
            out.append(
                divergence(
                    e.seq, f"{e.event_type} {gate}", f"the awaited gate ({state.awaiting})", gate
                )
            )
        if e.event_type in ("gate.approved", "gate.rejected", "gate.changed"):
            what = e.event_type.split(".", 1)[1]
            log.append(f"{e.ts_utc} {pl.get('gate', 'gates')} {what} by {pl.get('by', '?')}")
        state.apply(e)
    return log, out
