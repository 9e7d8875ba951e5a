"""``integrate`` (Z): apply validated bundles to the base in a sandbox and run the checks.

What is validated is what is applied: the patches come from the run's snapshot store, by the
sha256 that the ledger-anchored VALIDATION.json recorded, verified again when read, and reach
`git apply` through its standard input (no file in between that a racing process could swap).
The bundle folders are not read again.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from tools.codex.factory.core import (
    decisions,
    isolation,
    patchparse,
    placeholders,
    testfailures,
)
from tools.codex.factory.core.globs import match_any
from tools.codex.factory.core.paths import LOGS_DIR, SANDBOX_DIR, VALIDATION, Z_DIR, worker_dirname
from tools.codex.factory.errors import BlockedError, FactoryError, ProcessError, UsageError
from tools.codex.factory.infra import gitops, jsonio, proc, schemas
from tools.codex.factory.infra.fsutil import read_file, read_in_tree, remove_tree
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.ledger.store import Filter
from tools.codex.factory.records.validation import AppliedPatch
from tools.codex.factory.run import bundles, snapshots, worktrees
from tools.codex.factory.run.config import CHECK_PLACEHOLDERS
from tools.codex.factory.run.facts import Limits, bundle_hash, file_hashes
from tools.codex.factory.run.handle import RunHandle, isolation_settings
from tools.codex.factory.run.stages import StageResult
from tools.codex.factory.run.validate import limits as run_limits

_APPLY_ERR = re.compile(r"error: (?:patch failed: )?(.+?)(?::\d+)?: ")
MAX_VALIDATION_BYTES = 64 * 1024 * 1024


def require_validation(run: RunHandle) -> dict[str, Any]:
    """Integration only follows a PASS validation of exactly these bundles, unchanged since.

    VALIDATION.json is trusted only if its bytes (read once) are the ones the ledger's latest
    ``validation.decided`` event for this run recorded: a hand-edited verdict is refused.
    """
    path = run.run_dir / VALIDATION
    if not path.exists():
        raise BlockedError(
            "bundle-validate has not run for this run: run `factory bundle-validate` first"
        )
    decided = run.ctx.ledger.select(
        Filter(run_id=run.run_id, event_type="validation.decided"), limit=1
    )
    if not decided:
        raise BlockedError(
            f"the ledger has no validation.decided event for {run.run_id}: "
            "run `factory bundle-validate`"
        )
    try:
        data = read_file(path, VALIDATION, limit=MAX_VALIDATION_BYTES)
    except FactoryError as exc:
        raise BlockedError(f"{exc}: run bundle-validate again") from None
    if hashlib.sha256(data).hexdigest() != decided[-1].payload.get("validation_sha256"):
        raise BlockedError(
            f"{VALIDATION} is not the file bundle-validate wrote (ledger seq {decided[-1].seq} "
            "recorded another sha256): run bundle-validate again"
        )
    doc = jsonio.loads_document(data)
    if schemas.errors("validation", doc):
        raise BlockedError(f"{VALIDATION} does not match its schema: run bundle-validate again")
    workers = run.workers
    if sorted(doc["workers"]) != sorted(workers):
        raise BlockedError(
            f"{VALIDATION} covers workers {','.join(doc['workers'])} but integrate was asked for "
            f"{','.join(workers)}: validate the same selection"
        )
    if doc["status"] != "PASS":
        raise BlockedError(
            f"bundle-validate said {doc['status']} ({len(doc['findings'])} finding(s)): "
            f"see {VALIDATION}"
        )
    if "apply_sha256" not in doc:
        raise BlockedError(
            f"{VALIDATION} was written by an earlier release and names no validated patch bytes: "
            "run bundle-validate again"
        )
    bounds = run_limits(run.manifest)
    for w in workers:
        now = bundle_hash(run.run_dir / worker_dirname(w), bounds)
        if now != doc["bundle_hashes"].get(w):
            raise BlockedError(
                f"bundle {worker_dirname(w)} changed since it was validated: "
                "run bundle-validate again"
            )
    return dict(doc)


def dependencies(manifest: dict[str, Any], validation: dict[str, Any]) -> dict[str, list[str]]:
    """Declared dependencies: the plan's plus each HANDOFF_NOTE.json's, as validation read it."""
    plan_deps = {w["id"]: list(w.get("depends_on", [])) for w in manifest["plan"]["workers"]}
    noted = validation.get("depends_on", {})
    return {
        w: sorted(set(plan_deps.get(w, [])) | set(noted.get(w, []))) for w in validation["workers"]
    }


def merge_plan_md(run_id: str, order: list[str], deps: dict[str, list[str]], reason: str) -> str:
    lines = [f"# Merge plan for {run_id}", ""]
    if reason:
        lines += [f"No merge: {reason}.", ""]
    else:
        lines += [
            "Patches are applied to the base in this order (worker id, unless dependencies say "
            "otherwise):",
            "",
        ]
        for i, w in enumerate(order, 1):
            after = f" (after {', '.join(deps[w])})" if deps.get(w) else ""
            lines.append(f"{i}. {worker_dirname(w)}{after}")
        lines.append("")
    return "\n".join(lines)


def without_paths(patch: bytes, drop: set[str]) -> bytes:
    """The patch minus the file sections touching ``drop`` (already applied identically)."""
    parsed = patchparse.parse(patch)
    keep = [f.raw for f in parsed.files if not ({f.old_path, f.new_path} - {None}) <= drop]
    return b"".join(keep)


class CheckFolderError(FactoryError):
    """A check's ``cwd`` is not a real folder of the merged tree: the check fails (rc 127)."""


