"""The holdout, sealed: the scenario files as the base commit holds them, read once from the
object store (never from a tree a worker wrote), hashed, and used for every evaluation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tools.codex.factory.core import scenarios as scen
from tools.codex.factory.core.scenarios import Scenario
from tools.codex.factory.errors import UsageError
from tools.codex.factory.infra import gitops


@dataclass(frozen=True)
class Holdout:
    commit: str
    folder: str  # repository-relative, no trailing '/'
    files: tuple[tuple[str, bytes], ...]  # (path, bytes), sorted: scenarios and their helpers
    scenarios: tuple[Scenario, ...]  # sorted by path

    @property
    def sha256(self) -> str:
        return seal_hash(self.files)

    def listing(self) -> list[list[str]]:
        """[path, sha256] of every sealed file (what ``holdout.sealed`` records)."""
        return [[p, hashlib.sha256(d).hexdigest()] for p, d in self.files]


def seal_hash(files: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]]) -> str:
    """One hash of the file names and bytes: a renamed, added, removed or edited file changes it."""
    h = hashlib.sha256()
    for path, data in sorted(files):
        name = path.encode("utf-8", "surrogateescape")
        h.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def folder_of(configured: str, holdout_paths: list[str]) -> str:
    """The scenarios folder, which must be held out from the workers (else they could read it)."""
    folder = configured.replace("\\", "/").strip("/")
    parts = folder.split("/")
    if not folder or any(p in ("", ".", "..") for p in parts) or ":" in folder:
        raise UsageError(f"scenarios.dir {configured!r}: give a folder inside the repository")
    held = [h.replace("\\", "/").rstrip("/") for h in holdout_paths]
    if not any(folder == h or folder.startswith(h + "/") for h in held if h):
        raise UsageError(
            f"scenarios.dir {configured!r} is not inside security.holdout_paths "
            f"({', '.join(holdout_paths) or 'none'}): workers could read the scenarios"
        )
    return folder


def is_scenario_file(path: str) -> bool:
    """Markdown files are scenarios (a README.md is not); other files are helpers they use."""
    name = path.rsplit("/", 1)[-1].lower()
    return name.endswith(".md") and name != "readme.md"


def seal(repo: Path, commit: str, folder: str, max_size: int) -> Holdout:
    """The scenarios under ``folder`` in ``commit``; an unparseable one is a usage error naming
    its file, line and rule; no scenario at all is one too."""
    files = tuple(gitops.tree_files(repo, commit, folder, max_size))
    parsed = tuple(scen.parse(path, data) for path, data in files if is_scenario_file(path))
    if not parsed:
        raise UsageError(
            f"no scenario in {folder}/ at commit {commit[:12]}: add '# Scenario:' markdown files "
            "there and commit them"
        )
    return Holdout(commit, folder, files, parsed)
