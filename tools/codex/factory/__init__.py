"""Multi-Codex Factory: a deterministic, ledger-based integrator for parallel coding workers.

The Python API is :class:`Factory` (``from tools.codex.factory import Factory``); it is loaded
on first use, so ``python -m tools.codex.factory --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.codex.factory.version import __version__

__all__ = ["Factory", "__version__"]

if TYPE_CHECKING:
    from tools.codex.factory.api import Factory


def __getattr__(name: str) -> object:
    if name == "Factory":
        from tools.codex.factory.api import Factory

        return Factory
    raise AttributeError(f"module 'tools.codex.factory' has no attribute {name!r}")
