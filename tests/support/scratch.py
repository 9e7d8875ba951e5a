"""Scratch repositories with their own git environment, and bundles made from real edits.

The pipeline and replay tests build their scenarios here: a repository committed by git, the
CLI driven on it with the pinned clock (in-process unless FACTORY_TEST_REAL=1), and worker
bundles whose patches git itself produced from an edit of the work tree.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.repos import PINNED, ROOT, run_cli
from tools.codex.factory.infra import jsonio
from tools.codex.factory.infra.fsutil import remove_tree

__all__ = [
    "BASE_FILES",
    "OVERLAP_PLAN",
    "PINNED",
    "RUNS_REL",
    "bundle_from_changes",
    "factory",
    "make_repo",
    "real_patch",
    "remove_tree",
    "scratch_env",
    "write_bundle",
]

RUNS_REL = "tools/codex/runs"
BASE_FILES: dict[str, str] = {
    "README.md": "# scratch project\n",
    "src/app.py": "def greet(name):\n    return 'hello ' + name\n",
    "tests/test_app.py": "from src.app import greet\n\n\ndef test_greet():\n    assert greet('x') == 'hello x'\n",
}
# Scopes that overlap on src/**: two workers editing src/app.py is an unplanned overlap.
OVERLAP_PLAN: dict[str, Any] = {
    "schema_version": 1,
    "workers": [
        {"id": "A", "task": "Source code.", "allow": ["src/**"]},
        {"id": "B", "task": "Tests, and a fix in the source.", "allow": ["src/**", "tests/**"]},
    ],
}


def scratch_env(home: Path) -> dict[str, str]:
    """A child environment independent of the developer's: no FACTORY_*, own git config."""
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / "gitconfig"
    gitconfig.write_bytes(
        b"[init]\n\tdefaultBranch = main\n[core]\n\tautocrlf = false\n\tsafecrlf = false\n"
        b"[commit]\n\tgpgsign = false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "GIT_"))}
    env.update(
        {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(gitconfig),
            "GIT_AUTHOR_NAME": "Factory Test",
            "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "Factory Test",
            "GIT_COMMITTER_EMAIL": "test@example.invalid",
            "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
            "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
            "PYTHONPATH": str(ROOT)
            + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
            "PYTHONIOENCODING": "utf-8",
            "FACTORY_LEDGER__FSYNC": "false",  # see the conftest: a test cannot cut the power
        }
    )
    return env


def git(repo: Path, env: Mapping[str, str], *args: str) -> bytes:
    res = subprocess.run(
        ["git", "-C", str(repo), *args], env=dict(env), capture_output=True, check=False
    )
    if res.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {res.stderr.decode()}")
    return res.stdout


def make_repo(path: Path, env: Mapping[str, str], files: Mapping[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for rel, text in (files or BASE_FILES).items():
        f = path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(text.encode("utf-8"))
    git(path, env, "init", "-q")
    git(path, env, "add", "-A")
    git(path, env, "commit", "-q", "-m", "base")
    return path


def factory(
    repo: Path, env: Mapping[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The CLI on ``repo`` with the pinned clock and ``env``."""
    return run_cli("--repo", str(repo), "--now", PINNED, *args, env=dict(env), timeout=timeout)


def real_patch(repo: Path, env: Mapping[str, str], changes: Mapping[str, str | None]) -> bytes:
    """Make ``changes`` (path -> new text, None = delete) in the work tree, diff with git, undo."""
    paths = sorted(changes)
    existed = {p: (repo / p).is_file() for p in paths}
    new = [p for p in paths if not existed[p]]
    try:
        for p, text in changes.items():
            target = repo / p
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(text.encode("utf-8"))
        if new:
            git(repo, env, "add", "-N", "--", *new)
        return git(
            repo, env, "diff", "--binary", "--full-index", "--no-color", "--no-ext-diff", "HEAD",
            "--", *paths,
        )  # fmt: skip
    finally:
        if new:
            git(repo, env, "reset", "-q", "--", *new)
        for p in new:
            (repo / p).unlink(missing_ok=True)
        old = [p for p in paths if existed[p]]
        if old:
            git(repo, env, "checkout", "-q", "HEAD", "--", *old)


def write_bundle(repo: Path, run_id: str, worker: str, patch: bytes, files: list[str]) -> Path:
    """Put a patch into a launched worker bundle (what a worker hands back)."""
    folder = repo / RUNS_REL / run_id / f"{worker}_worker"
    (folder / "DIFF.patch").write_bytes(patch)
    (folder / "FILES_CHANGED.json").write_bytes(
        jsonio.pretty({"schema_version": 1, "files": sorted(set(files))})
    )
    (folder / "SUMMARY.md").write_bytes(
        f"# {worker}_worker\n\nChanged: {', '.join(sorted(files))}\n".encode()
    )
    return folder


def bundle_from_changes(
    repo: Path, env: Mapping[str, str], run_id: str, worker: str, changes: Mapping[str, str | None]
) -> Path:
    return write_bundle(repo, run_id, worker, real_patch(repo, env, changes), sorted(changes))
