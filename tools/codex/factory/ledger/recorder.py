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
# Written by this recorder's own methods alone: a stage's start and end, and the run's end.
RESERVED = frozenset({"stage.started", "stage.finished", "run.finished"})


@dataclass
class Recorder:
    ledger: Ledger
    run_id: str
    kind: str
    current: str = "summary"  # the stage under way (for events any stage may raise)

    def emit(self, event_type: str, stage: str, actor: str = Z_ACTOR, **payload: Any) -> Event:
        """Record any event but the reserved ones (:data:`RESERVED`), which have their own
        methods: no caller can write a stage's end or the run's end in a shape of its own."""
        if event_type in RESERVED:
            raise ValueError(
                f"{event_type} is written by Recorder.stage_started, stage_finished and "
                "run_finished alone"
            )
        return self._append(event_type, stage, actor, payload)

    def _append(self, event_type: str, stage: str, actor: str, payload: dict[str, Any]) -> Event:
        body = {"actor": actor, "kind": self.kind, **payload}
        return self.ledger.append(event_type, self.run_id, stage, body)

    def stage_started(self, stage: str) -> Event:
        self.current = stage
        return self._append("stage.started", stage, Z_ACTOR, {})

    def stage_finished(self, stage: str, status: StatusName, reason: str = "") -> Event:
        return self._append("stage.finished", stage, Z_ACTOR, {"status": status, "reason": reason})

    def run_finished(
        self,
        rows: Sequence[StageRow],
        violations: Sequence[Violation] = (),
    ) -> tuple[str, list[str]]:
        """Record the run's end; its status and reasons come from the stage rows alone."""
        status, reasons = decisions.final_verdict(rows, violations)
        payload = {"status": status, "reasons": reasons, "stages": [dict(r) for r in rows]}
        self._append("run.finished", "summary", Z_ACTOR, payload)
        return status, reasons

    def policy_violation(self, path: str, reason: str) -> Event:
        return self.emit("policy.violation", self.current, path=path, reason=reason)
