"""Culprit isolation's step function, driven by a simulated check: it finds what was planted."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.codex.factory.core import isolation
from tools.codex.factory.core.isolation import IsolationMismatch, Probe, Result

Oracle = Callable[[str, set[str]], set[str]]  # (step, workers) -> failing checks
IDS = [chr(ord("A") + i) for i in range(16)]


def drive(
    order: list[str],
    oracle: Oracle,
    failed: tuple[str, ...] = ("tests",),
    deps: dict[str, list[str]] | None = None,
    bound: int | None = None,
) -> tuple[Result, list[Probe]]:
    probes: list[Probe] = []
    while True:
        answer = isolation.step(order, deps or {}, list(failed), probes, bound)
        if isolation.is_result(answer):
            return answer, probes  # type: ignore[return-value]
        fails = oracle(answer["step"], set(answer["workers"]))  # type: ignore[typeddict-item]
        probes.append(
            {
                "step": answer["step"],  # type: ignore[typeddict-item]
                "workers": list(answer["workers"]),  # type: ignore[typeddict-item]
                "passed": {c: c not in fails for c in answer["checks"]},  # type: ignore[typeddict-item]
            }
        )


def planted(culprits: set[str], together: set[str]) -> Oracle:
    def oracle(_step: str, workers: set[str]) -> set[str]:
        bad = bool(culprits & workers) or (bool(together) and together <= workers)
        return {"tests"} if bad else set()

    return oracle


def spec_bound(n: int) -> int:
    return n + 2 * math.ceil(math.log2(n)) if n > 1 else n


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    st.integers(1, 16).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.sampled_from(IDS[:n]), min_size=1))
    )
)
def test_planted_culprits_are_found_within_the_bound(case: tuple[int, set[str]]) -> None:
    n, culprits = case
    order = IDS[:n]
    result, probes = drive(order, planted(culprits, set()))
    assert result["culprits"] == [
        {"worker": w, "check": "tests", "how": "alone"} for w in sorted(culprits)
    ]
    assert result["interactions"] == [] and result["flaky"] == []
    assert not result["exhausted"]
    assert result["runs"] == len(probes) - 1 <= spec_bound(n)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    st.integers(2, 16).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.sampled_from(IDS[:n]), min_size=2, max_size=2))
    )
)
def test_a_planted_pair_is_named_as_an_interaction_within_the_bound(
    case: tuple[int, set[str]],
) -> None:
    n, pair = case
    result, probes = drive(IDS[:n], planted(set(), pair))
    assert result["interactions"] == [{"workers": sorted(pair), "check": "tests"}]
    assert result["culprits"] == [] and not result["exhausted"]
    assert result["runs"] == len(probes) - 1 <= isolation.default_max_runs(n)
    # the formula n + 2*ceil(log2 n), but at 8, 15 and 16 workers the pair search's worst case
    assert isolation.default_max_runs(n) <= spec_bound(n) + (1 if n in (8, 15, 16) else 0)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(
    st.integers(3, 12).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.sampled_from(IDS[:n]), min_size=3, max_size=4))
    )
)
def test_a_larger_interaction_is_named_or_left_undetermined_never_guessed(
    case: tuple[int, set[str]],
) -> None:
    n, together = case
    result, _ = drive(IDS[:n], planted(set(), together), bound=100)
    assert result["interactions"] == [{"workers": sorted(together), "check": "tests"}]
    short, _ = drive(IDS[:n], planted(set(), together), bound=n)
    assert short["exhausted"] and short["interactions"] == [] and short["culprits"] == []


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.integers(1, 16), st.data())
def test_the_step_function_is_deterministic(n: int, data: st.DataObject) -> None:
    culprits = data.draw(st.sets(st.sampled_from(IDS[:n]), max_size=2))
    pair = data.draw(st.sets(st.sampled_from(IDS[:n]), max_size=2))
    oracle = planted(culprits, pair if len(pair) == 2 else set())
    first = drive(IDS[:n], oracle)
    assert drive(IDS[:n], oracle) == first
    for k in range(len(first[1])):  # every prefix of the probes asks for the same next one
        nxt = isolation.step(IDS[:n], {}, ["tests"], first[1][:k])
        assert nxt == {k2: first[1][k][k2] for k2 in ("step", "workers")} | {
            "checks": sorted(first[1][k]["passed"])
        }


def test_a_check_passing_on_rerun_is_flaky_and_blames_no_worker() -> None:
    result, probes = drive(
        ["A", "B"], lambda step, _w: {"tests"} if step != "rerun" else set(), ("tests",)
    )
    assert result == {
        "culprits": [],
        "interactions": [],
        "flaky": ["tests"],
        "base": [],
        "runs": 0,
        "exhausted": False,
    }
    assert [p["step"] for p in probes] == ["rerun"]


def test_one_worker_is_not_retested_alone_only_the_base_is() -> None:
    result, probes = drive(["A"], planted({"A"}, set()))
    assert result["culprits"] == [{"worker": "A", "check": "tests", "how": "alone"}]
    assert [(p["step"], p["workers"]) for p in probes] == [("rerun", ["A"]), ("base", [])]
    assert result["runs"] == 1


def test_a_check_the_base_fails_too_is_nobodys() -> None:
    def broken(_step: str, workers: set[str]) -> set[str]:
        return {"lint"} | ({"tests"} if "C" in workers else set())

    result, probes = drive(["A", "B", "C"], broken, ("lint", "tests"))
    assert result["base"] == ["lint"]
    assert result["culprits"] == [{"worker": "C", "check": "tests", "how": "alone"}]
    assert ("base", []) in [(p["step"], p["workers"]) for p in probes]


def test_a_dependent_is_probed_with_its_dependency_and_not_blamed_for_it() -> None:
    result, probes = drive(["A", "B", "C"], planted({"A"}, set()), deps={"B": ["A"]})
    assert result["culprits"] == [{"worker": "A", "check": "tests", "how": "alone"}]
    assert ["A", "B"] in [p["workers"] for p in probes if p["step"] == "alone"]


def test_each_check_is_blamed_on_its_own_culprit() -> None:
    def oracle(_step: str, workers: set[str]) -> set[str]:
        return ({"lint"} if "B" in workers else set()) | ({"tests"} if "D" in workers else set())

    result, _ = drive(["A", "B", "C", "D"], oracle, ("lint", "tests"))
    assert result["culprits"] == [
        {"worker": "B", "check": "lint", "how": "alone"},
        {"worker": "D", "check": "tests", "how": "alone"},
    ]


def test_a_probe_it_would_not_ask_for_or_an_extra_one_is_a_mismatch() -> None:
    _, probes = drive(["A", "B", "C"], planted({"B"}, set()))
    wrong: Probe = {**probes[1], "workers": ["C"]}
    with pytest.raises(IsolationMismatch):
        isolation.step(["A", "B", "C"], {}, ["tests"], [probes[0], wrong])
    with pytest.raises(IsolationMismatch):
        isolation.step(["A", "B", "C"], {}, ["tests"], [*probes, probes[-1]])


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.integers(1, 12), st.data())
def test_what_it_names_is_true_of_the_check_whatever_is_planted(
    n: int, data: st.DataObject
) -> None:
    """Culprits and any failing sets at once: every culprit fails alone, every interaction fails
    together with each member passing alone; nothing is named that the check does not show."""
    order = IDS[:n]
    sets = data.draw(
        st.lists(st.sets(st.sampled_from(order), min_size=1, max_size=4), min_size=1, max_size=3)
    )

    def fails(workers: set[str]) -> bool:
        return any(s <= workers for s in sets)

    result, _ = drive(order, lambda _step, ws: {"tests"} if fails(ws) else set())
    for c in result["culprits"]:
        assert fails({c["worker"]})
    for i in result["interactions"]:
        assert fails(set(i["workers"])) and not any(fails({w}) for w in i["workers"])
    assert result["runs"] <= isolation.default_max_runs(n)


def test_a_check_isolation_named_no_one_for_is_undetermined_never_cleared() -> None:
    """'lint' fails with A alone, 'tests' only with A and B together: A is lint's culprit and
    left out of the search for the rest, so nobody is named for tests. Its reason must not say
    no set of workers fails it (A + B does): it is undetermined."""
    from tools.codex.factory.core import decisions

    def oracle(_step: str, workers: set[str]) -> set[str]:
        return ({"lint"} if "A" in workers else set()) | (
            {"tests"} if {"A", "B"} <= workers else set()
        )

    result, _ = drive(["A", "B"], oracle, ("lint", "tests"))
    assert result["culprits"] == [{"worker": "A", "check": "lint", "how": "alone"}]
    assert result["interactions"] == [] and not result["exhausted"]
    checks = [{"name": c, "required": True, "rc": 1, "timed_out": False} for c in ("lint", "tests")]
    status, reason = decisions.integrate_outcome("", [], checks, isolation=result)  # type: ignore[arg-type]
    assert status == "BLOCKED"
    assert "'lint' exited with rc=1; culprit: A_worker (fails alone)" in reason
    assert "'tests' exited with rc=1; culprit undetermined: " in reason, reason
    assert "fails it apart" not in reason


def test_at_the_bound_before_the_base_probe_the_culprits_found_stand() -> None:
    """Every worker fails 'lint' alone (the base may be broken: that needs one more probe), C
    alone fails 'tests'. The bound stops the search before the base probe; C, found, stands."""

    def oracle(_step: str, workers: set[str]) -> set[str]:
        return {"lint"} | ({"tests"} if "C" in workers else set())

    result, probes = drive(["A", "B", "C"], oracle, ("lint", "tests"), bound=3)
    assert result["exhausted"] and result["runs"] == 3
    assert "base" not in [p["step"] for p in probes]
    assert result["culprits"] == [{"worker": "C", "check": "tests", "how": "alone"}]
    assert result["base"] == []


def test_at_the_bound_mid_way_a_worker_is_not_blamed_for_what_all_probed_fail() -> None:
    """The base fails 'tests', so every probe does. Stopped after A's alone probe, nothing
    shows it is A's rather than the base's (the full search would probe the base): A is not
    named. Once B passed a check alone, A failing it alone is A's, as the full search says."""

    def broken(_step: str, _workers: set[str]) -> set[str]:
        return {"tests"}

    result, _ = drive(["A", "B", "C"], broken, bound=1)
    assert result["exhausted"] and result["culprits"] == [] and result["base"] == []

    def a_fails(_step: str, workers: set[str]) -> set[str]:
        return {"tests"} if "A" in workers else set()

    result, _ = drive(["A", "B", "C"], a_fails, bound=2)
    assert result["exhausted"]
    assert result["culprits"] == [{"worker": "A", "check": "tests", "how": "alone"}]


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.integers(1, 8), st.data())
def test_a_check_the_base_fails_is_never_blamed_whatever_the_bound(
    n: int, data: st.DataObject
) -> None:
    order = IDS[:n]
    base = data.draw(st.sets(st.sampled_from(["lint", "tests"])))
    culprits = data.draw(st.sets(st.sampled_from(order), max_size=2))
    bound = data.draw(st.none() | st.integers(0, 2 * n))

    def oracle(_step: str, workers: set[str]) -> set[str]:
        return base | ({"tests"} if culprits & workers else set())

    failed = tuple(c for c in ("lint", "tests") if c in oracle("rerun", set(order)))
    if not failed:
        return
    result, _ = drive(order, oracle, failed, bound=bound)
    assert not [c for c in result["culprits"] if c["check"] in base], result
    assert set(result["base"]) <= base
    for c in result["culprits"]:
        assert c["worker"] in culprits
