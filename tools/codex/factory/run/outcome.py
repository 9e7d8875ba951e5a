"""What a command hands back to the CLI: a status, its JSON data, human text and messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tools.codex.factory.records.status import Status, exit_code


@dataclass
class Outcome:
    """What a command hands back to the CLI: a status, JSON data and human text.

    ``view`` names how the CLI words the data (``cli.render``), with ``view_inputs`` for what
    the text shows beyond the JSON data; without a view, ``text`` is the text.
    """

    status: Status
    data: dict[str, Any] | list[Any]
    text: str = ""
    messages: list[str] = field(default_factory=list)
    view: str = ""
    view_inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return exit_code(self.status)
