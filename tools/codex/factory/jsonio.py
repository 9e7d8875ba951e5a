"""Canonical JSON bytes: the one serialisation used for ledger lines and artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tools.codex.factory.errors import UsageError

_LINE = orjson.OPT_SORT_KEYS
_PRETTY = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2


def canonical(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: equal values give equal bytes."""
    return orjson.dumps(obj, option=_LINE)


def pretty(obj: Any) -> bytes:
    """Artifact form: sorted, indented, newline-terminated, still deterministic."""
    return orjson.dumps(obj, option=_PRETTY) + b"\n"


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def read_json(path: Path, what: str = "") -> Any:
    """Read a JSON file or raise a one-line error naming it."""
    label = what or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{label}: file not found") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot read ({exc.strerror})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{label}: invalid JSON ({exc})") from None
