"""Read a worker's DIFF.patch and report every path it really touches.

FILES_CHANGED.json is the worker's claim; the patch is what ``git apply`` will do. The
validator compares the two, so this parser follows git's own reading of a patch (``apply.c``)
rather than grepping for ``+++`` lines:

* file sections start at ``diff --git`` (or, for plain unified diffs, a ``---``/``+++`` pair);
  leading text (mail headers, commit message, diffstat) is skipped as ``git apply`` does;
* names come from ``rename``/``copy`` lines, ``---``/``+++`` lines or ``Binary files`` lines
  and must agree with the ``diff --git`` header, which is only trusted where it is unambiguous
  (unquoted names with spaces are resolved the way git does: both halves equal);
* hunks are skipped by the line counts in their ``@@`` header, so a content line that looks
  like a header (``--- a/evil``) is never read as one; ``GIT binary patch`` blocks are skipped
  by their encoded line lengths;
* one leading path component is stripped (``a/``, ``b/``: ``git apply -p1``); paths are
  otherwise returned exactly (``../x`` stays ``../x``): judging them is the validator's job.

After a file section only another file header, blank lines, a mail signature (``-- ``) or the
next mail or commit (``From <sha>``, ``commit <sha>``) may follow: other text there is an error,
not something to skip. Not supported (errors): combined merge diffs, plain diffs whose ``---``
and ``+++`` names differ, paths that are not UTF-8. ``--no-prefix`` patches are read as
``git apply`` reads them, with their first component stripped.

Anything that cannot be read unambiguously raises :class:`PatchParseError` naming the line;
no other exception escapes :func:`parse` for any input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["added", "deleted", "modified", "renamed", "copied", "mode"]

# A header longer than this is refused: git paths are bounded (PATH_MAX) and resolving an
# unquoted header tries every space, which must stay cheap on hostile input.
MAX_HEADER = 16384

_HUNK = re.compile(rb"@@ -(\d{1,10})(?:,(\d{1,10}))? \+(\d{1,10})(?:,(\d{1,10}))? @@(?: .*)?")
_MODE = re.compile(rb"[0-7]{6}")
_INDEX = re.compile(rb"index ([0-9a-f]{4,64})\.\.([0-9a-f]{4,64})(?: ([0-7]{6}))?")
_SIMILARITY = re.compile(rb"(\d{1,3})%")
_BINARY_BLOCK = re.compile(rb"(literal|delta) (\d{1,20})")
_MAIL_START = re.compile(rb"From [0-9a-f]{40} ")
_LOG_START = re.compile(rb"commit [0-9a-f]{40}(?: |$)")
_BASE85 = frozenset(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~"
)
_ESCAPES = {
    ord("a"): 7,
    ord("b"): 8,
    ord("t"): 9,
    ord("n"): 10,
    ord("v"): 11,
    ord("f"): 12,
    ord("r"): 13,
    ord('"'): 34,
    ord("\\"): 92,
}
_DEV_NULL = b"/dev/null"


class PatchParseError(ValueError):
    """The patch cannot be read unambiguously; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class FileChange:
    """One file section of a patch.

    ``raw`` is the section's exact bytes, from its first header line through its last hunk,
    binary or header line (trailing blank lines and mail signatures are not part of it), so
    identical changes compare byte-for-byte and sections can be re-joined into a patch.
    ``old_path`` is None for an added file, ``new_path`` None for a deleted one; ``status``
    "mode" means only the mode changed.
    """

    old_path: str | None
    new_path: str | None
    status: Status
    binary: bool = False
    old_mode: str | None = None
    new_mode: str | None = None
    similarity: int | None = None
    raw: bytes = field(default=b"", repr=False)

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path this section touches: both sides of a rename or copy."""
        sides = [p for p in (self.old_path, self.new_path) if p is not None]
        return tuple(dict.fromkeys(sides))


@dataclass
class Patch:
    """All file sections of one patch, in patch order."""

    files: list[FileChange] = field(default_factory=list)

    def touched(self) -> list[str]:
        """Sorted unique paths the patch touches (what FILES_CHANGED must equal)."""
        return sorted({p for f in self.files for p in f.paths})

    def sections_by_path(self) -> dict[str, bytes]:
        """Each touched path -> the raw bytes of every section touching it, in patch order."""
        out: dict[str, bytes] = {}
        for f in self.files:
            for p in f.paths:
                out[p] = out.get(p, b"") + f.raw
        return {p: out[p] for p in sorted(out)}


def parse(data: bytes) -> Patch:
    """Parse patch bytes; raise PatchParseError (and nothing else) if they cannot be read."""
    return _Parser(data).run()


class _Bad(Exception):
    """A name could not be read; the caller adds the line number."""


def _show(raw: bytes, limit: int = 60) -> str:
    text = raw.decode("utf-8", errors="backslashreplace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _unquote(s: bytes) -> tuple[bytes, int]:
    """Decode a C-style quoted name at the start of ``s``; return it and the end index."""
    out = bytearray()
    i, n = 1, len(s)
    while i < n:
        c = s[i]
        if c == 0x22:  # closing quote
            return bytes(out), i + 1
        if c != 0x5C:
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break
        e = s[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif 0x30 <= e <= 0x33 and i + 3 < n and all(0x30 <= d <= 0x37 for d in s[i + 2 : i + 4]):
            out.append(int(s[i + 1 : i + 4], 8))
            i += 4
        else:
            raise _Bad(f"bad escape '\\{chr(e)}' in quoted path")
    raise _Bad("unterminated quoted path")


def _check_unquoted(name: bytes) -> bytes:
    # git quotes any name holding a control character, so an unquoted one (a stray '\r'
    # from a CRLF mangle, a tab) means the patch was not written by git as it stands.
    if any(c < 0x20 or c == 0x7F for c in name):
        raise _Bad(f"unquoted path {_show(name)} contains a control character")
    return name


def _one_name(s: bytes) -> bytes | None:
    """``s`` as exactly one name (quoted, or unquoted to the end), else None."""
    if s.startswith(b'"'):
        try:
            value, end = _unquote(s)
        except _Bad:
            return None
        return value if end == len(s) else None
    return s or None


def _pairs(rest: bytes, sep: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every way to read ``rest`` as two names separated by ``sep`` (raw, unquoted)."""
    if rest.startswith(b'"'):
        try:
            first, end = _unquote(rest)
        except _Bad:
            return
        if rest[end : end + len(sep)] == sep:
            second = _one_name(rest[end + len(sep) :])
            if second is not None:
                yield first, second
        return
    start = 0
    while (k := rest.find(sep, start)) != -1:
        second = _one_name(rest[k + len(sep) :])
        if k and second is not None:
            yield rest[:k], second
        start = k + 1


