"""The crank's approval gates, as the ledger records them: the settings a crank starts with
(``--gates``, ``crank.gates`` or the operator's answer to the question on a terminal), every
change (``factory gates``), every pause (``gate.awaiting``) and every approval or rejection with
who made it (``factory approve`` / ``factory reject``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tools.codex.factory.core import gates as core_gates
from tools.codex.factory.errors import BlockedError, UsageError
from tools.codex.factory.ledger.store import Event
from tools.codex.factory.records.manifest import Gates

ASKS = 3  # answers the crank asks for before it gives up (a usage error)


class AwaitingReview(BlockedError):
    """The crank paused at a gate set to review: it goes on after `factory approve`."""

    def __init__(self, gate: str, message: str) -> None:
        self.gate = gate
        super().__init__(message)


def resolve(text: str | None, configured: str | None, ask: Callable[[str], str] | None) -> Gates:
    """The gates a new crank starts with: given, configured, or asked (a terminal). There is
    no default: without a terminal and without settings it is a usage error."""
    if text:
        return core_gates.parse(text)
    if configured:
        return core_gates.parse(configured)
    if ask is None:
        raise UsageError(
            "gates: no settings for the spec, plan and ship gates and no terminal to ask on: "
            "give them, e.g. gates spec=auto,plan=review,ship=review (or crank.gates)"
        )
    for _ in range(ASKS):
        found = core_gates.interpret(ask(core_gates.QUESTION))
        if found is not None:
            return found
    raise UsageError("gates: the answers named no clear setting; give spec=..,plan=..,ship=..")


@dataclass
class GateState:
    """The gates of a crank as its events leave them."""

    gates: Gates
    awaiting: str | None  # the gate it waits at, if any
    approved: set[str]  # gates approved (or rejected: decided) since they last paused
    rejections: list[str]  # operators' feedback not yet given to the agents
    escalated: int | None = None  # the iteration the last escalation paused after
    verdicts: dict[int, str] | None = None  # escalation iteration -> approved | rejected

    @classmethod
    def of(cls, events: Sequence[Event]) -> GateState:
        start = next(e for e in events if e.event_type == "crank.started")
        gates = core_gates.parse(",".join(f"{k}={v}" for k, v in start.payload["gates"].items()))
        state = cls(gates, None, set(), [])
        for e in events:
            state.apply(e)
        return state

    def apply(self, e: Event) -> None:
        p = e.payload
        if e.event_type == "gate.changed":
            self.gates = core_gates.parse(",".join(f"{k}={v}" for k, v in p["gates"].items()))
        elif e.event_type == "gate.awaiting":
            self.awaiting = str(p["gate"])
            self.approved.discard(str(p["gate"]))
            if p["gate"] == "escalation":
                self.escalated = int(p["iteration"])
        elif e.event_type == "gate.passed":
            self.approved.add(str(p["gate"]))
        elif e.event_type == "gate.approved":
            self.awaiting = None
            if p["gate"] == "escalation":
                self.verdict("approved")
            else:
                self.approved.add(str(p["gate"]))
        elif e.event_type == "gate.rejected":
            # The feedback goes to the agents; a rejected spec or plan is decided (the work goes
            # on with it), a rejected ship is asked again at the next convergence.
            self.awaiting = None
            self.rejections.append(str(p["feedback"]))
            if p["gate"] == "escalation":
                self.verdict("rejected")
            elif p["gate"] != "ship":
                self.approved.add(str(p["gate"]))
        elif e.event_type == "iteration.decided":
            self.rejections = []  # given to the agents of that iteration (a rerun after a crash
            # gets them again)

    def verdict(self, how: str) -> None:
        if self.escalated is not None:
            self.verdicts = {**(self.verdicts or {}), self.escalated: how}

    def mode(self, gate: str) -> str:
        return str(getattr(self.gates, gate))


def operator_feedback(rejections: Sequence[str]) -> str:
    """The operators' rejections, as the next prompt shows them above the loop's feedback."""
    if not rejections:
        return ""
    parts = ["## The operator's feedback", ""]
    for text in rejections:
        parts += [text.strip(), ""]
    return "\n".join(parts)
