"""The run layout and safe path handling; the only module that knows folder names."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

from tools.codex.factory.core import names
from tools.codex.factory.core.ids import validate_run_id

HEAD_SUFFIX = ".sha256"
MANIFEST = "RUN_MANIFEST.json"
VALIDATION = "VALIDATION.json"
# The run's (or crank's) report as a page, written on demand and recorded by report.html.written.
REPORT_HTML = "REPORT.html"
RUNBOARD = "RUNBOARD.md"
Z_DIR = "Z_integrator"
LOCKS_DIR = "locks"
ATTEST_DIR = "attestations"
LOGS_DIR = "LOGS"
SANDBOX_DIR = "sandbox"

WORKER_FILES = (
    "STATUS.json",
    "SUMMARY.md",
    "FILES_CHANGED.json",
    "DIFF.patch",
    "SUGGESTIONS.md",
    "SCOPE_LOCK.json",
    "HANDOFF_NOTE.json",
    "LOGS/INDEX.json",
)

_DRIVE = re.compile(r"^[A-Za-z]:")


def worker_dirname(worker_id: str) -> str:
    return f"{worker_id}_worker"


class PathRuleError(ValueError):
    """A repository path broke a rule; ``rule`` is the short rule name for findings."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def normalise_repo_path(raw: str) -> str:
    """Check a repository-relative path and return it; raise PathRuleError naming the rule.

    Accepted paths are relative, '/'-separated, already normal (no '.', '..', '//'),
    not absolute or drive-qualified, and not inside ``.git/``.
    """
    if not raw:
        raise PathRuleError("path-empty", "empty path")
    if "\x00" in raw:
        raise PathRuleError("path-nul", f"path {raw!r} contains NUL")
    if "\\" in raw:
        raise PathRuleError("path-backslash", f"path {raw!r} uses '\\'; use '/'")
    if _DRIVE.match(raw):
        raise PathRuleError("path-drive", f"path {raw!r} is drive-qualified")
    if raw.startswith("/"):
        raise PathRuleError("path-absolute", f"path {raw!r} is absolute")
    parts = raw.split("/")
    if ".." in parts:
        raise PathRuleError("path-traversal", f"path {raw!r} contains '..'")
    if any(p in ("", ".") for p in parts) or posixpath.normpath(raw) != raw:
        raise PathRuleError("path-not-normalised", f"path {raw!r} is not normalised")
    for part in parts:
        # Any .git directory (a nested repository's too), and every spelling some filesystem
        # maps to it (the one name equivalence: case, trailing dots and spaces, git~1, the
        # code points macOS ignores).
        if names.is_git_dir_name(part):
            raise PathRuleError("path-git-dir", f"path {raw!r} is inside a .git directory")
    return raw


@dataclass(frozen=True)
class Layout:
    """Where everything lives for one repository."""

    repo: Path
    runs_rel: str
    ledger_rel: str

    @property
    def runs_dir(self) -> Path:
        return at(self.repo, self.runs_rel)

    @property
    def ledger_path(self) -> Path:
        return at(self.repo, self.ledger_rel)

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / validate_run_id(run_id)

    def run_rel(self, run_id: str) -> str:
        """The run folder relative to the repository, '/'-separated (for artifacts)."""
        return f"{self.runs_rel.rstrip('/')}/{validate_run_id(run_id)}"

    def z_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / Z_DIR

    def report_path(self, run_id: str) -> Path:
        return self.z_dir(run_id) / "FINAL_REPORT.txt"


def at(repo: Path, configured: str) -> Path:
    """A configured path: repository-relative ('/'-separated), or absolute (a runs folder
    outside the repository)."""
    if PurePath(configured).is_absolute():
        return Path(configured)
    return repo / PurePosixPath(configured)


def head_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name.removesuffix(".jsonl") + HEAD_SUFFIX)


def lock_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".lock")
