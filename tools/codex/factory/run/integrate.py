"""``integrate`` (Z): apply validated bundles to the base in a sandbox and run the checks."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from tools.codex.factory.core import decisions, patchparse
from tools.codex.factory.core.paths import LOGS_DIR, SANDBOX_DIR, VALIDATION, Z_DIR, worker_dirname
from tools.codex.factory.errors import BlockedError, ProcessError
from tools.codex.factory.infra import fsutil, gitops, jsonio, proc, schemas
from tools.codex.factory.infra.fsutil import remove_tree
from tools.codex.factory.infra.writer import GuardedWriter, sha256_file
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.ledger.store import Filter, Ledger
from tools.codex.factory.run import bundles
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.stages import StageResult
from tools.codex.factory.run.validate import run_setting

_APPLY_ERR = re.compile(r"error: (?:patch failed: )?(.+?)(?::\d+)?: ")


def require_validation(
    ledger: Ledger, run_id: str, run_dir: Path, workers: list[str]
) -> dict[str, Any]:
    """Integration only follows a PASS validation of exactly these bundles, unchanged since.

    VALIDATION.json is trusted only if its bytes are the ones the ledger's latest
    ``validation.decided`` event for this run recorded: a hand-edited verdict is refused.
    """
    path = run_dir / VALIDATION
    if not path.is_file():
        raise BlockedError(
            "bundle-validate has not run for this run: run `factory bundle-validate` first"
        )
    decided = ledger.select(Filter(run_id=run_id, event_type="validation.decided"), limit=1)
    if not decided:
        raise BlockedError(
            f"the ledger has no validation.decided event for {run_id}: run `factory bundle-validate`"
        )
    recorded = decided[-1].payload
    if sha256_file(path) != recorded.get("validation_sha256"):
        raise BlockedError(
            f"{VALIDATION} is not the file bundle-validate wrote (ledger seq {decided[-1].seq} recorded another sha256): "
            "run bundle-validate again"
        )
    doc = jsonio.read_json(path, VALIDATION)
    if schemas.errors("validation", doc):
        raise BlockedError(f"{VALIDATION} does not match its schema: run bundle-validate again")
    if sorted(doc["workers"]) != sorted(workers):
        raise BlockedError(
            f"{VALIDATION} covers workers {','.join(doc['workers'])} but integrate was asked for {','.join(workers)}: "
            "validate the same selection"
        )
    if doc["status"] != "PASS":
        raise BlockedError(
            f"bundle-validate said {doc['status']} ({len(doc['findings'])} finding(s)): see {VALIDATION}"
        )
    for w in workers:
        now = bundles.bundle_hash(run_dir / worker_dirname(w))
        if now != doc["bundle_hashes"].get(w):
            raise BlockedError(
                f"bundle {worker_dirname(w)} changed since it was validated: run bundle-validate again"
            )
    return dict(doc)


def dependencies(
    run_dir: Path, manifest: dict[str, Any], workers: list[str]
) -> dict[str, list[str]]:
    """Declared dependencies: the plan's plus each worker's HANDOFF_NOTE.json."""
    plan_deps = {w["id"]: list(w.get("depends_on", [])) for w in manifest["plan"]["workers"]}
    out = {}
    for w in workers:
        note = jsonio.read_json(
            run_dir / worker_dirname(w) / "HANDOFF_NOTE.json",
            f"{worker_dirname(w)}/HANDOFF_NOTE.json",
        )
        out[w] = sorted(set(plan_deps.get(w, [])) | set(note.get("depends_on", [])))
    return out


def merge_plan_md(run_id: str, order: list[str], deps: dict[str, list[str]], reason: str) -> str:
    lines = [f"# Merge plan for {run_id}", ""]
    if reason:
        lines += [f"No merge: {reason}.", ""]
    else:
        lines += [
            "Patches are applied to the base in this order (worker id, unless dependencies say otherwise):",
            "",
        ]
        for i, w in enumerate(order, 1):
            after = f" (after {', '.join(deps[w])})" if deps.get(w) else ""
            lines.append(f"{i}. {worker_dirname(w)}{after}")
        lines.append("")
    return "\n".join(lines)


def normalise_eol(patch: bytes) -> tuple[bytes, bool]:
    """A patch whose first line ends in CRLF was saved through a CRLF filter: convert it back."""
    end = patch.find(b"\n")
    if end > 0 and patch[end - 1 : end] == b"\r":
        return patch.replace(b"\r\n", b"\n"), True
    return patch, False


def without_paths(patch: bytes, drop: set[str]) -> bytes:
    """The patch minus the file sections touching ``drop`` (already applied identically)."""
    parsed = patchparse.parse(patch)
    keep = [f.raw for f in parsed.files if not ({f.old_path, f.new_path} - {None}) <= drop]
    return b"".join(keep)


def expand(argv: list[str], values: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


def run_checks(
    ctx: Context, rec: Recorder, writer: GuardedWriter, sandbox: Path, manifest: dict[str, Any]
) -> list[dict[str, Any]]:
    """The run's configured checks (as launched), in the materialised sandbox."""
    run_id, commit = manifest["run_id"], manifest["base_commit"]
    results = []
    timings: list[str] = []
    values = {
        "python": sys.executable,
        "base_commit": commit,
        "run_id": run_id,
        "sandbox": str(sandbox),
    }
    env = gitops.sandbox_env(sandbox, ctx.repo)
    configured = [(c, True) for c in run_setting(manifest, "checks.required")]
    configured += [(c, False) for c in run_setting(manifest, "checks.advisory")]
    for check, required in configured:
        name = check["name"]
        out_rel = f"{Z_DIR}/{LOGS_DIR}/check-{name}.stdout.log"
        err_rel = f"{Z_DIR}/{LOGS_DIR}/check-{name}.stderr.log"
        out_path, err_path = writer.target(out_rel), writer.target(err_rel)
        timeout = float(check.get("timeout_s", 600))
        start = ctx.clock.monotonic()
        with writer.create(out_rel) as out, writer.create(err_rel) as err:
            try:
                done = proc.run_logged(
                    expand(check["argv"], values), sandbox, env, out, err, timeout
                )
                rc, timed_out = done.rc, done.timed_out
            except ProcessError as exc:
                err.write((str(exc) + "\n").encode("utf-8"))
                rc, timed_out = 127, False
        entry = {
            "name": name,
            "argv": list(check["argv"]),
            "required": required,
            "rc": rc,
            "timed_out": timed_out,
            "stdout_log": f"{LOGS_DIR}/check-{name}.stdout.log",
            "stderr_log": f"{LOGS_DIR}/check-{name}.stderr.log",
        }
        timings.append(
            f"{name}: {ctx.clock.elapsed(start):.3f}s rc={rc} timed_out={str(timed_out).lower()}\n"
        )
        hashes = {rel: writer.record(rel) for rel in (out_rel, err_rel)}
        extra: dict[str, Any] = {}
        if run_setting(manifest, "feature_flags.record_check_output_in_ledger"):
            extra["output_tail"] = {"stdout": _tail(out_path), "stderr": _tail(err_path)}
        rec.emit(
            "check.finished",
            "integrate",
            name=name,
            required=required,
            argv=list(check["argv"]),
            rc=rc,
            timed_out=timed_out,
            logs=hashes,
            **extra,
        )
        results.append(entry)
    # Durations are for people, not decisions: they go to a log, never into STATUS.json.
    writer.write_text(f"{Z_DIR}/{LOGS_DIR}/checks.timing.log", "".join(timings))
    return results


