"""launch without --dry-run: what is refused before anything exists, and how a failure ends the run."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.repos import git
from tests.support.workers import (
    RUNS,
    assert_events_valid,
    cli,
    events,
    factory_branches,
    run_dir,
    work_repo,
    worktrees,
)


def test_a_taken_worker_branch_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    git(repo, "branch", "factory/x1/B")
    for command in ("launch", "oneshot"):
        res = cli(repo, command, "--run-id", "x1", "--workers", "A,B")
        assert res.returncode == 3, res.stdout + res.stderr
        assert res.stderr.count("\n") == 1 and "branch factory/x1/B already exists" in res.stderr
        assert not run_dir(repo, "x1").exists()
        assert not (repo / RUNS / "factory_ledger.jsonl").exists() or events(repo, "x1") == []
        assert worktrees(repo) == {} and factory_branches(repo) == ["factory/x1/B"]
    # A branch named like the run's folder of branches blocks every worker's branch too.
    git(repo, "branch", "factory/x2")
    res = cli(repo, "launch", "--run-id", "x2", "--workers", "A")
    assert (
        res.returncode == 3
        and "branch factory/x2 exists and blocks branch factory/x2/A" in res.stderr
    )
    assert not run_dir(repo, "x2").exists()


def test_a_launch_failing_after_run_started_ends_the_run_so_watch_ends(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the worktrees folder should be\n")
    env = {"FACTORY_PATHS__WORKTREES_DIR": json.dumps(str(blocker / "wt"))}
    res = cli(repo, "launch", "--run-id", "x3", "--workers", "A", env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    kinds = [e["event_type"] for e in events(repo, "x3")]
    assert kinds[0] == "run.started" and kinds[-2:] == ["stage.finished", "run.finished"]
    finished = events(repo, "x3")[-1]["payload"]
    assert finished["status"] == "FAIL" and [r["stage"] for r in finished["stages"]] == ["launch"]
    assert_events_valid(repo)
    watched = cli(repo, "watch", "--run-id", "x3", "--timeout", "30")
    assert watched.returncode == 1 and "run x3 finished: FAIL" in watched.stdout
    replayed = cli(repo, "ledger-replay", "--run-id", "x3")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    # oneshot: the same failure ends its run once, with every stage's row.
    res = cli(repo, "oneshot", "--run-id", "x4", "--workers", "A", env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    finals = [e["payload"] for e in events(repo, "x4") if e["event_type"] == "run.finished"]
    assert len(finals) == 1 and [r["status"] for r in finals[0]["stages"]] == [
        "PASS",
        "FAIL",
        "SKIPPED",
        "SKIPPED",
        "SKIPPED",
    ]
    assert cli(repo, "watch", "--run-id", "x4", "--timeout", "30").returncode == 1
    assert cli(repo, "ledger-replay", "--run-id", "x4").returncode == 0
