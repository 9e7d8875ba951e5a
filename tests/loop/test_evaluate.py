"""Scenario sandboxes: every trial gets the commit's tree of its own, with the sealed holdout in
place of the candidate's copy; real repositories, real exports, real interpreters."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.loop.conftest import scenario
from tests.support.repos import git, make_repo
from tools.codex.factory.loop import evaluate, holdout
from tools.codex.factory.records.crank import ScenarioResult


def check(name: str, code: str) -> str:
    """A scenario whose evaluation is ``code`` (python)."""
    return (
        scenario("add", 1, 1, 2)
        .replace("from src.calc import add\nassert add(1, 1) == 2, 'wrong add result'\n", code)
        .replace("# Scenario: add two numbers", f"# Scenario: {name}")
    )


def run(repo: Path, commit: str, trials: int = 1, parallel: int = 1) -> list[ScenarioResult]:
    sealed = holdout.seal(repo, commit, "scenarios", 1 << 20)
    cfg = evaluate.Settings(
        trials=trials, need=trials, timeout_s=60, parallel=parallel, python=sys.executable
    )
    return evaluate.evaluate(repo, commit, sealed, cfg, lambda name, data: "").results


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize("parallel", [1, 2])
def test_each_trial_gets_a_fresh_tree_whatever_the_others_wrote(
    tmp_path: Path, parallel: int
) -> None:
    # Each trial finds the tree as committed, then damages it: a shared tree would fail the
    # second trial (and the other scenario).
    damage = (
        "import os, pathlib\n"
        "assert not os.path.exists('marker'), 'saw another trial'\n"
        "assert pathlib.Path('src/calc.py').read_text() == 'ORIGINAL\\n'\n"
        "pathlib.Path('marker').write_text('x')\n"
        "pathlib.Path('src/calc.py').write_text('DAMAGED\\n')\n"
    )
    repo = make_repo(
        tmp_path / "repo",
        {
            "src/calc.py": "ORIGINAL\n",
            "scenarios/one.md": check("one", damage),
            "scenarios/two.md": check("two", damage),
        },
    )
    results = run(repo, head(repo), trials=3, parallel=parallel)
    assert [(r["id"], r["outcome"]) for r in results] == [
        (r["id"], "pass") for r in results
    ] and len(results) == 2


def test_the_sealed_holdout_replaces_the_candidates_scenarios_folder(tmp_path: Path) -> None:
    listing = (
        "import os\n"
        "assert sorted(os.listdir('scenarios')) == ['one.md'], os.listdir('scenarios')\n"
        "assert open('scenarios/one.md').read().startswith('# Scenario: one')\n"
    )
    repo = make_repo(
        tmp_path / "repo", {"README.md": "x\n", "scenarios/one.md": check("one", listing)}
    )
    base = head(repo)
    (repo / "scenarios/extra.md").write_text("planted\n")
    (repo / "scenarios/one.md").write_text("EDITED\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a candidate that rewrote the scenarios")
    sealed = holdout.seal(repo, base, "scenarios", 1 << 20)
    cfg = evaluate.Settings(trials=1, need=1, timeout_s=60, parallel=2, python=sys.executable)
    res = evaluate.evaluate(repo, head(repo), sealed, cfg, lambda name, data: "")
    assert [r["outcome"] for r in res.results] == ["pass"], res.tails


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_a_committed_link_reaches_the_sandbox_as_a_link(tmp_path: Path) -> None:
    probe = (
        "import os\n"
        "assert os.path.islink('link.txt') and os.readlink('link.txt') == 'data.txt'\n"
        "assert open('link.txt').read() == 'payload\\n'\n"
    )
    repo = make_repo(
        tmp_path / "repo", {"data.txt": "payload\n", "scenarios/one.md": check("one", probe)}
    )
    os.symlink("data.txt", repo / "link.txt")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "link")
    assert [r["outcome"] for r in run(repo, head(repo))] == ["pass"]


def link_commit(repo: Path, name: str, target: Path) -> str:
    """A candidate commit whose ``name`` (the holdout folder or a folder above it) is a link."""
    git(repo, "rm", "-rq", "--", name)
    os.symlink(target, repo / name)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"{name} is a link")
    return head(repo)


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_a_link_above_the_holdout_folder_carries_nothing_out_of_the_sandbox(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    (outside / "scenarios").mkdir(parents=True)
    (outside / "scenarios" / "keep.txt").write_text("mine\n")
    repo = make_repo(tmp_path / "repo", {"qa/scenarios/one.md": check("one", "pass\n")})
    base = head(repo)
    tip = link_commit(repo, "qa", outside)
    sealed = holdout.seal(repo, base, "qa/scenarios", 1 << 20)
    cfg = evaluate.Settings(trials=1, need=1, timeout_s=60, parallel=1, python=sys.executable)
    res = evaluate.evaluate(repo, tip, sealed, cfg, lambda name, data: "")
    assert sorted(p.name for p in (outside / "scenarios").iterdir()) == ["keep.txt"]
    assert [r["outcome"] for r in res.results] == ["pass"], res.results


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_a_link_in_place_of_the_holdout_folder_is_replaced_by_the_sealed_one(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine\n")
    probe = "import os\nassert not os.path.islink('scenarios') and os.listdir('scenarios') == ['one.md']\n"
    repo = make_repo(tmp_path / "repo", {"scenarios/one.md": check("one", probe)})
    base = head(repo)
    tip = link_commit(repo, "scenarios", outside)
    sealed = holdout.seal(repo, base, "scenarios", 1 << 20)
    cfg = evaluate.Settings(trials=1, need=1, timeout_s=60, parallel=1, python=sys.executable)
    res = evaluate.evaluate(repo, tip, sealed, cfg, lambda name, data: "")
    assert [r["outcome"] for r in res.results] == ["pass"], res.results
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
