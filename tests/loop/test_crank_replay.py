"""A crank's record is checked, not trusted: the branch it builds, the plan it launches, the
files it wrote and the decisions it made (real repositories, real tampering)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.loop.conftest import (
    crank,
    crashed_crank,
    culprit_crank_repo,
    make_crank_repo,
    plan_of,
    resume,
)
from tests.support.ledgers import ledger_lines, rewrite_ledger
from tests.support.repos import git, run_cli
from tests.support.scratch import RUNS_REL


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    repo = make_crank_repo(tmp_path_factory.mktemp("crank") / "repo", "converge")
    code, data, out = crank(repo, "--threshold", "1.0")
    assert code == 0, out
    return repo, data


@pytest.fixture
def copy(converged: tuple[Path, dict[str, Any]], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    repo, data = converged
    dest = tmp_path / "repo"
    shutil.copytree(repo, dest, symlinks=True)
    shutil.copy(plan_of(repo), plan_of(dest))
    return dest, data


def divergences(repo: Path, crank_id: str) -> list[str]:
    res = run_cli("--repo", str(repo), "ledger-replay", "--run-id", crank_id, "--json")
    doc = json.loads(res.stdout)
    assert res.returncode == (0 if doc["ok"] else 3)
    return [f"{d['what']}: {d['found']}" for d in doc["divergences"]]


def folder(repo: Path, crank_id: str) -> Path:
    return repo / "tools/codex/runs" / crank_id


def test_an_untouched_crank_replays_ok(copy: tuple[Path, dict[str, Any]]) -> None:
    repo, data = copy
    assert divergences(repo, data["crank_id"]) == []


@pytest.mark.parametrize(
    ("rel", "what"),
    [
        ("feedback_iter_2.md", "feedback_iter_2.md on disk"),
        ("CRANK_REPORT.md", "CRANK_REPORT.md"),
    ],
)
def test_an_edited_crank_file_is_caught(
    copy: tuple[Path, dict[str, Any]], rel: str, what: str
) -> None:
    repo, data = copy
    path = folder(repo, data["crank_id"]) / rel
    path.write_bytes(path.read_bytes() + b"\nedited\n")
    assert [d for d in divergences(repo, data["crank_id"]) if d.startswith(what)]


def test_an_edited_scenario_log_is_caught(copy: tuple[Path, dict[str, Any]]) -> None:
    repo, data = copy
    (log,) = [
        p
        for p in (folder(repo, data["crank_id"]) / "LOGS/iter_1").glob("*.log")
        if "ImportError" in p.read_text()
    ][:1]
    log.write_text(log.read_text().replace("ImportError", "SyntaxError"))
    assert any(d.startswith("LOGS/iter_1/") for d in divergences(repo, data["crank_id"]))


def test_a_rechained_decision_or_satisfaction_is_recomputed(
    copy: tuple[Path, dict[str, Any]],
) -> None:
    repo, data = copy
    events = ledger_lines(repo)
    decided = next(
        e
        for e in events
        if e["event_type"] == "iteration.decided" and e["payload"]["iteration"] == 2
    )
    decided["payload"]["decision"]["decision"] = "CONVERGED"
    finished = next(
        e
        for e in events
        if e["event_type"] == "scenarios.finished" and e["payload"]["iteration"] == 1
    )
    finished["payload"]["satisfaction"]["passed"] = 3
    rewrite_ledger(repo, events)
    found = divergences(repo, data["crank_id"])
    assert "iteration 2 decision: CONVERGED" in found
    assert any(d.startswith("iteration 1 satisfaction") for d in found)


def test_a_branch_moved_after_the_crank_is_caught(copy: tuple[Path, dict[str, Any]]) -> None:
    repo, data = copy
    git(repo, "update-ref", f"refs/heads/{data['branch']}", data["tip"] + "~1")
    found = divergences(repo, data["crank_id"])
    assert any(d.startswith(f"branch {data['branch']}") for d in found), found


def test_a_forged_commit_record_is_caught(copy: tuple[Path, dict[str, Any]]) -> None:
    """Say iteration 2 committed another tree: its commit is not its parent plus its patch."""
    repo, data = copy
    events = ledger_lines(repo)
    committed = [e for e in events if e["event_type"] == "iteration.committed"]
    committed[1]["payload"]["commit"] = committed[2]["payload"]["commit"]
    rewrite_ledger(repo, events)
    found = divergences(repo, data["crank_id"])
    assert any("parent" in d or "tree under test" in d for d in found), found


def test_an_agent_that_moves_the_crank_branch_halts_the_crank(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "moveref")
    code, data, out = crank(repo, "--threshold", "1.0")
    assert code == 3, out
    assert (data["decision"], data["kind"]) == ("HALTED", "branch-moved")
    assert "nothing was built on it" in data["reason"]
    base = git(repo, "rev-parse", "HEAD").strip()
    assert data["tip"] == base  # the crank recorded nothing on the branch
    # The forged commit is on the branch (the agent put it there), never in the crank's record.
    forged = git(repo, "rev-parse", data["branch"]).strip()
    assert forged != base
    assert any(
        d.startswith(f"branch {data['branch']}") for d in divergences(repo, data["crank_id"])
    )


def test_a_resume_launches_the_recorded_plan_whatever_plan_json_says(tmp_path: Path) -> None:
    repo, env = crashed_crank(tmp_path)
    plan_json = folder(repo, "c1") / "PLAN.json"
    doc = json.loads(plan_json.read_text())
    doc["workers"][0]["allow"] = ["**"]
    plan_json.write_text(json.dumps(doc))
    for run_id in resume(repo, env)["runs"]:
        manifest = json.loads(
            (repo / "tools/codex/runs" / run_id / "RUN_MANIFEST.json").read_text()
        )
        assert sorted(manifest["plan"]["workers"][0]["allow"]) == ["notes/**", "src/**"]
    assert divergences(repo, "c1") == []


@pytest.mark.parametrize(
    ("key", "forged", "said", "what"),
    [
        ("caused_by", ["A"], "caused by A_worker", "blame"),
        ("failing_tests", ["tests/x.py::t"], "(other); failing tests: tests/x.py::t;", "tests"),
        ("rc", 2, "exit 2 (other)", "rc"),
    ],
)
def test_a_forged_check_in_a_decided_iteration_is_recomputed(
    tmp_path: Path, key: str, forged: object, said: str, what: str
) -> None:
    """The checks an iteration's record carries (whom isolation blamed, the failing tests, the
    exit code) are what its run recorded: a forger who changes one (and rewrites the feedback it
    compiles to, with its hash) is caught, the feedback alone being recompiled from the
    forged record."""
    repo = culprit_crank_repo(tmp_path / "repo")
    code, _, out = crank(repo, "--threshold", "0.3", "--crank-id", "cul")
    assert code == 0, out
    assert divergences(repo, "cul") == []
    events = ledger_lines(repo)
    decided = next(
        e
        for e in events
        if e["event_type"] == "iteration.decided" and e["payload"]["iteration"] == 1
    )
    (blamed,) = [c for c in decided["payload"]["checks"] if c.get("caused_by")]
    assert blamed["caused_by"] == ["B"] and blamed["failing_tests"] == [] and blamed["rc"] == 1
    blamed[key] = forged
    path = folder(repo, "cul") / "feedback_iter_1.md"
    honest = {"blame": "caused by B_worker", "tests": "(other);", "rc": "exit 1 (other)"}[what]
    assert honest in path.read_text()
    text = path.read_text().replace(honest, said)
    path.write_text(text)
    compiled = next(
        e
        for e in events
        if e["event_type"] == "feedback.compiled" and e["payload"]["iteration"] == 1
    )
    compiled["payload"]["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    rewrite_ledger(repo, events)
    (repo / RUNS_REL / "factory_ledger.index.sqlite3").unlink()  # a cache a forger deletes
    found = divergences(repo, "cul")
    assert [d for d in found if d.startswith(f"iteration 1 check no-broken {what}")], found
