"""Records of the convergence loop: trials, scenario results, iterations and decisions, as the
ledger holds them (every one is JSON: integers and strings, never a float in hashed content)."""

from __future__ import annotations

from typing import TypedDict


class Trial(TypedDict):
    """One run of one scenario's evaluation method."""

    rc: int | None  # None: it could not run or was killed
    timed_out: bool
    infra: str  # "" or the infrastructure problem (no interpreter, no sandbox)
    symptom: str  # one line, clipped; "" on a pass
    symptom_class: str  # see core.symptoms.CLASSES; "" on a pass


class ScenarioResult(TypedDict):
    id: str  # opaque: what agents may see
    name: str  # the scenario's title: for the operator (reports, SCENARIOS.json), never fed back
    category: str
    outcome: str  # pass | fail | flaky | infra
    passed: bool  # counts toward satisfaction (the k-of-n rule)
    trials: int
    passes: int
    rc: int | None  # of the last failing trial (0 on a pass)
    symptom: str
    symptom_class: str
    signature: str  # scenario ID + class + normalised message; "" on a pass


class Satisfaction(TypedDict):
    passed: int
    total: int


class Blame(TypedDict, total=False):
    """After culprit isolation (absent in earlier releases' records): the workers a failed
    required check is blamed on, sorted, and how: "alone" (each fails it alone), "together"
    (an interaction), "flaky" (it passed on a rerun), "base" (the base fails it too) or ""
    (undetermined)."""

    caused_by: list[str]
    cause: str


class CheckOutcome(Blame):
    """A required (Gate 1) or advisory (Gate 2) check of an iteration."""

    name: str
    required: bool
    rc: int | None
    timed_out: bool
    symptom_class: str
    failing_tests: list[str]  # test names found in its output (pytest, unittest)
    tail: str  # the end of its output (clipped), for ``feedback.detail = full``


class Iteration(TypedDict):
    """What the decision after an iteration is computed from (``iteration.decided``)."""

    iteration: int
    run_id: str
    gate1: str  # PASS | BLOCKED | FAIL: the run's required checks
    satisfaction: Satisfaction
    passing: list[str]  # scenario IDs passed, sorted
    failing: list[str]  # scenario IDs not passed (product failures), sorted
    signatures: dict[str, str]  # failing scenario ID -> failure signature
    infra: list[str]  # scenario IDs whose evaluation failed for infrastructure reasons
    tree: str  # the integrated tree's hash
    advisory: int  # advisory findings (failed advisory checks)


class Decision(TypedDict):
    decision: str  # CONVERGED | CONTINUE | STALLED | EXHAUSTED | HALTED
    kind: str  # for STALLED: same-failure | no-improvement | oscillation; HALTED: infrastructure
    reason: str
    evidence: list[str]
    advice: str
    regressions: list[str]
