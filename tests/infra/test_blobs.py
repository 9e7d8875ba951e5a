"""gitops.blobs_at: base files by path, from the object store, in batch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.repos import git, make_repo
from tools.codex.factory.infra import gitops

FILES = {
    "tests/test_a.py": "def test_a():\n    assert 1 + 1 == 2\n",
    "tests/with space.py": "x = 1\n",
    "tests/[star]*.py": "y = 2\n",
    "big.txt": "z" * 100,
}


@pytest.mark.parametrize("named", [True, False], ids=["pathspecs", "whole-tree"])
def test_blobs_by_path(tmp_path: Path, named: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not named:  # too many paths to name on a command line: the whole tree is listed
        monkeypatch.setattr(gitops, "PATHSPEC_CHARS", 0)
    repo = make_repo(tmp_path / "repo", FILES)
    if os.name != "nt":
        os.symlink("tests/test_a.py", repo / "link.py")
        git(repo, "add", "link.py")
        git(repo, "commit", "-q", "-m", "link")
    commit = git(repo, "rev-parse", "HEAD").strip()
    wanted = [*FILES, "missing.py", "tests", "link.py", "tests/*.py"]
    got = gitops.blobs_at(repo, commit, wanted, 50)
    assert got["tests/test_a.py"] == FILES["tests/test_a.py"].encode()
    assert got["tests/with space.py"] == b"x = 1\n"
    assert got["tests/[star]*.py"] == b"y = 2\n"  # taken literally, never as a pattern
    for absent in ("big.txt", "missing.py", "tests", "link.py", "tests/*.py"):
        assert got[absent] is None, absent  # too big, absent, a folder, a link, a pattern
    assert gitops.blobs_at(repo, commit, [], 50) == {}


@pytest.mark.parametrize(
    "var", ["GIT_GLOB_PATHSPECS", "GIT_ICASE_PATHSPECS", "GIT_NOGLOB_PATHSPECS"]
)
def test_blobs_literal_whatever_the_environment(
    tmp_path: Path, var: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's pathspec settings change no path: each is read as it is spelled."""
    repo = make_repo(tmp_path / "repo", {"tests/Test_a.py": "x = 1\n", "tests/[ab].py": "y\n"})
    commit = git(repo, "rev-parse", "HEAD").strip()
    monkeypatch.setenv(var, "1")
    got = gitops.blobs_at(repo, commit, ["tests/test_a.py", "tests/[ab].py", "tests/a.py"], 50)
    assert got == {"tests/test_a.py": None, "tests/[ab].py": b"y\n", "tests/a.py": None}
