"""The end of a run: Z's STATUS.json and FINAL_REPORT.txt, attestations, ``run.finished``.

STATUS.json, FINAL_REPORT.txt and the exit code are all derived from one final status,
computed by :func:`decisions.final_status` from the stage results, so they cannot disagree.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from tools.codex.factory.core import decisions
from tools.codex.factory.core.paths import (
    ATTEST_DIR,
    LOGS_DIR,
    MANIFEST,
    VALIDATION,
    Z_DIR,
    worker_dirname,
)
from tools.codex.factory.core.text import clip
from tools.codex.factory.errors import FactoryError, PolicyViolation, UnreadableError, UsageError
from tools.codex.factory.infra import jsonio, proc, schemas
from tools.codex.factory.infra.fsutil import read_file
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.ledger.store import Event, Filter
from tools.codex.factory.run import bundles
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.facts import file_hashes
from tools.codex.factory.run.handle import RunHandle, run_folder
from tools.codex.factory.run.snapshots import SNAPSHOT_DIR
from tools.codex.factory.run.stages import StageResult, ended

REPORT = f"{Z_DIR}/FINAL_REPORT.txt"
STATUS = f"{Z_DIR}/STATUS.json"


def _placeholders(writer: GuardedWriter, run_id: str, reason: str) -> None:
    """Integration did not run: still leave every Z artifact, saying so.

    Each is written on its own: a refused write (recorded in writer.violations) does not
    stop the others, nor STATUS.json and FINAL_REPORT.txt after them.
    """
    z = writer.root / Z_DIR
    wanted: list[tuple[str, bytes]] = [
        (
            "FILES_CHANGED.json",
            jsonio.pretty({"schema_version": schemas.SCHEMA_VERSION, "files": []}),
        ),
        ("DIFF.patch", b""),
        ("MERGE_PLAN.md", f"# Merge plan for {run_id}\n\nNo merge: {reason}.\n".encode()),
        (f"{LOGS_DIR}/INDEX.json", jsonio.pretty(bundles.logs_index({}))),
    ]
    for name, data in wanted:
        if (z / name).exists() and not (z / name).is_symlink():
            continue
        # Best effort: a refused or failed placeholder must not stop the verdict being recorded.
        with contextlib.suppress(FactoryError, OSError):
            writer.write(f"{Z_DIR}/{name}", data)


def bundle_origins(events: list[Event], workers: list[str]) -> dict[str, str]:
    """How each worker's bundle came, from the run's events (the last word wins): ``dry-run``
    (launch wrote it empty), ``awaiting import`` (launch --no-agents), ``imported``, or the
    collected bundle's source (``agent``, ``collected``)."""
    out: dict[str, str] = {}
    for e in events:
        w = e.payload.get("worker")
        if w not in workers:
            continue
        if e.event_type == "bundle.created":
            out[w] = "awaiting import" if e.payload.get("awaiting_import") else "dry-run"
        elif e.event_type == "bundle.imported":
            out[w] = "imported"
        elif e.event_type == "bundle.collected":
            out[w] = str(e.payload.get("source") or "collected")
    return out


def _origin_lines(
    doc: dict[str, Any], manifest: dict[str, Any], origins: dict[str, str]
) -> list[str]:
    """``dry_run: true`` only when no agent ran and no real patch was integrated (every bundle
    launch's empty one); otherwise how the bundles came."""
    pure = (
        manifest["dry_run"]
        and not doc["files_changed"]
        and all(origins.get(w, "dry-run") == "dry-run" for w in manifest["workers"])
    )
    if pure:
        return ["dry_run:     true"]
    came = ", ".join(f"{w} {origins.get(w, 'unknown')}" for w in manifest["workers"])
    return ["dry_run:     false", f"bundles:     {came}"]


