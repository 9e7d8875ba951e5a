"""clean: leftover worktrees of crashed runs go, but never work that was not collected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.repos import git, snapshot
from tests.support.workers import (
    agent_env,
    assert_events_valid,
    cli,
    events,
    factory_branches,
    run_dir,
    work_repo,
    worktrees,
)
from tools.codex.factory.infra import gitops
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.run.clean import leftover_worktrees
from tools.codex.factory.run.context import Context


def refusals(stderr: str) -> dict[str, str]:
    """The one-line refusals on stderr, by worker."""
    out: dict[str, str] = {}
    for line in stderr.splitlines():
        if line.startswith("factory: refused "):
            worker = line.split("worktree of ", 1)[1].split("_worker", 1)[0]
            assert worker not in out, f"two lines for {worker}"
            out[worker] = line
    return out


def test_clean_refuses_uncollected_work_and_unfinished_runs_and_force_removes_them(
    tmp_path: Path,
) -> None:
    repo = work_repo(tmp_path)
    before = snapshot(repo)
    res = cli(repo, "launch", "--workers", "A,B,C,D", "--json")
    run_id = json.loads(res.stdout)["run_id"]
    trees = {b[-1]: p for b, p in worktrees(repo).items()}
    (trees["A"] / "src" / "app.py").write_text("print('precious, never collected')\n")
    (trees["B"] / ".factory" / "SUMMARY.md").write_text("# B\n\nfindings so far, never collected\n")
    (trees["C"] / "docs" / "guide.md").write_text("collected\n")
    assert cli(repo, "bundle-collect", "--run-id", run_id, "--workers", "C").returncode == 0

    ctx = Context(repo_opt=repo, clock=Clock())
    found = {i["worker"]: i for i in leftover_worktrees(ctx)}
    ctx.close()
    assert sorted(found) == ["A", "B", "C", "D"]
    assert (
        found["A"]["path"] == str(trees["A"])
        and found["A"]["run_id"] == run_id
        and found["A"]["bytes"] > 0
    )
    assert found["A"]["branch"] == f"factory/{run_id}/A" and found["A"]["registered"] is True
    assert (found["A"]["status"], found["C"]["status"], found["A"]["run_finished"]) == (
        "PENDING",
        "DONE",
        False,
    )

    # The run has not finished: nothing goes, each worker refused on one line saying why.
    res = cli(repo, "clean", "--json")
    assert res.returncode == 3, res.stderr
    doc = json.loads(res.stdout)
    assert doc["removed"] == [] and [r["worker"] for r in doc["refused"]] == ["A", "B", "C", "D"]
    why = {r["worker"]: r["reason"] for r in doc["refused"]}
    assert "were never collected" in why["A"]
    assert "note .factory/SUMMARY.md was never collected" in why["B"]
    assert why["C"].startswith(f"run {run_id} has not finished") and why["D"].startswith(
        f"run {run_id} has not finished"
    )
    lines = refusals(res.stderr)
    assert sorted(lines) == ["A", "B", "C", "D"] and all("--force" in ln for ln in lines.values())
    assert str(trees["A"]) in lines["A"] and "bundle-collect" in lines["A"]
    assert sorted(worktrees(repo)) == [f"factory/{run_id}/{w}" for w in "ABCD"]
    assert (trees["B"] / ".factory" / "SUMMARY.md").is_file()
    assert "remove it anyway" in lines["C"]  # not "discard": C has nothing to lose

    # The run finishes (BLOCKED: A, B and D never collected); what is exactly in a bundle goes.
    assert cli(repo, "integrate", "--run-id", run_id).returncode == 3
    res = cli(repo, "clean", "--json")
    assert res.returncode == 3, res.stderr
    doc = json.loads(res.stdout)
    assert [r["worker"] for r in doc["refused"]] == ["A", "B"]
    assert sorted(r["worker"] for r in doc["removed"]) == [
        "C",
        "D",
    ]  # C's change is in its bundle; D did nothing
    assert sorted(refusals(res.stderr)) == ["A", "B"]
    assert sorted(worktrees(repo)) == [f"factory/{run_id}/A", f"factory/{run_id}/B"]
    assert (trees["A"] / "src" / "app.py").read_text() == "print('precious, never collected')\n"

    res = cli(repo, "clean", "--run-id", run_id, "--force")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("[forced past: ") == 2  # each with its own reason
    assert "[forced past: its note .factory/SUMMARY.md was never collected]" in res.stdout
    assert res.stderr == ""  # nothing refused, nothing said twice
    assert worktrees(repo) == {} and factory_branches(repo) == [] and not trees["A"].exists()
    assert snapshot(repo) == before
    removed = [e["payload"] for e in events(repo, run_id) if e["event_type"] == "worktree.removed"]
    assert [(p["worker"], p["reason"], p["forced"]) for p in removed] == [
        ("C", "clean", False),
        ("D", "clean", False),
        ("A", "clean", True),
        ("B", "clean", True),
    ]
    refused = [
        e["payload"]["worker"] for e in events(repo, run_id) if e["event_type"] == "clean.refused"
    ]
    assert refused == ["A", "B", "C", "D", "A", "B"]
    assert_events_valid(repo)
    res = cli(repo, "clean")
    assert res.returncode == 0 and res.stdout.startswith("nothing to clean")


def test_a_branch_whose_worktree_folder_is_gone_keeps_commits_never_collected(
    tmp_path: Path,
) -> None:
    repo = work_repo(tmp_path)
    run_id = json.loads(cli(repo, "launch", "--workers", "A,B", "--json").stdout)["run_id"]
    trees = {b[-1]: p for b, p in worktrees(repo).items()}
    (trees["A"] / "src" / "work.py").write_text("WORK = 'committed, never collected'\n")
    git(trees["A"], "add", "-A")
    git(trees["A"], "commit", "-q", "-m", "A: work")
    tip = git(trees["A"], "rev-parse", "HEAD").strip()
    (trees["B"] / "docs" / "guide.md").write_text("B's work\n")
    git(trees["B"], "commit", "-q", "-am", "B: work")
    assert cli(repo, "bundle-collect", "--run-id", run_id, "--workers", "B").returncode == 0
    shutil.rmtree(trees["A"])
    shutil.rmtree(trees["B"])

    res = cli(repo, "clean", "--json")
    assert res.returncode == 3, res.stderr
    why = {r["worker"]: r["reason"] for r in json.loads(res.stdout)["refused"]}
    assert (
        f"branch factory/{run_id}/A has commits beyond the base (tip {tip[:12]}) that were never collected"
        in why["A"]
    )
    assert "has not finished" in why["B"]
    assert (
        git(repo, "rev-parse", f"factory/{run_id}/A").strip() == tip
    )  # the commit is still on its branch

    assert (
        cli(repo, "integrate", "--run-id", run_id).returncode == 3
    )  # A never collected: BLOCKED, run finished
    res = cli(repo, "clean", "--json")
    assert res.returncode == 3
    doc = json.loads(res.stdout)
    assert [r["worker"] for r in doc["refused"]] == ["A"]
    assert [r["worker"] for r in doc["removed"]] == [
        "B"
    ]  # its commits are exactly its collected DIFF.patch
    assert factory_branches(repo) == [f"factory/{run_id}/A"]
    assert cli(repo, "clean", "--force").returncode == 0
    assert factory_branches(repo) == [] and worktrees(repo) == {}


def test_clean_finds_leftovers_of_a_crashed_run_via_the_ledger(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    res = cli(repo, "launch", "--workers", "A,B", "--json")
    run_id = json.loads(res.stdout)["run_id"]
    trees = {b[-1]: p for b, p in worktrees(repo).items()}
    # A crash left things half-gone: A's folder deleted by hand, the run folder deleted too.
    shutil.rmtree(trees["A"])
    shutil.rmtree(run_dir(repo, run_id))
    res = cli(repo, "clean", "--json")
    assert res.returncode == 3  # the run never finished: its workers may be at work
    assert all("has not finished" in r["reason"] for r in json.loads(res.stdout)["refused"])
    res = cli(repo, "clean", "--json", "--force")
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
    assert (
        "kept the worktree of C_worker" in res.stderr
        and "differ from the collected DIFF.patch" in res.stderr
    )
    assert list(worktrees(repo)) == [f"factory/{run_id}/C"]
    assert (trees["C"] / "docs" / "guide.md").read_text() == "edited after collecting\n"
    # --keep-worktrees: nothing removed at all.
    res = cli(
        repo,
        "oneshot",
        "--workers",
        "B",
        "--keep-worktrees",
        "--json",
        env={
            "FACTORY_WORKERS__AGENT": json.dumps(
                {"preset": "script", "argv": ["{python}", "-c", "pass"]}
            )
        },
    )
    assert res.returncode == 0, res.stderr
    other = json.loads(res.stdout)["run_id"]
    assert f"factory/{other}/B" in worktrees(repo)
    assert "worktrees kept (--keep-worktrees)" in res.stderr
    assert cli(repo, "clean", "--run-id", other).returncode == 0
    assert cli(repo, "clean", "--run-id", run_id).returncode == 3


def test_the_users_own_stale_worktree_registration_survives_runs_and_clean(tmp_path: Path) -> None:
    """Never `git worktree prune`: a worktree of the user's on an unplugged drive stays registered."""
    repo = work_repo(tmp_path)
    git(repo, "worktree", "add", "-q", "-b", "user/topic", str(tmp_path / "usb" / "topic"))
    (tmp_path / "usb").rename(tmp_path / "usb-unplugged")
    mine = [e for e in gitops.worktree_list(repo) if e["branch"] == "refs/heads/user/topic"]
    assert mine and mine[0]["prunable"]  # git would prune it
    admin = {p.name for p in (repo / ".git" / "worktrees").iterdir()}

    env = agent_env(tmp_path / "spec.json", {"A": {"write": {"src/app.py": "print('A')\n"}}})
    res = cli(
        repo, "oneshot", "--workers", "A", env=env
    )  # real run, integrate PASS, worktree removed
    assert res.returncode == 0, res.stdout + res.stderr
    res = cli(repo, "launch", "--workers", "B", "--json")
    run_id = json.loads(res.stdout)["run_id"]
    shutil.rmtree(
        worktrees(repo)[f"factory/{run_id}/B"]
    )  # our folder gone: only our registration goes
    assert cli(repo, "clean", "--force").returncode == 0

    assert worktrees(repo) == {} and factory_branches(repo) == []
    assert [e["branch"] for e in gitops.worktree_list(repo)] == [
        "refs/heads/main",
        "refs/heads/user/topic",
    ]
    assert {p.name for p in (repo / ".git" / "worktrees").iterdir()} == admin
    assert "user/topic" in gitops.branches(repo)


