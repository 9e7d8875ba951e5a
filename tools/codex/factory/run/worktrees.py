"""Worker worktrees: where they live, how they are made, what they hold, how they go away.

Each worker of a real (not dry-run) run gets a linked git worktree at the run's base commit on
its own branch ``<run.branch_prefix>/<RUN_ID>/<W>``. Worktrees live outside the user's working
tree by default, in the user's cache folder, under a short per-run slot:
``<cache>/multi-codex-factory/wt/<slot>/<W>`` (``<slot>`` = 10 hex of sha256(repository, run ID)),
so paths stay short on Windows. The configured holdout paths are absent from the checkout
(sparse checkout) and never show up as deleted in a collected diff.

A worktree is found again by its branch (``git worktree list``), not by recomputing its path,
so a changed cache location or config cannot lose it. Artifacts and ledger events never hold
these paths (they depend on where the repository is); only RUNBOARD.md, for people, shows them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.codex.factory.core.globs import match_any, validate_glob
from tools.codex.factory.errors import UsageError
from tools.codex.factory.infra import fsutil, gitops
from tools.codex.factory.infra.writer import GuardedWriter

APP_DIR = "multi-codex-factory"
NOTES_DIR = ".factory"  # reserved folder in each worktree for the worker's notes
DONE_MARKER = "DONE"  # an interactive worker marks itself done with .factory/DONE
PROMPT = "PROMPT.md"


def cache_home() -> Path:
    """The user's cache folder: %LOCALAPPDATA% on Windows, else $XDG_CACHE_HOME or ~/.cache."""
    if os.name == "nt":  # pragma: no cover - Windows
        local = os.environ.get("LOCALAPPDATA")
        if local:
            return Path(local)
        return Path.home() / "AppData" / "Local"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg)
    if sys.platform == "darwin":  # pragma: no cover - macOS
        return Path.home() / "Library" / "Caches"
    return Path.home() / ".cache"


def root_dir(repo: Path, configured: str | None) -> Path:
    """Where worktrees go: ``paths.worktrees_dir`` (absolute, ~, or relative to the repository)."""
    if configured:
        path = Path(os.path.expanduser(configured))
        return path if path.is_absolute() else repo / path
    return cache_home() / APP_DIR / "wt"


def check_root(repo: Path, root: Path) -> None:
    """A worktrees folder inside the repository must be git-ignored (git status stays clean)."""
    try:
        rel = Path(os.path.abspath(root)).relative_to(Path(os.path.abspath(repo)))
    except ValueError:
        return
    if not rel.parts:
        raise UsageError(
            f"config paths.worktrees_dir: {root} is the repository itself; choose a folder outside it"
        )
    if not gitops.is_ignored(repo, rel.as_posix() + "/x"):
        raise UsageError(
            f"config paths.worktrees_dir: {rel.as_posix()} is inside the repository and not git-ignored; "
            "worktrees there would show in `git status`: choose a folder outside the repository (default: "
            "the user cache folder) or ignore it"
        )


def slot(repo: Path, run_id: str) -> str:
    real = os.path.normcase(str(repo.resolve()))
    return hashlib.sha256(f"{real}\0{run_id}".encode()).hexdigest()[:10]


def worktree_path(root: Path, repo: Path, run_id: str, worker: str) -> Path:
    return root / slot(repo, run_id) / worker


def is_factory_checkout(repo: Path, run_id: str, worker: str, path: Path) -> bool:
    """Is ``path`` the worktree the factory made for this worker (``<root>/<slot>/<worker>``),
    not a checkout of the operator's that has its branch (the repository itself, or a worktree
    of theirs made to look at a kept branch)? Only the factory's is the factory's to remove."""
    same = os.path.normcase
    return same(path.name) == same(worker) and same(path.parent.name) == slot(repo, run_id)


def branch_name(prefix: str, run_id: str, worker: str) -> str:
    name = f"{prefix.strip('/')}/{run_id}/{worker}"
    if not prefix.strip("/") or not gitops.valid_branch(name):
        raise UsageError(
            f"config run.branch_prefix: {prefix!r} does not give a valid branch name ({name!r})"
        )
    return name


def holdout_globs(globs: list[str]) -> list[str]:
    for i, g in enumerate(globs):
        try:
            validate_glob(g)
        except ValueError as exc:
            raise UsageError(f"config security.holdout_paths[{i}]: {exc}") from None
    return list(globs)


