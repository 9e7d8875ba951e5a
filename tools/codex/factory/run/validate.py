"""``bundle-validate``: gather each bundle's facts, judge them, write VALIDATION.json."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from tools.codex.factory.core import patchparse, review, validation
from tools.codex.factory.core.paths import VALIDATION
from tools.codex.factory.infra import gitops, jsonio, schemas
from tools.codex.factory.records.validation import (
    BundleFacts,
    Policy,
    ReviewFinding,
    ReviewSettings,
)
from tools.codex.factory.run import gitdir, reviewagent, snapshots
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.facts import BaseTree, GitSide, Limits, gather_facts
from tools.codex.factory.run.handle import RunHandle, run_setting
from tools.codex.factory.run.stages import StageResult

# The policy format: 2 protects the runs folder and records the limits and name rules; 3 records
# the list caps among the limits; 4 records where checks read git attributes from (a
# .gitattributes change is refused when git cannot read them from the base); 5 records the line
# and file-section limits of a patch among the limits.
# 6 judges NTFS 8.3 short names (name-short-alias) with the facts' base_short_aliases.
# 7 judges Gate 0's findings (review.findings) by the review settings it records.
# 8 records the reviewer agent (review_agent) and judges its answers (review.agent).
# 9 names Gate 0's line-too-long rule in the review settings (an earlier policy: off).
# 10 names Gate 0's hidden-line-break, file-too-long, source-encoding and hunk-misplaced
# rules likewise.
POLICY_VERSION = 10


def policy(manifest: dict[str, Any], version: int = POLICY_VERSION) -> Policy:
    """Everything validation judges by, recorded in ``validation.decided`` for replay.

    ``version`` 1 is the policy as earlier releases recorded it (replay of their runs).
    """
    protected = set(run_setting(manifest, "security.protected_paths"))
    protected |= set(run_setting(manifest, "security.holdout_paths"))  # held-out is protected too
    if version >= 2:
        # The runs folder (ledger, run artifacts) is never a worker's to touch.
        runs = str(run_setting(manifest, "paths.runs_dir")).rstrip("/")
        if not (runs.startswith("/") or re.match(r"[A-Za-z]:[/\\]", runs)):  # outside: no path
            protected.add(runs + "/**")  # a worker's patch names can reach it
    out: Policy = {
        "run_id": manifest["run_id"],
        "protected_paths": sorted(protected),
        "allow_identical_patch_overlap": bool(
            run_setting(manifest, "run.allow_identical_patch_overlap")
        ),
        "case_collisions": run_setting(manifest, "run.case_collisions"),
        "scopes": {
            w["id"]: {
                "allow": sorted(w.get("allow", [])),
                "deny": sorted(w.get("deny", [])),
                "shared": sorted(w.get("shared", [])),
            }
            for w in manifest["plan"]["workers"]
        },
    }
    if version >= 2:
        out["version"] = version
        out["portable_names"] = run_setting(manifest, "run.portable_names")
        out["limits"] = limits(manifest).as_dict(version)
        for w in manifest["plan"]["workers"]:
            out["scopes"][w["id"]]["special"] = sorted(w.get("special", []))
    if version >= 4:
        out["attributes"] = run_setting(manifest, "checks.attributes")
    if version >= 7:
        out["review"] = review_settings(manifest, version)
    if version >= 8:
        out["review_agent"] = reviewagent.policy_entry(manifest)
    return out


def review_settings(manifest: dict[str, Any], version: int = POLICY_VERSION) -> ReviewSettings:
    """Gate 0's settings as the run was launched with them, by the rules policy ``version``
    knows, and the files its required checks run."""
    return review.settings_of(
        run_setting(manifest, "review.enabled"),
        run_setting(manifest, "review.severity"),
        run_setting(manifest, "review.test_globs"),
        run_setting(manifest, "review.skip_patterns"),
        [c["argv"] for c in run_setting(manifest, "checks.required")],
        version,
    )


reviewable = validation.reviewable


def parse_patches(patches: Mapping[str, bytes], bounds: Limits) -> dict[str, patchparse.Patch]:
    """Each patch parsed; one that does not parse is left out (validation reports it by its
    own rule)."""
    parsed: dict[str, patchparse.Patch] = {}
    for key, data in patches.items():
        try:
            parsed[key] = patchparse.parse(data, bounds.max_patch_lines, bounds.max_patch_files)
        except patchparse.PatchParseError:
            continue
    return parsed


def review_inputs(
    ctx: Context,
    commit: str,
    parsed: Mapping[str, patchparse.Patch],
    settings: ReviewSettings,
    bounds: Limits,
) -> dict[str, tuple[patchparse.Patch, dict[str, bytes | None]]]:
    """Each parsed patch with the base content of the files Gate 0 needs for it, all read
    from the base commit in one batch."""
    needed = {key: review.needed_preimages(p, settings) for key, p in parsed.items()}
    wanted = sorted({path for paths in needed.values() for path in paths})
    blobs = gitops.blobs_at(ctx.repo, commit, wanted, bounds.max_file_bytes)
    return {key: (parsed[key], {p: blobs[p] for p in needed[key]}) for key in parsed}


def preimage_hashes(pre: Mapping[str, bytes | None]) -> dict[str, str | None]:
    return {p: None if b is None else hashlib.sha256(b).hexdigest() for p, b in pre.items()}


def review_workers(
    run: RunHandle,
    facts: Mapping[str, BundleFacts],
    parsed: Mapping[str, patchparse.Patch],
    settings: ReviewSettings,
    bounds: Limits,
    version: int = POLICY_VERSION,
) -> dict[str, list[ReviewFinding]]:
    """Gate 0 on the exact bytes validation judged (each worker's patch snapshot, as
    validation parsed it), each worker's findings recorded in ``review.findings`` with the
    hashes of the base content it read and the policy version of its settings (replay's,
    should the run stop before its verdict)."""
    chosen = {w: parsed[w] for w, f in facts.items() if reviewable(f) and w in parsed}
    inputs = review_inputs(run.ctx, run.base_commit, chosen, settings, bounds)
    out: dict[str, list[ReviewFinding]] = {}
    for w in sorted(inputs):
        patch, pre = inputs[w]
        out[w] = review.review(w, patch, pre, settings)
        run.recorder.emit(
            "review.findings",
            "bundle-validate",
            f"{w}_worker",
            worker=w,
            patch_sha256=facts[w]["apply_sha256"],
            preimages=preimage_hashes(pre),
            findings=out[w],
            policy_version=version,
        )
    return out


def attr_source(pol: Policy, facts: dict[str, BundleFacts]) -> bool | None:
    """Whether this git honours GIT_ATTR_SOURCE, asked only when it decides something (the
    checks read attributes from the base and a bundle touches a .gitattributes); None when not
    asked. The answer is recorded in ``validation.decided`` so replay judges by it."""
    if int(pol.get("version", 1)) < 4 or pol.get("attributes") != "base":
        return None
    if not any(validation.attributes_unchecked(f) for f in facts.values()):
        return None
    return gitops.honours_attr_source()


def limits(manifest: dict[str, Any]) -> Limits:
    return Limits.from_settings(lambda dotted: run_setting(manifest, dotted))


# The longest symlink target read from the base (PATH_MAX); a longer one resolves nowhere.
MAX_LINK_TARGET = 4096


def base_tree(ctx: Context, commit: str) -> BaseTree:
    """The base commit's paths by name-equivalence key (for aliases and file/folder clashes)
    and its symlinks (new links are resolved through them)."""
    return BaseTree.of(*gitops.tree_paths_and_links(ctx.repo, commit, MAX_LINK_TARGET))


def validate(run: RunHandle) -> StageResult:
    """Judge the selected workers' bundles, each read once into the run's snapshot store."""
    manifest, workers, rec = run.manifest, run.workers, run.recorder
    base = base_tree(run.ctx, run.base_commit)
    bounds = limits(manifest)
    side = GitSide(run.ctx.repo, gitops.object_format(run.ctx.repo))
    facts: dict[str, BundleFacts] = {}
    parsed: dict[str, patchparse.Patch] = {}
    for w in workers:
        facts[w] = gather_facts(
            run.run_dir,
            w,
            base,
            bounds,
            lambda data: snapshots.put(run.writer, data),
            side,
            functools.partial(parsed.__setitem__, w),
        )
        rec.emit("bundle.facts", "bundle-validate", f"{w}_worker", worker=w, facts=facts[w])
    pol = policy(manifest)
    settings = pol.get("review")
    enabled = settings is not None and settings["enabled"]
    reviews = (
        review_workers(run, facts, parsed, settings, bounds, int(pol.get("version", 1)))
        if settings is not None and settings["enabled"]
        else {}
    )
    answers = (
        reviewagent.review_agents(run, facts, parsed)
        if enabled and pol.get("review_agent") is not None
        else {}
    )
    gitdir.check_and_restore(run.ctx.repo, rec, run.run_dir)
    changed = gitdir.restored_since_validation(rec)  # by this check, or by a collect since
    honoured = attr_source(pol, facts)
    result = validation.evaluate(facts, pol, changed, honoured is not False, reviews, answers)
    doc = {
        "schema_version": schemas.SCHEMA_VERSION,
        "run_id": run.run_id,
        "workers": workers,
        "bundle_hashes": {w: facts[w]["bundle_hash"] for w in workers},
        "apply_sha256": {w: facts[w]["apply_sha256"] for w in workers},
        "depends_on": {w: list(facts[w]["depends_on"]) for w in workers},
        "eol_normalised": {w: bool(facts[w]["eol_normalised"]) for w in workers},
        "files_sha256": {w: dict(facts[w]["files_sha256"]) for w in workers},
        "policy": pol,
        **result,
    }
    digest = run.writer.write(VALIDATION, jsonio.pretty(doc))
    extra: dict[str, Any] = {"gitdir_changed": changed} if changed else {}
    if honoured is not None:
        extra["git_attr_source"] = honoured
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
        **extra,
    )
    reason = ""
    if result["findings"]:
        first = result["findings"][0]
        reason = (
            f"{len(result['findings'])} finding(s); first: [{first['rule']}] {first['message']}"
        )
    return StageResult("bundle-validate", result["status"], reason, doc)