def project_python(repo: Path) -> str:
    """``{project_python}``: the repository's own virtual environment's Python (``.venv`` or
    ``venv``, in the operator's repository, never the merged tree a worker wrote), else
    ``python`` on PATH: the interpreter a project's tests need."""
    for folder in (".venv", "venv"):
        for rel in ("bin/python", "Scripts/python.exe"):
            candidate = repo / folder / rel
            if os.path.isfile(candidate):
                return str(candidate)
    return shutil.which("python") or shutil.which("python3") or "python"


def check_folder(sandbox: Path, rel: str | None) -> Path:
    """The folder a check runs in: the sandbox, or its repository-relative ``cwd`` (checked by
    the config) when every part of it is a real folder of the merged tree, never a link a
    worker planted to lead the check out of the sandbox (CheckFolderError otherwise)."""
    here = sandbox
    for part in (rel or "").split("/") if rel else []:
        here = here / part
        try:
            st = os.lstat(here)
        except OSError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            what = "a link" if st is not None and stat.S_ISLNK(st.st_mode) else "not a folder"
            raise CheckFolderError(
                f"check cwd {rel!r}: {here.relative_to(sandbox).as_posix()} is {what} in the "
                "merged tree (a check runs only in a folder of the sandbox)"
            )
    return here


def _check_env(run: RunHandle, sandbox: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The environment and argv placeholder values every check of the run gets in ``sandbox``."""
    values = {
        "python": sys.executable,
        "project_python": project_python(run.ctx.repo),
        "base_commit": run.base_commit,
        "run_id": run.run_id,
        "sandbox": str(sandbox),
    }
    assert set(values) == set(CHECK_PLACEHOLDERS)  # config validation checked every argv
    env = gitops.sandbox_env(sandbox, run.ctx.repo)
    # Bytecode stays in the sandbox and goes with it: a shared PYTHONPYCACHEPREFIX would let the
    # modules one sandbox compiled stand in for another's sources at the same path (same size,
    # same second), and a check would judge code that is not in the tree it was given.
    env.pop("PYTHONPYCACHEPREFIX", None)
    if run.setting("checks.attributes") == "base":
        # Attributes come from the base commit, not the candidate (git >= 2.42; see RUNBOOK).
        env["GIT_ATTR_SOURCE"] = run.base_commit
    return env, values


def _run_check(
    run: RunHandle, sandbox: Path, check: dict[str, Any], logs: tuple[str, str]
) -> tuple[int | None, bool, bytes | None]:
    """One check in ``sandbox``, its output in the two logs (run-relative): (rc, timed out,
    the JUnit XML a failed check wrote at its ``junit_xml``, if any and readable)."""
    writer = run.writer
    env, values = _check_env(run, sandbox)
    for key, value in sorted(check.get("env", {}).items()):
        env[key] = placeholders.expand([value], values)[0]  # over the sanitized env (no GIT_*)
    timeout = float(check.get("timeout_s", 600))
    planted = _planted(sandbox, check)
    # Created fresh through the writer: a link (or a hard link to a user's file) planted at a
    # log's name is removed, never written through.
    with writer.create(logs[0]) as out, writer.create(logs[1]) as err:
        try:
            cwd = check_folder(sandbox, check.get("cwd"))
            done = proc.run_logged(
                placeholders.expand(check["argv"], values), cwd, env, out, err, timeout
            )
            rc, timed_out = done.rc, done.timed_out
        except (ProcessError, CheckFolderError) as exc:
            err.write((str(exc) + "\n").encode("utf-8"))
            rc, timed_out = 127, False
        junit = _junit(sandbox, check, planted, err) if rc != 0 or timed_out else None
    return rc, timed_out, junit


def run_checks(run: RunHandle, sandbox: Path) -> list[dict[str, Any]]:
    """The run's configured checks (as launched), in the materialised sandbox."""
    writer, rec = run.writer, run.recorder
    results = []
    timings: list[str] = []
    configured = [(c, True) for c in run.setting("checks.required")]
    configured += [(c, False) for c in run.setting("checks.advisory")]
    for check, required in configured:
        name = check["name"]
        out_rel = f"{Z_DIR}/{LOGS_DIR}/check-{name}.stdout.log"
        err_rel = f"{Z_DIR}/{LOGS_DIR}/check-{name}.stderr.log"
        junit_rel = f"{Z_DIR}/{LOGS_DIR}/check-{name}.junit.xml"
        start = run.ctx.clock.monotonic()
        # Progress: `watch` and the timeline show a check while it runs (decided by nothing).
        rec.emit(
            "check.started", "integrate", name=name, required=required, argv=list(check["argv"])
        )
        rc, timed_out, junit = _run_check(run, sandbox, check, (out_rel, err_rel))
        entry: dict[str, Any] = {
            "name": name,
            "argv": list(check["argv"]),
            "required": required,
            "rc": rc,
            "timed_out": timed_out,
            "stdout_log": f"{LOGS_DIR}/check-{name}.stdout.log",
            "stderr_log": f"{LOGS_DIR}/check-{name}.stderr.log",
        }
        timings.append(
            f"{name}: {run.ctx.clock.elapsed(start):.3f}s rc={rc} "
            f"timed_out={str(timed_out).lower()}\n"
        )
        # Hashed and summarised from one read: the tail is of the bytes the hash vouches for.
        (out_sha, out_tail), (err_sha, err_tail) = (
            writer.record_tail(rel, testfailures.TAIL_BYTES) for rel in (out_rel, err_rel)
        )
        hashes = {out_rel: out_sha, err_rel: err_sha}
        if junit is not None:
            hashes[junit_rel] = writer.write(junit_rel, junit)
            entry["junit_log"] = f"{LOGS_DIR}/check-{name}.junit.xml"
        said = testfailures.summarize(out_tail, err_tail, junit)
        extra: dict[str, Any] = {}
        if rc != 0 or timed_out:
            extra["failing_tests"] = said["failing_tests"]
        if rc != 0 or timed_out or run.setting("feature_flags.record_check_output_in_ledger"):
            extra["output_tail"] = said["output_tail"]
        entry.update(extra)
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


def sandbox_path(run: RunHandle, name: str = SANDBOX_DIR) -> tuple[Path, bool]:
    """Where a sandbox goes: ``name`` in the run folder, or under ``paths.sandbox_dir``
    (a short folder for Windows' path limits), in a slot of its own. (path, inside run folder)."""
    configured = run.ctx.config.get("paths.sandbox_dir")
    if not configured:
        return run.writer.target(name), True
    root = Path(os.path.expanduser(str(configured)))
    if not root.is_absolute():
        root = run.ctx.repo / root
    suffix = "" if name == SANDBOX_DIR else f"\0{name}"
    slot = hashlib.sha256(f"{run.ctx.repo.resolve()}\0{run.run_id}{suffix}".encode()).hexdigest()
    return root / slot[:10], False


def empty_sandbox(run: RunHandle, name: str = SANDBOX_DIR) -> tuple[Path, bool]:
    """The sandbox's folder, empty (an earlier one at its place removed). (path, inside run
    folder)."""
    sandbox, inside = sandbox_path(run, name)
    if sandbox.exists():
        remove_tree(sandbox)
    if inside:
        run.writer.mkdir(name)
    else:
        sandbox.mkdir(parents=True)
    return sandbox, inside


def init_sandbox(run: RunHandle, sandbox: Path, inside: bool, name: str = SANDBOX_DIR) -> None:
    """A sandbox repository at the base commit in that folder: every file of it written through
    the run's writer, or a guarded writer of its own outside the run folder."""
    # Inside the run folder, through the run's one writer (every refusal reaches STATUS.json).
    write = (
        (lambda rel, data: run.writer.write(f"{name}/{rel}", data, scratch=True))
        if inside
        else GuardedWriter(sandbox).write
    )
    gitops.create_sandbox(sandbox, run.ctx.repo, run.base_commit, write)


def integrate(run: RunHandle) -> StageResult:
    manifest, writer, rec = run.manifest, run.writer, run.recorder
    commit = run.base_commit
    data: dict[str, Any] = {"merge_order": [], "applied": [], "checks": [], "files_changed": []}
    try:
        writer.clear(Z_DIR)  # nothing of an earlier attempt may be reported or attested
        validation = require_validation(run)
    except BlockedError as exc:  # refused before a merge is planned (replay: no merge.planned)
        status, reason = decisions.integrate_refused(str(exc))
        return StageResult("integrate", status, reason, data)
    deps = dependencies(manifest, validation)
    strict = bool(run.setting("feature_flags.strict_handoff_dependencies"))
    order, cycle = decisions.merge_order(deps, strict)
    rec.emit(
        "merge.planned", "integrate", depends_on=deps, strict=strict, order=order, reason=cycle
    )
    writer.write_text(f"{Z_DIR}/MERGE_PLAN.md", merge_plan_md(run.run_id, order, deps, cycle))
    if cycle:
        status, reason = decisions.integrate_outcome(cycle, [], [])
        return StageResult("integrate", status, reason, data)
    data["merge_order"] = order
    bounds = run_limits(manifest)
    patches = {
        w: snapshots.get(run.run_dir, validation["apply_sha256"][w], bounds.max_file_bytes)
        for w in order
    }
    identical = {o["path"] for o in validation["overlaps"] if o["resolution"] == "identical"}

    def stage(workers: list[str]) -> list[dict[str, Any]]:
        return stage_patches(
            patches, workers, identical, validation["touched"], validation.get("eol_normalised", {})
        )

    applied: list[AppliedPatch] = []
    sandbox, inside = empty_sandbox(run)
    try:
        init_sandbox(run, sandbox, inside)
        applied = apply_in_order(run, sandbox, stage(order))
        data["applied"] = [a["worker"] for a in applied if a["ok"]]
        merged, data["files_changed"] = gitops.merged_diff(sandbox, commit)
        writer.write(f"{Z_DIR}/DIFF.patch", merged)
        writer.write(
            f"{Z_DIR}/FILES_CHANGED.json",
            jsonio.pretty(
                {"schema_version": schemas.SCHEMA_VERSION, "files": data["files_changed"]}
            ),
        )
        configured = run.setting("checks.required") or run.setting("checks.advisory")
        if all(a["ok"] for a in applied) and configured:
            gitops.materialise(sandbox, _holdout_filter(run))
            data["checks"] = run_checks(run, sandbox)
    finally:
        if not run.ctx.config.get("run.keep_sandbox") and sandbox.exists():
            _remove_sandbox(run, sandbox)
    failed = decisions.failed_required(data["checks"])
    mode, max_runs, flaky = isolation_settings(manifest)
    found = None
    if failed and mode == "on-failure":
        found, data["culprits"] = isolate(run, order, deps, failed, stage, max_runs)
        data["isolation"] = found
    write_logs_index(writer, bounds)
    missing = decisions.left_out(manifest["workers"], list(deps))
    status, reason = decisions.integrate_outcome(
        "", applied, data["checks"], missing=missing, isolation=found, flaky=flaky
    )
    return StageResult("integrate", status, reason, data)


# -- culprit isolation ------------------------------------------------------------------------
ISOLATION_LOGS = f"{Z_DIR}/{LOGS_DIR}/isolation"
PROBE_DIR = "sandbox-probe"


def isolate(
    run: RunHandle,
    order: list[str],
    deps: dict[str, list[str]],
    failed: list[str],
    stage: Callable[[list[str]], list[dict[str, Any]]],
    max_runs: int | None,
) -> tuple[isolation.Result, list[dict[str, object]]]:
    """Run the probes :func:`isolation.step` asks for, each recorded (``isolation.probe``),
    until it decides (``isolation.decided``, with the inputs replay recomputes it from); the
    result, and its culprits with the failing tests of their own probes."""
    probes: list[isolation.Probe] = []
    tests: list[dict[str, list[str]]] = []
    while True:
        answer = isolation.step(order, deps, failed, probes, max_runs)
        if isolation.is_result(answer):
            break
        ask: isolation.Ask = answer  # type: ignore[assignment]
        probe, named = _probe(run, len(probes) + 1, ask, stage(ask["workers"]))
        probes.append(probe)
        tests.append(named)
    result: isolation.Result = answer  # type: ignore[assignment]
    run.recorder.emit(
        "isolation.decided",
        "integrate",
        order=order,
        depends_on=deps,
        failed=failed,
        max_runs=max_runs,
        probes=len(probes),
        **result,
    )
    return result, isolation.culprit_tests(result["culprits"], probes, tests)


def _probe(
    run: RunHandle, index: int, ask: isolation.Ask, staged: list[dict[str, Any]]
) -> tuple[isolation.Probe, dict[str, list[str]]]:
    """One probe: a fresh sandbox with these workers' validated patches (merge order), the
    asked checks run in it, the sandbox removed after; recorded as ``isolation.probe``."""
    by_name = {c["name"]: c for c in run.setting("checks.required")}
    checks: list[dict[str, Any]] = []
    logs: dict[str, str] = {}
    apply_error = ""
    sandbox, inside = empty_sandbox(run, PROBE_DIR)
    try:
        init_sandbox(run, sandbox, inside, PROBE_DIR)
        for s in staged:
            res = gitops.apply_to_index(sandbox, s["patch"]) if s["patch"] else None
            if res is not None and res.rc != 0:
                apply_error = f"patch of {worker_dirname(s['worker'])} does not apply here"
                break
        if not apply_error:
            gitops.materialise(sandbox, _holdout_filter(run))
        for name in ask["checks"]:
            stem = f"{ISOLATION_LOGS}/probe-{index:03d}-{name}"
            rc: int | None = None
            timed_out = False
            junit: bytes | None = None
            if not apply_error:
                logged = (f"{stem}.stdout.log", f"{stem}.stderr.log")
                rc, timed_out, junit = _run_check(run, sandbox, by_name[name], logged)
                # Hashed and read for its failing tests in one pass (what is named is what the
                # recorded hash vouches for).
                (out_sha, out_tail), (err_sha, err_tail) = (
                    run.writer.record_tail(rel, testfailures.TAIL_BYTES) for rel in logged
                )
                logs.update({logged[0]: out_sha, logged[1]: err_sha})
                if junit is not None:  # kept beside the logs, as for the merged check
                    logs[f"{stem}.junit.xml"] = run.writer.write(f"{stem}.junit.xml", junit)
            entry: dict[str, Any] = {
                "name": name,
                "rc": rc,
                "timed_out": timed_out,
                "passed": rc == 0 and not timed_out,
            }
            if not apply_error and not entry["passed"]:
                entry["failing_tests"] = testfailures.failing_tests(out_tail, err_tail, junit)
            checks.append(entry)
    finally:
        if sandbox.exists():
            _remove_sandbox(run, sandbox)
    extra = {"apply_error": apply_error} if apply_error else {}
    run.recorder.emit(
        "isolation.probe",
        "integrate",
        index=index,
        step=ask["step"],
        workers=ask["workers"],
        checks=checks,
        logs=logs,
        **extra,
    )
    probe: isolation.Probe = {
        "step": ask["step"],
        "workers": list(ask["workers"]),
        "passed": {c["name"]: bool(c["passed"]) for c in checks},
    }
    return probe, {str(c["name"]): list(c.get("failing_tests", [])) for c in checks}


def _holdout_filter(run: RunHandle) -> Callable[[str], bool] | None:
    """A crank iteration's checks run without the holdout (their output is fed back to the
    agents); other runs' checks see the whole tree, as before."""
    if not run.manifest.get("crank"):
        return None
    globs = worktrees.holdout_globs(list(run.setting("security.holdout_paths")))
    return lambda path: match_any(path, globs, ignore_case=True) is not None


def _applied(
    run: RunHandle, s: dict[str, Any], *, ok: bool, files: list[str], error: str = ""
) -> AppliedPatch:
    """Record one worker's patch as applied (or not) and return what the decision reads."""
    extra: dict[str, Any] = {"error": error[:2000]} if error else {"empty": not s["patch"]}
    run.recorder.emit(
        "patch.applied",
        "integrate",
        worker=s["worker"],
        ok=ok,
        files=files,
        eol_normalised=s["eol_normalised"],
        **extra,
    )
    return {"worker": s["worker"], "ok": ok, "files": files}


def _remove_sandbox(run: RunHandle, sandbox: Path) -> None:
    """Remove the sandbox (with retries for transient sharing violations); a failure is recorded
    and never changes the verdict."""
    try:
        remove_tree(sandbox)
    except (OSError, FactoryError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        run.recorder.emit("cleanup.failed", "integrate", kept=["sandbox"], reason=why)


def stage_patches(
    patches: dict[str, bytes],
    order: list[str],
    identical: set[str],
    touched_by: dict[str, list[str]],
    eol_normalised: dict[str, bool],
) -> list[dict[str, Any]]:
    """Each worker's validated patch, as it will be applied, in merge order.

    ``touched_by`` is what validation recorded for these exact bytes.
    """
    staged: list[dict[str, Any]] = []
    applied_paths: set[str] = set()
    for w in order:
        patch = patches[w]
        touched = list(touched_by[w])
        dup = identical & applied_paths
        if dup & set(touched):
            patch = without_paths(patch, dup)
        staged.append(
            {
                "worker": w,
                "touched": touched,
                "eol_normalised": bool(eol_normalised.get(w, False)),
                "patch": patch if patch.strip() else b"",
            }
        )
        applied_paths |= set(touched)
    return staged


def apply_in_order(
    run: RunHandle, sandbox: Path, staged: list[dict[str, Any]]
) -> list[AppliedPatch]:
    """Apply each worker's validated patch with a `git apply` of its own, in merge order, up to
    the first one that does not fit (those before it stay applied, for the report).

    One patch per `git apply`: git reads each worker's bytes exactly as validation had git read
    them, alone. Joined into one stream, the end of one patch and the start of the next would be
    read together (text after a header-only section continues its header).
    """
    applied: list[AppliedPatch] = []
    for s in staged:
        if s["patch"]:
            res = gitops.apply_to_index(sandbox, s["patch"])
            if res.rc != 0:
                files = sorted({m.group(1) for m in _APPLY_ERR.finditer(res.err)}) or s["touched"]
                applied.append(_applied(run, s, ok=False, files=files, error=res.err.strip()))
                return applied
        applied.append(_applied(run, s, ok=True, files=s["touched"]))
    return applied


def _planted(sandbox: Path, check: dict[str, Any]) -> bool:
    """Is something already at the check's ``junit_xml`` path before it runs (put there by the
    patches)? Then it is never read as the check's results."""
    rel = check.get("junit_xml")
    return bool(rel) and os.path.lexists(sandbox.joinpath(*str(rel).split("/")))


def _junit(sandbox: Path, check: dict[str, Any], planted: bool, err: BinaryIO) -> bytes | None:
    """The JUnit XML a failed check wrote at its ``junit_xml`` (bounded, through no link); why
    it is not used goes to the check's stderr log, one line, and None is returned."""
    rel = check.get("junit_xml")
    if not rel:
        return None
    label = f"junit_xml {rel}"
    if planted:
        why = f"{label}: was in the tree before the check ran (from the patches): not read"
        err.write(f"factory: {why}\n".encode())
        return None
    try:
        return read_in_tree(sandbox, str(rel), label, limit=testfailures.JUNIT_MAX_BYTES)
    except UsageError as exc:
        err.write(f"factory: {exc}: not used\n".encode())
        return None


def write_logs_index(writer: GuardedWriter, bounds: Limits) -> None:
    entries = {
        rel.removeprefix(f"{Z_DIR}/{LOGS_DIR}/"): sha
        for rel, sha in file_hashes(writer.root / Z_DIR / LOGS_DIR, f"{Z_DIR}/{LOGS_DIR}")
        if not rel.endswith("/INDEX.json")
    }
    sizes = {
        name: (writer.root / Z_DIR / LOGS_DIR / name).stat().st_size for name in sorted(entries)
    }
    writer.write(
        f"{Z_DIR}/{LOGS_DIR}/INDEX.json",
        jsonio.pretty(bundles.logs_index_from_hashes(entries, sizes)),
    )
