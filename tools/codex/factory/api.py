"""The Python API: what the CLI does, as calls that return typed results.

    from tools.codex.factory import Factory

    with Factory("path/to/repo") as factory:
        run = factory.launch(dry_run=True)
        factory.import_patch(run.run_id, "A", "change.patch")
        checked = factory.validate(run.run_id)
        if checked.status == "PASS":
            result = factory.integrate(run.run_id)
            print(result.status, result.report)

A verdict is a result, never an exception: a BLOCKED validation or integration returns with
``status == "BLOCKED"`` and its findings or reasons. Exceptions are for what prevents an answer,
all :class:`~tools.codex.factory.errors.FactoryError` subclasses carrying ``status`` and
``exit_code``: a bad input (:class:`UsageError`), a refusal such as a run lock held by another
process (:class:`BlockedError`), a failure of git or the file system (:class:`FactoryError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.codex.factory.audit import ledgerview, replay
from tools.codex.factory.core.ids import select_workers
from tools.codex.factory.errors import UsageError
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.run import importer, pipeline, runref
from tools.codex.factory.run.config import DEFAULTS
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.launch import LaunchRequest
from tools.codex.factory.run.outcome import Outcome


@dataclass(frozen=True)
class LaunchResult:
    run_id: str
    base_commit: str
    workers: list[str]
    run_dir: str
    pending: list[str] = field(default_factory=list)
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ImportResult:
    run_id: str
    worker: str
    files: list[str]
    diff_sha256: str
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ValidationResult:
    run_id: str
    status: str
    verdicts: dict[str, str]
    findings: list[dict[str, str]]
    warnings: list[dict[str, str]]
    overlaps: list[dict[str, Any]]
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RunResult:
    """The end of a run: integrate or oneshot."""

    run_id: str
    status: str
    reasons: list[str]
    stages: list[dict[str, str]]
    report: str | None
    ledger_head: dict[str, Any]
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ReplayResult:
    run_id: str
    ok: bool
    divergences: list[dict[str, Any]]
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    lines: int
    head: dict[str, Any]
    first_bad_seq: int | None
    reason: str
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


def _dict(outcome: Outcome) -> dict[str, Any]:
    data = outcome.data
    return dict(data) if isinstance(data, dict) else {"items": list(data)}


class Factory:
    """One repository's factory: the same operations as the CLI, with typed results."""

    def __init__(
        self,
        repo: str | Path = ".",
        *,
        now: str | None = None,
        config: Mapping[str, Any] | None = None,
        config_file: str | Path | None = None,
    ) -> None:
        """``repo``: the repository (its top level or a folder in it); ``now``: pin the clock
        (ISO-8601); ``config``: overrides of config keys (``{"run.kind": "nightly"}``), the same
        layer as the CLI's options; ``config_file``: the config file to read (``--config``)."""
        overrides = dict(config or {})
        for key in sorted(overrides):
            section, _, name = str(key).partition(".")
            if name not in DEFAULTS.get(section, {}):
                raise UsageError(
                    f"config override {key!r}: not a config key (section.key, e.g. run.kind)"
                )
        self.ctx = Context(
            repo_opt=Path(repo),
            clock=Clock.from_env(now),
            config_file=Path(config_file) if config_file is not None else None,
        )
        self.ctx.cli_config.update(overrides)

    def close(self) -> None:
        self.ctx.close()

    def __enter__(self) -> Factory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        *,
        dry_run: bool,
        plan: str | Path | None,
        workers: list[str] | None,
        base_ref: str | None,
        run_id: str | None,
        kind: str | None,
        no_agents: bool = False,
    ) -> Any:
        """A launch request: arguments given here win over the config for this call only."""

        return LaunchRequest(
            no_agents=no_agents,
            base_ref=base_ref if base_ref is not None else self.ctx.config.get("run.base_ref"),
            dry_run=dry_run,
            run_id=run_id,
            kind=kind if kind is not None else self.ctx.config.get("run.kind"),
            plan_file=Path(plan) if plan is not None else None,
            workers=list(workers) if workers is not None else None,
            base_ref_source="the base_ref argument" if base_ref is not None else None,
        )

    def launch(
        self,
        *,
        dry_run: bool = False,
        plan: str | Path | None = None,
        workers: list[str] | None = None,
        base_ref: str | None = None,
        run_id: str | None = None,
        kind: str | None = None,
        no_agents: bool = False,
    ) -> LaunchResult:
        """Create a run (see ``factory launch``); ``no_agents``: every worker PENDING until
        :meth:`import_patch` brings its bundle."""

        req = self._request(
            dry_run=dry_run, plan=plan, workers=workers, base_ref=base_ref, run_id=run_id,
            kind=kind, no_agents=no_agents,
        )  # fmt: skip
        d = _dict(pipeline.cmd_launch(self.ctx, req))
        return LaunchResult(
            d["run_id"], d["base_commit"], list(d["workers"]), d["run_dir"],
            list(d.get("pending", [])), d,
        )  # fmt: skip

    def import_patch(
        self, run_id: str, worker: str, patch: str | Path, *, summary: str | Path | None = None
    ) -> ImportResult:
        """Turn a patch file into ``worker``'s bundle (see ``factory bundle-import``)."""

        run_id = runref.resolve(self.ctx, run_id)
        d = _dict(
            importer.cmd_import(
                self.ctx, run_id, worker, Path(patch), Path(summary) if summary else None
            )
        )
        return ImportResult(d["run_id"], d["worker"], list(d["files"]), d["diff_sha256"], d)

    def validate(self, run_id: str, workers: list[str] | None = None) -> ValidationResult:
        """Judge the bundles (see ``factory bundle-validate``)."""

        run_id = runref.resolve(self.ctx, run_id)
        out = pipeline.cmd_validate(self.ctx, run_id, _selection(workers))
        d = _dict(out)
        return ValidationResult(
            run_id, str(out.status), dict(d.get("verdicts", {})), list(d.get("findings", [])),
            list(d.get("warnings", [])), list(d.get("overlaps", [])), d,
        )  # fmt: skip

    def integrate(
        self, run_id: str, workers: list[str] | None = None, *, keep_worktrees: bool = False
    ) -> RunResult:
        """Apply the validated bundles and run the checks (see ``factory integrate``)."""

        run_id = runref.resolve(self.ctx, run_id)
        out = pipeline.cmd_integrate(self.ctx, run_id, _selection(workers), keep_worktrees)
        return _run_result(out)

    def oneshot(
        self,
        *,
        dry_run: bool = False,
        plan: str | Path | None = None,
        workers: list[str] | None = None,
        base_ref: str | None = None,
        run_id: str | None = None,
        kind: str | None = None,
        wait: bool = False,
    ) -> RunResult:
        """preflight, launch, bundle-validate, integrate (see ``factory oneshot``)."""

        req = self._request(
            dry_run=dry_run, plan=plan, workers=workers, base_ref=base_ref, run_id=run_id, kind=kind
        )
        req.wait = wait
        return _run_result(pipeline.cmd_oneshot(self.ctx, req))

    def replay(self, run_id: str) -> ReplayResult:
        """Recompute every decision of a run from the ledger (see ``factory ledger-replay``)."""

        run_id = runref.resolve(self.ctx, run_id)
        d = _dict(replay.replay(self.ctx, run_id))
        return ReplayResult(run_id, bool(d["ok"]), list(d["divergences"]), d)

    def verify_ledger(self) -> VerifyResult:
        """Check the whole hash chain (see ``factory ledger verify``)."""

        d = _dict(ledgerview.verify(self.ctx))
        return VerifyResult(
            bool(d["ok"]), int(d["lines"]), dict(d["head"]), d.get("first_bad_seq"),
            str(d.get("reason", "")), d,
        )  # fmt: skip


def _selection(workers: list[str] | None) -> list[str] | None:
    """A worker selection, checked by the CLI's one rule (UsageError: empty, twice, bad ID)."""
    return select_workers(workers) if workers is not None else None


def _run_result(out: Outcome) -> RunResult:
    d = _dict(out)
    return RunResult(
        str(d.get("run_id") or ""), str(d["status"]), list(d.get("reasons", [])),
        list(d.get("stages", [])), d.get("report"), dict(d.get("ledger_head") or {}), d,
    )  # fmt: skip