def integrate(
    ctx: Context, rec: Recorder, writer: GuardedWriter, manifest: dict[str, Any], workers: list[str]
) -> StageResult:
    run_id = manifest["run_id"]
    commit = manifest["base_commit"]
    run_dir = ctx.layout.run_dir(run_id)
    data: dict[str, Any] = {"merge_order": [], "applied": [], "checks": [], "files_changed": []}
    writer.clear(Z_DIR)  # nothing of an earlier attempt may be reported or attested as this one's
    validation = require_validation(ctx.ledger, run_id, run_dir, workers)
    deps = dependencies(run_dir, manifest, workers)
    strict = bool(run_setting(manifest, "feature_flags.strict_handoff_dependencies"))
    order, cycle = decisions.merge_order(deps, strict)
    rec.emit(
        "merge.planned", "integrate", depends_on=deps, strict=strict, order=order, reason=cycle
    )
    writer.write_text(f"{Z_DIR}/MERGE_PLAN.md", merge_plan_md(run_id, order, deps, cycle))
    if cycle:
        return StageResult("integrate", "BLOCKED", cycle, data)
    data["merge_order"] = order
    identical = {o["path"] for o in validation["overlaps"] if o["resolution"] == "identical"}
    sandbox = writer.target(SANDBOX_DIR)
    if sandbox.exists():
        remove_tree(sandbox)
    writer.mkdir(SANDBOX_DIR)
    status, reason = "PASS", ""
    try:
        gitops.create_sandbox(sandbox, ctx.repo, commit)
        staged = stage_patches(run_dir, sandbox, order, identical, validation["touched"])
        nonempty = [s for s in staged if s["file"] is not None]
        res = gitops.apply_to_index(sandbox, [s["file"] for s in nonempty]) if nonempty else None
        if res is not None and res.rc != 0:
            # Nothing of the failed atomic apply reached the index; apply one by one to name the
            # first worker that does not fit (those before it stay applied, for the report).
            status = "BLOCKED"
            reason, data["applied"] = find_failing(rec, sandbox, staged, res.err)
        else:
            for s in staged:
                rec.emit(
                    "patch.applied",
                    "integrate",
                    worker=s["worker"],
                    ok=True,
                    files=s["touched"],
                    empty=s["file"] is None,
                    eol_normalised=s["eol_normalised"],
                )
            data["applied"] = [s["worker"] for s in staged]
        merged = gitops.diff_cached(sandbox, commit)
        writer.write(f"{Z_DIR}/DIFF.patch", merged)
        data["files_changed"] = patchparse.parse(merged).touched()
        writer.write(
            f"{Z_DIR}/FILES_CHANGED.json",
            jsonio.pretty(
                {"schema_version": schemas.SCHEMA_VERSION, "files": data["files_changed"]}
            ),
        )
        configured = run_setting(manifest, "checks.required") or run_setting(
            manifest, "checks.advisory"
        )
        if status == "PASS" and configured:
            gitops.materialise(sandbox)
            data["checks"] = run_checks(ctx, rec, writer, sandbox, manifest)
            check_state, reasons = decisions.check_status(data["checks"])
            if check_state != "PASS":
                status, reason = check_state, "; ".join(reasons)
    finally:
        if not ctx.config.get("run.keep_sandbox") and sandbox.exists():
            remove_tree(sandbox)
    write_logs_index(writer)
    return StageResult("integrate", status, reason, data)


