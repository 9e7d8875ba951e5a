"""Small filesystem helpers shared by the stages (one copy of each)."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

from tools.codex.factory.errors import UsageError


def _make_writable_and_retry(func: Any, path: str, _exc: Any) -> None:
    # Windows marks git objects read-only: rmtree cannot unlink them until they are writable.
    os.chmod(path, stat.S_IWRITE)
    func(path)


def remove_tree(path: Path) -> None:
    """Delete a folder and everything in it, read-only files included (git objects on Windows)."""
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_make_writable_and_retry)
    else:  # Python 3.10, 3.11 (onerror is deprecated from 3.12)
        shutil.rmtree(path, onerror=_make_writable_and_retry)


def read_regular(path: Path, label: str, *, limit: int) -> bytes:
    """The bytes of a regular file that is not a link, at most ``limit`` bytes; one-line
    UsageError naming ``label`` otherwise (a FIFO cannot hang it: it is never opened)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UsageError(f"{label}: file not found") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{label}: is a symbolic link; it must be a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{label}: not a regular file")
    if st.st_size > limit:
        raise UsageError(f"{label}: {st.st_size} bytes, over the limit of {limit}")
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"{label}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > limit:
        raise UsageError(f"{label}: over the limit of {limit} bytes")
    return data
