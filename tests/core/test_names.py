"""Name equivalence and name rules: tables derived from git's and the filesystems' rules, and
properties over generated spellings."""

from __future__ import annotations

import itertools
import random
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.codex.factory.core import names
from tools.codex.factory.core.globs import compile_glob, validate_glob
from tools.codex.factory.core.names import (
    HFS_IGNORABLE,
    Clash,
    OwnedPath,
    clashes,
    fold,
    fold_pattern,
    name_problems,
    special_kind,
)


def rules(path: str) -> set[str]:
    return {p.rule for p in name_problems(path)}


def case_variants(word: str) -> list[str]:
    """Lower, upper and two mixed spellings (enough to catch a case-sensitive compare)."""
    mixed = "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(word))
    return sorted({word.lower(), word.upper(), mixed, mixed.swapcase()})


# --------------------------------------------------------------------------------------------
# fold: tables


def NFD(text: str) -> str:
    return unicodedata.normalize("NFD", text)


SAME: list[tuple[str, str]] = [
    # case: every case-insensitive filesystem
    ("README.md", "readme.MD"),
    ("src/App.py", "SRC/app.PY"),
    # Unicode normalisation: APFS and HFS+ (NFC against NFD, canonical singletons)
    ("caf\u00e9.txt", NFD("caf\u00e9.txt")),
    ("\u00c5ngstr\u00f6m", "A\u030angstro\u0308m"),
    ("\u212b", "\u00c5"),  # ANGSTROM SIGN is canonically A WITH RING ABOVE
    ("\u2126", "\u03c9"),  # OHM SIGN is canonically OMEGA; case folds it to small omega
    ("\ud55c\uae00", "\u1112\u1161\u11ab\u1100\u1173\u11af"),  # Hangul syllables and jamo
    ("d/\u1e69", "d/s\u0323\u0307"),  # two combining marks in canonical order
    ("d/\u1e69", "d/s\u0307\u0323"),  # ...and in the other order
    # full case folding
    ("stra\u00dfe", "STRASSE"),
    ("stra\u00dfe", "strasse"),
    ("\u1e9e", "ss"),  # CAPITAL SHARP S
    ("\u03c3\u03bf\u03c6\u03bf\u03c2", "\u03a3\u039f\u03a6\u039f\u03a3"),  # final sigma
    ("\u03c3\u03bf\u03c6\u03bf\u03c2", "\u03c3\u03bf\u03c6\u03bf\u03c3"),
    ("\u212a", "k"),  # KELVIN SIGN
    ("\u017f", "S"),  # LONG S: case folding, and newer NTFS upcase tables
    ("\u0131", "I"),  # DOTLESS I: newer NTFS upcase tables upper-case it to 'I'
    ("\ufb01le", "FILE"),  # the 'fi' ligature folds to 'fi'
    ("\u0390", "\u03b9\u0308\u0301"),  # a one-to-three full folding
    ("\u10d0", "\u1c90"),  # Georgian Mkhedruli and Mtavruli
    # trailing dots and spaces: Win32
    ("a.", "a"),
    ("a ", "a"),
    ("a. . ", "a"),
    ("dir./x", "dir/x"),
    ("dir /x.", "DIR/X"),
    # HFS+ ignorable code points
    ("a\u200cb", "ab"),
    ("\ufeffx/y", "x/y\u200e"),
    # all of them at once
    (NFD("Caf\u00e9\u200d. /Stra\u00dfe "), "caf\u00e9/strasse"),
]

