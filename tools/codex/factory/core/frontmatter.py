"""A small, strict reader for the frontmatter of markdown files (the lines between a first
``---`` line and the next one): ``key: value`` scalars and, where allowed, lists.

Not YAML: only what the factory's files need, and anything else is refused with the line and
the rule, never guessed. Understood:

* ``key: value`` -- a plain scalar (a `` #`` starts a comment, as in YAML), or quoted:
  ``"..."`` (escapes ``\\"`` and ``\\\\`` only) or ``'...'`` (``''`` is a quote);
* ``key: [a, b, "c"]`` -- a flow list, and ``key:`` followed by ``- item`` lines -- a block list
  (only for keys a caller allows lists for). List items may start with ``*`` (globs do); an
  item holding ``[``, ``{`` or ``}`` in a flow list must be quoted;
* blank lines and ``#`` comment lines.

Refused: a key twice, a line that is not ``key: value``, indentation outside a block list, tags,
anchors, block scalars (``|``, ``>``), flow mappings, and a plain value holding ``': '``.
Every value keeps its position so a writer can change one value and leave every other byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tools.codex.factory.core.text import clip, one_line

_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:(?:[ \t]+|$)")
_ITEM = re.compile(r"[ \t]*-(?:[ \t]+|$)")
_INDICATORS = "[]{}&*!|>%@`#,?"


class FrontmatterError(ValueError):
    """A frontmatter problem: ``line`` and the rule (the caller adds the file)."""

    def __init__(self, line: int, rule: str) -> None:
        self.line = line
        self.rule = rule
        super().__init__(f"line {line}: {rule}")


@dataclass(frozen=True)
class Line:
    """One line of a text: its number (from 1), its offset in the text, its characters without
    the line break."""

    number: int
    start: int
    text: str


@dataclass(frozen=True)
class Entry:
    """A frontmatter value: a scalar (``str``) with the span of its characters in the text, or a
    list of items."""

    key: str
    line: int
    value: str | tuple[str, ...]
    span: tuple[int, int] = (0, 0)


def split_lines(text: str) -> list[Line]:
    """The lines of ``text``, broken at ``\\n`` only (a ``\\r`` before it is part of the break,
    so CRLF files read the same)."""
    out: list[Line] = []
    start = 0
    for number, raw in enumerate(text.split("\n"), 1):
        body = raw[:-1] if raw.endswith("\r") else raw
        out.append(Line(number, start, body))
        start += len(raw) + 1
    return out


def read(
    lines: Sequence[Line], keys: Sequence[str], lists: Sequence[str] = ()
) -> tuple[dict[str, Entry], int]:
    """The entries of the frontmatter opening at ``lines[0]`` and the index of the first line
    after it. ``keys`` are the keys understood, ``lists`` those that may hold a list."""
    if not lines or lines[0].text.rstrip(" \t") != "---":
        raise FrontmatterError(1, "the file must start with a '---' line opening the frontmatter")
    entries: dict[str, Entry] = {}
    block: tuple[str, int, list[str]] | None = None  # an open block list: key, line, items
    for i, line in enumerate(lines[1:], 1):
        text = line.text
        if text.rstrip(" \t") in ("---", "..."):
            _close(block, entries)
            return entries, i + 1
        stripped = text.strip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        item = _ITEM.match(text)
        if item is not None:
            if block is None:
                raise FrontmatterError(line.number, f"list item {_show(text)} belongs to no key")
            block[2].append(_scalar(line, item.end(), list_item=True)[0])
            continue
        _close(block, entries)
        block = None
        key = _KEY.match(text)
        if key is None:
            raise FrontmatterError(line.number, f"{_show(text)} is not 'key: value'")
        name = key.group(1)
        if name not in keys:
            raise FrontmatterError(line.number, f"unknown key {name!r} (known: {', '.join(keys)})")
        if name in entries:
            raise FrontmatterError(line.number, f"key {name!r} is given twice")
        rest = text[key.end() :]
        if not rest.strip(" \t") or rest.lstrip(" \t").startswith("#"):
            if name not in lists:
                raise FrontmatterError(line.number, f"{name}: no value")
            block = (name, line.number, [])
        elif rest.startswith("["):
            if name not in lists:
                raise FrontmatterError(line.number, f"{name}: one value expected, not a list")
            entries[name] = Entry(name, line.number, _flow(line, key.end()))
        else:
            value, span = _scalar(line, key.end(), list_item=False)
            entries[name] = Entry(name, line.number, value, span)
    raise FrontmatterError(1, "the frontmatter opened here is never closed with a '---' line")


def _close(block: tuple[str, int, list[str]] | None, entries: dict[str, Entry]) -> None:
    if block is not None:
        entries[block[0]] = Entry(block[0], block[1], tuple(block[2]))


def _show(text: str) -> str:
    return repr(clip(one_line(text.strip()), 80))


def _scalar(line: Line, at: int, *, list_item: bool) -> tuple[str, tuple[int, int]]:
    """The scalar starting at column ``at`` of ``line`` and the span of its characters."""
    text = line.text
    first = text[at : at + 1]
    if first in ('"', "'"):
        value, inner, end = _quoted(line, at)
        _only_comment(line, end)
        return value, (line.start + inner[0], line.start + inner[1])
    cut = text.find(" #", at)
    cut = text.find("\t#", at) if cut < 0 else cut
    body = text[at : cut if cut >= 0 else len(text)].rstrip(" \t")
    if not body:
        raise FrontmatterError(line.number, "an empty list item" if list_item else "no value")
    if body[0] in _INDICATORS and not (list_item and body[0] == "*"):
        raise FrontmatterError(
            line.number, f"{_show(body)}: quote a value starting with {body[0]!r}"
        )
    if ": " in body or body.endswith(":"):
        raise FrontmatterError(line.number, f"{_show(body)}: quote a value holding ': '")
    return body, (line.start + at, line.start + at + len(body))


def _quoted(line: Line, at: int) -> tuple[str, tuple[int, int], int]:
    """A quoted scalar at column ``at``: its value, the columns inside the quotes, the column
    after the closing quote."""
    text, quote = line.text, line.text[at]
    out: list[str] = []
    k = at + 1
    while k < len(text):
        c = text[k]
        if quote == "'" and c == "'":
            if text[k + 1 : k + 2] == "'":
                out.append("'")
                k += 2
                continue
            return "".join(out), (at + 1, k), k + 1
        if quote == '"' and c == "\\":
            nxt = text[k + 1 : k + 2]
            if nxt not in ('"', "\\"):
                raise FrontmatterError(
                    line.number, f"escape '\\{nxt}' is not understood (only \\\" and \\\\)"
                )
            out.append(nxt)
            k += 2
            continue
        if quote == '"' and c == '"':
            return "".join(out), (at + 1, k), k + 1
        out.append(c)
        k += 1
    raise FrontmatterError(line.number, f"the {quote} quote is never closed")


def _only_comment(line: Line, at: int) -> None:
    rest = line.text[at:]
    if rest.strip(" \t") and not re.match(r"[ \t]+#", rest):
        raise FrontmatterError(line.number, f"{_show(rest)} after the closing quote")


def _flow(line: Line, at: int) -> tuple[str, ...]:
    """A one-line flow list ``[a, "b", c]`` starting at column ``at``."""
    text = line.text
    items: list[str] = []
    k = at + 1
    while True:
        while text[k : k + 1] in (" ", "\t"):
            k += 1
        if text[k : k + 1] == "]" and not items:
            k += 1
            break
        if text[k : k + 1] in ('"', "'"):
            value, _inner, k = _quoted(line, k)
        else:
            end = k
            while end < len(text) and text[end] not in ",]":
                end += 1
            value = text[k:end].strip(" \t")
            if not value:
                raise FrontmatterError(line.number, "an empty item in the list")
            if any(c in value for c in "[{}\"'"):
                raise FrontmatterError(
                    line.number, f"{_show(value)}: quote a list item holding [ {{ }} or quotes"
                )
            k = end
        items.append(value)
        while text[k : k + 1] in (" ", "\t"):
            k += 1
        sep = text[k : k + 1]
        k += 1
        if sep == "]":
            break
        if sep != ",":
            raise FrontmatterError(line.number, "a list must be closed with ']' on the same line")
    _only_comment(line, k)
    return tuple(items)