def render_report(
    doc: dict[str, Any],
    manifest: dict[str, Any],
    validation: dict[str, Any] | None,
    unreadable: str = "",
    origins: dict[str, str] | None = None,
) -> str:
    """FINAL_REPORT.txt. ``unreadable``: why VALIDATION.json, which is there, could not be
    read (its judgement is then unknown, never "not validated"); ``origins``: how each
    bundle came (:func:`bundle_origins`)."""
    head = doc["ledger_head"]
    lines = ["MULTI-CODEX FACTORY — FINAL REPORT", *_partial_lines(doc), ""]
    lines += [
        f"run_id:      {doc['run_id']}",
        f"kind:        {manifest['kind']}",
        f"base_ref:    {manifest['base_ref']}",
        f"base_commit: {manifest['base_commit']}",
        *_origin_lines(doc, manifest, origins or {}),
        f"STATUS:      {doc['status']}",
        "",
        "stages:",
    ]
    lines += [f"  {s['stage']:<16} {s['status']:<8} {s['reason']}".rstrip() for s in doc["stages"]]
    lines += ["", "workers:"]
    verdicts = (validation or {}).get("verdicts", {})
    missing = f"unknown ({VALIDATION} unreadable)" if unreadable else "not validated"
    after = doc.get("worker_verdicts", {})
    for w in manifest["workers"]:
        v = after.get(w)
        shown = f"{v['verdict']} {v['rule']}".rstrip() if v else verdicts.get(w, missing)
        lines.append(f"  {worker_dirname(w):<12} {shown}")
    findings = (validation or {}).get("findings", [])
    lines += ["", f"findings: {len(findings) or ('unknown' if unreadable else 'none')}"]
    lines += [f"  [{f['rule']}] {f['worker']} {f['path']}: {f['message']}" for f in findings]
    warnings = (validation or {}).get("warnings", [])
    if warnings:
        lines += ["", f"warnings: {len(warnings)}"]
        lines += [f"  [{f['rule']}] {f['worker']} {f['path']}: {f['message']}" for f in warnings]
    overlaps = (validation or {}).get("overlaps", [])
    lines += ["", f"overlaps: {len(overlaps) or ('unknown' if unreadable else 'none')}"]
    lines += [f"  {o['path']}: {', '.join(o['workers'])} -> {o['resolution']}" for o in overlaps]
    lines += [
        "",
        f"merge order: {', '.join(doc['merge_order']) or '-'}",
        f"applied:     {', '.join(doc['applied']) or '-'}",
    ]
    lines += ["", f"checks: {len(doc['checks']) or 'none run'}"]
    for c in doc["checks"]:
        kind = "required" if c["required"] else "advisory"
        rc = "timeout" if c["timed_out"] else f"rc={c['rc']}"
        lines.append(f"  [{kind}] {c['name']}: {rc}  (logs: {c['stdout_log']}, {c['stderr_log']})")
        if c["timed_out"] or c["rc"] != 0:
            lines += [f"    {line}" for line in check_output_lines(c)]
    if "isolation_runs" in doc:
        lines += ["", *_isolation_lines(doc)]
    lines += ["", f"policy violations: {len(doc['policy_violations']) or 'none'}"]
    lines += [f"  write to {v['path']!r} refused: {v['reason']}" for v in doc["policy_violations"]]
    lines += ["", f"files changed: {len(doc['files_changed'])}"]
    lines += [f"  {p}" for p in doc["files_changed"]]
    if doc["reasons"]:
        lines += ["", "reasons:"]
        lines += [f"  - {r}" for r in doc["reasons"]]
    command = land_command(doc["run_id"], doc["status"], manifest)
    if command:
        lines += ["", f"next: `{command}` puts the result on a branch of its own"]
    lines += ["", f"ledger head: seq={head['seq']} hash={head['hash']}", ""]
    return "\n".join(lines)


def partial_line(covers: list[str], missing: list[str]) -> str:
    """Which workers a subset integration's verdict covers, and which it does not."""
    shown = ", ".join(worker_dirname(w) for w in covers) or "no worker"
    left = ", ".join(worker_dirname(w) for w in missing)
    return f"PARTIAL: this verdict covers {shown} only; left out: {left}"


def _partial_lines(doc: dict[str, Any]) -> list[str]:
    """Said first, right after the title: a verdict that covers only some planned workers."""
    missing = doc.get("left_out") or []
    return [partial_line(doc.get("covers", []), missing)] if missing else []


