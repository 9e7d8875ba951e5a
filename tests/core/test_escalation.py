"""Proactive escalation from recorded trajectories: the same failure three times, a unit out of
attempts, required checks failing three iterations running, a stall, a holdout leak, the plan
changing by more than a quarter of its units; and the fixed order they are given in."""

from __future__ import annotations

from tools.codex.factory.core import escalation as esc
from tools.codex.factory.core.convergence import decide
from tools.codex.factory.core.manifest import worker_id
from tools.codex.factory.records.crank import Iteration
from tools.codex.factory.records.manifest import UnitAttempt


def attempt(it: int, unit: str, sig: str = "") -> UnitAttempt:
    return UnitAttempt(
        iteration=it, unit=unit, worker=worker_id(unit), passed=not sig, signature=sig
    )


def iteration(
    n: int, gate1: str = "PASS", passed: int = 1, failing: tuple[str, ...] = ()
) -> Iteration:
    return Iteration(
        iteration=n,
        run_id=f"r{n}",
        gate1=gate1,
        satisfaction={"passed": passed, "total": 4},
        passing=[],
        failing=list(failing),
        signatures={},
        infra=[],
        tree=f"t{n}",
        advisory=0,
    )


def test_the_same_failure_three_times_escalates_naming_unit_and_worker() -> None:
    two = [attempt(1, "ve1", "S-1|assertion|x"), attempt(2, "ve1", "S-1|assertion|x")]
    assert esc.repeated_failure(two) is None
    other = [*two, attempt(3, "ve1", "S-1|assertion|y"), attempt(3, "ve2")]
    assert esc.repeated_failure(other) is None
    assert (
        esc.repeated_failure([*two, attempt(2, "ve1", "S-1|assertion|x")]) is None
    )  # once per iteration
    three = [*other, attempt(4, "ve1", "S-1|assertion|x")]
    assert esc.repeated_failure(three) == (
        "unit ve1 (worker Uve1) failed the same way 3 times (iterations 1, 2, 4): S-1|assertion|x"
    )
    early = [attempt(k, "zz9", "S-2|timeout|t") for k in (1, 2, 3)]
    assert esc.repeated_failure([*three, *early]).startswith("unit zz9 (worker Uzz9)")  # type: ignore[union-attr]
    hostile = [attempt(k, "ve3", "a\nb" + "x" * 500) for k in (1, 2, 3)]
    reason = esc.repeated_failure(hostile)
    assert reason is not None and "\n" not in reason and len(reason) < 300


def test_a_unit_out_of_attempts_escalates() -> None:
    tries = [attempt(1, "ve1", "s"), attempt(2, "ve1", "t"), attempt(3, "ve2")]
    assert esc.unit_exhausted(tries, 3) is None
    assert esc.unit_exhausted(tries, 2) == (
        "unit ve1 (worker Uve1) still fails after 2 attempt(s), its limit of 2"
    )
    assert esc.unit_exhausted([*tries, attempt(3, "ve1")], 2) is None  # passed at last


def test_required_checks_failing_three_iterations_in_a_row() -> None:
    runs = [iteration(1, "FAIL"), iteration(2, "BLOCKED"), iteration(3, "PASS")]
    assert esc.checks_failing(runs) is None
    runs += [iteration(4, "FAIL"), iteration(5, "FAIL")]
    assert esc.checks_failing(runs) is None
    runs.append(iteration(6, "BLOCKED"))
    assert esc.checks_failing(runs) == (
        "the required checks failed in 3 iterations in a row (iterations 4, 5, 6)"
    )
    assert esc.checks_failing(runs[:2]) is None


def test_a_stall_or_exhaustion_decided_by_the_convergence_rules() -> None:
    flat = [iteration(k, passed=1, failing=(f"S-{k}",)) for k in (1, 2, 3)]
    stalled = decide(flat, (9, 10), 10)
    assert stalled["decision"] == "STALLED" and stalled["kind"] == "no-improvement"
    assert esc.stall(stalled) == f"the crank stalled (no-improvement): {stalled['reason']}"
    exhausted = decide(flat[:1], (9, 10), 1)
    assert esc.stall(exhausted) == (
        "the crank is out of iterations: 1 iteration(s) done and satisfaction is below the threshold"
    )
    assert esc.stall(decide(flat[:1], (9, 10), 5)) is None
    assert esc.stall(None) is None


def test_escalation_gives_every_reason_in_a_fixed_order() -> None:
    attempts = [attempt(k, "ve1", "S-1|assertion|x") for k in (1, 2, 3)]
    runs = [iteration(k, "FAIL") for k in (1, 2, 3)]
    stalled3 = decide([iteration(1, passed=1)] * 3, (9, 10), 9)
    reasons = esc.escalation(attempts, runs, stalled3, max_iterations=3)
    assert [r.split(" ")[:2] for r in reasons] == [
        ["unit", "ve1"],
        ["unit", "ve1"],
        ["the", "required"],
        ["the", "crank"],
    ]
    assert esc.escalation([], [iteration(1)], None, max_iterations=3) == []
    stalled = decide([iteration(1, passed=1)] * 3, (9, 10), 9)
    assert esc.escalation([], [], stalled, max_iterations=3) == [esc.stall(stalled)]