def _strip1(name: bytes) -> bytes | None:
    """Drop one leading component as ``git apply -p1`` does; None if there is none."""
    k = name.find(b"/")
    if k <= 0 or k == len(name) - 1:
        return None
    return name[k + 1 :]


def _strip_pair(a: bytes, b: bytes) -> tuple[bytes | None, bytes | None] | None:
    """Strip both names of a ``Binary files`` line (``/dev/null`` -> None); None if one cannot be."""
    sa = None if a == _DEV_NULL else _strip1(a)
    sb = None if b == _DEV_NULL else _strip1(b)
    if (sa is None and a != _DEV_NULL) or (sb is None and b != _DEV_NULL):
        return None
    return sa, sb


def _header_pairs(rest: bytes) -> list[tuple[bytes, bytes]]:
    """Every (old, new) reading of a ``diff --git`` header, prefixes stripped."""
    out = []
    for a, b in _pairs(rest, b" "):
        sa, sb = _strip1(a), _strip1(b)
        if sa is not None and sb is not None:
            out.append((sa, sb))
    return out


def _line_name(rest: bytes) -> bytes | None:
    """The name on a ``---``/``+++`` line: quoted, or up to a TAB; None for /dev/null."""
    if rest.startswith(b'"'):
        value, end = _unquote(rest)
        if end != len(rest) and rest[end : end + 1] != b"\t":
            raise _Bad(f"text after quoted path: {_show(rest[end:])}")
    else:
        value = _check_unquoted(rest.split(b"\t", 1)[0])
    if value == _DEV_NULL:
        return None
    stripped = _strip1(value)
    if stripped is None:
        raise _Bad(f"path {_show(value)} has no leading 'a/' or 'b/' component to strip")
    return stripped


