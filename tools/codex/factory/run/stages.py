"""Stage results, and the one place a stage's start and end are recorded (``stage.started`` /
``stage.finished``, through the run's recorder) with the one mapping of an error to a status."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.records.status import StatusName
from tools.codex.factory.records.validation import StageRow


@dataclass
class StageResult:
    stage: str
    status: StatusName
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def row(self) -> StageRow:
        return {"stage": self.stage, "status": self.status, "reason": self.reason}


def result_for(name: str, exc: BaseException) -> StageResult:
    """The stage's result for an error it raised: a BlockedError is BLOCKED, any other failure
    FAIL, never a traceback.

    UsageError raised inside a stage is an input problem found late (a bad bundle field, a
    plan that names no one): it blocks the run rather than aborting without a report.
    """
    if isinstance(exc, UsageError):
        return StageResult(name, "BLOCKED", str(exc))
    if isinstance(exc, FactoryError):
        return StageResult(name, "BLOCKED" if exc.exit_code == 3 else "FAIL", str(exc))
    return StageResult(name, "FAIL", f"internal error: {type(exc).__name__}: {exc}")


def run_stage(rec: Recorder | None, name: str, fn: Callable[[], StageResult]) -> StageResult:
    """Run one stage, recording its start and end; an error is its result (:func:`result_for`)."""
    if rec is not None:
        rec.stage_started(name)
    try:
        result = fn()
    except KeyboardInterrupt:
        interrupted(rec, name)
        raise
    except Exception as exc:  # an internal error must still be recorded and reported
        result = result_for(name, exc)
    return _end(rec, name, result)


def run_own_stage(
    rec: Recorder,
    name: str,
    fn: Callable[[], StageResult],
    end_run: Callable[[StageResult], None] | None,
) -> StageResult:
    """Run a stage whose command reports its errors itself (``launch``), recording its start
    and end like :func:`run_stage`; an error goes on to the command (its message, its exit code).

    Before it does, the failed stage's end is recorded and ``end_run(result)`` ends the run, as
    far as the ledger allows; with ``end_run=None`` (``launch --resume``) nothing is: the run
    stays open to be resumed again. Ctrl-C is recorded where it is handled, with
    ``run.interrupted`` (:func:`interrupted`).
    """
    rec.stage_started(name)
    try:
        result = fn()
    except Exception as exc:
        if end_run is not None:
            failed = result_for(name, exc)
            with contextlib.suppress(FactoryError, OSError):
                _end(rec, name, failed)
                end_run(failed)
        raise
    return _end(rec, name, result)


def _end(rec: Recorder | None, name: str, result: StageResult) -> StageResult:
    if rec is not None:
        rec.stage_finished(name, result.status, result.reason)
    return result


def ended(rec: Recorder | None, result: StageResult) -> StageResult:
    """Record the end of a stage that ran outside :func:`run_stage` (its start, if any, was
    recorded by another recorder or never: a launch refused before its run started, a summary
    whose report could not be written)."""
    return _end(rec, result.stage, result)


def interrupted(rec: Recorder | None, name: str) -> None:
    """Record that Ctrl-C stopped the stage (after ``run.interrupted``, where there is one)."""
    _end(rec, name, StageResult(name, "FAIL", "interrupted"))


def skipped(rec: Recorder | None, name: str, after: str) -> StageResult:
    return _end(rec, name, StageResult(name, "SKIPPED", f"skipped: {after} did not pass"))
