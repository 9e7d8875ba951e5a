"""What a command hands back to the CLI: a status, its JSON data, the view and messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tools.codex.factory.records.status import Status, exit_code


@dataclass
class Outcome:
    """What a command hands back to the CLI: a status, JSON data and how to word it.

    ``view`` names how the CLI words the data (``cli.render``), with ``view_inputs`` for what
    the text shows beyond the JSON data: the library builds no terminal text of its own.
    """

    status: Status
    data: dict[str, Any] | list[Any]
    view: str
    view_inputs: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return exit_code(self.status)
