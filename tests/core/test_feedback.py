"""Feedback compiled from recorded results: deterministic, ordered as the instructions say,
free of scenario text; and the leak guard that every agent-bound text passes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tools.codex.factory.core.feedback import DETAILS, FeedbackInput, compile_feedback, leaks
from tools.codex.factory.core.scenarios import parse
from tools.codex.factory.records.crank import CheckOutcome, Iteration, ScenarioResult

SECRET = parse(
    "scenarios/secret.md",
    b"""# Scenario: totals are rounded to cents

## Category
pipeline

## Behavioral Expectation
The invoice total for three items of 3.335 is printed as 10.01 exactly.

## Evaluation Method
```python
from app.invoice import total
assert total([3.335, 3.335, 3.335]) == "10.01"
```

## Pass Criteria
The assertion holds. <!-- canary: CANARY-k9x2 -->
""",
)


def result(
    sid: str, outcome: str, cls: str = "assertion", category: str = "pipeline"
) -> ScenarioResult:
    passed = outcome == "pass"
    return ScenarioResult(
        id=sid, name="adds up the totals", category=category, outcome=outcome, passed=passed, trials=3,
        passes=3 if passed else 1 if outcome == "flaky" else 0, rc=0 if passed else 1,
        symptom="" if passed else 'AssertionError: total([3.335, 3.335, 3.335]) == "10.01"',
        symptom_class="" if passed else cls, signature="" if passed else f"{sid}|{cls}|x",
    )  # fmt: skip


def check(name: str, required: bool, rc: int, tests: list[str] | None = None) -> CheckOutcome:
    return CheckOutcome(
        name=name, required=required, rc=rc, timed_out=False,
        symptom_class="assertion" if rc else "", failing_tests=tests or [],
        tail="E   assert total([3.335, 3.335, 3.335]) == \"10.01\"\n" if rc else "",
    )  # fmt: skip


def traj() -> list[Iteration]:
    def one(n: int, passed: int) -> Iteration:
        return Iteration(
            iteration=n, run_id=f"r{n}", gate1="PASS" if n > 1 else "FAIL",
            satisfaction={"passed": passed, "total": 4}, passing=[], failing=[], signatures={},
            infra=[], tree=f"t{n}", advisory=1,
        )  # fmt: skip

    return [one(1, 1), one(2, 2)]


def inp(detail: str = "summary") -> FeedbackInput:
    return FeedbackInput(
        iteration=2,
        trajectory=traj(),
        threshold=[4, 5],
        checks=[
            check("pytest", True, 1, ["tests/test_inv.py::test_round"]),
            check("ruff", False, 1),
            check("mypy", True, 0),
        ],
        scenarios=[
            result(SECRET.id, "fail"),
            result("S-b", "flaky", "import", "environment"),
            result("S-c", "pass"),
            result("S-d", "fail", "timeout", "environment"),
        ],
        tails={SECRET.id: "Traceback ...\nAssertionError\n"},
        regressions=["S-d"],
        refused=[
            {"worker": "B_worker", "findings": ["[scope] src/secret.py is outside B's scope"]}
        ],
        detail=detail,
    )


def test_the_feedback_has_every_section_in_order() -> None:
    text = compile_feedback(inp())
    heads = [ln for ln in text.splitlines() if ln.startswith("## ")]
    assert heads == [
        "## Summary",
        "## Convergence trajectory",
        "## Likely root causes",
        "## Failures",
        "## Instructions",
    ]
    assert "- Satisfaction: 2/4 (50.0%); threshold 80.0%" in text
    assert "- Required checks (gate 1): FAIL (1 of 2 passed)" in text
    assert "| 2 | 2/4 (50.0%) | PASS | 1 | +1 |" in text
    assert "- pytest: exit 1 (assertion); failing tests: tests/test_inv.py::test_round" in text
    steps = [ln for ln in text.splitlines() if ln[:2] in ("1.", "2.", "3.", "4.", "5.", "6.")]
    assert steps[0].startswith("1. Make the required checks pass first: pytest")
    assert steps[1].startswith("2. Fix what kept your work out of the tree")
    assert steps[2].startswith("3. Fix the regressions next: S-d")
    assert steps[-1].startswith("6. Then the advisory findings (they do not block): ruff")
    assert "S-c" not in text  # a passing scenario is not named


def test_summary_feedback_holds_no_scenario_text_and_no_name() -> None:
    text = compile_feedback(inp("summary"))
    assert leaks(text, [SECRET]) == []
    assert SECRET.name not in text and "10.01" not in text
    assert f"- {SECRET.id} (pipeline): fail, 3/3 failures, assertion" in text


def test_full_feedback_with_a_leaking_tail_is_caught_by_the_guard() -> None:
    text = compile_feedback(inp("full"))
    found = leaks(text, [SECRET])
    assert found and found[0].scenario == SECRET.id and found[0].what == "evaluation method"
    assert text.splitlines()[found[0].line - 1].strip().startswith("E   assert total(")


def test_a_canary_anywhere_is_caught() -> None:
    hits = leaks("ok\nsee CANARY-k9x2 here\n", [SECRET])
    assert [(h.line, h.what) for h in hits] == [(2, "canary")]


def test_short_common_lines_are_not_guarded() -> None:
    assert leaks("exit 0\nfi\ndone\n", [SECRET]) == []
    hits = leaks("FROM app.invoice   IMPORT total", [SECRET])  # 29 characters: guarded
    assert [h.what for h in hits] == ["evaluation method"]


def test_a_guarded_line_is_found_whatever_its_spacing_or_case() -> None:
    hits = leaks('  -  ASSERT total([3.335,  3.335, 3.335]) == "10.01"', [SECRET])
    assert [h.what for h in hits] == ["evaluation method"]
    squeezed = leaks('assert total([3.335,3.335,3.335])=="10.01"', [SECRET])
    assert [h.what for h in squeezed] == ["evaluation method"]  # no whitespace at all


@settings(max_examples=40, derandomize=True, deadline=None)
@given(st.sampled_from(DETAILS), st.permutations(range(4)))
def test_the_same_results_give_the_same_bytes(detail: str, order: list[int]) -> None:
    a = inp(detail)
    b = inp(detail)
    b["scenarios"] = [b["scenarios"][i] for i in order]
    b["checks"] = list(reversed(b["checks"]))
    assert compile_feedback(a) == compile_feedback(b)


def test_a_blamed_check_goes_to_the_worker_that_broke_it() -> None:
    """After culprit isolation: everyone's feedback names the culprit; a culprit's own feedback
    says its change broke the check, another worker's says it is not theirs to work around."""
    from tools.codex.factory.core.convergence import blame

    decided = {
        "failed": ["pytest"],
        "culprits": [{"worker": "A", "check": "pytest", "how": "alone"}],
        "interactions": [],
        "flaky": [],
        "base": [],
    }
    assert blame(decided) == {"pytest": {"caused_by": ["A"], "cause": "alone"}}
    together = {
        **decided,
        "culprits": [],
        "interactions": [{"workers": ["D", "A"], "check": "pytest"}],
    }
    assert blame(together)["pytest"] == {"caused_by": ["A", "D"], "cause": "together"}
    assert blame({**decided, "flaky": ["pytest"]})["pytest"]["cause"] == "flaky"
    base = inp()
    base["checks"][0].update(blame(decided)["pytest"])
    shared = compile_feedback(base)
    assert "caused by A_worker (it fails with that change alone)" in shared
    assert "Make the required checks pass first: pytest." in shared
    mine = compile_feedback({**base, "for_worker": "A"})
    assert "caused by your change (it fails with that change alone)" in mine
    assert "Make the required checks pass first: pytest." in mine
    theirs = compile_feedback({**base, "for_worker": "B"})
    assert "caused by another worker's change, not yours" in theirs
    assert "Make the required checks pass first" not in theirs
    assert "broken by another worker's change, not yours (do not work around them): pytest." in (
        theirs
    )
    pair = inp()
    pair["checks"][0].update(blame(together)["pytest"])
    assert "caused by A_worker, D_worker (they fail it together, each passes alone)" in (
        compile_feedback(pair)
    )


def test_gate0_warnings_are_fed_back_without_counting_as_refused() -> None:
    base = inp()
    base["refused"] = [
        *base["refused"],
        {
            "worker": "C_worker",
            "findings": [],
            "warnings": ["[no-assertion] C_worker tests/test_c.py:4: asserts nothing"],
        },
    ]
    text = compile_feedback(base)
    assert "- Workers whose work did not enter the tree: 1" in text
    assert "### Test-honesty warnings (they do not block)" in text
    assert "- C_worker: [no-assertion] C_worker tests/test_c.py:4: asserts nothing" in text
    assert "- C_worker: \n" not in text  # not listed as work kept out of the tree
    assert any("Make your tests honest" in ln for ln in text.splitlines())
    assert compile_feedback(inp()).count("Test-honesty") == 0
