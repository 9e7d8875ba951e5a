"""Small filesystem helpers shared by the stages (one copy of each)."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any


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
