"""Stage results and the wrapper that records ``stage.started`` / ``stage.finished``."""

from __future__ import annotations

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


def run_stage(rec: Recorder | None, name: str, fn: Callable[[], StageResult]) -> StageResult:
    """Run one stage; a BlockedError is BLOCKED, any other failure is FAIL, never a traceback.

    UsageError raised inside a stage is an input problem found late (a bad bundle field, a
    plan that names no one): it blocks the run rather than aborting without a report.
    """
    if rec is not None:
        rec.stage_started(name)
    try:
        result = fn()
    except UsageError as exc:
        result = StageResult(name, "BLOCKED", str(exc))
    except FactoryError as exc:
        result = StageResult(name, "BLOCKED" if exc.exit_code == 3 else "FAIL", str(exc))
    except KeyboardInterrupt:
        if rec is not None:
            rec.stage_finished(name, "FAIL", "interrupted")
        raise
    except Exception as exc:  # an internal error must still be recorded and reported
        result = StageResult(name, "FAIL", f"internal error: {type(exc).__name__}: {exc}")
    if rec is not None:
        rec.stage_finished(name, result.status, result.reason)
    return result


def skipped(rec: Recorder | None, name: str, after: str) -> StageResult:
    result = StageResult(name, "SKIPPED", f"skipped: {after} did not pass")
    if rec is not None:
        rec.stage_finished(name, "SKIPPED", result.reason)
    return result
