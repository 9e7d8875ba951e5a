"""Proactive escalation: when the crank stops and asks the operator whatever the gates say
("full autonomy" trusts the crank unless something is off, it never means "never ask").

Each rule is a pure function of what the ledger records -- per-unit attempts, the iterations,
the decision -- returning the reason (one line for the operator) or
None, so replay reaches the same pause. :func:`escalation` applies them all in a fixed order.
"""

from __future__ import annotations

from collections.abc import Sequence

from tools.codex.factory.core.text import clip, one_line
from tools.codex.factory.records.crank import Decision, Iteration
from tools.codex.factory.records.manifest import UnitAttempt

SAME_FAILURE_LIMIT = 3  # a unit failing the same way this many times
CHECKS_LIMIT = 3  # iterations in a row with the required checks failing


def repeated_failure(attempts: Sequence[UnitAttempt]) -> str | None:
    """A unit that failed :data:`SAME_FAILURE_LIMIT` times with one failure signature (in any
    iterations, not only running: retrying the same way is what the rule catches). The unit
    that got there first is named (ties by unit ID)."""
    seen: dict[tuple[str, str], list[int]] = {}
    workers: dict[str, str] = {}
    for a in attempts:
        if a["passed"] or not a["signature"]:
            continue
        its = seen.setdefault((a["unit"], a["signature"]), [])
        if a["iteration"] not in its:
            its.append(a["iteration"])
        workers.setdefault(a["unit"], a["worker"])
    hits = [
        (sorted(its)[SAME_FAILURE_LIMIT - 1], unit, sig, sorted(its))
        for (unit, sig), its in seen.items()
        if len(its) >= SAME_FAILURE_LIMIT
    ]
    if not hits:
        return None
    _at, unit, sig, its = min(hits)
    return (
        f"unit {unit} (worker {workers[unit]}) failed the same way {len(its)} times (iterations "
        f"{_numbers(its)}): {_clip(sig)}"
    )


def unit_exhausted(attempts: Sequence[UnitAttempt], max_iterations: int) -> str | None:
    """A unit that used all its attempts (the manifest's ``max_iterations``) and still fails."""
    tries: dict[str, list[UnitAttempt]] = {}
    for a in attempts:
        tries.setdefault(a["unit"], []).append(a)
    for unit in sorted(tries):
        mine = sorted(tries[unit], key=lambda a: a["iteration"])
        count = len({a["iteration"] for a in mine})
        if count >= max_iterations and not mine[-1]["passed"]:
            return (
                f"unit {unit} (worker {mine[-1]['worker']}) still fails after {count} "
                f"attempt(s), its limit of {max_iterations}"
            )
    return None


def checks_failing(iterations: Sequence[Iteration]) -> str | None:
    """The required checks failed in each of the last :data:`CHECKS_LIMIT` iterations."""
    last = list(iterations[-CHECKS_LIMIT:])
    if len(last) < CHECKS_LIMIT or any(it["gate1"] == "PASS" for it in last):
        return None
    return (
        f"the required checks failed in {CHECKS_LIMIT} iterations in a row (iterations "
        f"{_numbers([it['iteration'] for it in last])})"
    )


def stall(decision: Decision | None) -> str | None:
    """The recorded decision says the crank stalled (the convergence protocol's kinds:
    same-failure, no-improvement, oscillation) or ran out of iterations."""
    if decision is None:
        return None
    if decision["decision"] == "STALLED":
        return f"the crank stalled ({decision['kind']}): {_clip(decision['reason'])}"
    if decision["decision"] == "EXHAUSTED":
        return f"the crank is out of iterations: {_clip(decision['reason'])}"
    return None


def escalation(
    attempts: Sequence[UnitAttempt],
    iterations: Sequence[Iteration],
    decision: Decision | None,
    *,
    max_iterations: int,
) -> list[str]:
    """Every reason to stop and ask after an iteration, in a fixed order: a unit failing the
    same way, a unit out of attempts, required checks failing, a stall. Empty: carry on as the
    gates say. (A holdout leak pauses the crank where it is caught; a crank's plan is fixed when
    it starts, so it cannot change between iterations.)"""
    reasons = [
        repeated_failure(attempts),
        unit_exhausted(attempts, max_iterations),
        checks_failing(iterations),
        stall(decision),
    ]
    return [r for r in reasons if r is not None]


def _numbers(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values)


def _clip(text: str) -> str:
    """Recorded text in a reason stays one short line (a signature comes from agent output)."""
    return clip(one_line(text), 200)