def _full_name(rest: bytes) -> bytes:
    """A name on a ``rename``/``copy`` line: the whole rest of the line, no prefix."""
    if rest.startswith(b'"'):
        value, end = _unquote(rest)
        if end != len(rest):
            raise _Bad(f"text after quoted path: {_show(rest[end:])}")
        return value
    if not rest:
        raise _Bad("empty path")
    return _check_unquoted(rest)


def _check_base85(line: bytes) -> bool:
    """A ``GIT binary patch`` data line: length letter, then exactly that many bytes' worth."""
    if not line or not (0x41 <= line[0] <= 0x5A or 0x61 <= line[0] <= 0x7A):
        return False
    n = line[0] - 0x40 if line[0] <= 0x5A else line[0] - 0x61 + 27
    body = line[1:]
    return len(body) == (n + 3) // 4 * 5 and all(c in _BASE85 for c in body)


@dataclass
class _Header:
    """Extended header lines of one ``diff --git`` section."""

    old_mode: bytes | None = None
    new_mode: bytes | None = None
    new_file: bytes | None = None
    deleted: bytes | None = None
    rename_from: bytes | None = None
    rename_to: bytes | None = None
    copy_from: bytes | None = None
    copy_to: bytes | None = None
    similarity: int | None = None
    index_mode: bytes | None = None
    seen: set[str] = field(default_factory=set)