DIFFERENT: list[tuple[str, str]] = [
    ("a", "b"),
    ("a.b", "ab"),  # only trailing dots go
    ("a b", "ab"),  # only trailing spaces go
    (" a", "a"),  # leading spaces stay
    (".a", "a"),  # leading dots stay
    ("a/b", "a_b"),
    ("e", "\u00e9"),
    ("i", "\u0130"),  # I WITH DOT ABOVE folds to i + combining dot, not to i
    (".git", "git"),
    ("\uff21", "a"),  # fullwidth A is a compatibility (NFKC) variant only
    ("\u2160", "i"),  # ROMAN NUMERAL ONE likewise
    ("a\u200bb", "ab"),  # ZERO WIDTH SPACE is not on HFS+'s ignore list
    ("x/a.", "x.a"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_fold_equates_filesystem_aliases(a: str, b: str) -> None:
    assert fold(a) == fold(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_fold_keeps_distinct_names_apart(a: str, b: str) -> None:
    assert fold(a) != fold(b)


def test_fold_key_shape() -> None:
    assert fold("Docs/Caf\u00e9.MD") == "docs/caf\u00e9.md"
    assert fold(NFD("Docs/Caf\u00e9.MD")) == "docs/caf\u00e9.md"  # keys are NFC
    assert fold("a/b/c").count("/") == 2


def _changing_code_points() -> list[str]:
    """Every code point some folding step touches (the rest fold to themselves)."""
    out = []
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if (
            unicodedata.decomposition(c)
            or c.casefold() != c
            or c.upper() != c
            or c.lower() != c
            or cp in HFS_IGNORABLE
        ):
            out.append(c)
    return out


def test_fold_every_code_point_is_stable_and_case_blind() -> None:
    """Exhaustive: idempotent, no '/' or glob metacharacter created, and the key does not
    depend on which case mapping (upper, lower, fold) a filesystem applied first."""
    meta = set("/*?[]!^-")
    for c in _changing_code_points():
        key = fold(c)
        assert fold(key) == key, hex(ord(c))
        assert not (set(key) & meta), hex(ord(c))
        for variant in (c.upper(), c.lower(), c.casefold(), NFD(c)):
            assert fold(variant) == key, (hex(ord(c)), variant)


# --------------------------------------------------------------------------------------------
# fold: properties

NAME_CHARS = st.sampled_from(
    [
        *"abcxyzABCXYZ019_-. ",
        *("\u00e9", "\u00c9", "\u00df", "\u1e9e", "\u03c3", "\u03c2", "\u03a3", "\u0131"),
        *("\u017f", "\u212a", "\u00c5", "\u212b", "\u0345", "\u1f80", "\ufb01", "\ud55c"),
        *("\u0301", "\u0308", "\u0323"),
    ]
)
NAMES = st.text(NAME_CHARS, min_size=1, max_size=8)
PATHS = st.lists(NAMES, min_size=1, max_size=4).map("/".join)


@given(PATHS)
def test_fold_is_idempotent(path: str) -> None:
    assert fold(fold(path)) == fold(path)


@st.composite
def spelled_variant(draw: st.DrawFn) -> tuple[str, str]:
    """A name and another spelling of it that some filesystem treats as the same.

    Case maps apply to the base characters of the decomposed name (as a filesystem compares);
    mapping a precomposed character whose upper case expands (U+1F80 to two letters) would
    move the marks after it onto another letter, which is a different name.
    """
    name = draw(NAMES)
    out = []
    for c in NFD(name):
        if unicodedata.combining(c):
            out.append(c)
            continue
        how = draw(st.sampled_from(["keep", "upper", "lower", "fold"]))
        out.append({"keep": c, "upper": c.upper(), "lower": c.lower(), "fold": c.casefold()}[how])
    variant = "".join(out)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(variant)))
        ignorable = chr(draw(st.sampled_from(sorted(HFS_IGNORABLE))))
        variant = variant[:at] + ignorable + variant[at:]
    variant += draw(st.text(st.sampled_from(". "), max_size=3))
    if draw(st.booleans()):
        variant = unicodedata.normalize("NFC", variant)
    return name, variant


@given(spelled_variant())
def test_fold_equal_for_generated_spellings(pair: tuple[str, str]) -> None:
    name, variant = pair
    assert fold(name) == fold(variant)
    assert fold(f"d/{name}/x") == fold(f"D/{variant}/X")


# --------------------------------------------------------------------------------------------
# name_problems: Windows

RESERVED_BASES = [
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{d}" for d in "0123456789\u00b9\u00b2\u00b3"),
    *(f"LPT{d}" for d in "0123456789\u00b9\u00b2\u00b3"),
    "CONIN$",
    "CONOUT$",
]
# What may follow a device name and still open the device (git's is_valid_win32_path):
# spaces, then an extension, a stream, or the end; trailing dots and spaces too.
RESERVED_TAILS = ["", ".txt", ".tar.gz", " ", "  ", ".", ". .", " .txt", ":x", "::$DATA"]


@pytest.mark.parametrize("base", RESERVED_BASES)
def test_windows_reserved_names(base: str) -> None:
    for spelled, tail in itertools.product(case_variants(base), RESERVED_TAILS):
        for path in (spelled + tail, f"dir/{spelled}{tail}/x.py"):
            problems = [p for p in name_problems(path) if p.rule == "name-windows-reserved"]
            assert len(problems) == 1, path
            assert problems[0].component == spelled + tail
            assert repr(path) in problems[0].message and "Windows" in problems[0].message


@pytest.mark.parametrize(
    "name",
    [
        "CONSOLE",
        "CON_",
        "CON-1.txt",
        "xCON",
        "NULL",
        "AUXI",
        "COM10",
        "COM",
        "LPT",
        "COMx",
        "LPT\u2074",  # superscript four is not reserved
        "COM\u00b9x",
        "CONIN",
        "CONOUT",
        "CONIN$x",
        "\uff23\uff2f\uff2e",  # fullwidth CON
        "CON x",
        "a.CON",
    ],
)
def test_not_windows_reserved(name: str) -> None:
    assert "name-windows-reserved" not in rules(name)


@pytest.mark.parametrize("char", [*'<>:"|?*\\', *(chr(c) for c in range(32))])
def test_windows_invalid_characters(char: str) -> None:
    path = f"src/a{char}b.txt"
    problems = [p for p in name_problems(path) if p.rule == "name-windows-invalid"]
    assert len(problems) == 1
    assert problems[0].component == f"a{char}b.txt"
    assert repr(char) in problems[0].message


def test_colon_names_an_alternate_data_stream() -> None:
    (problem,) = [p for p in name_problems("a.txt:evil") if p.rule == "name-windows-invalid"]
    assert "alternate data stream" in problem.message


@pytest.mark.parametrize("name", ["a.", "a ", "a. .", "a.. ", ". a.", "x/dir./y", "x/dir /y"])
def test_trailing_dot_space(name: str) -> None:
    (problem,) = [p for p in name_problems(name) if p.rule == "name-trailing-dot-space"]
    assert problem.component.endswith((".", " "))
    assert "Win32" in problem.message


@pytest.mark.parametrize("name", ["a.b", "a b", ".a", " a", "a/b.c"])
def test_no_trailing_dot_space(name: str) -> None:
    assert "name-trailing-dot-space" not in rules(name)


def test_hfs_ignorable_and_too_long_and_not_utf8() -> None:
    for cp in sorted(HFS_IGNORABLE):
        assert "name-hfs-ignorable" in rules(f"a{chr(cp)}b"), hex(cp)
    assert "name-hfs-ignorable" not in rules("a\u200bb")
    assert "name-too-long" in rules("d/" + "x" * 256)
    assert "name-too-long" not in rules("d/" + "x" * 255)
    assert "name-too-long" in rules("\u00e9" * 128)  # 256 UTF-8 bytes
    assert "name-too-long" in rules("\u0390" * 100)  # 200 bytes, but 300 UTF-16 units in NFD
    assert "name-invalid-unicode" in rules("a/\udcff.txt")


@pytest.mark.parametrize(
    "path",
    [
        "src/app.py",
        "docs/README.md",
        ".gitmodules",
        ".gitattributes",
        "sub/.gitignore",
        ".github/workflows/ci.yml",
        ".gitlab-ci.yml",
        "con_tent.txt",
        "COM10",
        "caf\u00e9.txt",
        "git",
        ".gitx",
        "x" * 255,
    ],
)
def test_clean_names_have_no_problems(path: str) -> None:
    assert name_problems(path) == []


# Parts near the plain shortcut's edges: dots, tildes, device names, lengths around the limit.
NEAR_PLAIN = st.one_of(
    st.text(alphabet="aA0_-.~ :Cc", max_size=8),
    st.sampled_from(["CON", "con.txt", "LPT1", "nul", "COM10", "CONIN$", "git~1", "GIT~1"]).flatmap(
        lambda d: st.text(alphabet="._-x", max_size=3).map(lambda tail: d + tail)
    ),
    st.integers(min_value=250, max_value=260).map(lambda n: "x" * n),
)


@given(NEAR_PLAIN)
def test_plain_shortcut_never_hides_a_problem(part: str) -> None:
    """The fast answer for plain names is the full rules' answer."""
    if names.is_plain(part):
        assert names._all_part_problems(part, part) == []


def test_plain_shortcut_takes_ordinary_names_and_leaves_the_rest() -> None:
    assert all(names.is_plain(p) for p in ("f0001.txt", "src", "a-b_c.tar.gz", "x" * 255))
    for part in (".git", "git~1", "CON", "con.txt", "a.", "x" * 256, "a b", "caf\u00e9", ".x"):
        assert not names.is_plain(part), part


# --------------------------------------------------------------------------------------------
# name_problems: .git and git's special files

# Every spelling git's checks reject as .git (is_ntfs_dotgit, is_hfs_dotgit, verify_dotfile):
# ".git" or the NTFS short name "git~1", any case, then any dots and spaces, then the end or
# an NTFS stream.
GIT_TAILS = ["", ".", " ", ". .", "...", ":", "::$INDEX_ALLOCATION", ":x", " :x", ". ::$DATA"]
GIT_ALIASES = [
    base + tail
    for base, tail in itertools.product(case_variants(".git") + case_variants("git~1"), GIT_TAILS)
]


@pytest.mark.parametrize("component", GIT_ALIASES)
def test_git_aliases(component: str) -> None:
    for path in (component, f"a/{component}", f"a/{component}/config"):
        problems = [p for p in name_problems(path) if p.rule == "name-git-alias"]
        assert [p.component for p in problems] == [component], path
        assert repr(path) in problems[0].message


def test_git_alias_every_hfs_ignorable_anywhere() -> None:
    for cp, at in itertools.product(sorted(HFS_IGNORABLE), range(5)):
        component = ".GIT"[:at] + chr(cp) + ".GIT"[at:]
        (problem,) = [p for p in name_problems(component) if p.rule == "name-git-alias"]
        assert "HFS+" in problem.message


def test_git_alias_messages_say_which_filesystem() -> None:
    def message(component: str) -> str:
        (p,) = [p for p in name_problems(component) if p.rule == "name-git-alias"]
        return p.message

    assert "case-insensitive" in message(".Git")
    assert "Win32" in message(".git. ")
    assert "8.3 short name" in message("GIT~1")
    assert "alternate data stream" in message(".git::$INDEX_ALLOCATION")
    assert "git never tracks it" in message(".git")


def test_git_alias_behind_a_backslash() -> None:
    """Windows splits at '\\', and git's is_ntfs_dotgit checks each part."""
    assert {"name-git-alias", "name-windows-invalid"} <= rules("x\\.git")
    assert "name-git-alias" in rules("x\\GIT~1\\config")


@pytest.mark.parametrize(
    "component",
    [
        ".gitx",
        ".git-hooks",
        "..git",
        ".g.it",
        ".gi",
        "git",
        "agit",
        ".git~1",
        "git~2",
        "git~10",
        "git~1x",
        "gi\u0301t~1",
        ".gi\u200bt",  # U+200B is not ignored by HFS+
        ".g\u0130t",
    ],
)
def test_not_git_aliases(component: str) -> None:
    assert "name-git-alias" not in rules(component)


# NTFS short names git attributes to the special files (path.c is_ntfs_dot_generic): the first
# six letters with ~1..~4, or up to six characters of git's hashed prefix, '~' and a number,
# eight characters in all; then only dots and spaces, up to the end or a stream.
SPECIAL_FILES = [("gitmodules", "gi7eba"), ("gitattributes", "gi7d29"), ("gitignore", "gi250a")]


def special_aliases(name: str, prefix: str) -> list[str]:
    short = [f"{name[:6]}~{n}" for n in "1234"]
    short += [prefix[:k] + "~" + "1234567"[: 7 - k] for k in range(4, 7)]
    short += [f"{prefix}~9"]
    spelled = [*case_variants("." + name), *case_variants(short[0]), *short]
    tails = ["", ".", " .", ":x", "::$DATA"]
    hfs = [f".{name[:3]}\u200c{name[3:]}", f"\ufeff.{name}"]
    return sorted({s + t for s, t in itertools.product(spelled, tails)} - {"." + name} | set(hfs))


@pytest.mark.parametrize(("kind", "prefix"), SPECIAL_FILES)
def test_special_file_aliases(kind: str, prefix: str) -> None:
    for component in special_aliases(kind, prefix):
        got = rules(f"sub/{component}")
        assert f"name-{kind}-alias" in got, component
        assert special_kind(f"sub/{component}") == kind, component
        assert special_kind(component) == kind, component


@pytest.mark.parametrize(("kind", "prefix"), SPECIAL_FILES)
def test_special_file_non_aliases(kind: str, prefix: str) -> None:
    for component in [
        kind,
        f".{kind}2",
        f"a.{kind}",
        f"{kind[:6]}~5",
        f"{kind[:6]}~0",
        f"{kind[:6]}~1x",
        f"{prefix}~0",
        f"{prefix[:5]}x~1",
        f"{prefix}~1x",
        f"{prefix}~12",  # nine characters: not an 8.3 short name
    ]:
        assert f"name-{kind}-alias" not in rules(component), component
        assert special_kind(component) != kind, component


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (".gitattributes", "gitattributes"),
        ("a/b/.GITATTRIBUTES", "gitattributes"),
        ("a/gitatt~1", "gitattributes"),
        ("GI7D29~1", "gitattributes"),
        (".gitmodules", "gitmodules"),
        (".gitmodules::$DATA", "gitmodules"),
        ("deep/er/GITMOD~4", "gitmodules"),
        (".gitignore", "gitignore"),
        ("x/.gitignore ", "gitignore"),
        ("GITIGN~2", "gitignore"),
        ("gi250a~1", "gitignore"),
        (NFD(".g\u0131tignore"), "gitignore"),
        (".gitignore/x", None),  # only the last component counts
        ("a.gitignore", None),
        ("gitignore", None),
        (".git", None),
        ("README.md", None),
    ],
)
def test_special_kind(path: str, kind: str | None) -> None:
    assert special_kind(path) == kind


