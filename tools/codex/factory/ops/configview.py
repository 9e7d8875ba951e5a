"""``config show``: the effective config with each value's origin."""

from __future__ import annotations

from tools.codex.factory.errors import UsageError
from tools.codex.factory.infra import schemas
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
        "file": cfg.file_shown if cfg.file else None,
        "file_source": cfg.file_source,
    }
    if cfg.file is not None:
        read = f"config file: {cfg.file_shown} (from {cfg.file_source})"
    else:
        read = f"config file: none ({cfg.file_shown} does not exist; defaults and FACTORY_* only)"
    inputs = {"rows": rows, "read": read}
    return Outcome(Status.PASS, data, view="config", view_inputs=inputs)


def schema(name: str) -> Outcome:
    """A JSON Schema the factory reads (a plan, a handoff note, the config, ...): printed from
    the installed package, since a user's repository has no ``schemas/`` folder."""
    known = sorted(
        p.name.removesuffix(".schema.json") for p in schemas.schema_dir().glob("*.schema.json")
    )
    wanted = name.removesuffix(".json").removesuffix(".schema")
    if wanted not in known:
        raise UsageError(f"no schema {name!r}; the schemas are: {', '.join(known)}")
    return Outcome(Status.PASS, schemas.load(wanted), view="schema")
