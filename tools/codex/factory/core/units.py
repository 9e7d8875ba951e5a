"""A manifest crank's decisions, pure functions of what the ledger records: each unit's
satisfaction over its own scenarios (``scenarios/<unit>/``), whether an attempt passed, each
unit's status, and what the crank does next.

A unit passes an attempt when the required checks passed and its satisfaction meets the
threshold (a unit without scenarios of its own needs the checks alone). It is ``completed`` once
it passed, ``failed`` when it used its attempts (the manifest's ``max_iterations``) without
passing, else ``in_progress`` (``pending`` before its first attempt).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tools.codex.factory.core.convergence import meets
from tools.codex.factory.records.crank import Satisfaction, ScenarioResult
from tools.codex.factory.records.manifest import Manifest, UnitAttempt


def unit_of_scenario(path: str, folder: str) -> str | None:
    """The unit a scenario belongs to: the first folder below the scenarios folder."""
    rest = path[len(folder) + 1 :] if path.startswith(folder + "/") else ""
    head, sep, _ = rest.partition("/")
    return head if sep else None


def satisfaction_by_unit(
    results: Sequence[ScenarioResult], owners: Mapping[str, str], units: Sequence[str]
) -> dict[str, Satisfaction]:
    """passed / total of each unit's own scenarios (``owners``: scenario ID -> unit)."""
    out = {u: Satisfaction(passed=0, total=0) for u in sorted(units)}
    for r in results:
        unit = owners.get(r["id"])
        if unit in out:
            out[unit] = Satisfaction(
                passed=out[unit]["passed"] + (1 if r["passed"] else 0),
                total=out[unit]["total"] + 1,
            )
    return out


def attempts(
    iteration: int,
    units: Sequence[str],
    workers: Mapping[str, str],
    gate1: str,
    by_unit: Mapping[str, Satisfaction],
    results: Sequence[ScenarioResult],
    owners: Mapping[str, str],
    threshold: tuple[int, int],
) -> list[UnitAttempt]:
    """The attempt of every unit that worked in this iteration, with its failure signature
    (its first failing scenario's; the checks' when they failed and no scenario did)."""
    out: list[UnitAttempt] = []
    for unit in sorted(units):
        sat = by_unit[unit]
        passed = gate1 == "PASS" and (sat["total"] == 0 or meets(sat, threshold))
        signature = ""
        if not passed:
            mine = sorted(
                (r for r in results if owners.get(r["id"]) == unit and r["signature"]),
                key=lambda r: r["id"],
            )
            signature = mine[0]["signature"] if mine else f"{unit}|checks|{gate1}"
        out.append(
            UnitAttempt(
                iteration=iteration,
                unit=unit,
                worker=workers[unit],
                passed=passed,
                signature=signature,
            )
        )
    return out


def status(unit: str, history: Sequence[UnitAttempt], max_iterations: int) -> str:
    mine = [a for a in history if a["unit"] == unit]
    if any(a["passed"] for a in mine):
        return "completed"
    if len({a["iteration"] for a in mine}) >= max_iterations:
        return "failed"
    return "in_progress" if mine else "pending"


def statuses(
    manifest: Manifest, history: Sequence[UnitAttempt], done: Sequence[str] = ()
) -> dict[str, str]:
    """Every unit's status (``done``: units the manifest already had checked off)."""
    return {
        u.id: "completed" if u.id in done else status(u.id, history, manifest.max_iterations)
        for u in manifest.units
    }


def next_units(manifest: Manifest, state: Mapping[str, str]) -> tuple[int, list[str]] | None:
    """The group to work on and the units of it that get the next iteration: every unit not
    completed of the first unfinished group when it is parallel, its first such unit when it
    is sequential; None when every group is completed. A failed unit stops the crank first
    (see :func:`decision`)."""
    for group in manifest.groups:
        open_units = [u for u in group.units if state[u] != "completed"]
        if not open_units:
            continue
        if group.mode == "sequential":
            return group.number, [open_units[0]]
        return group.number, sorted(open_units)
    return None


def decision(manifest: Manifest, state: Mapping[str, str]) -> tuple[str, str]:
    """(CONVERGED | EXHAUSTED | CONTINUE, why) from every unit's status."""
    failed = sorted(u for u, s in state.items() if s == "failed")
    if failed:
        return "EXHAUSTED", (
            f"unit(s) {', '.join(failed)} used their {manifest.max_iterations} attempt(s) "
            "without passing: escalate them"
        )
    if next_units(manifest, state) is None:
        return "CONVERGED", f"all {len(manifest.units)} unit(s) completed"
    left = sorted(u for u, s in state.items() if s != "completed")
    return "CONTINUE", f"unit(s) {', '.join(left)} not completed yet"
