"""The ``ledger`` commands: list, verify, repair, reindex — each returns an Outcome for the CLI
(its data and the view that words it)."""

from __future__ import annotations

from typing import Any

import orjson

from tools.codex.factory.ledger.index import RunRow
from tools.codex.factory.ledger.store import Filter
from tools.codex.factory.records.status import Status
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.outcome import Outcome


def show(ctx: Context, flt: Filter, limit: int | None, raw: bool) -> Outcome:
    data = [ev.as_dict() for ev in ctx.ledger.select(flt, limit)]
    return Outcome(Status.PASS, data, view="ledger", view_inputs={"raw": raw})


def verify(ctx: Context, *, require_head: bool = True) -> Outcome:
    res = ctx.ledger.verify(require_head=require_head)
    data = res.as_dict()
    data["path"] = ctx.config.ledger_rel
    return Outcome(Status.PASS if res.ok else Status.BLOCKED, data, view="ledger-verify")


def reindex(ctx: Context) -> Outcome:
    lines, index = ctx.ledger.reindex()
    rel = index.relative_to(ctx.repo).as_posix() if index.is_relative_to(ctx.repo) else str(index)
    data = {"path": ctx.config.ledger_rel, "index": rel, "events": lines}
    return Outcome(Status.PASS, data, view="ledger-reindex")


def repair(ctx: Context) -> Outcome:
    return Outcome(Status.PASS, ctx.ledger.repair(), view="ledger-repair")


def runs(ctx: Context, status: str | None, limit: int | None) -> Outcome:
    """``runs``: one row per run, newest first, from the run index (never a folder walk):
    its kind, status (RUNNING until a run.finished), start, workers and its last line."""
    rows = ctx.ledger.runs(status, limit)
    lines = ctx.ledger.lines_at([r.last_seq for r in rows])
    data = [_run_dict(r, lines.get(r.last_seq, b"")) for r in rows]
    return Outcome(Status.PASS, data, view="runs")


def _run_dict(row: RunRow, last_line: bytes) -> dict[str, Any]:
    try:
        digest = orjson.loads(last_line).get("hash") if last_line else None
    except orjson.JSONDecodeError:
        digest = None
    return {
        "run_id": row.run_id,
        "kind": row.kind,
        "status": row.status or "RUNNING",
        "started": row.started_ts,
        "finished": row.finished_ts,
        "workers": row.workers,
        "head": {"seq": row.last_seq, "hash": digest if isinstance(digest, str) else None},
    }
