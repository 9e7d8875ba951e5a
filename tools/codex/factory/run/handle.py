"""The run handle: the one owner of an open run.

A stage that reads or writes a run opens it through :meth:`RunHandle.open`, which takes the run
lock (a second process is BLOCKED at once, never left waiting), reads RUN_MANIFEST.json once and
refuses it unless its sha256 is the one the ledger recorded at launch (rule ``manifest-changed``;
a second ``manifest.written`` is ``manifest-rewritten``):
an edited manifest cannot widen a scope, drop a protected path or a required check. The handle
carries the run's one guarded writer, so every refused write reaches STATUS.json, and its recorder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.codex.factory.core.ids import select_workers, validate_run_id
from tools.codex.factory.core.paths import LOCKS_DIR, MANIFEST
from tools.codex.factory.core.text import clip
from tools.codex.factory.errors import BlockedError, LockHeldError, NoRunError, UsageError
from tools.codex.factory.infra import jsonio, schemas
from tools.codex.factory.infra.fsutil import read_file
from tools.codex.factory.infra.locks import ProcessLock
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.ledger.store import Filter, Ledger
from tools.codex.factory.run.config import DEFAULTS
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.runref import nearest

MANIFEST_EVENT = "manifest.written"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def run_lock(ctx: Context, run_id: str) -> ProcessLock:
    """The run lock: a second process is BLOCKED at once, never left waiting."""
    writer = GuardedWriter(ctx.layout.run_dir(run_id))
    path = writer.target(f"{LOCKS_DIR}/run.lock")
    shown = f"{ctx.layout.run_rel(run_id)}/{LOCKS_DIR}/run.lock"
    return ProcessLock(path, 0, f"run lock of {run_id}", shown)


def run_folder(ctx: Context, run_id: str, also: str = "") -> Path:
    """The folder of run ``run_id``: the one place an unknown run is refused (NoRunError;
    ``also`` adds what else the caller found missing, e.g. its events)."""
    validate_run_id(run_id)
    path = ctx.layout.run_dir(run_id)
    if path.is_symlink():  # the run's files are read and written in it: never through a link
        raise BlockedError(
            f"run {run_id}: the run folder {ctx.layout.run_rel(run_id)} is a symbolic link; "
            "a run is never read or written through one (remove the link)"
        )
    if not path.is_dir():
        raise NoRunError(run_id, ctx.layout.run_rel(run_id), also + nearest(ctx, run_id))
    return path


def recorded_manifest_sha(ledger: Ledger, run_id: str, shown: str = "") -> str | None:
    """The sha256 of RUN_MANIFEST.json as launch recorded it: the run's one ``manifest.written``
    (runs made by earlier releases recorded it in their first ``artifacts.written``).

    The manifest is pinned once: a second ``manifest.written`` (anyone who can append to the
    ledger can add one) is refused, never trusted over the first, and every ``artifacts.written``
    that lists the manifest must name the same hash. BlockedError naming the seqs otherwise.
    """
    rel = shown or f"{run_id}/{MANIFEST}"
    pinned = sorted(
        ledger.select(Filter(run_id=run_id, event_type=MANIFEST_EVENT)), key=lambda e: e.seq
    )
    if len(pinned) > 1:
        seqs = ", ".join(str(e.seq) for e in pinned)
        raise BlockedError(
            f"[manifest-rewritten] {rel}: the ledger records {len(pinned)} {MANIFEST_EVENT} "
            f"events for this run (seqs {seqs}); launch writes exactly one, so the manifest "
            "cannot be trusted: launch a new run"
        )
    listed = [
        (ev.seq, files[MANIFEST])
        for ev in sorted(
            ledger.select(Filter(run_id=run_id, event_type="artifacts.written")),
            key=lambda e: e.seq,
        )
        if isinstance(files := ev.payload.get("files"), dict) and MANIFEST in files
    ]
    sha: object = pinned[0].payload.get("sha256") if pinned else (listed[0][1] if listed else None)
    if not isinstance(sha, str):
        return None
    where = f"seq {pinned[0].seq}" if pinned else f"seq {listed[0][0]}"
    for seq, other in listed:
        if other != sha:
            raise BlockedError(
                f"[manifest-rewritten] {rel}: artifacts.written (seq {seq}) records sha256 "
                f"{str(other)[:12]}, the manifest pinned at {where} is {sha[:12]}: the ledger "
                "disagrees with itself about the manifest: launch a new run"
            )
    return sha


def read_manifest(ctx: Context, run_id: str) -> tuple[dict[str, Any], str]:
    """RUN_MANIFEST.json of ``run_id``, read once, checked against the ledger and its schema.

    Returns (manifest, sha256). UsageError for an unknown run; BlockedError naming the rule for
    a manifest that is not the one launch wrote.
    """
    run_dir = run_folder(ctx, run_id)
    rel = f"{ctx.layout.run_rel(run_id)}/{MANIFEST}"
    try:
        data = read_file(run_dir / MANIFEST, rel, limit=MAX_MANIFEST_BYTES)
    except UsageError as exc:
        raise BlockedError(str(exc)) from None
    sha = hashlib.sha256(data).hexdigest()
    recorded = recorded_manifest_sha(ctx.ledger, run_id, rel)
    if recorded is None:
        raise BlockedError(
            f"[manifest-unrecorded] {rel}: the ledger records no hash for this run's manifest, "
            "so it cannot be trusted: launch a new run"
        )
    if sha != recorded:
        raise BlockedError(
            f"[manifest-changed] {rel} is not the manifest launch wrote (sha256 {sha[:12]}, the "
            f"ledger recorded {recorded[:12]}): restore it, or launch a new run"
        )
    try:
        doc = jsonio.loads_document(data)
    except ValueError as exc:
        raise BlockedError(f"{rel}: invalid JSON ({exc})") from None
    problems = schemas.errors("run_manifest", doc)
    if problems:
        where, msg = problems[0]
        raise BlockedError(f"{rel}: {where}: {clip(msg, 300)}")
    if doc["run_id"] != run_id:
        raise BlockedError(f"{MANIFEST} names run {doc['run_id']!r}, not {run_id!r}")
    return dict(doc), sha


def run_setting(manifest: dict[str, Any], dotted: str) -> Any:
    """A config value as the run was launched with it (RUN_MANIFEST.json), not as it is now.

    A run is judged by the rules it started under: an env var or config edit made later cannot
    drop a check or widen what is protected. Keys added by later releases take their default in
    manifests written before them.
    """
    section, key = dotted.split(".", 1)
    values = manifest["config"].get(section, {})
    if key in values:
        return values[key]
    return DEFAULTS[section][key]


def isolation_settings(manifest: dict[str, Any]) -> tuple[str, int | None, str]:
    """(``integrate.isolate``, ``isolate_max_runs``, ``flaky``) as the run was launched. A run
    launched by a release before culprit isolation (no ``integrate`` section in its recorded
    config) is integrated, and replayed, without it."""
    if "integrate" not in manifest["config"]:
        return "off", None, "block"
    return (
        str(run_setting(manifest, "integrate.isolate")),
        run_setting(manifest, "integrate.isolate_max_runs"),
        str(run_setting(manifest, "integrate.flaky")),
    )


def selected_workers(manifest: dict[str, Any], workers: list[str] | None) -> list[str]:
    """The run's workers a stage acts on: all of them, or a selection (the one rule of
    :func:`select_workers`) of workers the run has."""
    known = list(manifest["workers"])
    if workers is None:
        return sorted(known)
    chosen = select_workers(workers)
    unknown = [w for w in chosen if w not in known]
    if unknown:
        raise UsageError(
            f"workers {', '.join(unknown)}: not in this run (workers: {', '.join(known)})"
        )
    return chosen


# Records a refusal of the run (its lock held, or its manifest not the one launch wrote) before
# it is raised.
OnRefused = Callable[[Recorder, BlockedError], None]


@dataclass
class RunHandle:
    """An open run: its verified manifest, the selected workers, its lock, writer and recorder."""

    ctx: Context
    run_id: str
    manifest: dict[str, Any]
    manifest_sha256: str
    workers: list[str]
    lock: ProcessLock | None = None
    writer: GuardedWriter = field(init=False)
    recorder: Recorder = field(init=False)

    def __post_init__(self) -> None:
        self.writer = GuardedWriter(self.run_dir)
        self.recorder = Recorder(self.ctx.ledger, self.run_id, str(self.manifest["kind"]))
        # Every refused write reaches the ledger as it happens, and STATUS.json at the end.
        self.writer.on_violation = lambda path, why: self._violation(path, why)

    def _violation(self, path: str, why: str) -> None:
        self.recorder.policy_violation(path, f"write to {path!r} refused: {why}")

    @classmethod
    def open(
        cls,
        ctx: Context,
        run_id: str,
        workers: list[str] | None = None,
        *,
        lock: bool = True,
        on_refused: OnRefused | None = None,
    ) -> RunHandle:
        """Lock the run (BLOCKED at once when another process holds it), then read and verify
        its manifest. ``on_refused`` records either refusal before it is raised (the manifest's
        while the lock is still held)."""
        run_folder(ctx, run_id)

        def refused(exc: BlockedError) -> None:
            if on_refused is not None:
                # The run's own kind, as its run.started recorded it (not today's config).
                row = ctx.ledger.run_row(run_id)
                kind = row.kind if row is not None and row.kind else ctx.config.get("run.kind")
                on_refused(Recorder(ctx.ledger, run_id, str(kind)), exc)

        held: ProcessLock | None = None
        if lock:
            held = run_lock(ctx, run_id)
            try:
                held.acquire()
            except LockHeldError as exc:
                held.close()
                refused(exc)
                raise
        try:
            try:
                manifest, sha = read_manifest(ctx, run_id)
            except BlockedError as exc:
                refused(exc)
                raise
            chosen = selected_workers(manifest, workers)
        except BaseException:
            if held is not None:
                held.release()
                held.close()
            raise
        return cls(ctx, run_id, manifest, sha, chosen, held)

    @property
    def run_dir(self) -> Path:
        return self.ctx.layout.run_dir(self.run_id)

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def base_commit(self) -> str:
        return str(self.manifest["base_commit"])

    def setting(self, dotted: str) -> Any:
        return run_setting(self.manifest, dotted)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock.close()
            self.lock = None

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
