"""``bundle-import``: a patch made elsewhere becomes a worker's complete bundle.

Accepted: ``git diff`` output (``--binary`` for binary files), ``git format-patch`` files
(one commit or a series, as a PR's ``.patch`` is), plain unified diffs. The patch is applied
to the run's base commit in a sandbox and the bundle's DIFF.patch is the canonical diff of the
result (fixed git options, full index, binary data), so FILES_CHANGED is exactly what
integration will apply. The original file is kept as ``LOGS/import.source.patch``.
"""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path
from typing import Any, ClassVar

from tools.codex.factory.core import patchparse
from tools.codex.factory.core.ids import validate_run_id, validate_worker_id
from tools.codex.factory.core.text import strip_bom, utf16_kind
from tools.codex.factory.errors import ArgumentError
from tools.codex.factory.infra import gitops
from tools.codex.factory.infra.fsutil import remove_tree
from tools.codex.factory.records.status import Status
from tools.codex.factory.run import bundles, runboard
from tools.codex.factory.run.collect import existing_logs, generated_summary, plan_workers
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.facts import (
    GitSide,
    Limits,
    binary_checks,
    normalise_eol,
    recorded_paths,
)
from tools.codex.factory.run.handle import RunHandle
from tools.codex.factory.run.outcome import Outcome

_MAIL = re.compile(rb"^From [0-9a-f]{40} ", re.M)
_SUBJECT = re.compile(rb"^Subject: (?:\[PATCH[^\]]*\] ?)?(.*)$", re.M)


class FileArg:
    """A file given as an argument (``patch``, ``summary``): refusals name it in neutral words,
    and the CLI shows its option in their place."""

    LABELS: ClassVar[dict[str, str]] = {"patch": "patch file", "summary": "summary file"}

    def __init__(self, arg: str, path: Path) -> None:
        self.arg, self.path = arg, path

    def error(self, detail: str, sep: str = ": ") -> ArgumentError:
        return ArgumentError(
            self.arg, detail, label=self.LABELS[self.arg], value=str(self.path), sep=sep
        )


