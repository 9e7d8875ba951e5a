"""``bundle-validate``: gather each bundle's facts, judge them, write VALIDATION.json."""

from __future__ import annotations

from typing import Any

from tools.codex.factory.core import decisions
from tools.codex.factory.core.paths import VALIDATION
from tools.codex.factory.infra import gitops, jsonio, schemas
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.run.bundles import gather_facts
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.stages import StageResult


def run_setting(manifest: dict[str, Any], dotted: str) -> Any:
    """A config value as it was when the run was launched (RUN_MANIFEST.json), not as it is now.

    A run is judged by the rules it started under: an env var or config edit made later
    cannot drop a check or widen what is protected.
    """
    section, key = dotted.split(".", 1)
    return manifest["config"][section][key]


def policy(manifest: dict[str, Any]) -> dict[str, Any]:
    """Everything validation judges by, recorded in ``validation.decided`` for replay."""
    protected = set(run_setting(manifest, "security.protected_paths"))
    protected |= set(run_setting(manifest, "security.holdout_paths"))  # held-out is protected too
    return {
        "run_id": manifest["run_id"],
        "protected_paths": sorted(protected),
        "allow_identical_patch_overlap": bool(
            run_setting(manifest, "run.allow_identical_patch_overlap")
        ),
        "case_collisions": run_setting(manifest, "run.case_collisions"),
        "scopes": {
            w["id"]: {k: sorted(w.get(k, [])) for k in ("allow", "deny", "shared")}
            for w in manifest["plan"]["workers"]
        },
    }


def base_paths_lower(ctx: Context, commit: str) -> dict[str, str]:
    out = gitops.git(ctx.repo, "ls-tree", "-r", "-z", "--name-only", commit).stdout
    paths = [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]
    return {p.lower(): p for p in paths}


def validate(
    ctx: Context, rec: Recorder, manifest: dict[str, Any], workers: list[str]
) -> StageResult:
    run_id = manifest["run_id"]
    run_dir = ctx.layout.run_dir(run_id)
    base_lower = base_paths_lower(ctx, manifest["base_commit"])
    facts = {}
    for w in workers:
        facts[w] = gather_facts(run_dir, w, base_lower)
        rec.emit("bundle.facts", "bundle-validate", f"{w}_worker", worker=w, facts=facts[w])
    pol = policy(manifest)
    result = decisions.evaluate(facts, pol)
    doc = {
        "schema_version": schemas.SCHEMA_VERSION,
        "run_id": run_id,
        "workers": workers,
        "bundle_hashes": {w: facts[w]["bundle_hash"] for w in workers},
        "policy": pol,
        **result,
    }
    writer = GuardedWriter(run_dir)
    digest = writer.write(VALIDATION, jsonio.pretty(doc))
    rec.emit(
        "validation.decided",
        "bundle-validate",
        status=result["status"],
        workers=workers,
        policy=pol,
        verdicts=result["verdicts"],
        findings=len(result["findings"]),
        overlaps=result["overlaps"],
        validation_sha256=digest,
    )
    reason = ""
    if result["findings"]:
        first = result["findings"][0]
        reason = (
            f"{len(result['findings'])} finding(s); first: [{first['rule']}] {first['message']}"
        )
    return StageResult("bundle-validate", result["status"], reason, doc)


def render(doc: dict[str, Any]) -> str:
    lines = [f"bundle-validate {doc['run_id']}: {doc['status']}"]
    for w in doc["workers"]:
        lines.append(f"  {w}_worker: {doc['verdicts'][w]}")
    for f in doc["findings"]:
        lines.append(f"  BLOCK [{f['rule']}] {f['worker']} {f['path']}: {f['message']}")
    for f in doc["warnings"]:
        lines.append(f"  WARN  [{f['rule']}] {f['worker']} {f['path']}: {f['message']}")
    for o in doc["overlaps"]:
        lines.append(f"  overlap {o['path']}: {', '.join(o['workers'])} -> {o['resolution']}")
    return "\n".join(lines)
