"""The ``ledger`` commands: list, verify, repair — each returns an Outcome for the CLI."""

from __future__ import annotations

from tools.codex.factory.audit.describe import render_table
from tools.codex.factory.infra import jsonio
from tools.codex.factory.ledger.store import Filter
from tools.codex.factory.records.status import Status
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.outcome import Outcome


def show(ctx: Context, flt: Filter, limit: int | None, raw: bool) -> Outcome:
    ledger = ctx.ledger
    events = ledger.select(flt, limit)
    data = [ev.as_dict() for ev in events]
    if raw:
        text = "\n".join(jsonio.canonical(d).decode("utf-8") for d in data)
    else:
        text = render_table(events) if events else "(no events)"
    return Outcome(Status.PASS, data, text)


def verify(ctx: Context, *, require_head: bool = True) -> Outcome:
    res = ctx.ledger.verify(require_head=require_head)
    data = res.as_dict()
    data["path"] = ctx.config.ledger_rel
    lines = [f"ledger {ctx.config.ledger_rel}: {res.lines} events"]
    lines.append(f"head seq={res.head.seq} hash={res.head.hash}")
    if res.ok:
        lines.append("VERIFY OK")
    else:
        lines.append(f"VERIFY FAILED at seq {res.first_bad_seq}: {res.reason}")
    lines.extend(f"note: {n}" for n in sorted(res.notes))
    return Outcome(Status.PASS if res.ok else Status.BLOCKED, data, "\n".join(lines))


def reindex(ctx: Context) -> Outcome:
    lines, index = ctx.ledger.reindex()
    rel = index.relative_to(ctx.repo).as_posix() if index.is_relative_to(ctx.repo) else str(index)
    data = {"path": ctx.config.ledger_rel, "index": rel, "events": lines}
    return Outcome(
        Status.PASS, data, f"REINDEX OK: {lines} events of {ctx.config.ledger_rel} indexed in {rel}"
    )


def repair(ctx: Context) -> Outcome:
    res = ctx.ledger.repair()
    if res.get("repaired"):
        text = (
            f"moved {res['torn_bytes']} torn bytes to {res['side_file']} (nothing deleted); "
            f"recorded ledger.repaired at seq {res['seq']}"
        )
    else:
        text = f"nothing to repair: {res.get('reason')}"
    return Outcome(Status.PASS, res, text)