def test_shared_fallback_short_names_alias_every_special_file() -> None:
    """git's fallback check compares only the characters before '~' with its hashed prefix."""
    for component in ("gi~12345", "~1234567"):
        assert {
            "name-gitmodules-alias",
            "name-gitattributes-alias",
            "name-gitignore-alias",
        } <= rules(component)
        assert special_kind(component) == "gitmodules"
    assert rules("gi7~1234") >= {"name-gitmodules-alias", "name-gitattributes-alias"}
    assert "name-gitignore-alias" not in rules("gi7~1234")


def test_exact_special_files_are_no_problem_but_aliases_are() -> None:
    assert name_problems("a/.gitmodules") == []
    (problem,) = name_problems("a/.GITMODULES")
    assert problem.rule == "name-gitmodules-alias"
    assert problem.component == ".GITMODULES"
    assert "'a/.GITMODULES'" in problem.message and "case-insensitive" in problem.message


# --------------------------------------------------------------------------------------------
# clashes


def test_alias_group_lists_every_spelling_and_owner() -> None:
    got = clashes(
        {
            "w2": ["docs/Read.md", "x.py"],
            "base": ["docs/read.md", "x.py"],
            "w1": [NFD("caf\u00e9"), "DOCS/READ.MD"],
            "w3": ["caf\u00e9"],
        }
    )
    assert [(c.rule, c.key) for c in got] == [
        ("name-alias", "caf\u00e9"),
        ("name-alias", "docs/read.md"),
    ]
    cafe, read = got
    assert cafe.paths == (OwnedPath(NFD("caf\u00e9"), "w1"), OwnedPath("caf\u00e9", "w3"))
    assert "NFC" in cafe.message
    assert read.paths == (
        OwnedPath("DOCS/READ.MD", "w1"),
        OwnedPath("docs/Read.md", "w2"),
        OwnedPath("docs/read.md", "base"),
    )
    assert read.nested == ()
    assert "case-insensitive" in read.message and "'docs/Read.md' (w2)" in read.message


