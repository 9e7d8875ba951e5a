"""The run-bound recorder: every run event goes through it, and it alone emits ``stage.*`` and
``run.finished`` (whose status it derives with :func:`core.decisions.final_verdict`, the function
replay recomputes it with). Every payload carries the actor and the run kind."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tools.codex.factory.core import decisions
from tools.codex.factory.ledger.store import Event, Ledger
from tools.codex.factory.records.status import StatusName
from tools.codex.factory.records.validation import StageRow, Violation

Z_ACTOR = "Z_integrator"
OPERATOR = "operator"


@dataclass
class Recorder:
    ledger: Ledger
    run_id: str
    kind: str
    current: str = "summary"  # the stage under way (for events any stage may raise)

    def emit(self, event_type: str, stage: str, actor: str = Z_ACTOR, **payload: Any) -> Event:
        body = {"actor": actor, "kind": self.kind, **payload}
        return self.ledger.append(event_type, self.run_id, stage, body)

    def stage_started(self, stage: str) -> Event:
        self.current = stage
        return self.emit("stage.started", stage)

    def stage_finished(self, stage: str, status: StatusName, reason: str = "") -> Event:
        return self.emit("stage.finished", stage, status=status, reason=reason)

    def run_finished(
        self,
        rows: Sequence[StageRow],
        violations: Sequence[Violation] = (),
    ) -> tuple[str, list[str]]:
        """Record the run's end; its status and reasons come from the stage rows alone."""
        status, reasons = decisions.final_verdict(rows, violations)
        self.emit(
            "run.finished",
            "summary",
            status=status,
            reasons=reasons,
            stages=[dict(r) for r in rows],
        )
        return status, reasons

    def policy_violation(self, path: str, reason: str) -> Event:
        return self.emit("policy.violation", self.current, path=path, reason=reason)
