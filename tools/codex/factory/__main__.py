"""Entry point for ``python -m tools.codex.factory``.

The documented entry is the ``factory`` console script (``pip install`` puts it on PATH): it
never looks for modules in the folder it is started from. ``python -m`` puts the current folder
first on ``sys.path``, so a repository with a ``click/`` (or ``jsonschema/``, ...) folder at its
root would hand the factory its own code as a dependency: the repository is taken off the
front of ``sys.path`` here, before click and the rest are imported (the factory's own package
is already loaded, from wherever Python found it). A repository with its own ``tools/``
package hides the factory's before this file can run (``No module named 'tools.codex'``): use
``factory`` there, or ``python -P -m tools.codex.factory`` (Python 3.11+).
"""

import os
import sys


def _is_repository(entry: str, cwd: str) -> bool:
    """Is this ``sys.path`` entry the folder the command was started in, or a repository root?"""
    if entry in ("", "."):
        return True
    try:
        return os.path.samefile(entry, cwd) or os.path.isdir(os.path.join(entry, ".git"))
    except OSError:
        return False


def without_repository(path: list[str], cwd: str) -> list[str]:
    """``path`` without the repository entries at its front (those ``python -m``, ``-c`` or a
    script in the repository's root put there): dependencies then come from the environment."""
    start = 0
    while start < len(path) and _is_repository(path[start], cwd):
        start += 1
    return path[start:]


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # started in a folder that is gone: nothing to compare with
        return ""


sys.path[:] = without_repository(sys.path, _cwd())

from tools.codex.factory.cli.commands import main  # noqa: E402  (after sys.path is cleaned)

if __name__ == "__main__":
    main()
