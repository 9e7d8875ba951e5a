"""When two repository paths name the same file somewhere, and which names no checkout survives.

A path that is unique on Linux can collide on another filesystem: Windows (NTFS, Win32) ignores
case, strips trailing dots and spaces, reserves device names and reads ``name:stream`` as an
alternate data stream; macOS (APFS, HFS+) ignores case and Unicode normalisation, HFS+ also
ignores a set of zero-width code points; ext4 with casefold ignores case. The rules follow git's
own checks (``verify_path``, ``is_ntfs_dotgit``, ``is_hfs_dotgit``, ``is_ntfs_dotgitmodules``,
``is_valid_win32_path``) and the filesystems' naming rules.

Paths here are repository paths: '/'-separated, relative and already normalised. Everything is
pure (no I/O): these are rules over strings.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from tools.codex.factory.core.globs import validate_glob

# Code points HFS+ ignores entirely when comparing names (git's list in utf8.c next_hfs_char,
# from Apple's TN1150 case-folding table): ".\u200cgit" is ".git" on a Mac.
HFS_IGNORABLE = frozenset(
    (
        *range(0x200C, 0x2010),  # zero-width non-joiner, joiner; LTR, RTL marks
        *range(0x202A, 0x202F),  # bidirectional embeddings and overrides
        *range(0x206A, 0x2070),  # deprecated format characters
        0xFEFF,  # zero-width no-break space (BOM)
    )
)
_DROP_IGNORABLE: dict[int, None] = dict.fromkeys(HFS_IGNORABLE)

# Win32 drops these from the end of every path component before NTFS sees the name.
_TRAILING = ". "

# Characters Win32 refuses in a name; ':' also opens an NTFS alternate data stream, and '\\'
# separates components, so 'a\\b' is two names on Windows.
_WINDOWS_INVALID = frozenset('<>:"|?*\\') | frozenset(chr(c) for c in range(32))

# DOS device names: the bare name, optionally followed by spaces and then an extension or a
# stream, opens the device (git's is_valid_win32_path; the superscript digits are in the Win32
# naming rules). ASCII case only: the device table is compared in ASCII.
_RESERVED = re.compile(
    r"(CON|PRN|AUX|NUL|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3]|CONIN\$|CONOUT\$)"
    r" *(?:[.:].*)?",
    re.IGNORECASE | re.ASCII | re.DOTALL,
)

# The longest component: ext4 and APFS count UTF-8 bytes, HFS+ counts UTF-16 units of the
# decomposed name, NTFS counts UTF-16 units (never more than the UTF-8 bytes).
MAX_NAME = 255

# git's special files: (kind, name without the dot, NTFS fallback short-name prefix from path.c).
_SPECIAL: tuple[tuple[str, str, str], ...] = (
    ("gitmodules", "gitmodules", "gi7eba"),
    ("gitattributes", "gitattributes", "gi7d29"),
    ("gitignore", "gitignore", "gi250a"),
)

_GLOB_META = frozenset("*?[")


@dataclass(frozen=True)
class NameProblem:
    """One name rule a path breaks; ``component`` is the offending path component."""

    rule: str
    component: str
    message: str


@dataclass(frozen=True, order=True)
class OwnedPath:
    """A path as spelled by one owner (a worker id, or "base" for the base tree)."""

    path: str
    owner: str


@dataclass(frozen=True)
class Clash:
    """Paths that cannot coexist on some filesystem.

    ``key`` is the shared :func:`fold` key. For ``name-alias``, ``paths`` holds every spelling
    with its owner and ``nested`` is empty. For ``file-directory-clash``, ``paths`` are the
    files whose key is ``key`` and ``nested`` the paths that need ``key`` to be a directory.
    """

    rule: str
    key: str
    paths: tuple[OwnedPath, ...]
    nested: tuple[OwnedPath, ...]
    message: str


# --------------------------------------------------------------------------------------------
# folding


def _case(text: str) -> str:
    """Case-fold so NTFS (compares upper case) and APFS/ext4 (compare case folds) both agree.

    ``casefold`` alone keeps dotless i (U+0131) and long s (U+017F) apart from 'i' and 's', but
    the $UpCase table of newer NTFS volumes upper-cases them to 'I' and 'S'; folding,
    upper-casing and folding again equates whatever either comparison equates.
    """
    return text.casefold().upper().casefold()


def _fold_text(text: str, strip: str) -> str:
    """Fold ``text`` and strip ``strip`` from its end, to the fixed point."""
    if text.isascii():
        return text.lower().rstrip(strip)
    # Case mapping can leave a string that normalises (or strips) further; repeat to the fixed
    # point so the key is idempotent. One extra round suffices for every code point (tested).
    for _ in range(8):
        nxt = unicodedata.normalize("NFD", text.translate(_DROP_IGNORABLE))
        nxt = unicodedata.normalize("NFC", _case(nxt)).rstrip(strip)
        if nxt == text:
            break
        text = nxt
    return text


@functools.lru_cache(maxsize=65536)
def fold_name(name: str) -> str:
    """The equivalence key of one path component (see :func:`fold`)."""
    return _fold_text(name, _TRAILING)


def fold(path: str) -> str:
    """The key under which two paths are the same file on at least one common filesystem.

    Per component: canonical Unicode equivalence (NFC of NFD: APFS, HFS+), the code points HFS+
    ignores removed, full case folding (NTFS, APFS, HFS+, casefold ext4), trailing dots and
    spaces removed (Win32). Paths that any of those filesystems equates get equal keys; since the
    rules are combined, two names only a mix of filesystems would equate (an NFD name with a
    trailing dot against its NFC form without one) also share a key, which errs on the safe side.
    Idempotent: ``fold(fold(p)) == fold(p)``.
    """
    return "/".join(fold_name(part) for part in path.split("/"))


# --------------------------------------------------------------------------------------------
# why two spellings collide (for messages)

_STAGES: tuple[tuple[Callable[[str], str], str], ...] = (
    (
        lambda s: unicodedata.normalize("NFC", s),
        "macOS (APFS, HFS+) treats canonically equivalent Unicode spellings (NFC, NFD) as one name",
    ),
    (
        lambda s: s.translate(_DROP_IGNORABLE),
        "HFS+ ignores zero-width and bidirectional-control code points",
    ),
    (
        lambda s: unicodedata.normalize("NFC", _case(unicodedata.normalize("NFD", s))),
        "case-insensitive filesystems (Windows NTFS, macOS APFS and HFS+, ext4 with casefold) "
        "ignore case",
    ),
    (
        lambda s: s.rstrip(_TRAILING),
        "Windows (Win32) strips trailing dots and spaces from names",
    ),
)


def _apply(stages: Iterable[Callable[[str], str]], path: str) -> str:
    parts = path.split("/")
    for stage in stages:
        parts = [stage(part) for part in parts]
    return "/".join(parts)


def _reasons(spellings: Iterable[str]) -> list[str]:
    """Which filesystem rules merge ``spellings``: each rule without which they stay apart
    (or, if no single rule is needed, each rule that changes one of them), in a fixed order."""
    names = sorted(set(spellings))
    funcs = [f for f, _ in _STAGES]
    needed = [
        why
        for k, (_, why) in enumerate(_STAGES)
        if len({_apply(funcs[:k] + funcs[k + 1 :], s) for s in names}) > 1
    ]
    if needed:
        return needed
    changing = [why for f, why in _STAGES if any(_apply([f], s) != s for s in names)]
    return changing or ["their folded names are equal"]


# --------------------------------------------------------------------------------------------
# per-name problems


def _short_name(key: str, name: str, prefix: str) -> bool:
    """Whether folded ``key`` is an NTFS 8.3 short name git attributes to ``.<name>``.

    Regular form: the first six letters, '~' and 1-4. Fallback form (path.c): up to six
    characters of git's hashed prefix, then '~' and a number, eight characters in all.
    """
    if "~" not in key:  # both forms have one (most names: no regex at all)
        return False
    if re.fullmatch(re.escape(name[:6]) + "~[1-4]", key):
        return True
    if len(key) != 8 or "~" not in key:
        return False
    head, _, digits = key.partition("~")
    return prefix.startswith(head) and re.fullmatch("[1-9][0-9]*", digits) is not None


def _git_dir_alias(part: str) -> bool:
    head = part.split(":", 1)[0]
    key = fold_name(head)
    return key in (".git", "git~1")


def is_git_dir_name(part: str) -> bool:
    """Is this one path component ``.git``, or a name some filesystem maps to it?"""
    return fold_name(part) == ".git" or _git_dir_alias(part)


def _special_aliases(part: str) -> list[str]:
    """The special files (kinds) ``part`` may name on some filesystem, in ``_SPECIAL`` order.

    More than one only for git's fallback short names with a shared prefix ('gi7~1234').
    """
    head = part.split(":", 1)[0]
    key = fold_name(head)
    return [
        kind
        for kind, name, prefix in _SPECIAL
        if key == "." + name or _short_name(key, name, prefix)
    ]


def _how_alias(part: str, target: str) -> str:
    """A sentence saying which filesystem maps ``part`` to ``target`` and how."""
    head, colon, _ = part.partition(":")
    key = fold_name(head)
    if key == target:
        ways = _reasons([head, target]) if head != target else []
    else:
        first = " (git creates '.git' first, so it gets ~1)" if target == ".git" else ""
        ways = [f"Windows (NTFS) can give {target!r} the 8.3 short name {key.upper()}{first}"]
    if colon:
        ways.append(f"NTFS reads the text after ':' as an alternate data stream of {target!r}")
    return "; ".join(ways)


# A name no rule below can apply to: ASCII letters, digits, '_' and '-', with '.' inside
# (never first: no dot name can alias a git file; never last: Win32 strips it), no '~' (short
# names), within MAX_NAME. Only the device names are still looked up.
_PLAIN = re.compile(r"[A-Za-z0-9_-](?:[A-Za-z0-9_.-]{0,253}[A-Za-z0-9_-])?", re.ASCII)


def is_plain(part: str) -> bool:
    """A name :func:`name_problems` never objects to, known without the full rules."""
    return _PLAIN.fullmatch(part) is not None and _RESERVED.fullmatch(part) is None


def _part_problems(path: str, part: str) -> list[NameProblem]:
    return [] if is_plain(part) else _all_part_problems(path, part)


def _all_part_problems(path: str, part: str) -> list[NameProblem]:
    out: list[NameProblem] = []

    def add(rule: str, message: str) -> None:
        out.append(NameProblem(rule, part, f"path {path!r}: {message}"))

    bad = sorted({c for c in part if c in _WINDOWS_INVALID})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        extra = "; ':' opens an NTFS alternate data stream" if ":" in bad else ""
        extra += "; '\\' separates names on Windows" if "\\" in bad else ""
        add(
            "name-windows-invalid",
            f"{part!r} contains {shown}, which Windows does not allow in a name{extra}",
        )
    for sub in part.split("\\"):
        m = _RESERVED.fullmatch(sub)
        if m:
            add(
                "name-windows-reserved",
                f"{sub!r} is the Windows device name {m.group(1).upper()}; Windows opens the "
                "device instead of a file, whatever the case, extension or trailing dots and spaces",
            )
    if part not in (".", "..") and part.endswith(tuple(_TRAILING)):
        add(
            "name-trailing-dot-space",
            f"{part!r} ends with a dot or space, which Windows (Win32) strips: "
            f"it is the same file as {part.rstrip(_TRAILING)!r} there",
        )
    ignored = sorted({f"U+{ord(c):04X}" for c in part if ord(c) in HFS_IGNORABLE})
    if ignored:
        add(
            "name-hfs-ignorable",
            f"{part!r} contains {', '.join(ignored)}, which macOS HFS+ ignores: it is the same "
            f"file as {part.translate(_DROP_IGNORABLE)!r} there",
        )
    if any("\ud800" <= c <= "\udfff" for c in part):
        add(
            "name-invalid-unicode",
            f"{part!r} holds bytes that are not UTF-8; APFS refuses such names and other "
            "filesystems store them differently",
        )
    else:
        units = len(unicodedata.normalize("NFD", part).encode("utf-16-le")) // 2
        size = len(part.encode("utf-8"))
        if size > MAX_NAME or units > MAX_NAME:
            add(
                "name-too-long",
                f"{part[:16]!r}... is {size} UTF-8 bytes ({units} UTF-16 units decomposed); "
                f"ext4 and APFS allow {MAX_NAME} bytes, NTFS and HFS+ {MAX_NAME} UTF-16 units",
            )
    for sub in part.split("\\"):
        if _git_dir_alias(sub):
            if sub == ".git":
                add("name-git-alias", "'.git' is git's own directory; git never tracks it")
            else:
                add(
                    "name-git-alias",
                    f"{sub!r} is the '.git' directory on some filesystem: {_how_alias(sub, '.git')}",
                )
            continue
        for kind in _special_aliases(sub):
            if sub != "." + kind:
                add(
                    f"name-{kind}-alias",
                    f"{sub!r} is {'.' + kind!r} on some filesystem: {_how_alias(sub, '.' + kind)}",
                )
    return out


def name_problems(path: str) -> list[NameProblem]:
    """Every name rule ``path`` breaks on some filesystem, component by component.

    Rules: ``name-windows-reserved``, ``name-windows-invalid``, ``name-trailing-dot-space``,
    ``name-hfs-ignorable``, ``name-invalid-unicode``, ``name-too-long``, ``name-git-alias``
    and ``name-gitmodules-alias`` / ``name-gitattributes-alias`` / ``name-gitignore-alias``
    (a spelling other than the file's own that some filesystem maps to it).
    """
    out: list[NameProblem] = []
    for part in path.split("/"):
        out.extend(_part_problems(path, part))
    return out


def special_kind(path: str) -> str | None:
    """'gitattributes', 'gitmodules' or 'gitignore' when the last component is (an alias of)
    that git file at any depth, else None.

    Aliases are the :func:`fold` spellings, NTFS streams (``.gitmodules:x``) and git's NTFS
    short names; a fallback short name that fits several files ('gi7~1234') counts as the
    first of gitmodules, gitattributes, gitignore.
    """
    kinds = _special_aliases(path.rsplit("/", 1)[-1])
    return kinds[0] if kinds else None


# --------------------------------------------------------------------------------------------
# NTFS 8.3 short names of any name
#
# NTFS (8dot3name on, the default on system volumes) gives every long name a second, short one
# and opens the file by either: the basis (upper case; spaces, leading dots and every dot but
# the last dropped; '+,;=[]' written '_') cut to six characters, '~N', and the first three
# characters of the extension ('long-file-name.md' is 'LONG-F~1.MD'; some write-ups say the
# characters '+,;=[]' are dropped instead, so both spellings count); after four such names in
# a folder, two characters, four hex digits of a hash and '~N' ('SC3F1A~1'). git refuses only
# 'git~1' ('.git' is made first, is_ntfs_dotgit) and its special files' forms
# (is_ntfs_dotgitmodules): a worker's 'SCENAR~1/answer.md' writes into 'scenarios/' on such a
# volume. Which number a name gets depends on what the folder held when it was made, so the
# rule is conservative: a name of short-name shape may be any long name of its folder whose
# basis starts with its characters before '~' and whose extension starts like its own.

# One to six characters, '~', a number (eight characters in all before the dot), and up to
# three characters after one dot.
_SHORT_FORM = re.compile(r"([^.]{1,6})~([0-9]{1,6})(?:\.([^.]{1,3}))?", re.DOTALL)
# Characters a short name cannot hold: NTFS writes '_' for them.
_SHORT_INVALID = frozenset("+,;=[]")
_HEX = frozenset("0123456789ABCDEF")
# The names every folder may hold that git itself treats as its own (see _SPECIAL).
GIT_NAMES = (".git", ".gitmodules", ".gitattributes", ".gitignore")


@dataclass(frozen=True)
class ShortForm:
    """A name of 8.3 short-name shape, upper case: ``HEAD~DIGITS.EXT``."""

    head: str
    digits: str
    ext: str


def short_form(part: str) -> ShortForm | None:
    """``part`` as an 8.3 short name (after what Win32 strips: a stream, trailing dots and
    spaces), or None when it does not have that shape."""
    if "~" not in part:  # the shape's one fixed character: most names end here
        return None
    name = part.split(":", 1)[0].rstrip(_TRAILING)
    m = _SHORT_FORM.fullmatch(name)
    if m is None or len(m[1]) + 1 + len(m[2]) > 8:
        return None
    return ShortForm(m[1].upper(), m[2], (m[3] or "").upper())


def _short_texts(text: str) -> set[str]:
    """``text`` as NTFS may spell it in a short name: upper case, no spaces, '_' for each of
    '+,;=[]' (or without them)."""
    upper = text.upper().replace(" ", "")
    return {
        "".join("_" if c in _SHORT_INVALID else c for c in upper),
        "".join(c for c in upper if c not in _SHORT_INVALID),
    }


def _bases(name: str) -> set[tuple[str, str]]:
    """The (basis, extension) pairs NTFS may build ``name``'s short name from: leading dots
    dropped, the extension after the last dot (three characters), the other dots dropped."""
    text = name.lstrip(".")
    base, dot, ext = text.rpartition(".")
    if not dot:
        base, ext = text, ""
    return {(b, e[:3]) for b in _short_texts(base.replace(".", "")) for e in _short_texts(ext)}


def _fit(short: str, long: str) -> bool:
    """Each character of ``short`` may stand for the one of ``long`` at its place (as far as
    both go): equal, or a non-ASCII one (NTFS writes '_' or a look-alike letter for it)."""
    return all(s == c or not c.isascii() for s, c in zip(short, long, strict=False))


def _form_fits(form: ShortForm, base: str, ext: str | None, open_end: bool) -> bool:
    """Whether ``form`` may be NTFS's short name of a name with this basis and extension (None:
    any). ``open_end``: the basis only starts with ``base`` (a glob's literal start)."""
    if ext is not None and not (len(form.ext) == len(ext) and _fit(form.ext, ext)):
        return False
    if not base and not open_end:
        return False
    # Regular ('SCENAR~1', conservatively also 'SCEN~7'): the head starts the basis.
    regular = (open_end or len(form.head) <= len(base)) and _fit(form.head, base)
    # Hashed ('SC3F1A~1'): up to two characters of the basis, then four hex digits.
    lead = form.head[:-4]
    hashed = (
        len(form.head) >= 5
        and 1 <= len(lead) <= 2
        and set(form.head[-4:]) <= _HEX
        and (open_end or len(lead) <= len(base))
        and _fit(lead, base)
    )
    return regular or hashed


def short_alias(part: str, name: str) -> bool:
    """Whether ``part`` (of 8.3 short-name shape) may be the short name NTFS gave ``name``, a
    different long name in the same folder: then on a volume with short names both open one
    file. The one test of that relation: collisions, protected paths and git's names use it."""
    form = short_form(part)
    if form is None or fold_name(part) == fold_name(name):
        return False
    return any(_form_fits(form, base, ext, open_end=False) for base, ext in _bases(name))


def short_alias_glob(part: str, segment: str) -> bool:
    """Whether ``part`` may be the short name of some name the glob ``segment`` (one path
    segment, not ``**``) matches: its literal start must fit the short name's head, and a
    literal extension at its end must be the short name's."""
    if not _GLOB_META & set(segment):
        return short_alias(part, segment)
    form = short_form(part)
    if form is None:
        return False
    first = min(segment.index(c) for c in _GLOB_META if c in segment)
    last = max(segment.rindex(c) for c in "*?]" if c in segment)
    start, tail = segment[:first], segment[last + 1 :]
    exts: set[str | None] = {e for _, e in _bases("x" + tail)} if "." in tail else {None}
    starts = _short_texts(start.lstrip(".").replace(".", ""))
    return any(_form_fits(form, s, e, open_end=True) for s in starts for e in exts)


def git_short_alias(part: str) -> str | None:
    """The git name ('.git', '.gitmodules', ...) ``part`` may be the short name of, where git's
    own rules (``name-git-alias`` and the like) do not already say so; None otherwise."""
    if "~" not in part:  # no short-name shape (short_form): no short name of anything
        return None
    if _git_dir_alias(part) or _special_aliases(part):
        return None
    return next((name for name in GIT_NAMES if short_alias(part, name)), None)


def _masked(text: str, wild: int | None = None) -> tuple[str, int]:
    """``text`` with its non-ASCII characters (or, given ``wild``, the characters at those bit
    positions) written as NUL, and the bit positions written so."""
    if wild is None:
        wild = sum(1 << i for i, c in enumerate(text) if not c.isascii())
    return "".join("\0" if wild >> i & 1 else c for i, c in enumerate(text)), wild


class ShortNames:
    """The names of one folder, indexed so each name of short-name shape finds a long name it
    may be the short name of without trying every name (hostile bundles add thousands).

    A name is filed under each start of its basis (one to six characters) with its extension,
    a non-ASCII character written as NUL (it fits any); a short name's head (or the one or two
    characters before a hash) is looked up once per pattern of such characters the folder has.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._by_start: dict[tuple[str, str], list[str]] = defaultdict(list)
        self._wild: dict[int, set[tuple[int, int]]] = defaultdict(set)  # length -> masks
        for name in sorted(set(names)):  # a name of short-name shape is a long name too
            keys: set[tuple[str, str]] = set()
            for base, ext in _bases(name):
                head, head_wild = _masked(base[:6])
                tail, tail_wild = _masked(ext)
                for k in range(1, len(head) + 1):
                    keys.add((head[:k], tail))
                    self._wild[k].add((head_wild & ((1 << k) - 1), tail_wild))
            for key in sorted(keys):
                self._by_start[key].append(name)

    def _candidates(self, form: ShortForm) -> Iterator[str]:
        """Names filed under the head (or what precedes a hash): each fits ``form``."""
        starts = {form.head}
        if len(form.head) >= 5 and set(form.head[-4:]) <= _HEX:
            starts.add(form.head[:-4])
        for start in sorted(starts):
            for head_wild, tail_wild in sorted(self._wild.get(len(start), ())):
                key = (_masked(start, head_wild)[0], _masked(form.ext, tail_wild)[0])
                yield from self._by_start.get(key, ())

    def find(self, part: str) -> str | None:
        """A long name of the folder ``part`` may be the short name of, or None."""
        form = short_form(part)
        if form is None:
            return None
        return next((n for n in self._candidates(form) if short_alias(part, n)), None)


# --------------------------------------------------------------------------------------------
# clashes between paths


def _quote(entries: Iterable[OwnedPath], limit: int = 5) -> str:
    items = list(entries)
    shown = ", ".join(f"{e.path!r} ({e.owner})" for e in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def clashes(paths: Mapping[str, Iterable[str]]) -> list[Clash]:
    """Alias groups and file-versus-directory clashes among ``owner -> paths``.

    ``name-alias``: two or more different spellings share a :func:`fold` key. A spelling listed
    by several owners is one spelling (that is an overlap, not an alias).
    ``file-directory-clash``: a path's key equals the key of a proper leading directory of
    another path, so one must be a file and a directory at once. The caller decides which paths
    count (for instance, leaves out deleted ones). Sorted by rule, then key; linear in the
    number of path components.
    """
    by_key: dict[str, set[OwnedPath]] = defaultdict(set)
    dir_keys: set[str] = set()
    folded: dict[str, list[str]] = {}
    for owner, owned in paths.items():
        for p in owned:
            parts = folded.get(p)
            if parts is None:
                parts = folded[p] = [fold_name(x) for x in p.split("/")]
            by_key["/".join(parts)].add(OwnedPath(p, owner))
    for parts in folded.values():
        for i in range(1, len(parts)):
            dir_keys.add("/".join(parts[:i]))

    out: list[Clash] = []
    for key, group in by_key.items():
        spellings = {e.path for e in group}
        if len(spellings) > 1:
            entries = tuple(sorted(group))
            out.append(
                Clash(
                    "name-alias",
                    key,
                    entries,
                    (),
                    f"{_quote(entries)} are one file on some filesystem: "
                    + "; ".join(_reasons(spellings)),
                )
            )

    clash_keys = dir_keys & by_key.keys()
    if clash_keys:
        nested: dict[str, set[OwnedPath]] = defaultdict(set)
        for owner, owned in paths.items():
            for p in owned:
                parts = folded[p]
                for i in range(1, len(parts)):
                    prefix = "/".join(parts[:i])
                    if prefix in clash_keys:
                        nested[prefix].add(OwnedPath(p, owner))
        for key in clash_keys:
            files = tuple(sorted(by_key[key]))
            under = tuple(sorted(nested[key]))
            depth = key.count("/") + 1
            dirs = {"/".join(e.path.split("/")[:depth]) for e in under}
            names = {e.path for e in files} | dirs
            why = _reasons(names) if len(names) > 1 else []
            out.append(
                Clash(
                    "file-directory-clash",
                    key,
                    files,
                    under,
                    f"{_quote(files)} is a file, but {_quote(under)} "
                    + ("needs" if len(under) == 1 else "need")
                    + " it to be a directory"
                    + (f" ({'; '.join(why)})" if why else ""),
                )
            )
    out.sort(key=lambda c: (c.rule, c.key, c.paths, c.nested))
    return out


# --------------------------------------------------------------------------------------------
# globs

_MAX_RANGE = 4096


def _fold_chars(text: str) -> str:
    """Fold literal text inside a name (no trailing strip: the name may go on)."""
    return _fold_text(text, "")


def _escape_literal(text: str) -> str:
    """Keep folded literal text literal in the glob (a fold never yields '/': tested)."""
    return "".join(f"[{c}]" if c in _GLOB_META else c for c in text)


def _class_members(body: str, pattern: str) -> set[str]:
    """The folded single characters a class body stands for; ValueError if not expressible.

    '\\' is left out: globs cannot spell it and repository paths never contain it.
    """
    chars: list[str] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = ord(body[k]), ord(body[k + 2])
            if hi - lo >= _MAX_RANGE:
                raise ValueError(
                    f"glob {pattern!r}: range {body[k]!r}-{body[k + 2]!r} is too wide to case-fold; "
                    "list the characters"
                )
            chars.extend(chr(c) for c in range(lo, hi + 1))
            k += 3
        else:
            chars.append(body[k])
            k += 1
    out: set[str] = set()
    for c in chars:
        f = _fold_chars(c)
        if len(f) > 1:
            raise ValueError(
                f"glob {pattern!r}: {c!r} in a class folds to {f!r}, which one character "
                "cannot match; write it outside the class"
            )
        out.update(f)
    out.discard("\\")
    return out


def _emit_class(members: set[str], negate: bool) -> str:
    """A class for ``members`` in globs.py syntax: ']' first, '-' last, '!' and '^' not first."""
    specials = members & {"]", "-"}
    body: list[str] = []
    run: list[str] = []

    def flush() -> None:
        while run and run[0] in "]-":
            run.pop(0)
        while run and run[-1] in "]-":
            run.pop()
        body.extend([f"{run[0]}-{run[-1]}"] if len(run) >= 3 else [c for c in run if c not in "]-"])
        run.clear()

    for c in sorted(members):
        if run and ord(c) != ord(run[-1]) + 1:
            flush()
        run.append(c)
    flush()
    first = "]" if "]" in specials else ""
    last = "-" if "-" in specials else ""
    if not negate and not first and body and body[0][0] in "!^":  # would read as negation
        plain = [e for e in body if e[0] not in "!^"]
        bang = [e for e in body if e[0] in "!^"]
        ranges = [e for e in bang if len(e) == 3]
        if plain:
            body = plain + bang
        elif last:
            first, last = "-", ""  # a leading '-' is literal too
        elif ranges:  # start the range one later and add its first character at the end
            lo, hi = ranges[0][0], ranges[0][2]
            tail = [chr(c) for c in range(ord(lo) + 1, ord(hi) + 1)]
            rest = [e for e in bang if e != ranges[0]]
            body = ([f"{tail[0]}-{tail[-1]}"] if len(tail) >= 3 else tail) + rest + [lo]
        else:
            raise ValueError("a class of only '!' and '^' cannot be written without negation")
    return "[" + ("!" if negate else "") + first + "".join(body) + last + "]"


def fold_pattern(pattern: str) -> str:
    """``pattern`` with its literal characters folded as :func:`fold` folds a path.

    A protected or deny glob then matches ``fold(path)`` exactly where it would match any
    spelling of the path. Metacharacters ``* ? [ ] ! ^ - /`` keep their meaning; literal text
    at the end of a segment loses trailing dots and spaces as names do. A '?' still matches one
    character of the folded path (so 'ß', folded to 'ss', needs '??'). ValueError for an invalid
    glob, a class that folding cannot express, or a segment that folds to nothing.
    """
    validate_glob(pattern)
    out: list[str] = []
    i, n = 0, len(pattern)
    literal: list[str] = []

    def flush_literal(at_end: bool) -> bool:
        """Emit the pending literal text; True if there was some and it folded to nothing."""
        had = bool(literal)
        text = _fold_chars("".join(literal))
        literal.clear()
        text = _escape_literal(text.rstrip(_TRAILING) if at_end else text)
        if text:
            out.append(text)
        return had and not text

    while i < n:
        c = pattern[i]
        if c in "*?/":
            vanished = flush_literal(at_end=c == "/")
            # '*' + ignorable + '*' would become '**' inside a segment; one '*' means the same.
            if not (c == "*" and vanished and out and out[-1] == "*"):
                out.append(c)
            i += 1
        elif c == "[":
            j = i + 1
            negate = j < n and pattern[j] in "!^"
            if negate:
                j += 1
            start = j
            if j < n and pattern[j] == "]":
                j += 1
            while pattern[j] != "]":  # validate_glob guarantees the closing ']'
                j += 1
            members = _class_members(pattern[start:j], pattern)
            if not negate and len(members) == 1 and not members & _GLOB_META:
                literal.extend(members)  # a one-character class is that literal character
            else:
                flush_literal(at_end=False)
                out.append(_emit_class(members, negate) if members else pattern[i : j + 1])
            i = j + 1
        else:
            literal.append(c)
            i += 1
    flush_literal(at_end=True)
    folded = "".join(out)
    # Folding never adds or removes a '/' (tested), so the segments pair up.
    for before, after in zip(pattern.split("/"), folded.split("/"), strict=True):
        if before and not after:
            raise ValueError(
                f"glob {pattern!r}: segment {before!r} folds to nothing (Windows strips trailing "
                "dots and spaces, HFS+ ignores zero-width code points)"
            )
    validate_glob(folded)  # a safety net: the folded glob must keep the original's syntax
    return folded
