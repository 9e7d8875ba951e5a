"""The ``ledger`` commands: list, verify, repair, reindex — each returns an Outcome for the CLI
(its data and the view that words it)."""

from __future__ import annotations

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
