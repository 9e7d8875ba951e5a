"""``config show``: the effective config with each value's origin."""

from __future__ import annotations

from tools.codex.factory.records.status import Status
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.outcome import Outcome


def show(ctx: Context) -> Outcome:
    """The effective config; the flat rows (key, value, origin) are for the text alone."""
    cfg = ctx.config
    rows = cfg.rows()
    data = {
        "config": cfg.effective(),
        "origins": {r["key"]: r["origin"] for r in rows},
        "file": "tools/codex/factory/factory.config.json" if cfg.file else None,
    }
    return Outcome(Status.PASS, data, view="config", view_inputs={"rows": rows})
