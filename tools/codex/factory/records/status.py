"""Statuses, exit codes and the result every stage returns."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    PASS = "PASS"
    BLOCKED = "BLOCKED"
    FAIL = "FAIL"
    SKIPPED = "SKIPPED"
    PENDING = "PENDING"

    def __str__(self) -> str:
        return self.value


EXIT_CODES: dict[Status, int] = {
    Status.PASS: 0,
    Status.FAIL: 1,
    Status.BLOCKED: 3,
    Status.SKIPPED: 0,
    Status.PENDING: 0,
}
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def exit_code(status: Status) -> int:
    return EXIT_CODES[status]


def worst(statuses: list[Status]) -> Status:
    """FAIL beats BLOCKED beats PASS: the run is as good as its worst stage."""
    if Status.FAIL in statuses:
        return Status.FAIL
    if Status.BLOCKED in statuses:
        return Status.BLOCKED
    if Status.PENDING in statuses:
        return Status.PENDING
    return Status.PASS


@dataclass
class Outcome:
    """What a command hands back to the CLI: a status, JSON data and human text."""

    status: Status
    data: dict[str, Any] | list[Any]
    text: str = ""
    messages: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return exit_code(self.status)
