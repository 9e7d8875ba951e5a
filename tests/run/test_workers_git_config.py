"""Config an agent plants runs nothing inside the factory: collecting a bundle restores the
shared git folder first, and no filter or diff driver (from any config) runs on the worktree's
files; the collected bytes are the ones the worker wrote."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from tests.support.repos import git
from tests.support.workers import agent_env, cli, events, run_dir, work_repo, worktrees

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the filter is a POSIX shell line")


def evil_filter(marker: Path) -> str:
    """A clean filter that leaves a marker when it runs and rewrites what it cleans."""
    return f"sh -c 'id > {shlex.quote(str(marker))}; sed s/secret/FILTERED/'"


def launched(repo: Path) -> tuple[str, Path]:
    res = cli(repo, "launch", "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    return run_id, worktrees(repo)[f"factory/{run_id}/A"]


def collected_patch(repo: Path, run_id: str) -> bytes:
    return (run_dir(repo, run_id) / "A_worker" / "DIFF.patch").read_bytes()


def test_a_filter_planted_in_the_shared_config_never_runs_in_collect(tmp_path: Path) -> None:
    """The agent's `git config filter.pwn.clean ...` in its worktree writes the repository's
    shared config; its src/.gitattributes names the filter for every file."""
    repo = work_repo(tmp_path)
    marker = tmp_path / "PWNED"
    run_id, tree = launched(repo)
    (tree / "src" / ".gitattributes").write_text("* filter=pwn\n", encoding="utf-8")
    (tree / "src" / "app.py").write_text("print('secret')\n", encoding="utf-8")
    git(tree, "config", "filter.pwn.clean", evil_filter(marker))
    assert "filter" in (repo / ".git" / "config").read_text(encoding="utf-8")
    res = cli(repo, "bundle-collect", "--run-id", run_id, "--workers", "A")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not marker.exists()
    assert "pwn" not in (repo / ".git" / "config").read_text(encoding="utf-8")  # restored first
    assert "shared git folder changed" in res.stderr and ".git/config" in res.stderr
    patch = collected_patch(repo, run_id)
    assert b"+print('secret')" in patch and b"FILTERED" not in patch
    restored = [e for e in events(repo, run_id) if e["event_type"] == "gitdir.restored"]
    assert [e["stage"] for e in restored] == ["bundle-collect"]
    res = cli(repo, "bundle-validate", "--run-id", run_id, "--workers", "A")
    assert res.returncode == 3 and "[git-dir-changed]" in res.stdout, res.stdout
    assert not marker.exists()


def test_no_filter_from_any_config_runs_and_the_bytes_are_the_workers(tmp_path: Path) -> None:
    """A driver in a config the factory does not watch (the user's global one, as an agent
    running as the user could write it), named by a .gitattributes of the base: collect runs
    none of it, and the checkout at launch ran no smudge either."""
    repo = work_repo(tmp_path, {"README.md": "hello\n", "src/app.py": "print('app')\n"})
    (repo / ".gitattributes").write_text("*.py filter=pwn diff=pwn\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "attributes")
    marker = tmp_path / "PWNED"
    smudged = tmp_path / "SMUDGED"
    config = tmp_path / "global.gitconfig"
    for key, value in (
        ("filter.pwn.clean", evil_filter(marker)),
        ("filter.pwn.smudge", f"sh -c 'touch {shlex.quote(str(smudged))}; cat'"),
        ("filter.pwn.required", "true"),
        ("diff.pwn.textconv", f"sh -c 'touch {shlex.quote(str(marker))}.textconv; cat \"$0\"'"),
    ):
        git(tmp_path, "config", "--file", str(config), key, value)
    env = {"GIT_CONFIG_GLOBAL": str(config)}
    res = cli(repo, "launch", "--json", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    tree = worktrees(repo)[f"factory/{run_id}/A"]
    assert not smudged.exists()
    (tree / "src" / "app.py").write_text("print('secret')\n", encoding="utf-8")
    res = cli(repo, "bundle-collect", "--run-id", run_id, "--workers", "A", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not marker.exists() and not Path(f"{marker}.textconv").exists()
    patch = collected_patch(repo, run_id)
    assert b"-print('app')\n+print('secret')\n" in patch and b"FILTERED" not in patch
    assert "shared git folder changed" not in res.stderr  # nothing of .git was touched


def test_a_headless_agent_planting_a_filter_runs_nothing_in_the_factory(tmp_path: Path) -> None:
    """Collected as the agent exits (the launch stage), while other agents may still run."""
    repo = work_repo(tmp_path)
    marker = tmp_path / "PWNED"
    spec = {
        "A": {
            "write": {"src/.gitattributes": "* filter=pwn\n", "src/app.py": "print('secret')\n"},
            "git": [["config", "filter.pwn.clean", evil_filter(marker)]],
        }
    }
    env = agent_env(tmp_path / "spec.json", spec)
    res = cli(repo, "launch", "--json", "--workers", "A", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    assert not marker.exists()
    assert "pwn" not in (repo / ".git" / "config").read_text(encoding="utf-8")
    patch = collected_patch(repo, run_id)
    assert b"+print('secret')" in patch and b"FILTERED" not in patch
    res = cli(repo, "bundle-validate", "--run-id", run_id, env=env)
    assert res.returncode == 3 and "[git-dir-changed]" in res.stdout, res.stdout
