"""Statuses and their exit codes (0 PASS, 1 FAIL, 2 usage, 3 BLOCKED)."""

from __future__ import annotations

import enum
from typing import Literal

# A status as written in artifacts and events: typed, so mypy checks every literal.
StatusName = Literal["PASS", "BLOCKED", "FAIL", "SKIPPED", "PENDING"]


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