def check_output_lines(check: dict[str, Any]) -> list[str]:
    """A failed check's failing tests and the tail of its output (bounded and made visible
    when recorded), for the report and the terminal."""
    lines: list[str] = []
    names = check.get("failing_tests")
    if names:
        lines.append(f"failing tests: {len(names)}")
        lines += [f"  {n}" for n in names]
    elif names is not None:
        lines.append("failing tests: none recognised in its output")
    tail = check.get("output_tail") or {}
    for stream in ("stdout", "stderr"):
        said = tail.get(stream) or []
        if said:
            lines.append(f"{stream} (last {len(said)} lines):")
            lines += [f"  | {x}" for x in said]
    return lines


def _isolation_lines(doc: dict[str, Any]) -> list[str]:
    """The report's isolation section: who each failed required check is blamed on."""
    lines = [
        f"isolation: {doc['isolation_runs']} run(s)"
        + (" (bound reached)" if doc.get("isolation_exhausted") else "")
    ]
    lines += [
        f"  culprit     {worker_dirname(c['worker'])}: {c['check']} fails {c['how']}"
        + (f" (failing tests: {', '.join(c['tests'])})" if c.get("tests") else "")
        for c in doc["culprits"]
    ]
    lines += [
        f"  interaction {' + '.join(worker_dirname(w) for w in i['workers'])}: {i['check']} fails together"
        for i in doc["interactions"]
    ]
    lines += [f"  flaky       {c}: failed, then passed on a rerun" for c in doc["flaky"]]
    lines += [f"  base        {c}: fails on the base commit too" for c in doc["base_failing"]]
    return lines


def land_command(run_id: str, status: str, manifest: dict[str, Any]) -> str:
    """The command that lands a PASS run ('' for any other, and for a crank's iterations,
    which the crank commits itself)."""
    if status != "PASS" or manifest.get("crank"):
        return ""
    return f"factory land --run-id {run_id}"


def _sha256sum(entries: list[tuple[str, str]]) -> bytes:
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(entries)).encode("utf-8")


