"""The loop's decisions, pure functions of what the ledger records: a scenario's outcome from
its trials, satisfaction, regressions, and what to do after an iteration (converged, continue,
stalled, exhausted, halted) with the stall protocol's evidence.

Satisfaction is two integers and the threshold a fraction of two: no float is compared or
hashed, so a replay on any machine decides the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation

from tools.codex.factory.core.symptoms import signature
from tools.codex.factory.errors import UsageError
from tools.codex.factory.records.crank import (
    Blame,
    Decision,
    Iteration,
    Satisfaction,
    ScenarioResult,
    Trial,
)

STALL_WINDOW = 3
ADVICE = {
    "same-failure": (
        "the same scenario keeps failing the same way: the spec or the scenario may need "
        "adjusting; escalate to the project lead"
    ),
    "no-improvement": (
        "no improvement for 3 iterations: the agents need stronger constraints (their task, "
        "scope or instructions) or the problem is architectural; escalate"
    ),
    "oscillation": (
        "the work oscillates (it returned to an earlier state): an architectural problem the "
        "agents cannot see from the feedback; escalate"
    ),
    "holdout-leak": (
        "text meant for an agent held a scenario's lines or a canary: find how it got there "
        "(the plan's task, a check's output with feedback.detail full), remove it, start again"
    ),
    "infrastructure": (
        "fix what could not run (an interpreter, an agent's credentials, the sandbox), then "
        "resume the crank"
    ),
}


_THRESHOLD = re.compile(r"(?:0|1)?(?:\.[0-9]{1,6})?")


def parse_threshold(text: str, source: str = "threshold") -> tuple[int, int]:
    """``"0.80"`` -> (4, 5): a fraction in (0, 1], exact, with at most 6 decimals (so no
    exponent or digit string can make the arithmetic on it huge)."""
    if not _THRESHOLD.fullmatch(str(text).strip()) or not str(text).strip(".").strip():
        raise UsageError(f"{source} {text!r}: give a number between 0 and 1, e.g. 0.80")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise UsageError(f"{source} {text!r}: give a number between 0 and 1, e.g. 0.80") from None
    if not value.is_finite() or not (0 < value <= 1):
        raise UsageError(f"{source} {text!r}: give a number between 0 and 1, e.g. 0.80")
    num, den = value.as_integer_ratio()
    return num, den


def meets(sat: Satisfaction, threshold: tuple[int, int]) -> bool:
    num, den = threshold
    return sat["total"] > 0 and sat["passed"] * den >= num * sat["total"]


def percent(sat: Satisfaction) -> str:
    """``2/3`` -> ``66.7%`` (tenths, rounded half up, integers only)."""
    if sat["total"] <= 0:
        return "-"
    tenths = (sat["passed"] * 2000 + sat["total"]) // (2 * sat["total"])
    return f"{tenths // 10}.{tenths % 10}%"


def scenario_result(
    scenario_id: str, category: str, trials: Sequence[Trial], need: int, name: str = ""
) -> ScenarioResult:
    """A scenario's outcome from its trials: ``pass`` (every trial), ``fail`` (none), ``flaky``
    (some), ``infra`` (a trial could not run: never a product failure); ``passed`` when at
    least ``need`` trials passed (the k-of-n rule)."""
    n = len(trials)
    if any(t["infra"] for t in trials) or n == 0:
        bad = next((t for t in trials if t["infra"]), None)
        return ScenarioResult(
            id=scenario_id, name=name, category=category, outcome="infra", passed=False, trials=n,
            passes=0, rc=bad["rc"] if bad else None, symptom=bad["infra"] if bad else "no trial ran",
            symptom_class="infrastructure", signature="",
        )  # fmt: skip
    ok = [t for t in trials if t["rc"] == 0 and not t["timed_out"]]
    passes = len(ok)
    outcome = "pass" if passes == n else "fail" if passes == 0 else "flaky"
    failed = [t for t in trials if not (t["rc"] == 0 and not t["timed_out"])]
    last = failed[-1] if failed else None
    passed = passes >= min(max(need, 1), n)
    return ScenarioResult(
        id=scenario_id,
        name=name,
        category=category,
        outcome=outcome,
        passed=passed,
        trials=n,
        passes=passes,
        rc=last["rc"] if last else 0,
        symptom=last["symptom"] if last else "",
        symptom_class=last["symptom_class"] if last else "",
        signature=signature(scenario_id, last["symptom_class"], last["symptom"])
        if last and not passed
        else "",
    )


def gate1(final_status: str | None) -> str:
    """Gate 1 from an iteration run's final status: the required checks passed only on PASS;
    a run that never reached integration (no bundle passed validation) is BLOCKED."""
    return final_status if final_status in ("PASS", "FAIL", "BLOCKED") else "BLOCKED"


def blame(decided: Mapping[str, object]) -> dict[str, Blame]:
    """Per failed required check, whom culprit isolation (an ``isolation.decided`` payload)
    blamed it on, for the next iteration's feedback."""
    failed = [str(c) for c in _items(decided.get("failed"))]
    culprits = [c for c in _items(decided.get("culprits")) if isinstance(c, Mapping)]
    pairs = [i for i in _items(decided.get("interactions")) if isinstance(i, Mapping)]
    flaky = {str(c) for c in _items(decided.get("flaky"))}
    base = {str(c) for c in _items(decided.get("base"))}
    out: dict[str, Blame] = {}
    for check in failed:
        alone = sorted({str(c.get("worker")) for c in culprits if c.get("check") == check})
        together = sorted(
            {str(w) for i in pairs if i.get("check") == check for w in _items(i.get("workers"))}
        )
        if check in flaky:
            out[check] = Blame(caused_by=[], cause="flaky")
        elif check in base:
            out[check] = Blame(caused_by=[], cause="base")
        elif alone:
            out[check] = Blame(caused_by=alone, cause="alone")
        elif together:
            out[check] = Blame(caused_by=together, cause="together")
        else:
            out[check] = Blame(caused_by=[], cause="")
    return out


