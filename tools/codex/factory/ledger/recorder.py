"""Run-scoped ledger events: every payload carries the actor and the run kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tools.codex.factory.ledger.store import Event, Ledger

Z_ACTOR = "Z_integrator"
OPERATOR = "operator"


@dataclass
class Recorder:
    ledger: Ledger
    run_id: str
    kind: str

    def emit(self, event_type: str, stage: str, actor: str = Z_ACTOR, **payload: Any) -> Event:
        body = {"actor": actor, "kind": self.kind, **payload}
        return self.ledger.append(event_type, self.run_id, stage, body)

    def run_events(self) -> list[Event]:
        return [e for e in self.ledger.events() if e.run_id == self.run_id]
