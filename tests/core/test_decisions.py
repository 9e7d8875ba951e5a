"""Properties of the pure decisions: path safety, overlap symmetry, merge order, final status."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from tools.codex.factory.core import decisions, validation
from tools.codex.factory.core.paths import PathRuleError, normalise_repo_path

SEGMENT = st.text(alphabet=st.sampled_from(list("ab./\\:C~ _-é\x00")), min_size=0, max_size=6)
RAW_PATH = st.lists(SEGMENT, min_size=1, max_size=5).map(lambda parts: "/".join(parts)) | st.text(
    max_size=20
)


@given(RAW_PATH)
def test_accepted_paths_never_leave_the_repository(raw: str) -> None:
    try:
        path = normalise_repo_path(raw)
    except PathRuleError as exc:
        assert exc.rule.startswith("path-")
        return
    root = Path("/repo/root")
    joined = os.path.normpath(str(root / PurePosixPath(path)))
    assert joined.startswith(str(root) + os.sep)
    assert ".." not in PurePosixPath(path).parts
    assert not path.lower().startswith(".git/") and path.lower() != ".git"


def _facts(touched: list[str], shared: list[str]) -> dict:
    return {
        "touched": touched,
        "scope": {"allow": ["**"], "deny": [], "shared": shared},
        "section_hashes": {p: "h" + p for p in touched},
    }


PATHS = st.lists(
    st.sampled_from(["a.py", "b.py", "src/c.py", "src/d.py", "docs/e.md"]), unique=True, max_size=5
)
WORKERS = st.dictionaries(
    st.sampled_from(list("ABCDE")), st.tuples(PATHS, PATHS), min_size=1, max_size=5
)


@given(WORKERS, st.permutations(list("ABCDE")), st.booleans())
def test_overlaps_are_symmetric_and_independent_of_worker_order(
    ws: dict, perm: list[str], identical: bool
) -> None:
    facts = {w: _facts(t, s) for w, (t, s) in ws.items()}
    # Rename workers by a permutation: the overlap set maps exactly, nothing else changes.
    mapping = dict(zip("ABCDE", perm, strict=True))
    renamed = {mapping[w]: f for w, f in facts.items()}
    original = validation.overlaps(facts, identical)
    permuted = validation.overlaps(renamed, identical)
    expect = sorted(
        (
            {
                "path": o["path"],
                "workers": sorted(mapping[w] for w in o["workers"]),
                "resolution": o["resolution"],
            }
            for o in original
        ),
        key=lambda o: o["path"],
    )
    assert permuted == expect
    # Symmetry: every pair that shares a path is in the overlap for that path, both ways.
    for o in original:
        for w in o["workers"]:
            assert o["path"] in facts[w]["touched"]
    owners: dict[str, set[str]] = {}
    for w, f in facts.items():
        for p in f["touched"]:
            owners.setdefault(p, set()).add(w)
    assert {o["path"] for o in original} == {p for p, ws_ in owners.items() if len(ws_) > 1}
    # Insertion order of the mapping does not matter.
    assert validation.overlaps(dict(reversed(list(facts.items()))), identical) == original


@given(
    st.dictionaries(
        st.sampled_from(list("ABCDEF")),
        st.lists(st.sampled_from(list("ABCDEF")), max_size=3),
        min_size=1,
    )
)
def test_merge_order_respects_dependencies_or_names_a_cycle(deps: dict[str, list[str]]) -> None:
    order, cycle = decisions.merge_order(deps)
    if cycle:
        assert "cycle" in cycle and len(order) < len(deps)
        return
    assert sorted(order) == sorted(deps)
    pos = {w: i for i, w in enumerate(order)}
    for w, ds in deps.items():
        for d in ds:
            if d in deps and d != w:
                assert pos[d] < pos[w]


def test_merge_order_ties_by_worker_id() -> None:
    assert decisions.merge_order({"C": [], "A": [], "B": []}) == (["A", "B", "C"], "")
    assert decisions.merge_order({"A": ["C"], "B": [], "C": []}) == (["B", "C", "A"], "")
    assert (
        decisions.merge_order({"A": ["B"], "B": ["A"]})[1] == "dependency cycle among workers A, B"
    )


@given(st.lists(st.sampled_from(["PASS", "BLOCKED", "FAIL", "SKIPPED", "PENDING"]), min_size=1))
def test_final_status_is_the_worst_counted_stage(statuses: list[str]) -> None:
    result = decisions.final_status(statuses)
    counted = [s for s in statuses if s != "SKIPPED"]
    rank = {"PASS": 0, "PENDING": 1, "BLOCKED": 2, "FAIL": 3}
    if not counted:
        assert result == "FAIL"
    else:
        assert result == max(counted, key=rank.__getitem__)


def test_check_status_ignores_advisory() -> None:
    checks = [
        {"name": "a", "required": False, "rc": 1, "timed_out": False},
        {"name": "r", "required": True, "rc": 0, "timed_out": False},
    ]
    assert decisions.check_status(checks) == ("PASS", [])
    checks.append({"name": "t", "required": True, "rc": None, "timed_out": True})
    assert decisions.check_status(checks) == ("BLOCKED", ["required check 't' timed out"])


def test_pending_workers_leave_an_unblocked_run_pending() -> None:
    rows = [
        {"stage": "launch", "status": "PASS", "reason": ""},
        {"stage": "integrate", "status": "SKIPPED", "reason": "waiting"},
    ]
    assert decisions.final_verdict(rows, pending=["A"]) == ("PENDING", [])
    blocked = [*rows, {"stage": "summary", "status": "BLOCKED", "reason": "x"}]
    assert decisions.final_verdict(blocked, pending=["A"]) == ("BLOCKED", ["summary: x"])


def test_a_verdict_the_ledger_could_not_record_is_fail() -> None:
    assert decisions.unrecorded_verdict(["a: b"], "disk full") == (
        "FAIL",
        ["a: b", "summary: could not record the run in the ledger: disk full"],
    )
    assert decisions.integrate_refused("no validation") == ("BLOCKED", "no validation")
