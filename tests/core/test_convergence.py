"""The loop's decisions: outcomes from trials (k of n), satisfaction as integers, regressions,
and the stall protocol (same failure, no improvement, oscillation), as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.codex.factory.core import convergence as cv
from tools.codex.factory.core.symptoms import CLASSES, classify, normalise, signature
from tools.codex.factory.errors import UsageError
from tools.codex.factory.records.crank import Iteration, Trial


def trial(rc: int | None = 0, *, timed_out: bool = False, infra: str = "", msg: str = "") -> Trial:
    cls, sym = ("", "") if rc == 0 and not timed_out else classify(msg, rc, timed_out)
    return Trial(rc=rc, timed_out=timed_out, infra=infra, symptom=sym, symptom_class=cls)


def test_outcomes_from_trials_and_the_k_of_n_rule() -> None:
    all3 = cv.scenario_result("S-1", "x", [trial(), trial(), trial()], need=3)
    assert (all3["outcome"], all3["passed"], cv.fail_count(all3)) == ("pass", True, "0/3 failures")
    none = cv.scenario_result("S-1", "x", [trial(1, msg="AssertionError: no")] * 3, need=3)
    assert (none["outcome"], none["passed"], cv.fail_count(none)) == ("fail", False, "3/3 failures")
    assert none["symptom_class"] == "assertion" and none["signature"].startswith("S-1|assertion|")
    some = [trial(), trial(1, msg="boom"), trial()]
    assert cv.scenario_result("S-1", "x", some, need=3)["outcome"] == "flaky"
    assert cv.scenario_result("S-1", "x", some, need=3)["passed"] is False
    assert cv.scenario_result("S-1", "x", some, need=2)["passed"] is True
    timeout = cv.scenario_result("S-1", "x", [trial(None, timed_out=True)], need=1)
    assert timeout["symptom_class"] == "timeout" and not timeout["passed"]


def test_an_infrastructure_failure_is_never_a_product_failure() -> None:
    r = cv.scenario_result("S-1", "x", [trial(None, infra="no interpreter: pwsh")], need=1)
    assert (r["outcome"], r["passed"], r["signature"], r["symptom_class"]) == (
        "infra",
        False,
        "",
        "infrastructure",
    )
    assert cv.satisfaction([r]) == {"passed": 0, "total": 1}  # the denominator stays


@pytest.mark.parametrize(
    "text",
    ["0", "1.5", "-0.2", "abc", "nan", "inf", "", ".", "1e-99999999", "0.1234567", "1e-5000"],
)
def test_a_bad_threshold_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="give a number between 0 and 1"):
        cv.parse_threshold(text)


@settings(max_examples=200, derandomize=True)
@given(st.integers(0, 50), st.integers(1, 50), st.integers(1, 100))
def test_meets_is_exact_integer_arithmetic(passed: int, total: int, pct: int) -> None:
    passed = min(passed, total)
    num, den = cv.parse_threshold(f"{pct / 100:.2f}")
    assert cv.meets({"passed": passed, "total": total}, (num, den)) == (passed * 100 >= pct * total)


def test_percent_rounds_half_up_in_tenths() -> None:
    assert [
        cv.percent({"passed": p, "total": t}) for p, t in [(2, 3), (1, 3), (1, 8), (0, 5), (5, 5)]
    ] == [
        "66.7%",
        "33.3%",
        "12.5%",
        "0.0%",
        "100.0%",
    ]


def test_every_class_is_one_the_feedback_knows() -> None:
    outputs = [
        ("", None, True),
        ("bash: foo: command not found", 127, False),
        ("ModuleNotFoundError: No module named 'x'", 1, False),
        ("SyntaxError: invalid syntax", 1, False),
        ("PermissionError: [Errno 13]", 1, False),
        ("FileNotFoundError: x.txt", 1, False),
        ("AssertionError", 1, False),
        ("something else", 2, False),
    ]
    assert [classify(o, rc, t)[0] for o, rc, t in outputs] == list(CLASSES)


def test_signatures_mask_what_changes_between_runs() -> None:
    a = "AssertionError at /tmp/run-1/x.py line 12: id 0xdeadbeef1 != 7"
    b = "AssertionError at /tmp/run-22/x.py line 97: id 0xcafef00d2 != 8"
    assert normalise(a) == normalise(b)
    assert signature("S-1", "assertion", a) == signature("S-1", "assertion", b)
    assert normalise("ModuleNotFoundError: No module named 'app'") != normalise("KeyError: 'app'")


def it(
    n: int,
    passed: int,
    total: int = 4,
    *,
    gate1: str = "PASS",
    sigs: dict[str, str] | None = None,
    tree: str = "",
    infra: list[str] | None = None,
) -> Iteration:
    sigs = sigs or {}
    ids = [f"S-{k}" for k in range(total)]
    failing = sorted(sigs) if sigs else ids[passed:]
    return Iteration(
        iteration=n,
        run_id=f"run-{n}",
        gate1=gate1,
        satisfaction={"passed": passed, "total": total},
        passing=sorted(set(ids) - set(failing) - set(infra or [])),
        failing=failing,
        signatures=sigs or {sid: f"{sid}|assertion|x{n}" for sid in failing},
        infra=infra or [],
        tree=tree or f"tree-{n}",
        advisory=0,
    )


T = (4, 5)


def test_converged_needs_the_required_checks_and_the_threshold() -> None:
    assert cv.decide([it(1, 4, 5)], T, 5)["decision"] == "CONVERGED"
    assert cv.decide([it(1, 4, 5, gate1="BLOCKED")], T, 5)["decision"] == "CONTINUE"
    assert cv.decide([it(1, 3, 5)], T, 5)["decision"] == "CONTINUE"


def test_exhausted_after_the_last_iteration() -> None:
    d = cv.decide([it(1, 1), it(2, 2)], T, 2)
    assert d["decision"] == "EXHAUSTED" and "2 iteration(s) done" in d["reason"]


def test_the_same_failure_three_times_is_a_stall() -> None:
    same = {"S-3": "S-3|import|No module named <path>"}
    traj = [it(1, 1, sigs={"S-0": "a", **same}), it(2, 2, sigs=same), it(3, 3, sigs=same)]
    d = cv.decide(traj, T, 9)
    assert (d["decision"], d["kind"]) == ("STALLED", "same-failure")
    assert d["evidence"] == ["S-3: S-3|import|No module named <path>"]
    assert "spec or the scenario" in d["advice"]


def test_no_improvement_for_three_iterations_is_a_stall() -> None:
    traj = [
        it(1, 2, sigs={"S-0": "a", "S-1": "b"}),
        it(2, 2, sigs={"S-0": "c", "S-2": "d"}),
        it(3, 1, sigs={"S-1": "e", "S-2": "f", "S-3": "g"}),
    ]
    d = cv.decide(traj, T, 9)
    assert (d["decision"], d["kind"]) == ("STALLED", "no-improvement")
    assert "50.0%, 50.0%, 25.0%" in d["reason"]
    assert cv.decide([*traj[:2], it(3, 3, sigs={"S-0": "h"})], T, 9)["decision"] == "CONTINUE"


def test_returning_to_an_earlier_tree_is_an_oscillation() -> None:
    traj = [
        it(1, 1, tree="A", sigs={"S-1": "1"}),
        it(2, 2, tree="B", sigs={"S-2": "2"}),
        it(3, 3, tree="A", sigs={"S-3": "3"}),
    ]
    d = cv.decide(traj, T, 9)
    assert (d["decision"], d["kind"]) == ("STALLED", "oscillation")
    assert "same tree as iteration 1" in d["reason"]


def test_returning_to_an_earlier_failing_set_is_an_oscillation() -> None:
    traj = [
        it(1, 2, sigs={"S-1": "a", "S-2": "b"}),
        it(2, 3, sigs={"S-3": "c"}),
        it(3, 2, sigs={"S-1": "d", "S-2": "e"}),
    ]
    d = cv.decide(traj, T, 9)
    assert (d["decision"], d["kind"]) == ("STALLED", "oscillation")
    assert "fails the same scenarios as iteration 1" in d["reason"]


def test_regressions_are_reported_and_block_only_with_the_flag() -> None:
    before = it(1, 3, 4, sigs={"S-3": "x"})  # S-0..S-2 pass
    now = it(2, 4, 5, sigs={"S-1": "y"})  # S-1 regressed; 4/5 meets 4/5
    assert cv.regressions([before], now) == ["S-1"]
    assert cv.decide([before, now], T, 9)["decision"] == "CONVERGED"
    blocked = cv.decide([before, now], T, 9, block_on_regression=True)
    assert blocked["decision"] == "CONTINUE" and blocked["regressions"] == ["S-1"]
    assert "regression" in blocked["reason"]


def test_an_infrastructure_failure_halts_the_loop() -> None:
    d = cv.decide([it(1, 0, infra=["S-0"])], T, 9)
    assert (d["decision"], d["kind"]) == ("HALTED", "infrastructure")


@settings(max_examples=150, derandomize=True)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.sampled_from(["A", "B", "C"]), st.booleans()),
        min_size=1,
        max_size=7,
    )
)
def test_decide_is_a_pure_total_function(rows: list[tuple[int, str, bool]]) -> None:
    traj = [it(n, p, tree=t, gate1="PASS" if g else "FAIL") for n, (p, t, g) in enumerate(rows, 1)]
    a = cv.decide(traj, T, 5)
    assert a == cv.decide(list(traj), T, 5)
    assert a["decision"] in ("CONVERGED", "CONTINUE", "STALLED", "EXHAUSTED")
    if a["decision"] == "CONVERGED":
        assert traj[-1]["gate1"] == "PASS" and cv.meets(traj[-1]["satisfaction"], T)
    if len(traj) >= 5 and a["decision"] == "CONTINUE":
        raise AssertionError("past the last iteration the loop must stop")
