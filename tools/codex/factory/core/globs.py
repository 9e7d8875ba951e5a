"""Scope-lock globs for repository paths ('/'-separated, relative, normalised).

A scope lock decides which paths a worker may touch, so the syntax is small and strict
(no escapes, no braces, no negation) and a pattern that could never match a normalised path
is refused by :func:`validate_glob` instead of silently matching nothing.

Semantics (patterns are anchored: the whole path must match):

* ``*`` matches any run of characters (possibly empty) within one segment, never ``/``;
  ``?`` matches one character other than ``/``. There is no special case for dot files:
  ``src/*`` matches ``src/.env``.
* ``[abc]``, ``[a-z]``, ``[!abc]`` (or ``[^abc]``) match one character of (not of) the class,
  never ``/``; ``]`` first in a class is literal, as is ``-`` first or last. Use ``[*]``,
  ``[?]``, ``[[]`` to match those characters literally.
* ``**`` must be a whole segment. Leading or inner (``**/x.py``, ``a/**/b``) it matches zero
  or more whole segments: ``**/x.py`` matches ``x.py`` and ``a/b/x.py``; ``a/**/b`` matches
  ``a/b`` and ``a/x/y/b``. Trailing (``src/**``) it matches one or more segments: everything
  under ``src/`` but not a file named ``src`` itself. ``**`` alone matches every path.
* A trailing ``/`` means the directory and everything under it: ``scenarios/`` is
  ``scenarios/**``.
* A pattern without ``/`` is still anchored at the repository root: ``*.md`` matches
  ``README.md`` but not ``docs/a.md`` (write ``**/*.md`` for that).
* ``ignore_case=True`` matches case-insensitively (deny and protected lists use it, so a
  case-only variant cannot slip past them on a case-insensitive file system).

Refused (ValueError): empty, absolute (``/x``, ``C:x``), ``..``, ``.`` or empty segments,
backslashes, NUL, ``**`` inside a segment (``a**``), an unbalanced ``[``, an empty or reversed
class range.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

_DRIVE = re.compile(r"[A-Za-z]:")
_SEGMENT = "[^/]+"
_Bad = Callable[[str], ValueError]


def validate_glob(pattern: str) -> None:
    """Raise ValueError naming the problem if ``pattern`` is not a usable scope glob."""
    _translate(pattern)


def compile_glob(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """The anchored regular expression for ``pattern`` (cached); ValueError if invalid."""
    return _compile(pattern, ignore_case)


def match_any(path: str, patterns: Sequence[str], *, ignore_case: bool = False) -> str | None:
    """The first pattern matching ``path`` (for messages), or None."""
    for pattern in patterns:
        if _compile(pattern, ignore_case).fullmatch(path):
            return pattern
    return None


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(_translate(pattern), re.IGNORECASE if ignore_case else 0)


@functools.lru_cache(maxsize=4096)
def _translate(pattern: str) -> str:
    """Check ``pattern`` and turn it into a regular expression (without anchors)."""

    def bad(why: str) -> ValueError:
        return ValueError(f"glob {pattern!r}: {why}")

    if not pattern:
        raise bad("empty pattern")
    if "\\" in pattern:
        raise bad("backslash; use '/' to separate segments (there are no escapes)")
    if "\x00" in pattern:
        raise bad("contains NUL")
    if pattern.startswith("/") or _DRIVE.match(pattern):
        raise bad("absolute; patterns are relative to the repository root")
    segments = pattern.split("/")
    if segments[-1] == "":
        segments[-1] = "**"  # 'dir/' means the directory and everything under it
    for seg in segments:
        if seg == "":
            raise bad("empty segment ('//')")
        if seg in (".", ".."):
            raise bad(f"'{seg}' segment; paths are normalised")
        if "**" in seg and seg != "**":
            raise bad("'**' must be a whole segment (write 'a/**' or '**/b')")
    # consecutive '**' segments mean the same as one
    segments = [
        s for k, s in enumerate(segments) if not (s == "**" and segments[k - 1 : k] == ["**"])
    ]
    out: list[str] = []
    last = len(segments) - 1
    for k, seg in enumerate(segments):
        if seg == "**":
            if k == last:
                out.append(f"{_SEGMENT}(?:/{_SEGMENT})*")  # one or more segments
            else:
                out.append(f"(?:{_SEGMENT}/)*")  # zero or more segments, each with its '/'
            continue
        out.append(_segment(seg, bad))
        if k != last:
            out.append("/")
    return "".join(out)


def _segment(seg: str, bad: _Bad) -> str:
    """One segment's regex: '*', '?' and classes, never crossing '/'."""
    out: list[str] = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            cls, i = _char_class(seg, i, bad)
            out.append(cls)
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _char_class(seg: str, start: int, bad: _Bad) -> tuple[str, int]:
    """Translate the class opening at ``seg[start]``; return it and the index after ']'."""
    i = start + 1
    negate = i < len(seg) and seg[i] in "!^"
    if negate:
        i += 1
    body_start = i
    if i < len(seg) and seg[i] == "]":
        i += 1  # a leading ']' is literal
    while i < len(seg) and seg[i] != "]":
        i += 1
    if i >= len(seg):
        raise bad(f"unbalanced '[' at position {start + 1}")
    body = seg[body_start:i]
    parts: list[str] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = body[k], body[k + 2]
            if lo > hi:
                raise bad(f"reversed range '{lo}-{hi}' in class")
            parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
            k += 3
        else:
            parts.append(re.escape(body[k]))
            k += 1
    # The class never matches '/': paths are split there and a class is one segment's char.
    if negate:
        return f"[^/{''.join(parts)}]", i + 1
    return f"(?!/)[{''.join(parts)}]", i + 1
