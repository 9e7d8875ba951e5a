"""land: a PASS run's integrated tree becomes a commit on a new branch; nothing of the
operator's (HEAD, index, working tree, other branches) moves."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.contract import check_keys
from tests.support.repos import git, run_process, snapshot
from tests.support.workers import (
    agent_env,
    assert_events_valid,
    base_commit,
    cli,
    events,
    factory_branches,
    run_dir,
    work_repo,
    worktrees,
)


def _imported_pass(tmp_path: Path) -> tuple[Path, str, bytes]:
    """A repository and a PASS run whose worker A brought a real patch (bundle-import)."""
    repo = work_repo(tmp_path)
    res = cli(repo, "launch", "--dry-run", "--workers", "A", "--json")
    assert res.returncode == 0, res.stderr
    run_id = str(json.loads(res.stdout)["run_id"])
    (repo / "src" / "app.py").write_text("print('landed')\n")
    patch = subprocess.run(
        ["git", "-C", str(repo), "diff", "--binary"], capture_output=True, check=True
    ).stdout
    git(repo, "checkout", "--", "src/app.py")
    (tmp_path / "a.diff").write_bytes(patch)
    res = cli(
        repo,
        "bundle-import",
        "--run-id",
        run_id,
        "--worker",
        "A",
        "--patch",
        str(tmp_path / "a.diff"),
    )
    assert res.returncode == 0, res.stderr
    assert cli(repo, "bundle-validate", "--run-id", run_id).returncode == 0
    res = cli(repo, "integrate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"next: `factory land --run-id {run_id}`" in res.stdout
    report = (run_dir(repo, run_id) / "Z_integrator" / "FINAL_REPORT.txt").read_text()
    assert f"next: `factory land --run-id {run_id}`" in report
    return repo, run_id, patch


def test_land_commits_the_integrated_tree_on_a_new_branch_and_touches_nothing_else(
    tmp_path: Path,
) -> None:
    repo, run_id, _patch = _imported_pass(tmp_path)
    base = base_commit(repo)
    (repo / "scratch.txt").write_text("the operator's uncommitted work\n")
    git(repo, "add", "scratch.txt")
    before = snapshot(repo)

    res = cli(repo, "land", "--run-id", run_id, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    check_keys("land", out)
    branch = f"factory/result/{run_id}"
    assert out["branch"] == branch and out["base_commit"] == base
    assert out["next"] == [f"git switch {branch}", f"git merge --ff-only {branch}"]
    after = snapshot(repo)
    assert {k: v for k, v in after.items() if k != "branches"} == {
        k: v for k, v in before.items() if k != "branches"
    }
    assert git(repo, "rev-parse", branch).strip() == out["commit"]
    assert git(repo, "rev-parse", f"{out['commit']}^").strip() == base
    assert git(repo, "show", f"{branch}:src/app.py") == "print('landed')\n"
    assert git(repo, "diff", "--name-only", base, branch).split() == ["src/app.py"]
    landed = [e for e in events(repo, run_id) if e["event_type"] == "run.landed"]
    assert [e["payload"]["commit"] for e in landed] == [out["commit"]]
    assert landed[0]["payload"]["tree"] == git(repo, "rev-parse", f"{branch}^{{tree}}").strip()
    assert_events_valid(repo)
    replay = cli(repo, "ledger-replay", "--run-id", run_id)
    assert replay.returncode == 0, replay.stdout

    again = cli(repo, "land", "--run-id", run_id, "--branch", "other")
    assert again.returncode == 3
    assert again.stderr.strip() == (
        f"factory: error: run {run_id} was already landed on branch {branch} (commit "
        f"{out['commit'][:12]}): `git switch {branch}`"
    )
    assert "other" not in git(repo, "branch", "--list", "other")


def test_land_says_git_merge_once_head_moved_and_uses_the_given_branch_and_message(
    tmp_path: Path,
) -> None:
    repo, run_id, _patch = _imported_pass(tmp_path)
    (repo / "docs" / "guide.md").write_text("moved on\n")
    git(repo, "commit", "-qam", "operator moved on")
    res = cli(
        repo, "land", "--run-id", run_id, "--branch", "feature/x", "--commit-message", "Add x"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("next:\n  git merge feature/x")
    assert git(repo, "log", "-1", "--format=%s", "feature/x").strip() == "Add x"


def test_land_refuses_an_existing_branch_a_tampered_patch_and_a_run_not_pass(
    tmp_path: Path,
) -> None:
    repo, run_id, _patch = _imported_pass(tmp_path)
    base = base_commit(repo)
    res = cli(repo, "land", "--run-id", run_id, "--branch", "")
    assert res.returncode == 2 and "branch '': an empty name" in res.stderr, res.stderr
    assert not git(repo, "branch", "--list", f"factory/result/{run_id}").strip()
    git(repo, "branch", f"factory/result/{run_id}")
    res = cli(repo, "land", "--run-id", run_id)
    assert res.returncode == 3 and "exists already" in res.stderr, res.stderr
    assert git(repo, "rev-parse", f"factory/result/{run_id}").strip() == base  # not moved

    diff = run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch"
    diff.write_bytes(diff.read_bytes().replace(b"landed", b"forged"))
    res = cli(repo, "land", "--run-id", run_id, "--branch", "fresh")
    assert res.returncode == 3, res.stderr
    assert "Z_integrator/DIFF.patch changed since the integration wrote it" in res.stderr
    assert not git(repo, "branch", "--list", "fresh").strip()

    blocked = cli(repo, "launch", "--dry-run", "--workers", "A", "--json")
    other = json.loads(blocked.stdout)["run_id"]
    (run_dir(repo, other) / "A_worker" / "DIFF.patch").write_bytes(b"not a patch\n")
    assert cli(repo, "oneshot", "--dry-run", "--workers", "A").returncode == 0  # unrelated run
    assert cli(repo, "bundle-validate", "--run-id", other).returncode == 3
    res = cli(repo, "land", "--run-id", other)
    assert res.returncode == 3
    assert res.stderr.strip() == (
        f"factory: error: run {other} cannot be landed: it has not finished; only a PASS run lands"
    )
    assert cli(repo, "integrate", "--run-id", other).returncode == 3
    res = cli(repo, "land", "--run-id", other)
    assert res.returncode == 3 and "its status is BLOCKED" in res.stderr, res.stderr


def test_a_pass_keeps_worker_branches_until_land_removes_them(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    env = agent_env(tmp_path / "spec.json", {"A": {"write": {"src/app.py": "print('A')\n"}}})
    res = cli(repo, "oneshot", "--workers", "A", "--json", env=env)
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    assert json.loads(res.stdout)["land"] == f"factory land --run-id {run_id}"
    assert worktrees(repo) == {}  # the worktree went
    assert factory_branches(repo) == [f"factory/{run_id}/A"]  # its branch stays
    removed = [e["payload"] for e in events(repo, run_id) if e["event_type"] == "worktree.removed"]
    assert removed[0]["branch_kept"] is True and removed[0]["tip"] == base_commit(repo)
    doctor = json.loads(cli(repo, "doctor", "--json").stdout)
    check = next(c for c in doctor["checks"] if c["name"] == "worktrees")
    assert check["level"] == "OK", check  # kept on purpose, not a leftover
    assert f"1 worker branch(es) kept after a PASS of run(s) {run_id}" in check["detail"]

    res = cli(repo, "land", "--run-id", run_id)
    assert res.returncode == 0, res.stderr
    assert f"removed 1 worker branch(es) of {run_id}" in res.stderr
    assert factory_branches(repo) == [f"factory/result/{run_id}"]
    assert git(repo, "show", f"factory/result/{run_id}:src/app.py") == "print('A')\n"
    assert_events_valid(repo)
    assert cli(repo, "ledger-replay", "--run-id", run_id).returncode == 0


def test_clean_never_deletes_a_kept_branch_that_moved_even_with_force(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    env = agent_env(tmp_path / "spec.json", {"A": {"write": {"src/app.py": "print('A')\n"}}})
    res = cli(repo, "oneshot", "--workers", "A", "--json", env=env)
    run_id = json.loads(res.stdout)["run_id"]
    branch = f"factory/{run_id}/A"
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    mine = git(repo, "commit-tree", tree, "-p", branch, "-m", "my own work").strip()
    git(repo, "update-ref", f"refs/heads/{branch}", mine)

    for extra in ((), ("--force",)):
        res = cli(repo, "clean", "--run-id", run_id, *extra)
        assert res.returncode == 3, res.stdout + res.stderr
        assert res.stderr.count(f"branch {branch} moved since the factory kept it") == 1
        assert res.stdout == ""  # the refusal is said once, on stderr
        assert git(repo, "rev-parse", branch).strip() == mine

    git(repo, "update-ref", f"refs/heads/{branch}", base_commit(repo))
    res = cli(repo, "clean", "--run-id", run_id)
    assert res.returncode == 0, res.stderr
    assert factory_branches(repo) == []


def test_replay_refuses_a_landing_that_is_not_after_a_pass_or_not_of_the_recorded_patch(
    tmp_path: Path,
) -> None:
    from tools.codex.factory.infra.clock import Clock
    from tools.codex.factory.ledger.recorder import Recorder
    from tools.codex.factory.ledger.store import Ledger

    repo, run_id, _patch = _imported_pass(tmp_path)
    base = base_commit(repo)
    ledger = Ledger(run_dir(repo, run_id).parent / "factory_ledger.jsonl", Clock(None))
    try:
        Recorder(ledger, run_id, "factory").emit(
            "run.landed", "land", "operator", branch="b", commit=base, base_commit=base,
            tree=git(repo, "rev-parse", "HEAD^{tree}").strip(), diff_sha256="0" * 64,
        )  # fmt: skip
    finally:
        ledger.close()
    res = cli(repo, "ledger-replay", "--run-id", run_id, "--json")
    assert res.returncode == 3, res.stdout
    whats = [d["what"] for d in json.loads(res.stdout)["divergences"]]
    assert "run.landed diff_sha256 (vs Z_integrator/DIFF.patch in report.written)" in whats
    assert "run.landed tree (base + DIFF.patch)" not in whats  # another patch: not recomputed


def test_replay_recomputes_the_landed_tree_from_the_base_and_the_patch(tmp_path: Path) -> None:
    import hashlib

    from tools.codex.factory.infra.clock import Clock
    from tools.codex.factory.ledger.recorder import Recorder
    from tools.codex.factory.ledger.store import Ledger

    repo, run_id, _patch = _imported_pass(tmp_path)
    base = base_commit(repo)
    diff = (run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch").read_bytes()
    ledger = Ledger(run_dir(repo, run_id).parent / "factory_ledger.jsonl", Clock(None))
    try:  # the recorded patch, but the base's own tree and commit: not what landing makes
        Recorder(ledger, run_id, "factory").emit(
            "run.landed", "land", "operator", branch="b", commit=base, base_commit=base,
            tree=git(repo, "rev-parse", "HEAD^{tree}").strip(),
            diff_sha256=hashlib.sha256(diff).hexdigest(),
        )  # fmt: skip
    finally:
        ledger.close()
    res = cli(repo, "ledger-replay", "--run-id", run_id, "--json")
    assert res.returncode == 3, res.stdout
    whats = [d["what"] for d in json.loads(res.stdout)["divergences"]]
    assert whats == ["run.landed tree (base + DIFF.patch)"]


def test_resuming_a_run_that_passed_is_refused_in_one_line(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    env = agent_env(tmp_path / "spec.json", {"A": {"write": {"src/app.py": "print('A')\n"}}})
    res = cli(repo, "oneshot", "--workers", "A", "--json", env=env)
    run_id = json.loads(res.stdout)["run_id"]
    count = len(events(repo, run_id))
    res = cli(repo, "launch", "--resume", "--run-id", run_id, env=env)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"factory: error: run {run_id} already finished: status PASS; there is nothing to "
        "resume: land its result or launch a new run"
    )
    assert len(events(repo, run_id)) == count  # nothing reopened, nothing recorded


def test_land_pr_without_a_remote_lands_and_says_how_to_open_one(tmp_path: Path) -> None:
    repo, run_id, _patch = _imported_pass(tmp_path)
    res = cli(repo, "land", "--run-id", run_id, "--pr")
    assert res.returncode == 0, res.stderr
    branch = f"factory/result/{run_id}"
    assert (
        f"factory: no pull request opened (no git remote); to open one: git push <remote> {branch}"
        in res.stderr
    )
    assert git(repo, "rev-parse", "--verify", branch).strip()


def test_land_refuses_a_run_reopened_after_its_pass(tmp_path: Path) -> None:
    repo, run_id, _patch = _imported_pass(tmp_path)
    assert cli(repo, "bundle-validate", "--run-id", run_id).returncode == 0  # reopened
    res = cli(repo, "land", "--run-id", run_id)
    assert res.returncode == 3
    assert f"run {run_id} cannot be landed: it was reopened after its PASS" in res.stderr
    assert len(res.stderr.splitlines()) == 1
    assert cli(repo, "integrate", "--run-id", run_id).returncode == 0
    assert cli(repo, "land", "--run-id", run_id).returncode == 0


def test_a_branch_git_cannot_create_is_refused_in_one_line_and_nothing_moves(
    tmp_path: Path,
) -> None:
    """A branch that appeared after land's check, or a branch named like the result's folder
    (git refuses refs/heads/factory/result/X beside refs/heads/factory/result): BLOCKED in one
    line naming the branch, and no branch moved or made."""
    from tools.codex.factory.errors import GitError
    from tools.codex.factory.infra import gitops

    repo, run_id, _patch = _imported_pass(tmp_path)
    base = base_commit(repo)
    git(repo, "branch", "factory/result")
    res = cli(repo, "land", "--run-id", run_id)
    assert res.returncode == 3, res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and "git update-ref" not in line, line
    assert line.startswith(f"factory: error: branch factory/result/{run_id} cannot be created"), (
        line
    )
    assert "'refs/heads/factory/result' exists" in line
    assert git(repo, "rev-parse", "factory/result").strip() == base
    assert not any(e["event_type"] == "run.landed" for e in events(repo))
    # The creation itself never overwrites: a branch made between the check and it stays put.
    git(repo, "branch", "meanwhile")
    try:
        gitops.create_branch(repo, "meanwhile", _patch_commit(repo), "test")
    except GitError:
        pass
    else:
        raise AssertionError("create_branch overwrote an existing branch")
    assert git(repo, "rev-parse", "meanwhile").strip() == base


def test_land_refuses_a_branch_name_git_reads_as_another_ref(tmp_path: Path) -> None:
    """The next commands printed (`git merge NAME`) must take the new branch: a name that is
    a tag, a full ref or a commit already would merge that instead. Refused, nothing made."""
    repo, run_id, _patch = _imported_pass(tmp_path)
    base = base_commit(repo)
    git(repo, "tag", "v1", base)
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    res = cli(repo, "land", "--run-id", run_id, "--branch", "v1")
    assert res.returncode == 3, res.stdout + res.stderr
    line = res.stderr.strip()
    assert line == (
        f"factory: error: branch v1: git reads that name as commit {base[:12]} already "
        "(`git merge v1` would take that, not the new branch): pass another branch name"
    ), line
    res = cli(repo, "land", "--run-id", run_id, "--branch", base[:10])
    assert res.returncode == 3 and f"reads that name as commit {base[:12]}" in res.stderr
    res = cli(repo, "land", "--run-id", run_id, "--branch", "refs/heads/x")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "branch 'refs/heads/x': a full ref name; give the branch's own name" in res.stderr
    assert git(repo, "for-each-ref", "--format=%(refname) %(objectname)") == refs
    assert not any(e["event_type"] == "run.landed" for e in events(repo))


def _patch_commit(repo: Path) -> str:
    """Some commit other than HEAD (the base): an empty commit on no branch."""
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    return git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "other").strip()


def test_land_and_clean_keep_a_kept_branch_the_operator_has_checked_out(tmp_path: Path) -> None:
    """A kept worker branch the operator switched to (to look at it) is HEAD's branch:
    deleting it would leave HEAD on a branch that no longer exists. land and clean keep it
    and say why; HEAD still names a commit."""
    repo = work_repo(tmp_path)
    env = agent_env(tmp_path / "spec.json", {"A": {"write": {"src/app.py": "print('A')\n"}}})
    res = cli(repo, "oneshot", "--workers", "A", "--json", env=env)
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    branch = f"factory/{run_id}/A"
    git(repo, "switch", "-q", branch)

    res = cli(repo, "land", "--run-id", run_id)
    assert res.returncode == 0, res.stderr
    assert f"factory: kept branch {branch}: it is checked out at {repo}" in res.stderr, res.stderr
    assert git(repo, "symbolic-ref", "HEAD").strip() == f"refs/heads/{branch}"
    assert git(repo, "rev-parse", "--verify", "HEAD").strip() == base_commit(repo)

    for extra in ((), ("--force",)):
        res = cli(repo, "clean", "--run-id", run_id, *extra)
        assert res.returncode == 3, res.stdout + res.stderr
        assert f"branch {branch}: worktree of A_worker (run {run_id}): it is checked out at" in (
            res.stderr
        ), res.stderr
        assert git(repo, "rev-parse", "--verify", "HEAD").strip() == base_commit(repo)
    git(repo, "switch", "-q", "-")
    # A worktree of the operator's own on the kept branch, with work in it: never removed.
    look = tmp_path / "look"
    git(repo, "worktree", "add", "-q", str(look), branch)
    (look / "notes.txt").write_text("my notes\n")
    res = cli(repo, "clean", "--run-id", run_id, "--force")
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"it is checked out at {look}" in res.stderr, res.stderr
    assert (look / "notes.txt").read_text() == "my notes\n"
    git(repo, "worktree", "remove", "--force", str(look))
    res = cli(repo, "clean", "--run-id", run_id)
    assert res.returncode == 0, res.stderr
    assert factory_branches(repo) == [f"factory/result/{run_id}"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
def test_replay_of_a_landing_never_reads_the_patch_through_a_link(tmp_path: Path) -> None:
    """A landed run whose Z_integrator/DIFF.patch was swapped for a link to a FIFO (or to
    /dev/zero): ledger-replay says so in one divergence, never hangs or reads without end."""
    repo, run_id, _patch = _imported_pass(tmp_path)
    assert cli(repo, "land", "--run-id", run_id).returncode == 0
    diff = run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    diff.unlink()
    diff.symlink_to(fifo)
    res = run_process("--repo", str(repo), "ledger-replay", "--run-id", run_id, timeout=60)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "run.landed tree" in res.stdout and "Traceback" not in res.stderr


def test_land_text_offers_the_fast_forward_or_the_switch_never_both_in_a_row(
    tmp_path: Path,
) -> None:
    """Followed top to bottom, `git switch B` then `git merge --ff-only B` merges B into
    itself and leaves the operator's branch without the result: the text says which is which."""
    repo, run_id, _patch = _imported_pass(tmp_path)
    branch = f"factory/result/{run_id}"
    res = cli(repo, "land", "--run-id", run_id)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.rstrip().splitlines()
    at = lines.index("next:")
    assert lines[at + 1].startswith(f"  git merge --ff-only {branch}"), lines
    assert lines[at + 2].startswith(f"  or: git switch {branch}"), lines
    git(repo, *lines[at + 1].split("#")[0].split()[1:])
    assert git(repo, "show", "HEAD:src/app.py") == "print('landed')\n"