def test_one_spelling_from_several_owners_is_not_an_alias() -> None:
    assert clashes({"w1": ["a.txt"], "w2": ["a.txt"], "base": ["a.txt", "a.txt"]}) == []


def test_file_directory_clash() -> None:
    got = clashes({"base": ["src/util/io.py", "src/util/net.py"], "w1": ["src/Util."]})
    assert got == [
        Clash(
            "file-directory-clash",
            "src/util",
            (OwnedPath("src/Util.", "w1"),),
            (OwnedPath("src/util/io.py", "base"), OwnedPath("src/util/net.py", "base")),
            got[0].message,
        )
    ]
    assert "need it to be a directory" in got[0].message
    assert "case-insensitive" in got[0].message and "Win32" in got[0].message


def test_file_directory_clash_same_spelling_and_same_owner() -> None:
    got = clashes({"w1": ["a", "a/b/c"]})
    assert [(c.rule, c.key, c.paths, c.nested) for c in got] == [
        ("file-directory-clash", "a", (OwnedPath("a", "w1"),), (OwnedPath("a/b/c", "w1"),))
    ]


def test_clashes_can_report_alias_and_file_directory_together() -> None:
    got = clashes({"w1": ["Lib"], "w2": ["lib"], "base": ["LIB/x.py"]})
    assert [(c.rule, c.key) for c in got] == [
        ("file-directory-clash", "lib"),
        ("name-alias", "lib"),
    ]


