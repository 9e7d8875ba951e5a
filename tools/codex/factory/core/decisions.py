"""Pure decisions after validation: merge order, check status, the integrate stage, the policy
override and the final verdict (the validation judgement itself is :mod:`core.validation`).

Every function here is a function of its (JSON) arguments only, which are recorded in the
ledger, so ``ledger-replay`` recomputes the same answers the live run gave, with these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tools.codex.factory.core.isolation import Result as Isolation
from tools.codex.factory.core.paths import worker_dirname
from tools.codex.factory.records.status import StatusName
from tools.codex.factory.records.validation import AppliedPatch, CheckResult, StageRow, Violation


def merge_order(
    depends_on: Mapping[str, Sequence[str]], strict: bool = False
) -> tuple[list[str], str]:
    """Topological order by declared dependencies, ties by worker id; (partial, reason) on a cycle.

    Dependencies on workers outside this integration are ignored (they are not being merged),
    unless ``strict`` (feature flag strict_handoff_dependencies): then they block the merge.
    """
    workers = sorted(depends_on)
    if strict:
        missing = sorted(
            {f"{w}->{d}" for w in workers for d in depends_on[w] if d not in depends_on}
        )
        if missing:
            return [], f"dependencies on workers outside this integration: {', '.join(missing)}"
    deps = {w: sorted(d for d in set(depends_on[w]) if d in depends_on and d != w) for w in workers}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(workers):
        ready = [w for w in workers if w not in done and all(d in done for d in deps[w])]
        if not ready:
            stuck = [w for w in workers if w not in done]
            return order, f"dependency cycle among workers {', '.join(stuck)}"
        order.append(ready[0])
        done.add(ready[0])
    return order, ""


def check_status(checks: Sequence[CheckResult]) -> tuple[StatusName, list[str]]:
    """PASS iff every required check ran with rc 0 (advisory ones never block)."""
    reasons = []
    for c in checks:
        if not c["required"]:
            continue
        if c["timed_out"]:
            reasons.append(f"required check {c['name']!r} timed out")
        elif c["rc"] != 0:
            reasons.append(f"required check {c['name']!r} exited with rc={c['rc']}")
    return ("BLOCKED" if reasons else "PASS"), reasons


def left_out(planned: Sequence[str], covered: Sequence[str]) -> list[str]:
    """The run's planned workers an integration did not cover (``integrate --workers``)."""
    return sorted(set(planned) - set(covered))


def partial_reason(missing: Sequence[str]) -> str:
    """Why a subset integration is never a PASS: its verdict says nothing of the workers left
    out, and the run is not done until they are integrated too."""
    return f"partial integration: left out {', '.join(missing)}" if missing else ""


def failed_required(checks: Sequence[CheckResult]) -> list[str]:
    """The required checks that failed (non-zero rc or timed out), in the order they ran."""
    return [c["name"] for c in checks if c["required"] and (c["timed_out"] or c["rc"] != 0)]


def integrate_outcome(
    merge_reason: str,
    applied: Sequence[AppliedPatch],
    checks: Sequence[CheckResult],
    conflict: str = "",
    missing: Sequence[str] = (),
    *,
    isolation: Isolation | None = None,
    flaky: str = "block",
) -> tuple[StatusName, str]:
    """The integrate stage's status and reason from what it recorded: ``merge.planned``'s reason,
    the ``patch.applied`` events in merge order (worker, ok, files) and the ``check.finished``
    events. ``conflict`` is a ``patch.conflict`` error: earlier releases applied every patch in
    one `git apply` and recorded it when each applied alone but not all together; this release
    applies each patch on its own (a failure is that worker's ``patch.applied``), so only their
    runs' replay passes one. ``missing``: the planned workers left out of this integration
    (:func:`left_out`): whatever the checks say, the stage is then BLOCKED, saying so."""
    if merge_reason:
        return "BLOCKED", merge_reason
    for i, a in enumerate(applied):
        if not a["ok"]:
            done = [str(x["worker"]) for x in applied[:i]]
            return "BLOCKED", (
                f"patch of {a['worker']}_worker does not apply to the base "
                f"(after {', '.join(done) or 'nothing'}): {', '.join(a['files'])}"
            )
    if conflict:
        return "BLOCKED", f"the patches do not apply together: {conflict}"
    status, reasons = check_status(checks)
    reason = "; ".join(reasons)
    if isolation is not None and status == "BLOCKED":
        status, reason = isolated_outcome(checks, isolation, flaky)
    if missing:
        return "BLOCKED", "; ".join(r for r in (reason, partial_reason(missing)) if r)
    return status, reason