_EXT_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"old mode ", "old_mode"),
    (b"new mode ", "new_mode"),
    (b"new file mode ", "new_file"),
    (b"deleted file mode ", "deleted"),
    (b"rename from ", "rename_from"),
    (b"rename old ", "rename_from"),
    (b"rename to ", "rename_to"),
    (b"rename new ", "rename_to"),
    (b"copy from ", "copy_from"),
    (b"copy to ", "copy_to"),
    (b"similarity index ", "similarity"),
    (b"dissimilarity index ", "dissimilarity"),
    (b"index ", "index"),
)


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        pieces = data.split(b"\n")
        self.lines = [p + b"\n" for p in pieces[:-1]]
        if pieces[-1]:
            self.lines.append(pieces[-1])
        self.offsets: list[int] = []
        pos = 0
        for line in self.lines:
            self.offsets.append(pos)
            pos += len(line)
        self.offsets.append(pos)
        self.n = len(self.lines)
        self.i = 0
        self.files: list[FileChange] = []

    # -- helpers ---------------------------------------------------------------------------
    def text(self, i: int) -> bytes:
        """Line ``i`` without its line end (``\\n`` or ``\\r\\n``)."""
        line = self.lines[i]
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        return line

    def peek(self, i: int) -> bytes | None:
        return self.text(i) if i < self.n else None

    def fail(self, i: int, message: str) -> PatchParseError:
        return PatchParseError(i + 1, message)

    def decode(self, i: int, name: bytes) -> str:
        try:
            return name.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(i, f"path {_show(name)} is not valid UTF-8") from None

    # -- top level -------------------------------------------------------------------------
    def run(self) -> Patch:
        strict = False  # after a file section only headers, blank lines or mail trailers
        while self.i < self.n:
            t = self.text(self.i)
            nxt = self.peek(self.i + 1)
            if t.startswith(b"diff --git "):
                self.git_section()
                strict = True
            elif t.startswith(b"--- ") and nxt is not None and nxt.startswith(b"+++ "):
                self.plain_section()
                strict = True
            elif t.startswith(b"@@ -"):
                raise self.fail(self.i, "hunk header without a file header before it")
            elif t.startswith((b"diff --cc ", b"diff --combined ")):
                raise self.fail(self.i, "combined (merge) diffs are not supported")
            elif t in (b"-- ", b"--") or _MAIL_START.match(t) or _LOG_START.match(t):
                strict = False  # mail signature or the next commit: free text follows
                self.i += 1
            elif not t.strip():
                self.i += 1
            elif strict and not (
                t.startswith(b"diff ") and nxt is not None and nxt.startswith(b"--- ")
            ):
                raise self.fail(
                    self.i, f"expected a file header ('diff --git', '---') but found {_show(t)}"
                )
            else:
                self.i += 1
        if not self.files and self.data.strip():
            raise self.fail(0, "no file header ('diff --git' or a '---'/'+++' pair) found")
        return Patch(self.files)

    # -- sections --------------------------------------------------------------------------
    def git_section(self) -> None:
        start = self.i
        rest = self.text(start)[len(b"diff --git ") :]
        if len(rest) > MAX_HEADER:
            raise self.fail(start, f"'diff --git' header is longer than {MAX_HEADER} bytes")
        self.i += 1
        h = self.extended_header()
        minus: tuple[int, bytes | None] | None = None
        plus: tuple[int, bytes | None] | None = None
        binary_line: tuple[int, bytes] | None = None
        binary = hunks = False
        t = self.peek(self.i)
        if t is not None and t.startswith(b"--- "):
            nxt = self.peek(self.i + 1)
            if nxt is None or not nxt.startswith(b"+++ "):
                raise self.fail(self.i + 1, "expected a '+++' line after the '---' line")
            minus = (self.i, self.name_at(self.i, _line_name, t[4:]))
            plus = (self.i + 1, self.name_at(self.i + 1, _line_name, nxt[4:]))
            self.i += 2
            t = self.peek(self.i)
            if t is None or not t.startswith((b"GIT binary patch", b"Binary files ")):
                self.hunks()
                hunks = True
                t = None
        if t is not None and t == b"GIT binary patch":
            self.binary_block()
            binary = True
        elif t is not None and t.startswith(b"Binary files ") and t.endswith(b" differ"):
            if len(t) > MAX_HEADER:
                raise self.fail(self.i, f"'Binary files' line is longer than {MAX_HEADER} bytes")
            binary_line = (self.i, t[len(b"Binary files ") : -len(b" differ")])
            binary = True
            self.i += 1
        self.finish_git(start, rest, h, minus, plus, binary_line, binary, hunks)

    def finish_git(
        self,
        start: int,
        rest: bytes,
        h: _Header,
        minus: tuple[int, bytes | None] | None,
        plus: tuple[int, bytes | None] | None,
        binary_line: tuple[int, bytes] | None,
        binary: bool,
        hunks: bool,
    ) -> None:
        """Resolve the names from every source and insist they agree with each other."""
        status: Status
        added = h.new_file is not None or (minus is not None and minus[1] is None)
        deleted = h.deleted is not None or (plus is not None and plus[1] is None)
        if added and deleted:
            raise self.fail(start, "file section both creates and deletes the file")
        if h.new_file is not None and minus is not None and minus[1] is not None:
            raise self.fail(minus[0], "expected '--- /dev/null' for a new file")
        if h.deleted is not None and plus is not None and plus[1] is not None:
            raise self.fail(plus[0], "expected '+++ /dev/null' for a deleted file")
        for a, b, kind in (
            (h.rename_from, h.rename_to, "rename"),
            (h.copy_from, h.copy_to, "copy"),
        ):
            if (a is None) != (b is None):
                raise self.fail(start, f"'{kind} from' and '{kind} to' must come together")
        if h.rename_from is not None and h.copy_from is not None:
            raise self.fail(start, "file section is both a rename and a copy")
        header_pairs = _header_pairs(rest)
        old: bytes | None
        new: bytes | None
        if h.rename_from is not None or h.copy_from is not None:
            if added or deleted:
                raise self.fail(start, "a rename or copy cannot also create or delete the file")
            is_rename = h.rename_from is not None
            old = h.rename_from if is_rename else h.copy_from
            new = h.rename_to if is_rename else h.copy_to
            status = "renamed" if is_rename else "copied"
        else:
            names = {n for src in (minus, plus) if src is not None and (n := src[1]) is not None}
            if len(names) > 1:
                raise self.fail(start, "'---' and '+++' name different files without a rename")
            candidates = [a for a, b in header_pairs if a == b]
            if names:
                name = names.pop()
            elif binary_line is not None:
                name = self.binary_name(binary_line, candidates)
            elif candidates:
                name = candidates[0]  # git's choice: the first split with equal halves
            else:
                raise self.fail(
                    start, f"cannot resolve the paths in 'diff --git {_show(rest)[1:-1]}'"
                )
            old = None if added else name
            new = None if deleted else name
            if added:
                status = "added"
            elif deleted:
                status = "deleted"
            elif h.old_mode is not None and h.new_mode is not None and not hunks and not binary:
                status = "mode"
            else:
                status = "modified"
        assert old is not None or new is not None
        expect = (old if old is not None else new, new if new is not None else old)
        if expect not in header_pairs:
            raise self.fail(start, f"'diff --git' header does not name {self.describe(old, new)}")
        for src, want in ((minus, old), (plus, new)):
            if src is not None and src[1] is not None and src[1] != want:
                raise self.fail(
                    src[0], f"path {_show(src[1])} does not match the 'diff --git' header"
                )
        if binary_line is not None:
            pairs = {
                p
                for a, b in _pairs(binary_line[1], b" and ")
                if (p := _strip_pair(a, b)) is not None
            }
            if (old, new) not in pairs:
                raise self.fail(
                    binary_line[0], "'Binary files' line does not match the 'diff --git' header"
                )
        old_mode = h.old_mode or h.deleted or h.index_mode
        new_mode = h.new_mode or h.new_file or h.index_mode
        self.files.append(
            FileChange(
                old_path=None if old is None else self.decode(start, old),
                new_path=None if new is None else self.decode(start, new),
                status=status,
                binary=binary,
                old_mode=None if old_mode is None or added else old_mode.decode(),
                new_mode=None if new_mode is None or deleted else new_mode.decode(),
                similarity=h.similarity,
                raw=self.data[self.offsets[start] : self.offsets[self.i]],
            )
        )

    def binary_name(self, binary_line: tuple[int, bytes], candidates: list[bytes]) -> bytes:
        """The one name a ``Binary files X and Y differ`` line and the header agree on."""
        names: list[bytes] = []
        for a, b in _pairs(binary_line[1], b" and "):
            pair = _strip_pair(a, b)
            if pair is None or (pair[0] is not None and pair[1] is not None and pair[0] != pair[1]):
                continue
            name = pair[0] if pair[0] is not None else pair[1]
            if name is not None and name in candidates and name not in names:
                names.append(name)
        if not names:
            raise self.fail(binary_line[0], "cannot resolve the path in the 'Binary files' line")
        return names[0]

    @staticmethod
    def describe(old: bytes | None, new: bytes | None) -> str:
        if old is not None and new is not None and old != new:
            return f"{_show(old)} -> {_show(new)}"
        name = old if old is not None else new
        return _show(name or b"")

    def name_at(self, i: int, reader: Callable[[bytes], bytes | None], rest: bytes) -> bytes | None:
        try:
            return reader(rest)
        except _Bad as exc:
            raise self.fail(i, str(exc)) from None

    def extended_header(self) -> _Header:
        h = _Header()
        while self.i < self.n:
            t = self.text(self.i)
            found = next(((p, k) for p, k in _EXT_PREFIXES if t.startswith(p)), None)
            if found is None:
                return h
            prefix, key = found
            if key in ("old_mode", "new_mode", "new_file", "deleted") or key.startswith(
                ("rename", "copy")
            ):
                if key in h.seen:
                    raise self.fail(self.i, f"duplicate {_show(prefix.strip())} line")
                h.seen.add(key)
            value = t[len(prefix) :]
            if key in ("old_mode", "new_mode", "new_file", "deleted"):
                if not _MODE.fullmatch(value):
                    raise self.fail(self.i, f"bad file mode {_show(value)}")
                setattr(h, key, value)
            elif key.startswith(("rename", "copy")):
                setattr(h, key, self.name_at(self.i, _full_name, value))
            elif key in ("similarity", "dissimilarity"):
                m = _SIMILARITY.fullmatch(value)
                if m is None or int(m[1]) > 100:
                    raise self.fail(self.i, f"bad {key} index {_show(value)}")
                if key == "similarity":
                    h.similarity = int(m[1])
            else:
                m = _INDEX.fullmatch(t)
                if m is None:
                    raise self.fail(self.i, f"bad index line {_show(t)}")
                h.index_mode = m[3]
            self.i += 1
        return h

    def plain_section(self) -> None:
        """A unified diff without ``diff --git``: names from ``---``/``+++`` only."""
        start = self.i
        old = self.name_at(start, _line_name, self.text(start)[4:])
        new = self.name_at(start + 1, _line_name, self.text(start + 1)[4:])
        self.i += 2
        if old is None and new is None:
            raise self.fail(start, "both '---' and '+++' are /dev/null")
        if old is not None and new is not None and old != new:
            raise self.fail(
                start, f"'---' and '+++' name different files ({_show(old)}, {_show(new)})"
            )
        self.hunks()
        status: Status = "added" if old is None else "deleted" if new is None else "modified"
        self.files.append(
            FileChange(
                old_path=None if old is None else self.decode(start, old),
                new_path=None if new is None else self.decode(start + 1, new),
                status=status,
                raw=self.data[self.offsets[start] : self.offsets[self.i]],
            )
        )

    # -- bodies ----------------------------------------------------------------------------
    def hunks(self) -> None:
        """One or more hunks, each exactly as long as its ``@@`` header says."""
        t = self.peek(self.i)
        if t is None or not t.startswith(b"@@"):
            found = "the end of the patch" if t is None else _show(t)
            raise self.fail(self.i, f"expected a hunk header '@@ -a,b +c,d @@' but found {found}")
        while t is not None and t.startswith(b"@@"):
            self.hunk()
            t = self.peek(self.i)

    def hunk(self) -> None:
        head = self.i
        m = _HUNK.fullmatch(self.text(head))
        if m is None:
            raise self.fail(head, f"malformed hunk header {_show(self.text(head))}")
        old = 1 if m[2] is None else int(m[2])
        new = 1 if m[4] is None else int(m[4])
        self.i += 1
        while old > 0 or new > 0:
            if self.i >= self.n:
                raise self.fail(
                    head,
                    f"truncated hunk: the patch ends with {old} old and {new} new lines still due",
                )
            line = self.lines[self.i]
            c = line[:1]
            if c == b" " or line in (b"\n", b"\r\n"):  # an empty line is empty context
                if old == 0 or new == 0:
                    raise self.hunk_mismatch(head, "context")
                old -= 1
                new -= 1
            elif c == b"-":
                if old == 0:
                    raise self.hunk_mismatch(head, "'-'")
                old -= 1
            elif c == b"+":
                if new == 0:
                    raise self.hunk_mismatch(head, "'+'")
                new -= 1
            elif c != b"\\":
                raise self.fail(
                    self.i,
                    f"truncated hunk (header at line {head + 1} wants {old} old and {new} new "
                    f"lines more) but found {_show(self.text(self.i))}",
                )
            self.i += 1
        while self.i < self.n and self.lines[self.i].startswith(b"\\"):
            self.i += 1

    def hunk_mismatch(self, head: int, kind: str) -> PatchParseError:
        return self.fail(
            self.i, f"{kind} line does not fit the counts of the hunk header at line {head + 1}"
        )

    def binary_block(self) -> None:
        """``GIT binary patch``: a forward and an optional reverse literal/delta block."""
        self.i += 1
        for block in range(2):
            t = self.peek(self.i)
            if t is None or _BINARY_BLOCK.fullmatch(t) is None:
                if block == 0:
                    raise self.fail(
                        self.i, "expected 'literal N' or 'delta N' after 'GIT binary patch'"
                    )
                return
            self.i += 1
            while (t := self.peek(self.i)) is not None and t.strip():
                if not _check_base85(t):
                    raise self.fail(self.i, f"malformed binary patch data {_show(t)}")
                self.i += 1
            if t is not None:
                self.i += 1  # the blank line closing the block