def test_no_clashes_for_distinct_names() -> None:
    assert clashes({"base": ["a/b", "a/c", "ab", "a.b/c"], "w1": ["b/a"]}) == []


OWNERS = st.sampled_from(["base", "A", "B", "C"])


@given(st.lists(st.tuples(OWNERS, PATHS), max_size=12), st.randoms(use_true_random=False))
def test_clashes_do_not_depend_on_owner_or_path_order(
    entries: list[tuple[str, str]], rnd: random.Random
) -> None:
    forward: dict[str, list[str]] = {}
    for owner, path in entries:
        forward.setdefault(owner, []).append(path)
    shuffled_owners = list(forward)
    rnd.shuffle(shuffled_owners)
    backward = {o: list(reversed(forward[o])) for o in shuffled_owners}
    assert clashes(forward) == clashes(backward)


@given(spelled_variant(), st.lists(NAMES, min_size=1, max_size=3), PATHS)
def test_file_directory_clash_detected_for_generated_pairs(
    pair: tuple[str, str], rest: list[str], parent: str
) -> None:
    name, variant = pair
    file_path = f"{parent}/{variant}"
    nested_path = "/".join([parent, name, *rest])
    got = clashes({"w1": [file_path], "w2": [nested_path]})
    hits = [c for c in got if c.rule == "file-directory-clash" and c.key == fold(file_path)]
    assert len(hits) == 1
    assert OwnedPath(file_path, "w1") in hits[0].paths
    assert OwnedPath(nested_path, "w2") in hits[0].nested


