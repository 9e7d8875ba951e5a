"""Canonical JSON bytes: the one serialisation used for ledger lines and artifacts."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from tools.codex.factory.core.text import strip_bom, utf16_kind
from tools.codex.factory.errors import UsageError

_LINE = orjson.OPT_SORT_KEYS
_PRETTY = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (a parser would silently keep the last)."""


class EncodingError(ValueError):
    """The document is not UTF-8 (PowerShell 5.1's ``>`` and ``Out-File`` write UTF-16)."""


class DepthError(ValueError):
    """A document nested deeper than any the factory reads (a recursion bomb)."""


# No document the factory reads nests beyond a handful of levels; a deeper one is refused
# before anything recursive (the duplicate-key pass, schema validation) walks it.
MAX_DEPTH = 64


def depth_ok(doc: Any, limit: int = MAX_DEPTH) -> bool:
    """Is ``doc`` nested at most ``limit`` levels deep? (Iterative: safe on any depth.)"""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if level > limit:
            return False
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return True


UTF16_FIX = (
    "save it as UTF-8 (PowerShell: `Out-File -Encoding utf8` or `Set-Content -Encoding utf8`)"
)


def canonical(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: equal values give equal bytes."""
    return orjson.dumps(obj, option=_LINE)


def pretty(obj: Any) -> bytes:
    """Artifact form: sorted, indented, newline-terminated, still deterministic."""
    return orjson.dumps(obj, option=_PRETTY) + b"\n"


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(f"duplicate key {key!r} in one object")
        seen[key] = value
    return seen


def loads_document(data: bytes, *, unique_keys: bool = False) -> Any:
    """Parse a JSON document as a file holds it: a leading UTF-8 BOM (Windows editors) is
    dropped. With ``unique_keys`` an object naming a key twice is refused rather than
    silently keeping the last value (operator-written files: config, plan).

    Raises ValueError: ``orjson.JSONDecodeError`` for bad JSON, :class:`DuplicateKeyError`,
    :class:`EncodingError` for UTF-16 text, :class:`DepthError` for nesting deeper than
    :data:`MAX_DEPTH`.
    """
    kind = utf16_kind(data)
    if kind is not None:
        raise EncodingError(f"the file is {kind}, not UTF-8: {UTF16_FIX}")
    data = strip_bom(data)
    doc = orjson.loads(data)  # the one JSON dialect: strict UTF-8, no NaN, no lone surrogates
    if not depth_ok(doc):
        raise DepthError(f"nested deeper than {MAX_DEPTH} levels")
    if unique_keys and b"{" in data:
        # orjson keeps the last of duplicate keys without telling; a second, checking pass
        # (only for small operator files: orjson alone stays the fast path elsewhere).
        json.loads(data.decode("utf-8"), object_pairs_hook=_refuse_duplicates)
    return doc


def read_json(path: Path, what: str = "", *, unique_keys: bool = False) -> Any:
    """Read a JSON file or raise a one-line error naming it.

    Only a regular file is read (a folder, FIFO or device is refused before opening, so a
    FIFO cannot hang the command). ``unique_keys``: see :func:`loads_document`.
    """
    label = what or str(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{label}: not a regular file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{label}: file not found") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        return loads_document(data, unique_keys=unique_keys)
    except EncodingError as exc:
        raise UsageError(f"{label}: {exc}") from None
    except (DuplicateKeyError, DepthError) as exc:
        raise UsageError(f"{label}: invalid JSON ({exc})") from None
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{label}: invalid JSON ({exc})") from None