def isolated_outcome(
    checks: Sequence[CheckResult], found: Isolation, flaky: str
) -> tuple[StatusName, str]:
    """The integrate stage after culprit isolation: each failed required check with whom it is
    blamed on (a culprit failing alone, workers failing only together), flaky (BLOCKED, or PASS
    with a warning when ``integrate.flaky`` is ``warn``) or undetermined."""
    failed = failed_required(checks)
    parts = [
        f"{why}; {_blame(check, found)}"
        for check, why in zip(failed, check_status(checks)[1], strict=True)
    ]
    if flaky == "warn" and all(c in found["flaky"] for c in failed):
        return "PASS", "warning: " + "; ".join(parts) + " (accepted: integrate.flaky is warn)"
    return "BLOCKED", "; ".join(parts)


def _blame(check: str, found: Isolation) -> str:
    culprits = [worker_dirname(c["worker"]) for c in found["culprits"] if c["check"] == check]
    together = [i["workers"] for i in found["interactions"] if i["check"] == check]
    if check in found["flaky"]:
        return "passed on a rerun: flaky"
    if check in found["base"]:
        return "the base commit fails it too: no worker is blamed"
    if culprits:
        label, each = ("culprit", "fails") if len(culprits) == 1 else ("culprits", "each fails")
        return f"{label}: {', '.join(culprits)} ({each} alone)"
    if together:
        names = "; ".join(" + ".join(worker_dirname(w) for w in ws) for ws in together)
        return f"interaction: {names} (each passes alone, not together)"
    if found["exhausted"]:
        return (
            f"culprit undetermined: isolation stopped at its bound after {found['runs']} "
            "run(s) (integrate.isolate_max_runs)"
        )
    # The merged result fails it, so some set of workers does: isolation did not search that
    # set (it holds a worker blamed for another check, or another interaction was followed).
    return (
        "culprit undetermined: isolation named no worker or set of workers for it (it may fail "
        "only together with a worker blamed for another check)"
    )


def worker_verdicts(workers: Sequence[str], found: Isolation | None) -> dict[str, dict[str, str]]:
    """Per worker after integration: BLOCKED ``check-failed`` (a culprit), BLOCKED
    ``check-interaction`` (a member of an interaction), else PASS."""
    culprits = {c["worker"] for c in found["culprits"]} if found else set()
    members = {w for i in found["interactions"] for w in i["workers"]} if found else set()
    out: dict[str, dict[str, str]] = {}
    for w in workers:
        if w in culprits:
            out[w] = {"verdict": "BLOCKED", "rule": "check-failed"}
        elif w in members:
            out[w] = {"verdict": "BLOCKED", "rule": "check-interaction"}
        else:
            out[w] = {"verdict": "PASS", "rule": ""}
    return out


def integrate_refused(error: str) -> tuple[StatusName, str]:
    """The integrate stage when integration was refused before it planned a merge (no PASS
    validation of these bundles, a changed manifest, a refused write): BLOCKED, with the
    refusal. Replay applies it to an integrate stage with no ``merge.planned`` before it."""
    return "BLOCKED", error


def with_policy(
    status: StatusName, reason: str, violations: Sequence[Violation]
) -> tuple[StatusName, str]:
    """A write the guarded writer refused blocks the stage that was running when it passed."""
    if violations and status == "PASS":
        return "BLOCKED", f"write refused: {violations[0]['path']}"
    return status, reason


def final_status(stage_statuses: Sequence[str]) -> StatusName:
    """FAIL beats BLOCKED beats PENDING beats PASS; SKIPPED stages do not count."""
    counted = [s for s in stage_statuses if s != "SKIPPED"]
    worst: tuple[StatusName, ...] = ("FAIL", "BLOCKED", "PENDING")
    for s in worst:
        if s in counted:
            return s
    return "PASS" if counted else "FAIL"


def final_verdict(
    rows: Sequence[StageRow], violations: Sequence[Violation] = (), pending: Sequence[str] = ()
) -> tuple[StatusName, list[str]]:
    """The run's final status and reasons from its stage rows (a refused write blocks it;
    ``pending`` interactive workers leave an unblocked run PENDING)."""
    statuses = [str(r["status"]) for r in rows] + (["BLOCKED"] if violations else [])
    statuses += ["PENDING"] if pending else []
    reasons = [
        f"{r['stage']}: {r['reason']}"
        for r in rows
        if r["status"] in ("BLOCKED", "FAIL") and r["reason"]
    ]
    return final_status(statuses), reasons


def unrecorded_verdict(reasons: Sequence[str], error: str) -> tuple[StatusName, list[str]]:
    """A verdict the ledger could not record: FAIL, whatever it was, so the files never claim
    more than the ledger holds (the reason says why)."""
    return "FAIL", [*reasons, f"summary: could not record the run in the ledger: {error}"]