def test_clashes_on_100k_paths() -> None:
    """Scaling sanity (counts only): one dictionary pass, not pairwise comparisons."""
    base = [f"pkg{i // 1000:03d}/mod{i % 1000:04d}/file.py" for i in range(100_000)]
    w1 = [f"pkg{i:03d}/MOD0000/FILE.PY" for i in range(0, 100, 10)]  # 10 aliases
    w2 = [f"Pkg{i:03d}/mod0001" for i in range(0, 100, 25)]  # 4 files over directories
    got = clashes({"base": base, "w1": w1, "w2": w2})
    assert sum(c.rule == "name-alias" for c in got) == 10
    fd = [c for c in got if c.rule == "file-directory-clash"]
    assert len(fd) == 4
    assert all(len(c.nested) == 1 for c in fd)


# --------------------------------------------------------------------------------------------
# fold_pattern


@pytest.mark.parametrize(
    ("pattern", "folded"),
    [
        (".GitHub/Workflows/**", ".github/workflows/**"),
        ("src/*.PY", "src/*.py"),
        ("**/SECRETS.", "**/secrets"),
        ("Docs/", "docs/"),
        ("Stra\u00dfe/*", "strasse/*"),
        (NFD("Caf\u00e9/?"), "caf\u00e9/?"),
        ("a\u200cb/*", "ab/*"),
        ("[A-Z]x", "[a-z]x"),
        ("[!A-C]", "[!a-c]"),
        ("[^A-C]", "[!a-c]"),
        ("[]A-]", "[]a-]"),
        ("[!]a]", "[!]a]"),
        ("[Z-a]", "[][^-az]"),
        ("[Q]", "q"),
        ("[*]", "[*]"),
        ("[\u03a3\u03c2]", "\u03c3"),
        ("x[.] ", "x"),
        ("a*\u200c*b", "a*b"),
        ("[-^]", "[-^]"),
        ("[!-#]", "[!#-]"),  # negated '-' and '#'
        ("[A!^]", "[a!^]"),
        ("[!-$]", "[!$-]"),
        ('["!-#]', '["#!]'),  # a range from '!' cannot lead either
        ("[?^]", "[?^]"),
        ("[\u00c2^-`]", "[\u00e2^-`]"),  # '^' first would negate: moved after a letter
    ],
)
def test_fold_pattern_examples(pattern: str, folded: str) -> None:
    assert fold_pattern(pattern) == folded
    validate_glob(folded)


@pytest.mark.parametrize(
    "pattern", ["", "/abs", "a//b", "[ab", "a\\b", "[\u00df]", "[\x01-\uffff]", "a/. /b", "\u200c"]
)
def test_fold_pattern_refusals(pattern: str) -> None:
    with pytest.raises(ValueError):
        fold_pattern(pattern)


def test_fold_pattern_matches_every_spelling() -> None:
    pattern = fold_pattern(".GITHUB/workflows/*.YML")
    for path in [
        ".github/workflows/ci.yml",
        ".GitHub/Workflows/CI.YML",
        ".github./workflows/x.yml ",
    ]:
        assert compile_glob(pattern).match(fold(path)), path
    assert not compile_glob(pattern).match(fold(".github/other/ci.yml"))


@given(
    st.lists(st.tuples(spelled_variant(), st.sampled_from(["lit", "var", "*", "**"])), min_size=1)
)
def test_fold_pattern_matches_folded_paths(parts: list[tuple[tuple[str, str], str]]) -> None:
    """A glob written with one spelling matches the folded path of any other spelling."""
    path = "/".join(name for (name, _), _ in parts)
    segments = []
    for (name, variant), how in parts:
        if how == "lit":
            segments.append(name)
        elif how == "var":
            segments.append(variant.rstrip(". ") or variant)
        else:
            segments.append(how)
    pattern = "/".join(segments)
    try:
        validate_glob(pattern)
    except ValueError:
        return  # a '.' or '..' segment: not a usable glob
    if any(s in (".", "..") or not fold(s) for s in path.split("/")):
        return  # not a normalised path, or a name Win32 strips to nothing
    assert compile_glob(fold_pattern(pattern)).match(fold(path)), (pattern, path)


