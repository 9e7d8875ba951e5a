"""``preflight``: can a run start here? One line per failed check, with a fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools.codex.factory.ledger.recorder import OPERATOR, Recorder
from tools.codex.factory.run import probes
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.stages import StageResult


def checks(ctx: Context, base_ref: str, run_id: str | None) -> list[dict[str, Any]]:
    """Each probe a run needs (see :mod:`run.probes`): name, level, ok, detail, fix. Pure
    reporting; nothing is created. Stops early where later probes could not run."""
    out: list[probes.Probe] = []
    first: tuple[Callable[[], probes.Probe], ...] = (
        probes.git,
        lambda: probes.repository(ctx),
        lambda: probes.config(ctx),
    )
    for probe in first:
        found = probe()
        out.append(found)
        if not found.ok:  # the probes after it could not run
            return [p.as_dict() for p in out]
    out += [
        probes.git_attributes(ctx),
        probes.base_ref(ctx, base_ref),
        probes.working_tree(ctx),
        probes.runs_folder(ctx),
        probes.ledger(ctx),
    ]
    if run_id is not None:
        out.append(probes.run_id(ctx, run_id))
    return [p.as_dict() for p in out]


def preflight(ctx: Context, rec: Recorder | None, base_ref: str, run_id: str | None) -> StageResult:
    found = checks(ctx, base_ref, run_id)
    if rec is not None:
        for c in found:
            rec.emit(
                "preflight.check",
                "preflight",
                OPERATOR,
                name=c["name"],
                ok=c["ok"],
                detail=c["detail"],
            )
    failed = [c for c in found if not c["ok"]]
    reason = "; ".join(f"{c['name']}: {c['detail']} (fix: {c['fix']})" for c in failed)
    return StageResult("preflight", "BLOCKED" if failed else "PASS", reason, {"checks": found})


def warnings(found: list[dict[str, Any]]) -> list[str]:
    """The checks that WARN, as the notices a run prints on stderr (it goes on regardless)."""
    return [
        f"factory: WARN {c['name']}: {c['detail']} -> fix: {c['fix']}"
        for c in found
        if c["level"] == probes.WARN and c["name"] == "working-tree"
    ]