def hidden_paths(repo: Path, commit: str, globs: list[str]) -> list[str]:
    """The base's files that the holdout globs keep out of every worktree."""
    if not globs:
        return []
    if _FULL_ID.fullmatch(commit):  # names one tree for good: every worker's worktree shares it
        return list(_hidden_of(repo, commit, tuple(globs)))
    return _hidden_in(gitops.tree_paths(repo, commit), globs)


_FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _hidden_in(paths: list[str], globs: Sequence[str]) -> list[str]:
    return [p for p in paths if match_any(p, globs, ignore_case=True) is not None]


_HIDDEN: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}


def _hidden_of(repo: Path, commit: str, globs: tuple[str, ...]) -> tuple[str, ...]:
    """``hidden_paths`` of a full commit id, read once per process: a commit id names its tree
    by content, so the answer is the same from any repository (or worktree) that has it."""
    key = (commit, globs)
    if key not in _HIDDEN:
        if len(_HIDDEN) >= 16:
            _HIDDEN.clear()
        _HIDDEN[key] = tuple(_hidden_in(gitops.tree_paths(repo, commit), globs))
    return _HIDDEN[key]


def find(repo: Path, branch: str, listing: list[dict[str, str]] | None = None) -> Path | None:
    ref = f"refs/heads/{branch}"
    for entry in listing if listing is not None else gitops.worktree_list(repo):
        if entry["branch"] == ref:
            return Path(entry["path"])
    return None


def create(repo: Path, path: Path, branch: str, commit: str, hidden: list[str]) -> None:
    """Make the worktree, check it out without the hidden files, reserve ``.factory/``."""
    if path.exists() and any(path.iterdir()):
        raise UsageError(
            f"worktree folder {path} exists and is not empty; run `factory clean` or remove it"
        )
    gitops.worktree_add(repo, path, branch, commit)
    sparse = gitops.sparse_file(path)
    GuardedWriter(sparse.parent.parent).write(
        f"{sparse.parent.name}/{sparse.name}", gitops.sparse_patterns(hidden)
    )
    gitops.worktree_checkout_sparse(path, hidden)
    # Self-ignoring, like pytest's cache: the notes folder never shows in `git status`.
    GuardedWriter(path).write(
        f"{NOTES_DIR}/.gitignore",
        b"# reserved for the factory: the worker's notes, never part of the change\n*\n",
    )


def current_diff(
    path: Path, commit: str, globs: list[str], hidden: list[str] | None = None
) -> bytes:
    """The worktree's whole change against ``commit`` (see :func:`gitops.worktree_diff`)."""
    if hidden is None:
        hidden = hidden_paths(path, commit, globs)
    missing = [p for p in hidden if not ((path / p).exists() or (path / p).is_symlink())]
    return gitops.worktree_diff(path, commit, missing)


def remove(repo: Path, path: Path | None, branch: str) -> None:
    """Remove our worktree at ``path`` (registered; its folder may be gone) and ``branch``.

    Only this worktree's registration goes, never anyone else's (no ``git worktree prune``).
    """
    if path is not None:
        remove_worktree(repo, path)
    gitops.branch_delete(repo, branch)


def remove_worktree(repo: Path, path: Path) -> None:
    """Remove our worktree at ``path`` and its registration; its branch stays."""
    gitops.worktree_remove(repo, path)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the run's slot, once its last worktree is gone


def disk_usage(path: Path) -> int:
    return sum(e.st.st_size for e in fsutil.walk(path) if not e.is_dir)


def read_note(path: Path, name: str) -> bytes | None:
    """A note the worker left in ``.factory/`` (regular files only; a symlink is ignored)."""
    note = path / NOTES_DIR / name
    if note.is_symlink() or not note.is_file():
        return None
    if (path / NOTES_DIR).is_symlink():
        return None
    return note.read_bytes()


def marked_done(path: Path) -> bool:
    marker = path / NOTES_DIR / DONE_MARKER
    return marker.is_file() and not (path / NOTES_DIR).is_symlink()


def settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """The worktree-related config recorded in the run's manifest."""
    cfg = manifest["config"]
    return {
        "branch_prefix": cfg["run"]["branch_prefix"],
        "worktrees_dir": cfg["paths"]["worktrees_dir"],
        "holdout": list(cfg["security"]["holdout_paths"]),
    }
