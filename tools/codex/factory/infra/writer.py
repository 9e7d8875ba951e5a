"""The one guarded writer: every run artifact is written through it.

It resolves the real path of each target (symlinks included) and refuses anything outside
the run folder, recording the attempt, so the integrator can report a policy violation
instead of writing where it was never asked to.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tools.codex.factory.errors import PolicyViolation
from tools.codex.factory.records.validation import Violation

_O_BINARY = getattr(os, "O_BINARY", 0)


@dataclass
class GuardedWriter:
    root: Path
    written: dict[str, str] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    # Called once per new refusal (the run handle records it in the ledger as it happens).
    on_violation: Callable[[str, str], None] | None = None

    def __post_init__(self) -> None:
        self.root = Path(os.path.abspath(self.root))

    def _real_root(self) -> Path:
        return self.root.resolve()

    def target(self, rel: str) -> Path:
        """The real path for ``rel``; raise PolicyViolation if it lands outside the root."""
        rel_path = PurePosixPath(rel)
        if rel_path.is_absolute() or ".." in rel_path.parts or not rel:
            return self._refuse(rel, "not a plain relative path")
        real_root = self._real_root()
        if self.root.is_symlink() or real_root != self.root.resolve(strict=False):
            return self._refuse(rel, "run folder is a symlink")
        candidate = self.root.joinpath(*rel_path.parts)
        resolved = candidate.resolve(strict=False)
        try:
            resolved.relative_to(real_root)
        except ValueError:
            return self._refuse(rel, "resolves outside the run folder")
        if candidate.is_symlink():
            return self._refuse(rel, "target is a symlink")
        return candidate

    def _refuse(self, rel: str, why: str) -> Path:
        entry: Violation = {"path": rel, "reason": why}
        if entry not in self.violations:
            self.violations.append(entry)
            if self.on_violation is not None:
                self.on_violation(rel, why)
        raise PolicyViolation(f"write to {rel!r} refused: {why}")

    def mkdir(self, rel: str) -> Path:
        path = self.target(rel)
        path.mkdir(parents=True, exist_ok=True)
        # Re-check: a parent created concurrently as a symlink must not slip through.
        self.target(rel)
        return path

    def write(self, rel: str, data: bytes) -> str:
        """Write atomically (temp file + replace) and return the sha256 of the bytes."""
        path = self.target(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.target(rel)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
        digest = hashlib.sha256(data).hexdigest()
        self.written[rel] = digest
        return digest

    def clear(self, rel: str) -> None:
        """Empty the folder ``rel`` (a previous attempt's artifacts), refusing links out."""
        path = self.target(rel)
        if path.is_dir():
            for child in sorted(path.iterdir()):
                self.target(f"{rel}/{child.name}")
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    def record(self, rel: str) -> str:
        """Hash a file a child process wrote at ``rel`` (e.g. a log) as if we wrote it."""
        digest = sha256_file(self.target(rel))
        self.written[rel] = digest
        return digest

    def write_text(self, rel: str, text: str) -> str:
        return self.write(rel, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
