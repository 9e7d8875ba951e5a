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
  like a header (``--- a/evil``) is never read as one; ``GIT binary patch`` blocks are decoded
  as git decodes them (their lines must end in a bare LF, as git requires);
* one leading path component is stripped (``a/``, ``b/``: ``git apply -p1``); paths are
  otherwise returned exactly (``../x`` stays ``../x``): judging them is the validator's job.

After a file section only another file header, blank lines, a mail signature (``-- ``) or the
next mail or commit (``From <sha>``, ``commit <sha>``) may follow: other text there is an error,
not something to skip. Not supported (errors): combined merge diffs, plain diffs whose ``---``
and ``+++`` names differ, paths that are not UTF-8, modes git does not write, header lines git
reads in an order-dependent way (two mode lines for one side), a type change inside one section.
``--no-prefix`` patches are read as ``git apply`` reads them, with their first component
stripped.

This parser is one of two readers: :func:`git_view` renders its reading the way
``git apply --numstat --summary`` prints a patch, for comparison with git's own reading
(``infra.gitops.apply_view``). Where the two differ, the patch is ambiguous.

Anything that cannot be read unambiguously raises :class:`PatchParseError` naming the line;
no other exception escapes :func:`parse` for any input. Bounded: lines are split as they are
reached (memory is what the sections keep), and a caller's line and file-section limits stop
reading with :class:`PatchLimitError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from tools.codex.factory.core import gitbinary
from tools.codex.factory.core.gitview import GitSection, GitView, split_summary

Status = Literal["added", "deleted", "modified", "renamed", "copied", "mode"]

# A header longer than this is refused: git paths are bounded (PATH_MAX) and resolving an
# unquoted header tries every space, which must stay cheap on hostile input.
MAX_HEADER = 16384

_HUNK = re.compile(rb"@@ -(\d{1,10})(?:,(\d{1,10}))? \+(\d{1,10})(?:,(\d{1,10}))? @@(?: .*)?")
_MODE = re.compile(rb"[0-7]{6}")
# The modes git writes. Others (100664, 040000) are refused: newer gits rewrite them on
# reading (canon_mode), so git's own report of them would depend on its version.
_MODE_TYPE = {b"100644": "file", b"100755": "file", b"120000": "symlink", b"160000": "gitlink"}
_MODES = frozenset(_MODE_TYPE)
_INDEX = re.compile(rb"index ([0-9a-f]{4,64})\.\.([0-9a-f]{4,64})(?: ([0-7]{6}))?")
# git's has_epoch_timestamp: GNU diff -N marks a created/deleted file with the epoch.
_EPOCH = re.compile(
    rb"(1969-12-31|1970-01-01) ([0-2][0-9]):([0-5][0-9]):00(?:\.0+)? "
    rb"([-+])([0-2][0-9]):?([0-5][0-9])\n"
)
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
# Whitespace as ``bytes.strip`` sees it: a run of blank lines is skipped at once (one class,
# no group, so the regex engine keeps no state per line).
_SPACE_RUN = re.compile(rb"[ \t\n\r\x0b\x0c]*")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


class PatchParseError(ValueError):
    """The patch cannot be read unambiguously; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class PatchLimitError(PatchParseError):
    """The patch has more lines or file sections than the caller allows, so it was not read
    (further); ``rule`` names the limit finding, the message says which limit."""

    def __init__(self, line: int, rule: str, message: str) -> None:
        ValueError.__init__(self, message)
        self.line = line
        self.rule = rule


@dataclass(frozen=True)
class FileChange:
    """One file section of a patch.

    ``raw`` is the section's exact bytes, from its first header line through its last hunk,
    binary or header line (trailing blank lines and mail signatures are not part of it), so
    identical changes compare byte-for-byte and sections can be re-joined into a patch.
    ``old_path`` is None for an added file, ``new_path`` None for a deleted one; ``status``
    "mode" means only the mode changed.

    What git needs to report the section as it would (see :func:`git_view`): its line counts
    (``added_lines``, ``deleted_lines``, and each hunk header's old/new counts), the
    ``dissimilarity`` of a rewrite, and ``plain`` for a section without ``diff --git``.

    What the validator needs to judge content that is not plain text: ``symlink_target`` (the
    bytes a mode 120000 section gives the link, decoded; None when the section does not give
    it new content), ``gitlink`` for a mode 160000 side, ``old_oid``/``new_oid`` from the
    ``index`` line, and for a ``GIT binary patch`` its forward block: ``binary_kind``,
    ``binary_size`` (declared, inflated) and ``binary_data`` (decoded, still deflated).
    """

    old_path: str | None
    new_path: str | None
    status: Status
    binary: bool = False
    old_mode: str | None = None
    new_mode: str | None = None
    similarity: int | None = None
    raw: bytes = field(default=b"", repr=False)
    dissimilarity: int | None = None
    added_lines: int = 0
    deleted_lines: int = 0
    hunk_counts: tuple[tuple[int, int], ...] = ()
    plain: bool = False
    symlink_target: str | None = None
    gitlink: bool = False
    old_oid: str | None = None
    new_oid: str | None = None
    binary_kind: Literal["literal", "delta"] | None = None
    binary_size: int | None = None
    binary_data: bytes | None = field(default=None, repr=False)

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path this section touches: both sides of a rename or copy."""
        sides = [p for p in (self.old_path, self.new_path) if p is not None]
        return tuple(dict.fromkeys(sides))


@dataclass
class Patch:
    """All file sections of one patch, in patch order.

    ``stray`` describes the first non-blank text that is not part of a ``diff --git`` section
    (leading or trailing text, mail headers and signatures, a plain ``---``/``+++`` section),
    with its line number; None when the patch is nothing but ``diff --git`` sections, as
    ``git diff`` writes it. Alone, git skips such text as we do; after another patch it could
    read it as more header lines of that patch's last section.
    """

    files: list[FileChange] = field(default_factory=list)
    stray: str | None = None

    def touched(self) -> list[str]:
        """Sorted unique paths the patch touches (what FILES_CHANGED must equal)."""
        return sorted({p for f in self.files for p in f.paths})

    def sections_by_path(self) -> dict[str, bytes]:
        """Each touched path -> the raw bytes of every section touching it, in patch order
        (joined once: many sections of one path must not be re-copied for each)."""
        out: dict[str, list[bytes]] = {}
        for f in self.files:
            for p in f.paths:
                out.setdefault(p, []).append(f.raw)
        return {p: b"".join(out[p]) for p in sorted(out)}


def parse(data: bytes, max_lines: int | None = None, max_files: int | None = None) -> Patch:
    """Parse patch bytes; raise PatchParseError (and nothing else) if they cannot be read.

    With ``max_lines`` a longer patch is not read at all, with ``max_files`` reading stops
    where one more file section would start: both raise :class:`PatchLimitError`.
    """
    return _Parser(data, max_files).run(max_lines)


def may_exceed(data: bytes, max_lines: int | None, max_files: int | None) -> bool:
    """Whether :func:`parse` may refuse ``data`` on a limit, from counts alone: its lines, and
    the lines that could start a file section (at least as many as the sections). Such a
    patch is not shown to git before we read it: the limits bound our work, not git's."""
    if max_lines is not None and _Lines(data).count > max_lines:
        return True
    if max_files is None:
        return False
    heads = (b"diff --git ", b"--- ")
    starts = data.startswith(heads) + sum(data.count(b"\n" + h) for h in heads)
    return starts > max_files


def git_view(patch: Patch) -> GitView:
    """What ``git apply --numstat --summary -z`` (and ``-R --numstat -z``) would print if git
    read the patch as we did: compare it with ``gitops.apply_view`` of the same bytes.

    Rendered as ``apply.c`` renders it (numstat_patch_list, summary_patch_list,
    show_rename_copy): numstat names are raw with ``-z``; summary names are never quoted.
    """
    sections = []
    summary: list[str] = []
    for f in patch.files:
        name = f.new_path if f.new_path is not None else f.old_path
        old_name = f.old_path if f.old_path is not None else f.new_path
        assert name is not None and old_name is not None
        counts = (None, None) if f.binary else (f.added_lines, f.deleted_lines)
        sections.append(GitSection(name, old_name, *counts))
        summary.extend(_summary_lines(f))
    text = "".join(line + "\n" for line in summary)
    return GitView(sections=tuple(sections), summary=split_summary(text))


def _summary_lines(f: FileChange) -> list[str]:
    """apply.c summary_patch_list for one section."""
    is_new, is_delete = f.status == "added", f.status == "deleted"
    if f.plain and f.status == "modified":
        # A plain section's create/delete is undecided (-1, which prints as true) until git
        # reads the target file, unless old lines or a second hunk settle it.
        multi = len(f.hunk_counts) > 1
        is_new = not (sum(o for o, _ in f.hunk_counts) or multi)
        is_delete = not (sum(n for _, n in f.hunk_counts) or multi)
    if is_new:
        return [_mode_name("create", f.new_mode, f.new_path or "")]
    if is_delete:
        return [_mode_name("delete", f.old_mode, f.old_path or "")]
    score = f.similarity if f.similarity is not None else f.dissimilarity or 0
    out = []
    if f.status in ("renamed", "copied"):
        assert f.old_path is not None and f.new_path is not None
        kind = "rename" if f.status == "renamed" else "copy"
        out.append(_rename_copy(kind, f.old_path, f.new_path, score))
    elif score:
        out.append(f" rewrite {f.new_path} ({score}%)")
    elif f.old_mode and f.new_mode and f.old_mode != f.new_mode:
        return [f" mode change {f.old_mode} => {f.new_mode} {f.new_path}"]
    if f.old_mode and f.new_mode and f.old_mode != f.new_mode:
        out.append(f" mode change {f.old_mode} => {f.new_mode}")
    return out


def _mode_name(kind: str, mode: str | None, name: str) -> str:
    return f" {kind} mode {mode} {name}" if mode else f" {kind} {name}"


def _rename_copy(kind: str, old: str, new: str, score: int) -> str:
    """show_rename_copy: a common leading-directory prefix is written once, ``p/{a => b}``."""
    o = n = 0
    while True:
        so, sn = old.find("/", o), new.find("/", n)
        if so < 0 or sn < 0 or so - o != sn - n or old[o:so] != new[n:sn]:
            break
        o, n = so + 1, sn + 1
    if o:
        return f" {kind} {old[:o]}{{{old[o:]} => {new[n:]}}} ({score}%)"
    return f" {kind} {old} => {new} ({score}%)"


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
    if _CONTROL.search(name):
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


def _epoch(rest: bytes) -> bool:
    """git's has_epoch_timestamp on a ``---``/``+++`` line (after the marker, with its end)."""
    end = rest.find(b"\n")
    tab = rest.rfind(b"\t", 0, end if end != -1 else len(rest))
    if tab == -1:
        return False
    m = _EPOCH.match(rest, tab + 1)
    if m is None:
        return False
    epoch_hour = 24 if m[1] == b"1969-12-31" else 0
    zone = int(m[5]) * 60 + int(m[6])
    if m[4] == b"-":
        zone = -zone
    return int(m[2]) * 60 + int(m[3]) - zone == epoch_hour * 60


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
    dissimilarity: int | None = None
    index_mode: bytes | None = None
    old_oid: bytes | None = None
    new_oid: bytes | None = None
    seen: set[str] = field(default_factory=set)


@dataclass
class _Body:
    """What the hunks of one section hold: header counts, '+' line indexes, other lines."""

    counts: list[tuple[int, int]] = field(default_factory=list)
    added: int = 0
    deleted: int = 0
    context: int = 0
    # The first '+' line (a symlink's target) and whether a '\\' marker follows it.
    first_added: bytes | None = None
    first_added_at: int = -1
    first_added_cut: bool = False


@dataclass(frozen=True)
class _Binary:
    kind: Literal["literal", "delta"]
    size: int
    data: bytes


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
_EXT_KEYS = dict(_EXT_PREFIXES)
# The prefixes are distinct at their start, so at most one alternative matches a line.
_EXT_START = re.compile(b"|".join(re.escape(p) for p, _ in _EXT_PREFIXES))


class _Lines:
    """A patch's lines, split as the parser reaches them.

    Only the offsets of the last few lines reached are kept, so parsing holds what the file
    sections keep and never a list of every line (a patch of two million newlines costs no
    memory). ``count`` is the number of lines; line ``count`` starts at the end of the data.
    """

    KEEP = 8

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.count = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        self.first = 0  # the line that starts at starts[0]
        self.starts = [0]

    def start(self, i: int) -> int:
        """The offset line ``i`` starts at."""
        self._reach(i)
        return self.starts[i - self.first]

    def __getitem__(self, i: int) -> bytes:
        k = i - self.first
        starts = self.starts
        if k < 0 or k + 1 >= len(starts):
            self._reach(i + 1)
            k = i - self.first
            starts = self.starts
        return self.data[starts[k] : starts[k + 1]]

    def skip_blank(self, i: int) -> int:
        """The first line after blank line ``i`` that is not blank (or the end)."""
        start = self.start(i)
        run = _SPACE_RUN.match(self.data, start)
        assert run is not None  # the pattern matches the empty string
        end = self.data.rfind(b"\n", start, run.end()) + 1  # after the last whole blank line
        skipped = self.data.count(b"\n", start, end)
        if skipped <= 1:
            return i + 1
        self.first, self.starts = i + skipped, [end]
        return self.first

    def jump(self, i: int, start: int, before: int) -> None:
        """Line ``i`` starts at ``start`` and line ``i - 1`` at ``before`` (a caller walked
        the bytes to there); only those two are kept."""
        if i > self.first + len(self.starts) - 1:
            self.first, self.starts = i - 1, [before, start]

    def _reach(self, i: int) -> None:
        if i < self.first:
            raise IndexError(f"line {i + 1} is no longer kept")  # a parser bug, never input
        last = self.first + len(self.starts) - 1
        if i <= last:
            return
        data, starts = self.data, self.starts
        while last < i:
            end = data.find(b"\n", starts[-1])
            starts.append(len(data) if end == -1 else end + 1)
            last += 1
        drop = len(starts) - self.KEEP
        if drop > self.KEEP:
            del starts[:drop]
            self.first += drop


class _Parser:
    def __init__(self, data: bytes, max_files: int | None = None) -> None:
        self.data = data
        self.lines = _Lines(data)
        self.n = self.lines.count
        self.i = 0
        self.files: list[FileChange] = []
        self.stray: str | None = None
        self.max_files = max_files
        self.begin = 0  # the offset the file section being read starts at
        self._text_at, self._text = -1, b""

    # -- helpers ---------------------------------------------------------------------------
    def text(self, i: int) -> bytes:
        """Line ``i`` without its line end (``\\n`` or ``\\r\\n``); the last one asked is
        kept (a header line is looked at several times)."""
        if i == self._text_at:
            return self._text
        line = self.lines[i]
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        self._text_at, self._text = i, line
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

    def section_start(self) -> None:
        """A file section starts at line ``i``: one more than ``max_files`` is not read."""
        if self.max_files is not None and len(self.files) >= self.max_files:
            raise PatchLimitError(
                self.i + 1,
                "patch-too-many-files",
                f"more than {self.max_files} file sections (limits.max_patch_files; the next "
                f"one starts at line {self.i + 1})",
            )
        self.begin = self.lines.start(self.i)

    def raw(self) -> bytes:
        """The bytes of the file section read so far."""
        return self.data[self.begin : self.lines.start(self.i)]

    # -- top level -------------------------------------------------------------------------
    def run(self, max_lines: int | None = None) -> Patch:
        if max_lines is not None and self.n > max_lines:
            raise PatchLimitError(
                max_lines + 1,
                "patch-too-many-lines",
                f"{self.n} lines: over the limit of {max_lines} lines per patch "
                "(limits.max_patch_lines)",
            )
        strict = False  # after a file section only headers, blank lines or mail trailers
        while self.i < self.n:
            t = self.text(self.i)
            nxt = self.peek(self.i + 1)
            if t.startswith(b"diff --git "):
                self.section_start()
                self.git_section()
                self.check_line_end()
                strict = True
            elif t.startswith(b"--- ") and nxt is not None and nxt.startswith(b"+++ "):
                self.note_stray(f"a file section without a 'diff --git' header ({_show(t)})")
                self.section_start()
                self.plain_section()
                self.check_line_end()
                strict = True
            elif t.startswith(b"@@ -"):
                raise self.fail(self.i, "hunk header without a file header before it")
            elif t.startswith((b"diff --cc ", b"diff --combined ")):
                raise self.fail(self.i, "combined (merge) diffs are not supported")
            elif t in (b"-- ", b"--") or _MAIL_START.match(t) or _LOG_START.match(t):
                strict = False  # mail signature or the next commit: free text follows
                self.note_stray(_show(t))
                self.i += 1
            elif not t.strip():
                self.i = self.lines.skip_blank(self.i)
            elif strict and not (
                t.startswith(b"diff ") and nxt is not None and nxt.startswith(b"--- ")
            ):
                raise self.fail(
                    self.i, f"expected a file header ('diff --git', '---') but found {_show(t)}"
                )
            else:
                self.note_stray(_show(t))
                self.i += 1
        if not self.files and self.data and not self.data.isspace():
            raise self.fail(0, "no file header ('diff --git' or a '---'/'+++' pair) found")
        return Patch(self.files, self.stray)

    def note_stray(self, what: str) -> None:
        """Remember the first text outside the ``diff --git`` sections (see ``Patch.stray``)."""
        if self.stray is None:
            self.stray = f"line {self.i + 1}: {what}"

    def check_line_end(self) -> None:
        """A section's last line needs its newline: git ignores an unterminated header line
        and refuses an unterminated hunk line."""
        if not self.lines[self.i - 1].endswith(b"\n"):
            raise self.fail(self.i - 1, "the patch ends inside a file section (no final newline)")

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
        body: _Body | None = None
        block: _Binary | None = None
        binary = False
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
                body = self.hunks()
                t = None
        if t is not None and t.startswith((b"GIT binary patch", b"Binary files ")):
            self.binary_line_end(self.i)
        if t is not None and t == b"GIT binary patch":
            block = self.binary_block()
            binary = True
        elif t is not None and t.startswith(b"Binary files ") and t.endswith(b" differ"):
            if len(t) > MAX_HEADER:
                raise self.fail(self.i, f"'Binary files' line is longer than {MAX_HEADER} bytes")
            binary_line = (self.i, t[len(b"Binary files ") : -len(b" differ")])
            binary = True
            self.i += 1
        if not h.seen and minus is None and not binary:
            raise self.fail(start, "'diff --git' line with no header or content after it")
        self.finish_git(start, rest, h, minus, plus, binary_line, binary, body, block)

    def finish_git(
        self,
        start: int,
        rest: bytes,
        h: _Header,
        minus: tuple[int, bytes | None] | None,
        plus: tuple[int, bytes | None] | None,
        binary_line: tuple[int, bytes] | None,
        binary: bool,
        body: _Body | None,
        block: _Binary | None,
    ) -> None:
        """Resolve the names from every source and insist they agree with each other."""
        status: Status
        # In a git section only the mode lines create or delete: git reads '--- /dev/null'
        # without 'new file mode' as a file named "dev/null".
        minus_null = minus is not None and minus[1] is None
        plus_null = plus is not None and plus[1] is None
        added = h.new_file is not None
        deleted = h.deleted is not None
        if (added or minus_null) and (deleted or plus_null):
            raise self.fail(start, "file section both creates and deletes the file")
        if minus is not None and minus_null and not added:
            raise self.fail(minus[0], "'--- /dev/null' without a 'new file mode' line")
        if plus is not None and plus_null and not deleted:
            raise self.fail(plus[0], "'+++ /dev/null' without a 'deleted file mode' line")
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
            elif h.old_mode is not None and h.new_mode is not None and body is None and not binary:
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
        self.check_sides(start, status, body)
        old_mode = None if added else h.old_mode or h.deleted or h.index_mode
        new_mode = None if deleted else h.new_mode or h.new_file or h.index_mode
        if old_mode and new_mode and _MODE_TYPE[old_mode] != _MODE_TYPE[new_mode]:
            # git writes a type change as a deletion and a creation; in one section a file's
            # old content would silently become a link target (or a gitlink).
            raise self.fail(start, "a file section that changes the type of a file")
        target = None
        if new_mode == b"120000":
            if binary:
                raise self.fail(start, "a symbolic link's target given as binary data")
            target = self.symlink_target(start, body)
        self.files.append(
            FileChange(
                old_path=None if old is None else self.decode(start, old),
                new_path=None if new is None else self.decode(start, new),
                status=status,
                binary=binary,
                old_mode=None if old_mode is None else old_mode.decode(),
                new_mode=None if new_mode is None else new_mode.decode(),
                similarity=h.similarity,
                raw=self.raw(),
                dissimilarity=h.dissimilarity,
                added_lines=0 if body is None else body.added,
                deleted_lines=0 if body is None else body.deleted,
                hunk_counts=() if body is None else tuple(body.counts),
                symlink_target=target,
                gitlink=b"160000" in (old_mode, new_mode),
                old_oid=None if h.old_oid is None else h.old_oid.decode(),
                new_oid=None if h.new_oid is None else h.new_oid.decode(),
                binary_kind=None if block is None else block.kind,
                binary_size=None if block is None else block.size,
                binary_data=None if block is None else block.data,
            )
        )

    def check_sides(self, start: int, status: Status, body: _Body | None) -> None:
        """A created file has no old lines and a deleted one no new lines (git refuses both)."""
        if body is None:
            return
        if status == "added" and any(o for o, _ in body.counts):
            raise self.fail(start, "a new file's hunks have old lines")
        if status == "deleted" and any(n for _, n in body.counts):
            raise self.fail(start, "a deleted file's hunks have new lines")

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
            found = _EXT_START.match(t)
            if found is None:
                break
            prefix = found[0]
            key = _EXT_KEYS[prefix]
            if key in h.seen:
                raise self.fail(self.i, f"duplicate {_show(prefix.strip())} line")
            h.seen.add(key)
            value = t[len(prefix) :]
            if key in ("old_mode", "new_mode", "new_file", "deleted"):
                if not _MODE.fullmatch(value):
                    raise self.fail(self.i, f"bad file mode {_show(value)}")
                if value not in _MODES:
                    raise self.fail(self.i, f"unsupported file mode {_show(value)}")
                setattr(h, key, value)
            elif key.startswith(("rename", "copy")):
                setattr(h, key, self.name_at(self.i, _full_name, value))
            elif key in ("similarity", "dissimilarity"):
                m = _SIMILARITY.fullmatch(value)
                if m is None or int(m[1]) > 100:
                    raise self.fail(self.i, f"bad {key} index {_show(value)}")
                setattr(h, key, int(m[1]))
            else:
                m = _INDEX.fullmatch(t)
                if m is None:
                    raise self.fail(self.i, f"bad index line {_show(t)}")
                if m[3] is not None and m[3] not in _MODES:
                    raise self.fail(self.i, f"unsupported file mode {_show(m[3])}")
                h.old_oid, h.new_oid, h.index_mode = m[1], m[2], m[3]
            self.i += 1
        self.check_header(h)
        return h

    def check_header(self, h: _Header) -> None:
        """Refuse header combinations git never writes and reads order-dependently (the last
        mode line wins in git, the first one in a naive reading)."""
        pairs = (
            ("old_mode", "deleted", "'old mode' and 'deleted file mode'"),
            ("new_mode", "new_file", "'new mode' and 'new file mode'"),
            ("similarity", "dissimilarity", "'similarity index' and 'dissimilarity index'"),
        )
        for a, b, what in pairs:
            if a in h.seen and b in h.seen:
                raise self.fail(self.i - 1, f"both {what} in one file section")
        modes = {"old_mode", "new_mode", "new_file", "deleted"} & h.seen
        if h.index_mode is not None and modes:
            raise self.fail(self.i - 1, "a mode on the index line and a mode line in one section")

    def plain_section(self) -> None:
        """A unified diff without ``diff --git``: names from ``---``/``+++`` only."""
        start = self.i
        minus, plus = self.lines[start], self.lines[start + 1]
        old = self.name_at(start, _line_name, self.text(start)[4:])
        new = self.name_at(start + 1, _line_name, self.text(start + 1)[4:])
        self.i += 2
        if old is None and new is None:
            raise self.fail(start, "both '---' and '+++' are /dev/null")
        if old is not None and new is not None and old != new:
            raise self.fail(
                start, f"'---' and '+++' name different files ({_show(old)}, {_show(new)})"
            )
        body = self.hunks()
        if old is not None and new is not None:
            # As git reads GNU diff -N output: an epoch timestamp marks a side as absent.
            if _epoch(minus[4:]):
                old = None
            elif _epoch(plus[4:]):
                new = None
        status: Status = "added" if old is None else "deleted" if new is None else "modified"
        self.check_sides(start, status, body)
        self.files.append(
            FileChange(
                old_path=None if old is None else self.decode(start, old),
                new_path=None if new is None else self.decode(start + 1, new),
                status=status,
                raw=self.raw(),
                added_lines=body.added,
                deleted_lines=body.deleted,
                hunk_counts=tuple(body.counts),
                plain=True,
            )
        )

    # -- bodies ----------------------------------------------------------------------------
    def hunks(self) -> _Body:
        """One or more hunks, each exactly as long as its ``@@`` header says."""
        t = self.peek(self.i)
        if t is None or not t.startswith(b"@@"):
            found = "the end of the patch" if t is None else _show(t)
            raise self.fail(self.i, f"expected a hunk header '@@ -a,b +c,d @@' but found {found}")
        body = _Body()
        while t is not None and t.startswith(b"@@"):
            self.hunk(body)
            t = self.peek(self.i)
        return body

    def hunk(self, body: _Body) -> None:
        head = self.i
        m = _HUNK.fullmatch(self.text(head))
        if m is None:
            raise self.fail(head, f"malformed hunk header {_show(self.text(head))}")
        old = 1 if m[2] is None else int(m[2])
        new = 1 if m[4] is None else int(m[4])
        body.counts.append((old, new))
        self.i += 1
        # The body is walked over the bytes (no per-line slices: most patches are mostly hunk
        # lines), then the line cursor is moved past it.
        data, n, i = self.data, self.n, self.i
        size = len(data)
        pos = self.lines.start(i)
        prev = pos
        context = deleted = 0
        while old > 0 or new > 0:
            if i >= n:
                raise self.fail(
                    head,
                    f"truncated hunk: the patch ends with {old} old and {new} new lines still due",
                )
            end = data.find(b"\n", pos)
            nxt = size if end == -1 else end + 1
            c = data[pos : pos + 1]
            if c == b" " or c == b"\n" or (c == b"\r" and nxt - pos == 2 and end != -1):
                # an empty line is empty context
                if old == 0 or new == 0:
                    self.i = i
                    raise self.hunk_mismatch(head, "context")
                old -= 1
                new -= 1
                context += 1
            elif c == b"-":
                if old == 0:
                    self.i = i
                    raise self.hunk_mismatch(head, "'-'")
                old -= 1
                deleted += 1
            elif c == b"+":
                if new == 0:
                    self.i = i
                    raise self.hunk_mismatch(head, "'+'")
                new -= 1
                if body.first_added is None:  # what a symlink's section gives as its target
                    body.first_added, body.first_added_at = data[pos:nxt], i
                body.added += 1
            elif c != b"\\":
                self.i = i
                self.lines.jump(i, pos, prev)
                raise self.fail(
                    i,
                    f"truncated hunk (header at line {head + 1} wants {old} old and {new} "
                    f"new lines more) but found {_show(self.text(i))}",
                )
            elif body.first_added_at == i - 1:  # a '\\' marker
                body.first_added_cut = True
            prev, pos = pos, nxt
            i += 1
        body.context += context
        body.deleted += deleted
        self.i = i
        self.lines.jump(i, pos, prev)
        while self.i < self.n and self.lines[self.i].startswith(b"\\"):
            self.marker(body)
            self.i += 1

    def marker(self, body: _Body) -> None:
        """A '\\' line at ``i``: right after the first '+' line it takes that line's newline."""
        if body.first_added_at == self.i - 1:
            body.first_added_cut = True

    def hunk_mismatch(self, head: int, kind: str) -> PatchParseError:
        return self.fail(
            self.i, f"{kind} line does not fit the counts of the hunk header at line {head + 1}"
        )

    def symlink_target(self, start: int, body: _Body | None) -> str | None:
        """The link target a mode 120000 section writes: its one '+' line, which must replace
        the whole old target (no context), without the newline a '\\' marker takes away."""
        if body is None:
            return None
        if body.context or body.added != 1 or len(body.counts) != 1:
            raise self.fail(
                start, "a symbolic link's section must replace its target with one '+' line"
            )
        assert body.first_added is not None
        i = body.first_added_at
        target = body.first_added[1:]
        if body.first_added_cut and target.endswith(b"\n"):
            target = target[:-1]
        try:
            return target.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(i, f"symbolic link target {_show(target)} is not valid UTF-8") from None

    def binary_line_end(self, i: int) -> None:
        """Binary lines must end in a bare LF: git does not read a CRLF-mangled binary section
        as binary at all (it sees an empty change), so neither may we."""
        if not self.lines[i].endswith(b"\n") or self.lines[i].endswith(b"\r\n"):
            raise self.fail(i, "binary patch line does not end in a bare newline")

    def binary_block(self) -> _Binary:
        """``GIT binary patch``: a forward and an optional reverse literal/delta block, each
        decoded (base85) as git decodes it; the forward one is returned, still deflated."""
        self.i += 1
        forward: _Binary | None = None
        for block in range(2):
            t = self.peek(self.i)
            m = None if t is None else _BINARY_BLOCK.fullmatch(t)
            if m is None:
                if forward is None:
                    raise self.fail(
                        self.i, "expected 'literal N' or 'delta N' after 'GIT binary patch'"
                    )
                return forward
            self.i += 1
            data: list[bytes] = []
            while (t := self.peek(self.i)) is not None and t.strip():
                if not _check_base85(t):
                    raise self.fail(self.i, f"malformed binary patch data {_show(t)}")
                self.binary_line_end(self.i)
                try:
                    data.append(gitbinary.decode_line(t))
                except gitbinary.BinaryPatchError as exc:
                    raise self.fail(self.i, str(exc)) from None
                self.i += 1
            if t is None or self.lines[self.i] != b"\n":
                raise self.fail(self.i, "binary patch data not closed by an empty line")
            self.i += 1
            if block == 0:
                kind: Literal["literal", "delta"] = "literal" if m[1] == b"literal" else "delta"
                forward = _Binary(kind, int(m[2]), b"".join(data))
        assert forward is not None
        return forward