def finalize(
    run: RunHandle,
    stages: list[StageResult],
    integration: dict[str, Any] | None,
) -> dict[str, Any]:
    """Write Z's verdict, the attestations and ``run.finished``; return the STATUS document.

    STATUS.json, FINAL_REPORT.txt, ``run.finished`` and the exit code all carry the one status
    :func:`decisions.final_verdict` derives from the stage rows and the refused writes; a report
    that cannot be written is a failed ``summary`` stage row, recorded like any other.
    """
    ctx, rec, writer, manifest = run.ctx, run.recorder, run.writer, run.manifest
    rec.current = "summary"  # refused writes from here on belong to the summary
    run_id = run.run_id
    integration = integration or {}
    rows = [s.row() for s in stages]
    unreadable = ""
    validation, validation_sha, problem = _read_validation(run.run_dir)
    origins = bundle_origins(ctx.ledger.run_events(run_id), list(manifest["workers"]))
    if problem is not None:  # the judgement is unknown: the run cannot pass on it
        unreadable = (
            f"[validation-unreadable] {UnreadableError(VALIDATION, problem)}: "
            "run bundle-validate again"
        )
        rows.append(ended(rec, StageResult("summary", "BLOCKED", unreadable)).row())
    head = ctx.ledger.read_head()
    not_run = next(
        (s.reason for s in stages if s.stage == "integrate" and s.status == "SKIPPED"),
        "integration did not complete",
    )
    _placeholders(writer, run_id, not_run)
    doc: dict[str, Any] = {
        "schema_version": schemas.SCHEMA_VERSION,
        "run_id": run_id,
        "status": "",
        "reasons": [],
        "stages": rows,
        "merge_order": integration.get("merge_order", []),
        "applied": integration.get("applied", []),
        "checks": integration.get("checks", []),
        "policy_violations": [],
        "files_changed": integration.get("files_changed", []),
        "ledger_head": {"seq": head.seq, "hash": head.hash},
        "covers": sorted(run.workers),
        "left_out": decisions.left_out(manifest["workers"], run.workers),
    }
    found = integration.get("isolation")
    if found is not None:
        doc["culprits"] = integration.get("culprits", found["culprits"])
        doc["interactions"] = found["interactions"]
        doc["flaky"] = found["flaky"]
        doc["base_failing"] = found["base"]
        doc["isolation_runs"] = found["runs"]
        doc["isolation_exhausted"] = found["exhausted"]
        doc["worker_verdicts"] = decisions.worker_verdicts(integration["merge_order"], found)

    def verdict() -> None:
        doc["policy_violations"] = list(writer.violations)
        doc["status"], doc["reasons"] = decisions.final_verdict(rows, writer.violations)

    verdict()
    attest: dict[str, str] = {}
    try:
        writer.write(STATUS, jsonio.pretty(doc))
        writer.write_text(REPORT, render_report(doc, manifest, validation, unreadable, origins))
        attest = _attest(run, validation, validation_sha)
    except PolicyViolation:  # recorded in the ledger as it happened (the run handle)
        verdict()
        _rewrite(writer, doc, manifest, validation, unreadable, origins)
    except (OSError, FactoryError) as exc:
        summary = ended(rec, StageResult("summary", "FAIL", f"could not write the report: {exc}"))
        rows.append(summary.row())
        verdict()
        _rewrite(writer, doc, manifest, validation, unreadable, origins)
    try:
        rec.emit(
            "report.written",
            "summary",
            status=doc["status"],
            ledger_head={"seq": head.seq, "hash": head.hash},
            files=dict(sorted(writer.written.items())),
            attestations=attest,
            policy_violations=doc["policy_violations"],
        )
        rec.run_finished(rows, writer.violations)
    except FactoryError as exc:
        # The verdict could not be recorded: the files must not claim more than the ledger holds.
        doc["status"], doc["reasons"] = decisions.unrecorded_verdict(doc["reasons"], str(exc))
        _rewrite(writer, doc, manifest, validation, unreadable, origins)
    return doc


def _read_validation(run_dir: Path) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """VALIDATION.json read once: (the document, the sha256 of those very bytes — what is
    attested —, why it is unusable). (None, None, None) when bundle-validate has not written
    one; a document that is there but unreadable or not a validation document gives its
    problem (and its hash when its bytes could be read)."""
    path = run_dir / VALIDATION
    if not path.exists() and not path.is_symlink():
        return None, None, None
    try:
        data = read_file(path, VALIDATION, limit=1 << 26)
    except FactoryError as exc:
        return None, None, str(exc).removeprefix(f"{VALIDATION}: ")
    sha = hashlib.sha256(data).hexdigest()
    try:
        doc = jsonio.loads_document(data)
    except (FactoryError, ValueError) as exc:
        return None, sha, str(exc).removeprefix(f"{VALIDATION}: ")
    problems = schemas.errors("validation", doc)
    if problems:
        where, msg = problems[0]
        return None, sha, clip(f"{where}: {msg}", 300)
    return dict(doc), sha, None


def _rewrite(
    writer: GuardedWriter,
    doc: dict[str, Any],
    manifest: dict[str, Any],
    validation: dict[str, Any] | None,
    unreadable: str,
    origins: dict[str, str],
) -> None:
    """Write STATUS.json and FINAL_REPORT.txt again after the verdict changed; if even that
    fails, remove them rather than leave a verdict behind that the ledger does not hold."""
    try:
        writer.write(STATUS, jsonio.pretty(doc))
        writer.write_text(REPORT, render_report(doc, manifest, validation, unreadable, origins))
    except (OSError, FactoryError):
        for rel in (STATUS, REPORT):
            with contextlib.suppress(OSError, PolicyViolation):
                writer.target(rel).unlink()


