"""Plans: which workers exist, their task and their scope lock (allow / deny / shared globs).

Loading and checking a plan is :mod:`run.plans`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TypedDict

from tools.codex.factory.errors import UsageError
from tools.codex.factory.records.common import SCHEMA_VERSION

if sys.version_info >= (3, 11):
    from typing import NotRequired
else:  # pragma: no cover - Python 3.10
    from typing_extensions import NotRequired


class AgentDoc(TypedDict, total=False):
    """An agent spec as a plan or the config gives it (schemas/factory_config $defs.agent)."""

    preset: str
    argv: list[str]
    prompt_via: str
    timeout_s: float


class ScopeLockDoc(TypedDict):
    schema_version: int
    worker: str
    allow: list[str]
    deny: list[str]
    shared: list[str]


class PlanWorkerDoc(TypedDict):
    id: str
    task: str
    allow: list[str]
    deny: list[str]
    shared: list[str]
    depends_on: list[str]
    agent: NotRequired[AgentDoc]
    special: NotRequired[list[str]]


class PlanDoc(TypedDict):
    schema_version: int
    workers: list[PlanWorkerDoc]


@dataclass(frozen=True)
class WorkerPlan:
    id: str
    task: str
    allow: tuple[str, ...]
    deny: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    agent: AgentDoc | None = field(default=None, compare=False)
    # Where symlinks, gitlinks, .gitattributes and .gitmodules may change.
    special: tuple[str, ...] = ()

    def scope_lock(self) -> ScopeLockDoc:
        return {
            "schema_version": SCHEMA_VERSION,
            "worker": self.id,
            "allow": sorted(self.allow),
            "deny": sorted(self.deny),
            "shared": sorted(self.shared),
        }

    def as_dict(self) -> PlanWorkerDoc:
        out: PlanWorkerDoc = {
            "id": self.id,
            "task": self.task,
            "allow": sorted(self.allow),
            "deny": sorted(self.deny),
            "shared": sorted(self.shared),
            "depends_on": sorted(self.depends_on),
        }
        if self.agent is not None:
            out["agent"] = self.agent
        if self.special:  # absent when empty: a plan without it hashes as before
            out["special"] = sorted(self.special)
        return out


@dataclass(frozen=True)
class Plan:
    workers: tuple[WorkerPlan, ...]
    source: str

    def ids(self) -> list[str]:
        return [w.id for w in self.workers]

    def worker(self, wid: str) -> WorkerPlan:
        for w in self.workers:
            if w.id == wid:
                return w
        raise UsageError(f"worker {wid!r} is not in the plan ({', '.join(self.ids())})")

    def as_dict(self) -> PlanDoc:
        return {
            "schema_version": SCHEMA_VERSION,
            "workers": [w.as_dict() for w in self.workers],
        }

    def select(self, ids: list[str] | None) -> Plan:
        if ids is None:
            return self
        chosen = [self.worker(i) for i in ids]
        return Plan(tuple(sorted(chosen, key=lambda w: w.id)), self.source)
