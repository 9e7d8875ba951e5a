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
  case-only variant cannot slip past them on a case-insensitive file system). Two characters
  are equal when their full Unicode case foldings (``str.casefold``) are; a class or range
  holds a character when it holds any character with the same folding (``[a-z]`` matches
  ``K``). Folding is per character, so ``?`` still matches ``ß`` and a case-insensitive match
  is never narrower than the case-sensitive one.

Refused (ValueError): empty, absolute (``/x``, ``C:x``), ``..``, ``.`` or empty segments,
backslashes, NUL, ``**`` inside a segment (``a**``), an unbalanced ``[``, an empty or reversed
class range.

Matching never backtracks: plan globs are hostile input, so the work for one path is bounded
by a constant times ``(len(path) + 1) * (len(pattern) + 1)`` (a dynamic program over segments
for ``**``, and a single-restart scan within a segment for ``*``).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_DRIVE = re.compile(r"[A-Za-z]:")
_Bad = Callable[[str], ValueError]


class _Wild(enum.Enum):
    """The one-character wildcard and the in-segment star."""

    ANY = "?"
    STAR = "*"


@dataclass(frozen=True, slots=True)
class _Class:
    """A bracket class; ``singles`` holds (folded) characters, ``ranges`` the raw bounds."""

    negate: bool
    singles: frozenset[str]
    ranges: tuple[tuple[str, str], ...]
    fold: bool

    @property
    def cost(self) -> int:
        """Elementary steps of one membership test (for the work bound)."""
        return 1 + len(self.ranges)

    def has(self, char: str) -> bool:
        """Whether the class matches ``char`` (already folded when ``fold``)."""
        hit = char in self.singles
        if not hit and self.ranges:
            candidates = _unfold(char) if self.fold else (char,)
            hit = any(lo <= c <= hi for lo, hi in self.ranges for c in candidates)
        return hit != self.negate


_Token = str | _Wild | _Class
# A segment is a tuple of tokens; ``None`` stands for a '**' segment.
_Item = tuple[_Token, ...] | None


@dataclass(frozen=True, slots=True)
class CompiledGlob:
    """A validated glob, ready to match paths in time linear in path times pattern length."""

    pattern: str
    ignore_case: bool
    _items: tuple[_Item, ...] = field(repr=False, compare=False)
    # per item: its text when it has no wildcard (str, or folded characters when ignoring case)
    _literals: tuple[Sequence[str] | None, ...] = field(repr=False, compare=False)
    # fewest path segments that can match, and whether more are allowed (some '**')
    _min_segments: int = field(repr=False, compare=False)
    _open: bool = field(repr=False, compare=False)
    # literal segments then one trailing '**' ('src/**', 'a/b/'): how many, and their texts
    _prefix: int = field(repr=False, compare=False)
    _head: tuple[Sequence[str], ...] = field(repr=False, compare=False)

    def match(self, path: str) -> bool:
        """Whether the whole of ``path`` matches the pattern."""
        return _hit(self, path, _texts(path, self.ignore_case))


def validate_glob(pattern: str) -> None:
    """Raise ValueError naming the problem if ``pattern`` is not a usable scope glob."""
    _compile(pattern, False)


def compile_glob(pattern: str, *, ignore_case: bool = False) -> CompiledGlob:
    """The compiled matcher for ``pattern`` (cached); ValueError if invalid."""
    return _compile(pattern, ignore_case)


def match_any(path: str, patterns: Sequence[str], *, ignore_case: bool = False) -> str | None:
    """The first pattern matching ``path`` (for messages), or None. The path is split (and
    folded) once for all the patterns, and only patterns its first segment can start are
    tried (a literal first segment that differs is a certain mismatch)."""
    if not patterns:
        return None
    pats = tuple(patterns)
    plan = _plan(pats, ignore_case)
    texts = _texts(path, ignore_case)
    if plan is None:  # an invalid pattern: tried in order, raising where it is reached
        return next(
            (p for p in pats if _match_steps(_compile(p, ignore_case), path, texts)[0]), None
        )
    by_first, anywhere = plan
    listed = by_first.get(texts[0], ())
    for i in sorted(listed + anywhere) if listed and anywhere else listed or anywhere:
        if _hit(_compile(pats[i], ignore_case), path, texts):
            return pats[i]
    return None


_Plan = tuple[dict[object, tuple[int, ...]], tuple[int, ...]]


@functools.lru_cache(maxsize=1024)
def _plan(patterns: tuple[str, ...], ignore_case: bool) -> _Plan | None:
    """The patterns (by index) a path can match, by the path's first segment: those whose
    first segment is that literal text, and those whose first segment is not literal (always
    tried). None when a pattern is invalid."""
    by_first: dict[object, list[int]] = {}
    anywhere: list[int] = []
    for i, pattern in enumerate(patterns):
        try:
            first = _compile(pattern, ignore_case)._literals[0]
        except ValueError:
            return None
        if first is None:
            anywhere.append(i)
        else:
            by_first.setdefault(first, []).append(i)
    return {k: tuple(v) for k, v in by_first.items()}, tuple(anywhere)


def _texts(path: str, ignore_case: bool) -> list[Sequence[str]]:
    """``path``'s segments as matching reads them: folded per character when ignoring case
    (an ASCII character folds to its lower case, one character)."""
    raws = path.split("/")
    if not ignore_case:
        return list(raws)
    return [tuple(raw.lower()) if raw.isascii() else tuple(map(str.casefold, raw)) for raw in raws]


# -- matching --------------------------------------------------------------------------------
def _hit(glob: CompiledGlob, path: str, texts: Sequence[Sequence[str]]) -> bool:
    """Whether ``path`` (read as ``texts``) matches: a glob of literal segments and a
    trailing '**' by comparing its first segments (what :func:`_match_steps` concludes for
    it: those segments equal, then one or more non-empty ones), any other by the program."""
    k = glob._prefix
    if k:
        return len(texts) > k and tuple(texts[:k]) == glob._head and all(texts[k:])
    return _match_steps(glob, path, texts)[0]


def _match_steps(
    glob: CompiledGlob, path: str, texts: Sequence[Sequence[str]] | None = None
) -> tuple[bool, int]:
    """Match ``path``; also return the elementary steps taken (tests bound the work with it).

    A dynamic program over path segments: ``alive[j]`` says the segments read so far can be
    matched by the first ``j`` pattern items. Each (segment, item) pair is examined once and
    costs at most ``(len(segment) + 1) * (len(item) + 1)`` steps, so the total stays under
    ``7 * (len(path) + 1) * (len(pattern) + 1)``: every loop iteration below counts a step.
    """
    items, literals = glob._items, glob._literals
    n = len(items)
    last = n - 1
    if texts is None:
        texts = _texts(path, glob.ignore_case)
    steps = len(path) + 1
    if len(texts) < glob._min_segments or (len(texts) > glob._min_segments and not glob._open):
        return False, steps
    first = literals[0]
    if first is not None and first != texts[0]:
        # A literal first item is the only one alive at the first segment (only '**' lets
        # later items start): a different first segment is the loop's first-round rejection.
        return False, steps + 2 + len(texts[0])
    alive = [False] * (n + 1)
    alive[0] = True
    _skip_star_stars(items, alive)
    for text in texts:
        steps += 1 + len(text)  # folding
        nxt = [False] * (n + 1)
        any_alive = False
        for j, item in enumerate(items):
            steps += 1
            if not alive[j]:
                continue
            if item is None:  # '**' takes one more non-empty segment
                if text:
                    nxt[j] = True
                    if j == last:  # trailing '**': one segment is already enough
                        nxt[n] = True
                    any_alive = True
            else:
                literal = literals[j]
                if literal is not None:
                    ok, used = literal == text, 1 + len(text)
                else:
                    ok, used = _match_segment(item, text)
                steps += used
                if ok:
                    nxt[j + 1] = any_alive = True
        if not any_alive:
            return False, steps
        _skip_star_stars(items, nxt)
        steps += n
        alive = nxt
    return alive[n], steps


def _skip_star_stars(items: tuple[_Item, ...], alive: list[bool]) -> None:
    """A leading or inner '**' may match zero segments (a trailing one may not)."""
    for j in range(len(items) - 1):
        if alive[j] and items[j] is None:
            alive[j + 1] = True


def _match_segment(tokens: tuple[_Token, ...], text: Sequence[str]) -> tuple[bool, int]:
    """Match one segment; return the result and the steps taken.

    The classic single-restart scan: on a mismatch only the latest ``*`` takes one more
    character. Every restart moves that star's start right, so there are at most
    ``len(text) + 1`` runs; a run tests each token at most once, and a class test costs
    ``1 + ranges`` (no more than its bracketed text), so a run takes at most the segment
    pattern's length + 1 steps.
    """
    p = t = steps = 0
    star_p, star_t = -1, 0
    n_tok, n_text = len(tokens), len(text)
    while p < n_tok or t < n_text:
        steps += 1
        if p < n_tok:
            tok = tokens[p]
            if tok is _Wild.STAR:
                star_p, star_t = p, t
                p += 1
                continue
            if t < n_text:
                if isinstance(tok, str):
                    ok = tok == text[t]
                elif isinstance(tok, _Class):
                    steps += tok.cost
                    ok = tok.has(text[t])
                else:  # '?'
                    ok = True
                if ok:
                    p += 1
                    t += 1
                    continue
        if star_p >= 0 and star_t < n_text:
            star_t += 1
            p, t = star_p + 1, star_t
            continue
        return False, steps
    return True, steps


@functools.lru_cache(maxsize=1)
def _fold_table() -> dict[str, tuple[str, ...]]:
    """Every character whose case folding differs from itself, keyed by that folding."""
    table: dict[str, list[str]] = {}
    for cp in range(0x110000):
        ch = chr(cp)
        folded = ch.casefold()
        if folded != ch:
            table.setdefault(folded, []).append(ch)
    return {k: tuple(v) for k, v in table.items()}


def _unfold(folded: str) -> tuple[str, ...]:
    """All characters whose case folding is ``folded``."""
    own = (folded,) if len(folded) == 1 and folded.casefold() == folded else ()
    return own + _fold_table().get(folded, ())


# -- compiling -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _compile(pattern: str, ignore_case: bool) -> CompiledGlob:
    items = _parse(pattern, ignore_case)
    literals = tuple(_literal(item, ignore_case) for item in items)
    fixed = sum(item is not None for item in items)
    trailing = items[-1] is None
    prefix = fixed if trailing and fixed and all(x is not None for x in literals[:-1]) else 0
    return CompiledGlob(
        pattern,
        ignore_case,
        items,
        literals,
        _min_segments=fixed + trailing,
        _open=any(item is None for item in items),
        _prefix=prefix,
        _head=tuple(x for x in literals[:prefix] if x is not None),
    )


def _literal(item: _Item, fold: bool) -> Sequence[str] | None:
    """The segment's text if it has no wildcard: a str, or a tuple of folded characters."""
    if item is None or not all(isinstance(tok, str) for tok in item):
        return None
    chars = [tok for tok in item if isinstance(tok, str)]
    return tuple(chars) if fold else "".join(chars)


def _parse(pattern: str, fold: bool) -> tuple[_Item, ...]:
    """Check ``pattern`` and turn it into segment items (``None`` for '**')."""

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
    return tuple(None if seg == "**" else _segment(seg, fold, bad) for seg in segments)


def _segment(seg: str, fold: bool, bad: _Bad) -> tuple[_Token, ...]:
    """One segment's tokens: '*', '?', classes and (folded) literal characters."""
    out: list[_Token] = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            out.append(_Wild.STAR)
            i += 1
        elif c == "?":
            out.append(_Wild.ANY)
            i += 1
        elif c == "[":
            cls, i = _char_class(seg, i, fold, bad)
            out.append(cls)
        else:
            out.append(c.casefold() if fold else c)
            i += 1
    return tuple(out)


def _char_class(seg: str, start: int, fold: bool, bad: _Bad) -> tuple[_Class, int]:
    """Parse the class opening at ``seg[start]``; return it and the index after ']'."""
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
    singles: set[str] = set()
    ranges: list[tuple[str, str]] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = body[k], body[k + 2]
            if lo > hi:
                raise bad(f"reversed range '{lo}-{hi}' in class")
            ranges.append((lo, hi))
            k += 3
        else:
            singles.add(body[k].casefold() if fold else body[k])
            k += 1
    # The class never matches '/': paths are split there before any class is tried.
    return _Class(negate, frozenset(singles), tuple(dict.fromkeys(ranges)), fold), i + 1