def _attest(
    run: RunHandle, validation: dict[str, Any] | None, validation_sha: str | None
) -> dict[str, str]:
    """``attestations/*.sha256`` in sha256sum format, checkable with ``sha256sum -c`` in the run
    folder. Files over the run's file limit were never read and are not listed. ``validation``
    is VALIDATION.json as the summary read it, ``validation_sha`` the hash of those very bytes
    (None: absent or unreadable)."""
    ctx, writer, run_dir, manifest = run.ctx, run.writer, run.run_dir, run.manifest
    run_id = run.run_id
    limit = int(run.setting("limits.max_file_bytes"))
    inputs = [(MANIFEST, run.manifest_sha256)]
    if validation_sha is not None:  # the bytes the verdict was read from, not a second read
        inputs.append((VALIDATION, validation_sha))
    judged = _judged_hashes(validation)
    for w in manifest["workers"]:
        # The bytes validation judged (and integration applied), not what the folder holds now:
        # a bundle file swapped afterwards fails `sha256sum -c` instead of being attested.
        own = {f"{worker_dirname(w)}/{name}": sha for name, sha in judged.get(w, {}).items()}
        inputs.extend(own.items())
        inputs.extend(
            (rel, sha)
            for rel, sha in file_hashes(run_dir / worker_dirname(w), worker_dirname(w), limit)
            if rel not in own
        )
    inputs.extend(file_hashes(run_dir / SNAPSHOT_DIR, SNAPSHOT_DIR, limit))
    excerpt = b"".join(
        jsonio.canonical(e.as_dict()) + b"\n" for e in ctx.ledger.select(Filter(run_id=run_id))
    )
    out = {}
    excerpt_rel = f"{ATTEST_DIR}/ledger_excerpt.jsonl"
    out[excerpt_rel] = writer.write(excerpt_rel, excerpt)
    out[f"{ATTEST_DIR}/bundles.sha256"] = writer.write(
        f"{ATTEST_DIR}/bundles.sha256", _sha256sum(inputs)
    )
    out[f"{ATTEST_DIR}/ledger.sha256"] = writer.write(
        f"{ATTEST_DIR}/ledger.sha256", _sha256sum([(excerpt_rel, out[excerpt_rel])])
    )
    z = file_hashes(run_dir / Z_DIR, Z_DIR, limit)
    out[f"{ATTEST_DIR}/report.sha256"] = writer.write(f"{ATTEST_DIR}/report.sha256", _sha256sum(z))
    return dict(sorted(out.items()))


def _judged_hashes(validation: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """Per worker, the sha256 of each bundle file as bundle-validate judged it (VALIDATION.json,
    whose own hash the ledger anchors); {} without one (absent, unreadable: the summary says
    which) or from a release that recorded none."""
    judged = (validation or {}).get("files_sha256")
    return judged if isinstance(judged, dict) else {}


# -- views -----------------------------------------------------------------------------------
def report_path(ctx: Context, run_id: str) -> Path:
    run_folder(ctx, run_id)
    path = ctx.layout.report_path(run_id)
    if not path.is_file():
        raise UsageError(
            f"run {run_id} has no {REPORT} yet: integrate the run first (`factory integrate`)"
        )
    return path


def open_path(path: Path) -> tuple[bool, str]:
    """Open with the platform's opener; headless (no display, no opener) just says where."""
    if sys.platform == "win32":  # pragma: no cover - Windows
        if os.environ.get("CI") or os.environ.get("SSH_CONNECTION"):
            return False, "headless session (CI/SSH)"
        os.startfile(str(path))  # type: ignore[attr-defined]
        return True, "os.startfile"
    if sys.platform == "darwin":  # pragma: no cover - macOS
        opener = shutil.which("open")
        if opener is None or os.environ.get("SSH_CONNECTION") or os.environ.get("CI"):
            return False, "headless session (CI/SSH) or no `open`"
        cmd = [opener, str(path)]
    else:
        opener = shutil.which("xdg-open")
        if opener is None:
            return False, "no xdg-open on PATH"
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return False, "no display (DISPLAY/WAYLAND_DISPLAY unset)"
        cmd = [opener, str(path)]

    try:
        proc.spawn_detached(cmd)
    except FactoryError as exc:
        return False, f"{Path(cmd[0]).name} could not start: {str(exc).splitlines()[0]}"
    return True, Path(cmd[0]).name
