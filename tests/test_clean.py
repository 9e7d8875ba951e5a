"""clean: leftover worktrees of crashed runs go, but never work that was not collected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.workers_helpers import (
    assert_events_valid,
    cli,
    events,
    factory_branches,
    run_dir,
    work_repo,
    worktrees,
)
from tools.codex.factory import gitops
from tools.codex.factory.clean import leftover_worktrees
from tools.codex.factory.clock import Clock
from tools.codex.factory.context import Context


def test_clean_refuses_uncollected_changes_and_force_removes_them(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    before = gitops.snapshot(repo)
    res = cli(repo, "launch", "--workers", "A,B,C", "--json")
    run_id = json.loads(res.stdout)["run_id"]
    trees = {b[-1]: p for b, p in worktrees(repo).items()}
    (trees["A"] / "src" / "app.py").write_text("print('precious, never collected')\n")
    (trees["C"] / "docs" / "guide.md").write_text("collected\n")
    assert cli(repo, "bundle-collect", "--run-id", run_id, "--workers", "C").returncode == 0

    ctx = Context(repo_opt=repo, clock=Clock())
    found = {i["worker"]: i for i in leftover_worktrees(ctx)}
    ctx.close()
    assert sorted(found) == ["A", "B", "C"]
    assert found["A"]["path"] == str(trees["A"]) and found["A"]["run_id"] == run_id and found["A"]["bytes"] > 0
    assert found["A"]["branch"] == f"factory/{run_id}/A" and found["A"]["registered"] is True
    assert (found["A"]["status"], found["C"]["status"], found["A"]["run_finished"]) == ("PENDING", "DONE", False)

    res = cli(repo, "clean", "--json")
    assert res.returncode == 3, res.stderr
    doc = json.loads(res.stdout)
    assert [r["worker"] for r in doc["refused"]] == ["A"] and "never collected" in doc["refused"][0]["reason"]
    assert sorted(r["worker"] for r in doc["removed"]) == ["B", "C"]  # C's changes are in its bundle
    refusal = [ln for ln in res.stderr.splitlines() if "refused" in ln]
    assert len(refusal) == 1 and str(trees["A"]) in refusal[0] and "--force" in refusal[0]
    assert list(worktrees(repo)) == [f"factory/{run_id}/A"]
    assert (trees["A"] / "src" / "app.py").read_text() == "print('precious, never collected')\n"

    res = cli(repo, "clean", "--run-id", run_id, "--force")
    assert res.returncode == 0, res.stderr
    assert "[forced: uncollected changes discarded]" in res.stdout
    assert worktrees(repo) == {} and factory_branches(repo) == [] and not trees["A"].exists()
    assert gitops.snapshot(repo) == before
    removed = [e["payload"] for e in events(repo, run_id) if e["event_type"] == "worktree.removed"]
    assert [(p["worker"], p["reason"], p["forced"]) for p in removed] == [
        ("B", "clean", False), ("C", "clean", False), ("A", "clean", True)]
    assert [e["payload"]["worker"] for e in events(repo, run_id) if e["event_type"] == "clean.refused"] == ["A"]
    assert_events_valid(repo)
    res = cli(repo, "clean")
    assert res.returncode == 0 and res.stdout.startswith("nothing to clean")


def test_clean_finds_leftovers_of_a_crashed_run_via_the_ledger(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    res = cli(repo, "launch", "--workers", "A,B", "--json")
    run_id = json.loads(res.stdout)["run_id"]
    trees = {b[-1]: p for b, p in worktrees(repo).items()}
    # A crash left things half-gone: A's folder deleted by hand, the run folder deleted too.
    shutil.rmtree(trees["A"])
    shutil.rmtree(run_dir(repo, run_id))
    res = cli(repo, "clean", "--json")
    assert res.returncode == 0, res.stderr
    assert sorted(r["worker"] for r in json.loads(res.stdout)["removed"]) == ["A", "B"]
    assert worktrees(repo) == {} and factory_branches(repo) == []
    assert gitops.worktree_list(repo)[0]["path"] == str(repo)


def test_integrate_keeps_worktrees_on_request_and_with_uncollected_work(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    res = cli(repo, "launch", "--workers", "A,C", "--json")
    run_id = json.loads(res.stdout)["run_id"]
    trees = {b[-1]: p for b, p in worktrees(repo).items()}
    (trees["A"] / "src" / "app.py").write_text("print('v2')\n")
    assert cli(repo, "bundle-collect", "--run-id", run_id).returncode == 0
    (trees["C"] / "docs" / "guide.md").write_text("edited after collecting\n")
    assert cli(repo, "bundle-validate", "--run-id", run_id).returncode == 0
    res = cli(repo, "integrate", "--run-id", run_id)
    assert res.returncode == 0, res.stderr
    assert "kept the worktree of C_worker" in res.stderr and "differ from the collected DIFF.patch" in res.stderr
    assert list(worktrees(repo)) == [f"factory/{run_id}/C"]
    assert (trees["C"] / "docs" / "guide.md").read_text() == "edited after collecting\n"
    # --keep-worktrees: nothing removed at all.
    res = cli(repo, "oneshot", "--workers", "B", "--keep-worktrees", "--json",
              env={"FACTORY_WORKERS__AGENT": json.dumps({"preset": "script", "argv": ["{python}", "-c", "pass"]})})
    assert res.returncode == 0, res.stderr
    other = json.loads(res.stdout)["run_id"]
    assert f"factory/{other}/B" in worktrees(repo)
    assert "worktrees kept (--keep-worktrees)" in res.stderr
    assert cli(repo, "clean", "--run-id", other).returncode == 0
    assert cli(repo, "clean", "--run-id", run_id).returncode == 3