def _read(given: FileArg, limit: int) -> bytes:
    path = given.path
    try:
        st = path.stat()
    except FileNotFoundError:
        raise given.error("file not found") from None
    except OSError as exc:
        raise given.error(f"cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise given.error("is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise given.error("not a regular file")
    if st.st_size > limit:
        raise given.error(f"{st.st_size} bytes, over the limit of {limit} (limits.max_file_bytes)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise given.error(f"cannot read ({exc.strerror})") from None
    if utf16_kind(data) is not None:
        how = (
            f"`git diff --output {path}` or `Out-File -Encoding utf8`"
            if given.arg == "patch"
            else "`Out-File -Encoding utf8` or `Set-Content -Encoding utf8`"
        )
        raise given.error(
            f"is UTF-16 (PowerShell 5.1 '>' writes UTF-16): save it with {how}", sep=" "
        )
    return data


def patch_format(data: bytes) -> tuple[str, int]:
    commits = len(_MAIL.findall(data))
    if commits:
        return "format-patch", commits
    if b"diff --git " in data:
        return "git-diff", 0
    return "unified", 0


def _first_error(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return text.strip().splitlines()[0] if text.strip() else "git apply failed"


def cmd_import(
    ctx: Context, run_id: str, worker: str, patch_file: Path, summary_file: Path | None
) -> Outcome:

    validate_worker_id(worker, arg="worker")
    # The run lock, as integrate and bundle-collect take it: an import cannot race integrate,
    # nor the worker's running agent (launch holds the lock while agents run). A held lock is
    # BLOCKED at once.
    with RunHandle.open(ctx, validate_run_id(run_id)) as run:
        manifest = run.manifest
        if worker not in manifest["workers"]:
            raise ArgumentError(
                "worker",
                f"not in run {run_id} (workers: {', '.join(manifest['workers'])})",
                label="worker",
                value=worker,
            )
        bounds = Limits.from_settings(run.setting)
        limit = bounds.max_file_bytes
        given = FileArg("patch", patch_file)
        raw = _read(given, limit)
        summary_text = (
            _read(FileArg("summary", summary_file), limit).decode("utf-8", "replace")
            if summary_file is not None
            else None
        )
        data, _converted = normalise_eol(strip_bom(raw))
        try:
            parsed = patchparse.parse(data, bounds.max_patch_lines, bounds.max_patch_files)
        except patchparse.PatchLimitError as exc:
            raise given.error(str(exc)) from None
        except patchparse.PatchParseError as exc:
            raise given.error(f"not a readable patch: {exc}") from None
        if not parsed.files:
            raise given.error(
                "no file changes found (expected `git diff`, `git format-patch` or a PR's .patch)"
            )
        for f in parsed.files:
            if f.binary and b"GIT binary patch" not in f.raw:
                path = f.new_path or f.old_path
                raise given.error(
                    f"binary change to {path} carries no data; make the patch with "
                    "`git diff --binary`"
                )
        side = GitSide(ctx.repo, gitops.object_format(ctx.repo))
        for path, verdict, why in binary_checks(parsed, side, bounds):
            if verdict != "ok":
                # The import sandbox borrows the repository's objects: a forged postimage id
                # would pull any blob (the holdout's) into the canonical patch.
                raise given.error(f"binary change to {path} cannot be trusted: {why}")
        fmt, commits = patch_format(data)
        return _build(
            run, worker, raw, data, fmt, commits, given, summary_text, summary_file is not None
        )


def _canonical(run: RunHandle, canonical: bytes, given: FileArg) -> patchparse.Patch:
    """The bundle's DIFF.patch, read within the limits validation reads it with (git's diff
    adds context lines and full indexes: it may be over a limit the source was not)."""
    bounds = Limits.from_settings(run.setting)
    try:
        return patchparse.parse(canonical, bounds.max_patch_lines, bounds.max_patch_files)
    except patchparse.PatchLimitError as exc:
        raise given.error(f"its diff against the run's base has {exc}") from None


def _build(
    run: RunHandle,
    worker: str,
    raw: bytes,
    data: bytes,
    fmt: str,
    commits: int,
    given: FileArg,
    summary_text: str | None,
    summary_given: bool,
) -> Outcome:
    ctx, manifest, writer = run.ctx, run.manifest, run.writer
    run_id = run.run_id
    commit = run.base_commit
    run_dir = run.run_dir
    sandbox_rel = f"import-{worker}"
    sandbox = writer.target(sandbox_rel)
    if sandbox.exists():
        remove_tree(sandbox)
    writer.mkdir(sandbox_rel)
    try:
        gitops.create_sandbox(
            sandbox,
            ctx.repo,
            commit,
            lambda rel, data: writer.write(f"{sandbox_rel}/{rel}", data, scratch=True),
        )
        res = gitops.apply_cached(sandbox, data)
        if res.rc != 0:
            raise given.error(
                f"does not apply to the run's base {commit[:12]}: {_first_error(res.err)}", sep=" "
            )
        canonical = gitops.diff_cached(sandbox, commit)
    finally:
        remove_tree(sandbox)
    bundle_patch = _canonical(run, canonical, given)
    files = bundle_patch.touched()
    if not files:
        raise given.error("applies to the base but changes nothing")
    plan = plan_workers(manifest)[worker]
    subjects = [m.group(1).decode("utf-8", "replace").strip() for m in _SUBJECT.finditer(data)]
    if summary_text is None:
        summary_text = generated_summary(plan, "DONE", "", "imported", bundle_patch)
        if subjects:
            summary_text += "\nCommits in the imported patch:\n" + "".join(
                f"- {s}\n" for s in subjects
            )
    source_sha = hashlib.sha256(raw).hexdigest()
    diff_sha = hashlib.sha256(canonical).hexdigest()
    log = (
        "\n".join(
            [
                f"imported a {fmt} patch for worker {worker} of run {run_id}",
                f"source sha256: {source_sha} ({len(raw)} bytes{', ' + str(commits) + ' commit(s)' if commits else ''})",
                f"applied to base commit: {commit}",
                f"files changed: {len(files)}",
                f"DIFF.patch sha256: {diff_sha}",
            ]
        )
        + "\n"
    )
    written = bundles.write_bundle(
        writer,
        run_id,
        plan,
        status="DONE",
        patch=canonical,
        files=files,
        dry_run=False,
        source="imported",
        summary=summary_text,
        suggestions="# Suggestions\n\nNone: imported patch.\n",
        logs={
            **existing_logs(run_dir, worker),
            "import.source.patch": raw,
            "import.log": log.encode("utf-8"),
        },
        reason="",
    )
    # The ledger and the output carry the paths within the list caps (and how many there are).
    recorded = recorded_paths(files, Limits.from_settings(run.setting))
    rec = run.recorder
    rec.emit(
        "bundle.imported",
        "bundle-import",
        f"{worker}_worker",
        worker=worker,
        format=fmt,
        commits=commits,
        **recorded,
        diff_sha256=diff_sha,
        source_sha256=source_sha,
        summary="file" if summary_given else "generated",
        artifacts=dict(sorted(written.items())),
    )
    if not manifest["dry_run"]:
        runboard.refresh(ctx.repo, run_dir, manifest)
    out: dict[str, Any] = {
        "run_id": run_id,
        "worker": worker,
        "status": "PASS",
        "format": fmt,
        "commits": commits,
        **recorded,
        "diff_sha256": diff_sha,
    }
    return Outcome(Status.PASS, out, view="import")
