"""Held-out paths of a base commit are read once per process: the answer for a full commit id
is the tree's (the same from any repository holding it), never a caller's edited copy, and a
symbolic name is read afresh each time (it can move)."""

from __future__ import annotations

from pathlib import Path

from tests.support.repos import git, make_repo
from tools.codex.factory.run import worktrees

GLOBS = ["secret/**", "**/*.key"]


def test_a_full_commit_id_gives_its_tree_s_held_out_paths_from_any_repository(
    tmp_path: Path,
) -> None:
    files = {"a.txt": "a\n", "secret/x.txt": "x\n", "d/k.key": "k\n", "d/ok.txt": "o\n"}
    repo = make_repo(tmp_path / "r", files)
    commit = git(repo, "rev-parse", "HEAD").strip()
    first = worktrees.hidden_paths(repo, commit, GLOBS)
    assert first == ["d/k.key", "secret/x.txt"]
    first.append("edited by a caller")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert worktrees.hidden_paths(clone, commit, GLOBS) == ["d/k.key", "secret/x.txt"]
    assert worktrees.hidden_paths(repo, commit, ["**/*.key"]) == ["d/k.key"]


def test_a_symbolic_name_is_read_afresh(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    assert worktrees.hidden_paths(repo, "HEAD", GLOBS) == []
    (repo / "new.key").write_text("k\n")
    git(repo, "add", "new.key")
    git(repo, "commit", "-q", "-m", "key")
    assert worktrees.hidden_paths(repo, "HEAD", GLOBS) == ["new.key"]
