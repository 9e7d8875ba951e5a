"""``doctor``: can this machine and this repository run the factory? One line per probe.

The probes are the ones ``preflight`` asks (:mod:`run.probes`), plus the machine's own
(Python, dependencies, git features, Windows long paths, free disk, agents, leftover worktrees).
Works outside a repository: the repository probe FAILs and the ones that need it say they were
not checked. Exit 0 when nothing FAILs, 3 (BLOCKED) when something does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.records.status import Status
from tools.codex.factory.run import clean, probes
from tools.codex.factory.run.agents import spec_of
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.outcome import Outcome
from tools.codex.factory.run.probes import FAIL, OK, WARN, Probe

NO_REPO_FIX = "run doctor inside your repository, or give the repository's path"
REPO_DEPENDENT = [
    "config",
    "entry-point",
    "git-attributes",
    "base-ref",
    "working-tree",
    "runs-folder",
    "free-disk",
    "ledger",
    "ledger-clean",
    "worktrees",
    "agents",
]


def agents(ctx: Context) -> list[Probe]:
    """The agents the config names, each by the probe ``launch`` refuses a run on (a WARN
    here: dry runs need no agent)."""
    effective = ctx.config.effective()
    wcfg = effective["workers"]
    named: list[tuple[str, dict[str, Any]]] = []
    if wcfg.get("agent"):
        named.append(("workers.agent", wcfg["agent"]))
    for wid, spec in sorted((wcfg.get("agents") or {}).items()):
        named.append((f"workers.agents.{wid}", spec))
    if (effective.get("review") or {}).get("agent"):
        named.append(("review.agent", effective["review"]["agent"]))  # Gate 0's reviewer
    if not named:
        return [Probe("agents", OK, "no agent configured (dry runs need none)")]
    out: list[Probe] = []
    for key, raw in named:
        try:
            spec = spec_of(raw, f"config {key}", wcfg)
        except UsageError as exc:  # what launch would refuse, in its words
            out.append(Probe(f"agent-{key}", WARN, str(exc), f"fix {key} in the config"))
            continue
        out.append(probes.agent(spec, f"agent-{key}"))
    return out


def worktrees(ctx: Context) -> Probe:
    """Leftover worker worktrees and branches of earlier real runs (found via the ledger)."""

    try:
        left = clean.leftover_worktrees(ctx)
    except FactoryError as exc:
        return Probe(
            "worktrees",
            WARN,
            f"cannot list leftover worktrees: {exc}",
            "run `factory clean` to see",
        )
    # Every worker of a run that has not finished may still be at work in its worktree: in
    # use, not a leftover (`clean` refuses them without --force, for the same reason).
    at_work = [e for e in left if not e.get("run_finished")]
    # A PASS keeps its workers' branches (worktrees gone) until the operator lands or cleans.
    kept = [e for e in left if e not in at_work and e.get("kept_tip") and not e["exists"]]
    stale = [e for e in left if e not in at_work and e not in kept]
    kept_runs = sorted({str(e["run_id"]) for e in kept})
    if kept:
        busy_note = (
            f"; {len(kept)} worker branch(es) kept after a PASS of run(s) {', '.join(kept_runs)} "
            f"until `factory land --run-id {kept_runs[0]}` or `factory clean --run-id "
            f"{kept_runs[0]}`"
        )
    else:
        busy_note = ""
    busy_runs = sorted({str(e["run_id"]) for e in at_work})
    busy = (
        (
            f"; {len(at_work)} in use by run(s) still in progress ({', '.join(busy_runs)}; an abandoned run: "
            f"`factory clean --run-id {busy_runs[0]} --force`)"
        )
        if at_work
        else ""
    ) + busy_note
    if not stale:
        return Probe("worktrees", OK, f"no leftover worker worktrees or branches{busy}")
    mib = sum(int(e["bytes"]) for e in stale) / (1 << 20)
    runs = sorted({str(e["run_id"]) for e in stale})
    return Probe(
        "worktrees",
        WARN,
        f"{len(stale)} leftover worker worktree(s)/branch(es) using {mib:.1f} MiB, from run(s) {', '.join(runs)}{busy}",
        "run `factory clean` (or `factory clean --run-id ID`; --force also drops work never collected)",
    )


def _repo_or_none(ctx: Context) -> Path | None:
    try:
        return Path(ctx.repo)
    except FactoryError:
        return None


def run_probes(ctx: Context) -> list[Probe]:
    repo_path = _repo_or_none(ctx)
    out = [probes.python(), *probes.dependencies(repo_path), probes.git()]
    git_ok = out[-1].ok
    if git_ok:
        out.append(probes.git_features())
    out.append(probes.windows_long_paths())
    repo = (
        probes.repository(ctx)
        if git_ok
        else Probe("repository", FAIL, "cannot check without git", "install git first")
    )
    out.append(repo)
    if not repo.ok:
        out.append(
            Probe(
                "not-checked", WARN, f"{', '.join(REPO_DEPENDENT)} (no git repository)", NO_REPO_FIX
            )
        )
        return out
    cfg = probes.config(ctx)
    out.append(cfg)
    if not cfg.ok:
        out.append(
            Probe(
                "not-checked",
                WARN,
                f"{', '.join(REPO_DEPENDENT[1:])} (the config is invalid)",
                "fix the config first",
            )
        )
        return out
    out += [
        probes.entry_point(ctx.repo),
        probes.git_attributes(ctx),
        probes.base_ref(ctx),
        probes.working_tree(ctx),
        probes.runs_folder(ctx),
        probes.free_disk(ctx),
        probes.ledger(ctx),
    ]
    if out[-1].ok:
        out += [probes.ledger_kept(ctx), worktrees(ctx)]
    out += agents(ctx)
    return out


def doctor(ctx: Context) -> Outcome:
    checks = [p.as_dict() for p in run_probes(ctx)]
    counts = {level: sum(1 for c in checks if c["level"] == level) for level in (OK, WARN, FAIL)}
    status = Status.BLOCKED if counts[FAIL] else Status.PASS
    data: dict[str, Any] = {
        "status": str(status),
        "counts": counts,
        "checks": checks,
        "self_test": "python -m tools.codex.factory self-test",
    }
    return Outcome(status, data, view="doctor")