def _items(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def fail_count(r: ScenarioResult) -> str:
    return f"{r['trials'] - r['passes']}/{r['trials']} failures"


def satisfaction(results: Sequence[ScenarioResult]) -> Satisfaction:
    """passed / total: every scenario counts in the total, infrastructure failures too."""
    return Satisfaction(passed=sum(1 for r in results if r["passed"]), total=len(results))


def regressions(earlier: Sequence[Iteration], now: Iteration) -> list[str]:
    """Scenarios that passed in an earlier iteration and fail now."""
    passed_before = {sid for it in earlier for sid in it["passing"]}
    return sorted(set(now["failing"]) & passed_before)


def decide(
    trajectory: Sequence[Iteration],
    threshold: tuple[int, int],
    max_iterations: int,
    block_on_regression: bool = False,
) -> Decision:
    """What to do after the last iteration of ``trajectory`` (every iteration so far)."""
    now = trajectory[-1]
    earlier = trajectory[:-1]
    regressed = regressions(earlier, now)
    if now["infra"]:
        return _decision(
            "HALTED", "infrastructure",
            f"{len(now['infra'])} scenario(s) could not be evaluated (after a retry)",
            [f"{sid}: infrastructure failure" for sid in now["infra"]], regressed,
        )  # fmt: skip
    gate1 = now["gate1"] == "PASS"
    if gate1 and meets(now["satisfaction"], threshold) and not (block_on_regression and regressed):
        return _decision(
            "CONVERGED", "",
            f"satisfaction {percent(now['satisfaction'])} meets the threshold "
            f"{threshold[0]}/{threshold[1]} and the required checks pass",
            [], regressed,
        )  # fmt: skip
    stall = _stall(trajectory)
    if stall is not None:
        kind, reason, evidence = stall
        return _decision("STALLED", kind, reason, evidence, regressed)
    if now["iteration"] >= max_iterations:
        why = "the required checks fail" if not gate1 else "satisfaction is below the threshold"
        if gate1 and block_on_regression and regressed and meets(now["satisfaction"], threshold):
            why = "a regression blocks convergence"
        return _decision(
            "EXHAUSTED", "", f"{max_iterations} iteration(s) done and {why}", [], regressed
        )
    reason = (
        "the required checks fail"
        if not gate1
        else (
            "a regression blocks convergence"
            if block_on_regression and regressed and meets(now["satisfaction"], threshold)
            else f"satisfaction {percent(now['satisfaction'])} is below the threshold"
        )
    )
    return _decision("CONTINUE", "", reason, [], regressed)


def halted(kind: str, reason: str, regressed: list[str]) -> Decision:
    """A crank stopped by something other than its trajectory (a holdout leak)."""
    return _decision("HALTED", kind, reason, [], regressed)


def _decision(
    decision: str, kind: str, reason: str, evidence: list[str], regressed: list[str]
) -> Decision:
    return Decision(
        decision=decision,
        kind=kind,
        reason=reason,
        evidence=evidence,
        advice=ADVICE.get(kind, ""),
        regressions=regressed,
    )


def _stall(trajectory: Sequence[Iteration]) -> tuple[str, str, list[str]] | None:
    """The stall protocol over the last iterations: an oscillation (the integrated tree, or the
    set of failing scenarios, back to one seen before the last: the most specific evidence, so
    it is named first); the same failure (scenario and signature) 3 times running; or no
    improvement in satisfaction over 3 iterations."""
    return _oscillation(trajectory) or _same_or_flat(trajectory)


def _oscillation(trajectory: Sequence[Iteration]) -> tuple[str, str, list[str]] | None:
    now = trajectory[-1]
    for it in trajectory[:-2]:
        if it["tree"] == now["tree"] and now["tree"] != trajectory[-2]["tree"]:
            return (
                "oscillation",
                f"iteration {now['iteration']} integrated the same tree as iteration {it['iteration']}",
                [f"tree {now['tree']}"],
            )
        if (
            it["failing"]
            and it["failing"] == now["failing"]
            and trajectory[-2]["failing"] != now["failing"]
        ):
            return (
                "oscillation",
                f"iteration {now['iteration']} fails the same scenarios as iteration {it['iteration']}",
                [", ".join(now["failing"])],
            )
    return None


def _same_or_flat(trajectory: Sequence[Iteration]) -> tuple[str, str, list[str]] | None:
    window = trajectory[-STALL_WINDOW:]
    if len(window) < STALL_WINDOW:
        return None
    first = window[0]["signatures"]
    same = sorted(
        sid
        for sid, sig in first.items()
        if all(it["signatures"].get(sid) == sig for it in window[1:])
    )
    if same:
        return (
            "same-failure",
            f"{len(same)} scenario(s) failed the same way in the last {STALL_WINDOW} iterations",
            [f"{sid}: {first[sid]}" for sid in same],
        )
    base = window[0]["satisfaction"]
    if all(_ratio_le(it["satisfaction"], base) for it in window[1:]):
        shown = ", ".join(percent(it["satisfaction"]) for it in window)
        return (
            "no-improvement",
            f"satisfaction did not improve over the last {STALL_WINDOW} iterations ({shown})",
            [f"iteration {it['iteration']}: {percent(it['satisfaction'])}" for it in window],
        )
    return None


def _ratio_le(a: Satisfaction, b: Satisfaction) -> bool:
    """a <= b as fractions (a total of 0 counts as 0)."""
    if a["total"] == 0:
        return True
    if b["total"] == 0:
        return a["passed"] == 0
    return a["passed"] * b["total"] <= b["passed"] * a["total"]


__all__ = [
    "ADVICE",
    "decide",
    "fail_count",
    "meets",
    "parse_threshold",
    "percent",
    "regressions",
    "satisfaction",
    "scenario_result",
]