def test_a_clean_up_failing_after_a_pass_keeps_the_verdict_and_clean_retries(
    tmp_path: Path,
) -> None:
    repo = work_repo(tmp_path)
    run_id = json.loads(cli(repo, "launch", "--workers", "A", "--json").stdout)["run_id"]
    tree = worktrees(repo)[f"factory/{run_id}/A"]
    (tree / "src" / "app.py").write_text("print('v2')\n")
    assert cli(repo, "bundle-collect", "--run-id", run_id).returncode == 0
    assert cli(repo, "bundle-validate", "--run-id", run_id).returncode == 0
    res = cli(repo, "integrate", "--run-id", run_id, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert factory_branches(repo) == [f"factory/{run_id}/A"]  # kept until land or clean
    lock = repo / ".git" / "packed-refs.lock"  # another git process is rewriting refs
    lock.write_bytes(b"")
    res = cli(repo, "land", "--run-id", run_id, "--json")
    assert res.returncode == 0, res.stdout + res.stderr  # the result is landed: exit 0
    assert json.loads(res.stdout)["branch"] == f"factory/result/{run_id}"
    warnings = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1, res.stderr
    assert (
        f"kept branch factory/{run_id}/A" in warnings[0]
        and f"factory clean --run-id {run_id}" in warnings[0]
    )
    failed = [e["payload"] for e in events(repo, run_id) if e["event_type"] == "cleanup.failed"]
    assert [(p["worker"], p["kept"]) for p in failed] == [("A", ["branch"])]
    assert_events_valid(repo)
    assert cli(repo, "ledger-replay", "--run-id", run_id).returncode == 0

    lock.unlink()
    res = cli(repo, "clean")
    assert res.returncode == 0, res.stderr
    assert f"removed branch factory/{run_id}/A" in res.stdout
    assert factory_branches(repo) == [f"factory/result/{run_id}"] and worktrees(repo) == {}
