"""What a command hands back to the CLI: a status, its JSON data, human text and messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tools.codex.factory.records.status import Status, exit_code


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
