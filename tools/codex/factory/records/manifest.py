"""Crank manifests: units of work, their dependencies, the execution groups that order them, each
unit's scope, the approval gates, and what the escalation rules read per unit.

Parsing and checking them is :mod:`core.manifest`, :mod:`core.gates` and :mod:`core.escalation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

STATUSES = ("pending", "in_progress", "completed", "failed")
MODES = ("parallel", "sequential")

GateMode = Literal["auto", "review", "skip"]


@dataclass(frozen=True)
class Unit:
    """One unit of work as the manifest lists it; ``after`` names the units it depends on."""

    id: str
    title: str
    done: bool
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    """An execution group: its units run together (``parallel``) or one by one."""

    number: int
    mode: str  # parallel | sequential
    units: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    """A whole manifest; ``threshold`` is the exact fraction (numerator, denominator)."""

    title: str
    status: str  # see STATUSES
    threshold: tuple[int, int]
    max_iterations: int
    units: tuple[Unit, ...]
    groups: tuple[Group, ...]


@dataclass(frozen=True)
class UnitScope:
    """A unit's scope lock, from the frontmatter of its spec (``units/<id>.md``)."""

    unit: str
    allow: tuple[str, ...]
    deny: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()
    agent: str | None = None  # an agent preset name


@dataclass(frozen=True)
class Gates:
    """The approval gates: after the spec, after the plan, before shipping."""

    spec: GateMode
    plan: GateMode
    ship: GateMode


class UnitDoc(TypedDict):
    id: str
    title: str
    done: bool
    after: list[str]


class GroupDoc(TypedDict):
    number: int
    mode: str
    units: list[str]


class ManifestDoc(TypedDict):
    """The JSON form (schemas/crank_manifest.schema.json); ``threshold`` as decimal text."""

    schema_version: int
    title: str
    status: str
    threshold: str
    max_iterations: int
    units: list[UnitDoc]
    groups: list[GroupDoc]


class UnitAttempt(TypedDict):
    """One iteration's outcome for one unit, as recorded: the unit ID and its worker ID both."""

    iteration: int
    unit: str
    worker: str
    passed: bool
    signature: str  # the failure signature (core.symptoms.signature); "" when passed