ASCII_PATHS = st.lists(st.text("abAB-", min_size=1, max_size=3), min_size=1, max_size=3).map(
    "/".join
)
GLOB_PIECES = st.sampled_from([*"abAB-*?", "[aB]", "[!A-b]", "[-^]", "[Z-a]"])
ASCII_GLOBS = st.lists(
    st.one_of(st.just("**"), st.lists(GLOB_PIECES, min_size=1, max_size=4).map("".join)),
    min_size=1,
    max_size=3,
).map("/".join)


@given(ASCII_GLOBS, ASCII_PATHS)
def test_fold_pattern_agrees_with_case_insensitive_matching(pattern: str, path: str) -> None:
    """On plain ASCII names, folding both sides is exactly case-insensitive matching."""
    try:
        validate_glob(pattern)
    except ValueError:
        return
    expected = compile_glob(pattern, ignore_case=True).match(path)
    assert compile_glob(fold_pattern(pattern)).match(fold(path)) == expected


# -- NTFS 8.3 short names of any name ----------------------------------------------------------
@pytest.mark.parametrize(
    ("short", "name", "alias"),
    [
        ("SCENAR~1", "scenarios", True),
        ("scenar~3", "scenarios", True),  # any number, any case
        ("SCENA~10", "scenarios", True),  # a two-digit number leaves five characters
        ("SCEN~7", "scenarios", True),  # conservative: any start of the basis
        ("S~1", "scenarios", True),
        ("SC3F1A~1", "scenarios", True),  # two characters, four hex digits: the hashed form
        ("SCENAR~1.", "scenarios", True),  # Win32 strips the trailing dot
        ("SCENAR~1::$INDEX_ALLOCATION", "scenarios", True),  # a stream of the folder
        ("SCENAR~1.MD", "scenarios", False),  # no extension to shorten
        ("SCENAX~1", "scenarios", False),
        ("SCENARIO~1", "scenarios", False),  # nine characters before the dot: not a short name
        ("SX3F1A~1", "scenarios", False),
        ("LONG-F~1.MD", "long-file-name.md", True),
        ("LONG-F~1.M", "long-file-name.md", False),  # the extension's first three characters
        ("LONG-F~1.TXT", "long-file-name.md", False),
        ("LONG-F~1", "long-file-name.md", False),
        ("__INIT~1.PY", "__init__.py", True),
        ("ARCHIV~1.GZ", "archive.tar.gz", True),  # the last dot starts the extension
        ("ARCHIV~1.TAR", "archive.tar.gz", False),
        ("GITATT~1", ".gitattributes", True),  # leading dots are dropped
        ("A_B~1", "a+b c", True),  # '+' written '_', spaces dropped
        ("AB~1", "a+b c", True),  # or '+' dropped
        ("CAFE~1.TXT", "café latte.txt", True),  # a non-ASCII character may become anything
        ("CAF_LA~1.TXT", "café latte.txt", True),
        ("scenarios", "scenarios", False),  # not of short-name shape
        ("SCENAR~1", "SCENAR~1", False),  # the same name, not an alias
        ("SCENAR~1", "scenar~1.", False),  # one name on Windows: a name-alias, not this rule
    ],
)
def test_short_alias(short: str, name: str, alias: bool) -> None:
    assert names.short_alias(short, name) is alias


@pytest.mark.parametrize(
    ("short", "segment", "alias"),
    [
        ("__INIT~1.SO", "__init__.*", True),
        ("TOOLS~1.PYD", "tools.*", True),
        ("TOOLS~1", "tools", True),
        ("FOO~1.TXT", "*.py", False),
        ("FOO~1.PY", "*.py", True),
        ("OTHER~1", "tools.*", False),
        ("SCENAR~1", "scen*", True),
        ("SCENAR~1", "scex*", False),
    ],
)
def test_short_alias_of_a_glob_segment(short: str, segment: str, alias: bool) -> None:
    assert names.short_alias_glob(short, segment) is alias


@pytest.mark.parametrize(
    ("part", "git"),
    [
        ("GIT~2", ".git"),  # git refuses only GIT~1: '.git' is made first
        ("gi~1", ".git"),
        ("GI12AB~3", ".git"),
        ("GITMOD~5", ".gitmodules"),
        ("GITATT~9", ".gitattributes"),
        ("GIT~1", None),  # git's own rule says so (name-git-alias)
        ("GITMOD~1", None),  # likewise (name-gitmodules-alias)
        ("GIT~1.TXT", None),
        ("GOT~2", None),
    ],
)
def test_git_short_alias(part: str, git: str | None) -> None:
    assert names.git_short_alias(part) == git


