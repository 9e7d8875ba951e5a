"""``config show``: the effective config with each value's origin."""

from __future__ import annotations

from tools.codex.factory.infra import jsonio
from tools.codex.factory.records.status import Status
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.outcome import Outcome


def show(ctx: Context) -> Outcome:
    cfg = ctx.config
    rows = cfg.rows()
    width = max(len(r["key"]) for r in rows)
    lines = []
    for r in rows:
        value = jsonio.canonical(r["value"]).decode("utf-8")
        lines.append(f"{r['key']:<{width}}  {value}  ({r['origin']})")
    data = {
        "config": cfg.effective(),
        "origins": {r["key"]: r["origin"] for r in rows},
        "file": "tools/codex/factory/factory.config.json" if cfg.file else None,
    }
    return Outcome(Status.PASS, data, "\n".join(lines))