def stage_patches(
    run_dir: Path,
    sandbox: Path,
    order: list[str],
    identical: set[str],
    touched_by: dict[str, list[str]],
) -> list[dict[str, Any]]:
    """Write each worker's patch, as it will be applied, into the sandbox's .git folder.

    ``touched_by`` is what validation recorded for these exact bundles (their hashes matched).
    """
    staged: list[dict[str, Any]] = []
    applied_paths: set[str] = set()
    writer = GuardedWriter(sandbox)
    for i, w in enumerate(order, 1):
        raw = (run_dir / worker_dirname(w) / "DIFF.patch").read_bytes()
        patch, converted = normalise_eol(raw)
        touched = list(touched_by[w])
        dup = identical & applied_paths
        if dup & set(touched):
            patch = without_paths(patch, dup)
        entry: dict[str, Any] = {
            "worker": w,
            "touched": touched,
            "eol_normalised": converted,
            "file": None,
        }
        if patch.strip():
            rel = f".git/factory-patches/{i:03d}-{w}.patch"
            writer.write(rel, patch)
            entry["file"] = writer.target(rel)
        staged.append(entry)
        applied_paths |= set(touched)
    return staged


def find_failing(
    rec: Recorder, sandbox: Path, staged: list[dict[str, Any]], first_error: str
) -> tuple[str, list[str]]:
    """The all-at-once apply failed: apply one by one to name the first worker that does not fit."""
    for s in staged:
        if s["file"] is None:
            rec.emit(
                "patch.applied",
                "integrate",
                worker=s["worker"],
                ok=True,
                files=[],
                empty=True,
                eol_normalised=s["eol_normalised"],
            )
            continue
        res = gitops.apply_to_index(sandbox, [s["file"]])
        if res.rc != 0:
            files = sorted({m.group(1) for m in _APPLY_ERR.finditer(res.err)}) or s["touched"]
            done = [x["worker"] for x in staged[: staged.index(s)]]
            rec.emit(
                "patch.applied",
                "integrate",
                worker=s["worker"],
                ok=False,
                files=files,
                error=res.err.strip()[:2000],
                eol_normalised=s["eol_normalised"],
            )
            return (
                f"patch of {worker_dirname(s['worker'])} does not apply to the base "
                f"(after {', '.join(done) or 'nothing'}): {', '.join(files)}"
            ), done
        rec.emit(
            "patch.applied",
            "integrate",
            worker=s["worker"],
            ok=True,
            files=s["touched"],
            empty=False,
            eol_normalised=s["eol_normalised"],
        )
    first = first_error.strip().splitlines()[0] if first_error.strip() else "git apply failed"
    return f"the patches do not apply together: {first}", [x["worker"] for x in staged]


def _tail(path: Path, limit: int = 2048) -> str:
    """The last ``limit`` bytes of a log, as text, for the ledger (feature flag)."""
    data = path.read_bytes()
    return data[-limit:].decode("utf-8", "replace")


def write_logs_index(writer: GuardedWriter) -> None:
    logs_dir = writer.target(f"{Z_DIR}/{LOGS_DIR}")
    entries: dict[str, bytes] = {}
    for entry in fsutil.walk(logs_dir):
        if entry.is_regular and entry.path.name != "INDEX.json":
            entries[entry.rel] = entry.path.read_bytes()
    writer.write(f"{Z_DIR}/{LOGS_DIR}/INDEX.json", jsonio.pretty(bundles.logs_index(entries)))