def ntfs_short_names(name: str, number: int, hashed: str) -> list[str]:
    """The short names NTFS may give ``name`` (the documented algorithm, written out apart
    from the code under test): regular with ``number`` and the hashed form with ``hashed``."""
    text = name.lstrip(".")
    base, dot, ext = text.rpartition(".")
    if not dot:
        base, ext = text, ""
    out = []
    for invalid in ("_", ""):
        b, e = (
            "".join(invalid if c in "+,;=[]" else c for c in t.upper() if c != " ")
            for t in (base.replace(".", ""), ext)
        )
        e = e[:3]
        if not b:
            continue
        suffix = ("." + e) if e else ""
        digits = str(number)
        out.append(b[: 7 - len(digits)][:6] + "~" + digits + suffix)
        out.append(b[:2] + hashed + "~" + str(number % 10 or 1) + suffix)
    return out


NAME_CHARS = st.sampled_from(list("abcXYZ019-_ .+,;=[]é~"))


@given(
    name=st.text(NAME_CHARS, min_size=1, max_size=20),
    number=st.integers(1, 999),
    hashed=st.text(st.sampled_from("0123456789ABCDEF"), min_size=4, max_size=4),
)
def test_every_short_name_ntfs_may_give_is_an_alias(name: str, number: int, hashed: str) -> None:
    """Whatever the long name, each short name NTFS may make of it is recognised, in any case
    and with what Win32 strips; a name of no short-name shape never is."""
    for short in ntfs_short_names(name, number, hashed):
        if names.fold_name(short) == names.fold_name(name) or names.short_form(short) is None:
            continue  # the name was its own short name, or had a '.' or '~' NTFS would drop
        for spelling in (short, short.lower(), short + ".", short + ":stream"):
            assert names.short_alias(spelling, name), (spelling, name)
        assert names.ShortNames([name, "unrelated-other.txt"]).find(short) == name


@given(
    part=st.text(NAME_CHARS, min_size=1, max_size=12),
    folder=st.lists(st.text(NAME_CHARS, min_size=1, max_size=12), max_size=8),
)
def test_the_short_name_index_agrees_with_trying_every_name(part: str, folder: list[str]) -> None:
    found = names.ShortNames(folder).find(part)
    candidates = [n for n in folder if names.short_form(n) is None]
    if found is None:
        assert not any(names.short_alias(part, n) for n in candidates)
    else:
        assert found in candidates and names.short_alias(part, found)
    if names.short_form(part) is None:
        assert found is None and not any(names.short_alias(part, n) for n in folder)


@given(
    head=st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"), min_size=1, max_size=6),
    number=st.integers(1, 99),
    name=st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-"), min_size=1, max_size=16),
)
def test_a_short_name_is_an_alias_only_when_its_head_starts_the_name(
    head: str, number: int, name: str
) -> None:
    """The conservative rule, and no wider: a head that neither starts the basis nor is the
    hashed form (two characters and four hex digits) aliases nothing."""
    short = f"{head}~{number}"
    if names.short_form(short) is None:
        return
    upper = name.upper()
    hashed = len(head) >= 5 and set(head[-4:]) <= set("0123456789ABCDEF")
    starts = upper.startswith(head) or (hashed and upper.startswith(head[:-4]))
    assert names.short_alias(short, name) is (starts and short.lower() != name)


def test_short_name_lookup_is_not_quadratic() -> None:
    """Ten thousand long names and ten thousand short ones that fit none of them."""
    import time

    folder = [f"entry-number-{i:05d}.txt" for i in range(10_000)]
    folder += [f"é-{i:05d}.txt" for i in range(2_000)]  # a non-ASCII start fits any head
    index = names.ShortNames(folder)
    start = time.monotonic()
    found = [index.find(f"ENTRZ{i % 10}~{i % 9 + 1}.TXT") for i in range(10_000)]
    assert time.monotonic() - start < 5
    assert found == [None] * 10_000
    assert index.find("ENTRY-~1.TXT") == "entry-number-00000.txt"


def test_a_name_of_short_name_shape_is_indexed_as_a_long_name_too() -> None:
    """'0~0' is a long name as much as any other: the index finds it as trying every name does
    (hypothesis found the index had left such names out)."""
    assert names.short_alias("0~0~1", "0~0")
    assert names.ShortNames(["0~0", "other.txt"]).find("0~0~1") == "0~0"
    assert names.ShortNames(["0~0"]).find("0~0") is None  # never its own alias
