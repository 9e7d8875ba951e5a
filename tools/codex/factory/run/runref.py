"""Run IDs as the operator types them: ``latest`` and the nearest match to a mistyped one.

The one place a run ID given on the command line (or to the API) becomes the ID a command
works on: ``latest`` is looked up in the ledger's run index (the newest run, or the newest
crank where a crank ID is wanted), never by walking folders, and the resolved ID is what the
command records and prints.
"""

from __future__ import annotations

import difflib

from tools.codex.factory.core.ids import validate_run_id
from tools.codex.factory.errors import UsageError
from tools.codex.factory.run.context import Context

LATEST = "latest"


def resolve(ctx: Context, run_id: str, *, crank: bool = False) -> str:
    """``run_id`` itself, or for ``latest`` the newest run (crank: the newest crank)."""
    if run_id != LATEST:
        return run_id
    what, event = ("crank", "crank.started") if crank else ("run", "run.started")
    found = ctx.ledger.newest_with(event)
    if found is None:
        raise UsageError(f"{LATEST}: no {what} in the ledger yet")
    return validate_run_id(found, f"the newest {what} in the ledger")


def nearest(ctx: Context, run_id: str) -> str:
    """``; did you mean X?`` naming the ledger's run IDs closest to ``run_id`` ("" if none)."""
    try:
        known = ctx.ledger.run_ids()
    except UsageError:
        return ""
    # A prefix (a run ID cut short) names the newest it starts; otherwise the closest spelling.
    close = [k for k in known if k.startswith(run_id)][-3:][::-1]
    close = close or difflib.get_close_matches(run_id, known, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""
