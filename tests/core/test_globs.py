"""Scope-lock globs: an examples table, refusals, and properties over random paths."""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.codex.factory.core.globs import _match_steps, compile_glob, match_any, validate_glob

EXAMPLES: list[tuple[str, str, bool]] = [
    # root anchoring
    ("*.md", "README.md", True),
    ("*.md", "docs/a.md", False),
    ("*.md", ".md", True),
    ("README.md", "README.md", True),
    ("README.md", "docs/README.md", False),
    ("README.md", "README.mdx", False),
    # '*' and '?' stay within a segment
    ("src/*", "src/a.py", True),
    ("src/*", "src/.env", True),
    ("src/*", "src/a/b.py", False),
    ("src/*.py", "src/x/a.py", False),
    ("src/?.py", "src/a.py", True),
    ("src/?.py", "src/ab.py", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    # classes
    ("[abc].txt", "b.txt", True),
    ("[abc].txt", "d.txt", False),
    ("[!abc].txt", "d.txt", True),
    ("[!abc].txt", "a.txt", False),
    ("[^abc].txt", "d.txt", True),
    ("[a-c]x", "bx", True),
    ("[a-c]x", "dx", False),
    ("[]]x", "]x", True),
    ("[a-]x", "-x", True),
    ("[*]", "*", True),
    ("[*]", "a", False),
    ("[[]", "[", True),
    ("a[+-0]b", "a/b", False),
    ("a[+-0]b", "a.b", True),
    ("a[!x]b", "a/b", False),
    # '**'
    ("src/**", "src/a", True),
    ("src/**", "src/a/b/c", True),
    ("src/**", "src", False),
    ("src/**", "srcx/a", False),
    ("src/**", "other/src/a", False),
    ("**/x.py", "x.py", True),
    ("**/x.py", "a/b/x.py", True),
    ("**/x.py", "a/bx.py", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/c", False),
    ("a/**/b", "ab", False),
    ("**", "anything/at/all", True),
    ("**", "x", True),
    ("**/*.md", "docs/deep/a.md", True),
    ("**/*.md", "a.md", True),
    ("a/**/**/b", "a/b", True),
    ("**/tests/**", "tests/x", True),
    ("**/tests/**", "pkg/tests/a/b", True),
    ("**/tests/**", "pkg/tests", False),
    # trailing '/'
    ("scenarios/", "scenarios/a.json", True),
    ("scenarios/", "scenarios/x/y", True),
    ("scenarios/", "scenarios", False),
    ("scenarios/", "scenariosx/a", False),
    # literal metacharacters of regular expressions
    ("a+b.(c)", "a+b.(c)", True),
    ("a+b.(c)", "aab.(c)", False),
    ("$x^", "$x^", True),
    # non-ASCII
    ("docs/café*.md", "docs/café naïve.md", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), EXAMPLES)
def test_examples(pattern: str, path: str, expected: bool) -> None:
    assert compile_glob(pattern).match(path) is expected
    assert (match_any(path, [pattern]) == pattern) is expected


def test_ignore_case() -> None:
    assert match_any("Docs/README.MD", ["docs/*.md"]) is None
    assert match_any("Docs/README.MD", ["docs/*.md"], ignore_case=True) == "docs/*.md"
    assert match_any("SRC/x", ["[a-z]rc/**"], ignore_case=True) == "[a-z]rc/**"


def test_match_any_returns_first_matching_pattern() -> None:
    assert match_any("src/a.py", ["docs/**", "src/*.py", "src/**"]) == "src/*.py"
    assert match_any("src/a.py", []) is None
    assert match_any("lib/a.py", ["docs/**", "src/**"]) is None


def test_ignore_case_folds_unicode_per_character() -> None:
    assert match_any("\u212a.txt", ["[j-l].txt"], ignore_case=True)  # KELVIN SIGN folds to 'k'
    assert match_any("\u212a.txt", ["[!j-l].txt"], ignore_case=True) is None
    assert match_any("\u212a.txt", ["k.txt"], ignore_case=True)
    assert match_any("STRA\u1e9eE", ["stra\u00dfe"], ignore_case=True)  # capital and small sharp s
    assert match_any("stra\u00dfe", ["stra?e"], ignore_case=True)  # '?' is still one character
    assert match_any("strasse", ["stra\u00dfe"], ignore_case=True) is None
    assert match_any("\u017f.md", ["[S].md"], ignore_case=True)  # LONG S folds to 's'
    assert match_any("\u017f.md", ["[S].md"]) is None


def test_compile_is_cached() -> None:
    assert compile_glob("cache/**") is compile_glob("cache/**")
    assert compile_glob("cache/**") is not compile_glob("cache/**", ignore_case=True)


def test_compiled_glob_is_immutable() -> None:
    glob = compile_glob("src/**", ignore_case=True)
    assert (glob.pattern, glob.ignore_case) == ("src/**", True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        glob.pattern = "**"  # type: ignore[misc]
    assert compile_glob("src/**", ignore_case=True).match("SRC/a")


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "empty"),
        ("/etc/**", "absolute"),
        ("C:/x", "absolute"),
        ("c:x", "absolute"),
        ("../x", "'..'"),
        ("a/../b", "'..'"),
        ("a/..", "'..'"),
        ("./a", "'.'"),
        ("a//b", "empty segment"),
        ("a\\b", "backslash"),
        ("a\x00b", "NUL"),
        ("src/[abc", "unbalanced '['"),
        ("[", "unbalanced '['"),
        ("[]", "unbalanced '['"),
        ("[!]", "unbalanced '['"),
        ("a/[b/c]", "unbalanced '['"),
        ("[z-a]", "reversed range"),
        ("src/**.py", "whole segment"),
        ("a**", "whole segment"),
    ],
)
def test_validate_refuses(pattern: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as exc:
        validate_glob(pattern)
    assert repr(pattern) in str(exc.value)
    with pytest.raises(ValueError):
        compile_glob(pattern)
    with pytest.raises(ValueError):
        match_any("x", [pattern])


@pytest.mark.parametrize("pattern", ["*", "**", "src/", "a/**/b", "[!.]*", "x[]]y", "**/*.py"])
def test_validate_accepts(pattern: str) -> None:
    validate_glob(pattern)


# -- properties ------------------------------------------------------------------------------
segment = st.text(alphabet="abcxyz.-_ é", min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")
)
paths = st.lists(segment, min_size=1, max_size=5).map("/".join)
dirs = st.lists(segment, min_size=1, max_size=3).map("/".join)


@given(d=dirs, path=paths)
def test_dir_star_star_matches_exactly_the_paths_under_dir(d: str, path: str) -> None:
    for pattern in (f"{d}/**", f"{d}/"):
        hit = match_any(path, [pattern]) is not None
        assert hit == path.startswith(d + "/"), (pattern, path)


@given(d=dirs, rel=paths)
def test_everything_under_dir_matches(d: str, rel: str) -> None:
    assert match_any(f"{d}/{rel}", [f"{d}/**"]) == f"{d}/**"
    assert match_any(d, [f"{d}/**"]) is None


@given(prefix=st.lists(segment, max_size=4), name=segment, path=paths)
def test_leading_star_star_is_any_depth(prefix: list[str], name: str, path: str) -> None:
    full = "/".join([*prefix, name])
    assert compile_glob(f"**/{name}").match(full)
    hit = compile_glob(f"**/{name}").match(path)
    assert hit == (path.split("/")[-1] == name)


@given(a=segment, b=segment, path=paths)
def test_inner_star_star_equivalences(a: str, b: str, path: str) -> None:
    inner = compile_glob(f"{a}/**/{b}").match(path)
    parts = path.split("/")
    assert inner == (len(parts) >= 2 and parts[0] == a and parts[-1] == b)
    # 'a/**/b' == 'a/b' or 'a/**/b' with at least one segment between
    assert inner == (path == f"{a}/{b}" or (len(parts) >= 3 and parts[0] == a and parts[-1] == b))
    # repeated '**' is one '**'
    assert inner == compile_glob(f"{a}/**/**/{b}").match(path)


@given(path=paths)
def test_star_star_alone_matches_every_path(path: str) -> None:
    assert match_any(path, ["**"]) == "**"


@given(pattern=st.text(alphabet="ab*?", max_size=6), name=st.text(alphabet="ab", max_size=6))
def test_single_segment_agrees_with_fnmatch(pattern: str, name: str) -> None:
    if not pattern or "**" in pattern:
        return
    assert compile_glob(pattern).match(name) == fnmatch.fnmatchcase(name, pattern)


@given(
    cls=st.text(alphabet="abc", min_size=1, max_size=3),
    neg=st.booleans(),
    name=st.text(alphabet="abcd", min_size=1, max_size=1),
)
def test_classes_agree_with_fnmatch(cls: str, neg: bool, name: str) -> None:
    pattern = f"[{'!' if neg else ''}{cls}]"
    assert compile_glob(pattern).match(name) == fnmatch.fnmatchcase(name, pattern)


@given(pattern=st.text(alphabet="ab*?/[]!", min_size=1, max_size=8), path=paths)
def test_without_star_star_a_match_keeps_the_segment_count(pattern: str, path: str) -> None:
    """Random patterns only ever raise ValueError; without '**' no match crosses a '/'."""
    try:
        glob = compile_glob(pattern)
    except ValueError:
        return
    if "**" not in pattern and not pattern.endswith("/") and glob.match(path):
        assert path.count("/") == pattern.count("/")


# -- the old regular-expression translation, kept as a reference oracle -------------------------
def _oracle(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(_old_translate(pattern), re.IGNORECASE if ignore_case else 0)


@functools.lru_cache(maxsize=4096)
def _old_translate(pattern: str) -> str:
    def bad(why: str) -> ValueError:
        return ValueError(f"glob {pattern!r}: {why}")

    if not pattern:
        raise bad("empty pattern")
    if "\\" in pattern:
        raise bad("backslash; use '/' to separate segments (there are no escapes)")
    if "\x00" in pattern:
        raise bad("contains NUL")
    if pattern.startswith("/") or re.match(r"[A-Za-z]:", pattern):
        raise bad("absolute; patterns are relative to the repository root")
    segments = pattern.split("/")
    if segments[-1] == "":
        segments[-1] = "**"
    for seg in segments:
        if seg == "":
            raise bad("empty segment ('//')")
        if seg in (".", ".."):
            raise bad(f"'{seg}' segment; paths are normalised")
        if "**" in seg and seg != "**":
            raise bad("'**' must be a whole segment (write 'a/**' or '**/b')")
    segments = [
        s for k, s in enumerate(segments) if not (s == "**" and segments[k - 1 : k] == ["**"])
    ]
    out: list[str] = []
    last = len(segments) - 1
    for k, seg in enumerate(segments):
        if seg == "**":
            out.append("[^/]+(?:/[^/]+)*" if k == last else "(?:[^/]+/)*")
            continue
        out.append(_old_segment(seg, bad))
        if k != last:
            out.append("/")
    return "".join(out)


def _old_segment(seg: str, bad: Callable[[str], ValueError]) -> str:
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
            cls, i = _old_char_class(seg, i, bad)
            out.append(cls)
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _old_char_class(seg: str, start: int, bad: Callable[[str], ValueError]) -> tuple[str, int]:
    i = start + 1
    negate = i < len(seg) and seg[i] in "!^"
    if negate:
        i += 1
    body_start = i
    if i < len(seg) and seg[i] == "]":
        i += 1
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
    if negate:
        return f"[^/{''.join(parts)}]", i + 1
    return f"(?!/)[{''.join(parts)}]", i + 1


def _old_error(pattern: str) -> str | None:
    try:
        _old_translate(pattern)
    except ValueError as exc:
        return str(exc)
    return None


def _new_error(pattern: str) -> str | None:
    try:
        validate_glob(pattern)
    except ValueError as exc:
        return str(exc)
    return None


ALPHABET = "/*?[]!-.abA"
# Pieces that make valid patterns likely (random text over ALPHABET is mostly refused).
PIECES = ["a", "b", "A", ".", "-", "*", "?", "**", "[ab]", "[!a]", "[a-b]", "[]]", "[A-a]", "[-]"]
piece_segments = st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map("".join)
piece_patterns = st.lists(piece_segments, min_size=1, max_size=4).map("/".join) | st.lists(
    piece_segments, min_size=1, max_size=3
).map(lambda segs: "/".join(segs) + "/")
raw_paths = st.text(alphabet=ALPHABET, max_size=12)
path_segments = st.text(alphabet="abA.-*?[]!", max_size=3)
segment_paths = st.lists(path_segments, min_size=1, max_size=6).map("/".join)


def _agrees_with_oracle(pattern: str, path: str) -> None:
    error = _old_error(pattern)
    assert _new_error(pattern) == error, pattern
    if error is not None:
        return
    for ignore_case in (False, True):
        expected = _oracle(pattern, ignore_case).fullmatch(path) is not None
        got = compile_glob(pattern, ignore_case=ignore_case).match(path)
        assert got == expected, (pattern, path, ignore_case)


@settings(max_examples=200)
@given(pattern=st.text(alphabet=ALPHABET, max_size=8), path=raw_paths)
def test_agrees_with_the_old_regex_on_random_text(pattern: str, path: str) -> None:
    """Same refusals (same messages) and, for valid patterns, the same answers."""
    _agrees_with_oracle(pattern, path)


@settings(max_examples=200)
@given(pattern=piece_patterns, path=segment_paths | raw_paths)
def test_agrees_with_the_old_regex_on_likely_valid_patterns(pattern: str, path: str) -> None:
    _agrees_with_oracle(pattern, path)


@given(
    pattern=st.text(alphabet="ab*?/[]!-kK\u212a\u00df\u1e9e\u017fsS", min_size=1, max_size=8),
    path=st.text(alphabet="abkK\u212a\u00df\u1e9e\u017fsS/", max_size=8),
)
def test_ignore_case_never_matches_less(pattern: str, path: str) -> None:
    try:
        glob = compile_glob(pattern)
    except ValueError:
        return
    if glob.match(path):
        assert compile_glob(pattern, ignore_case=True).match(path)


# -- linear work ---------------------------------------------------------------------------------
# The bound argued in globs._match_steps / _match_segment, with L = len(path), K = len(pattern):
# splitting and folding cost at most 2 * (L + 1); the segment table 2 * segments * items, with
# segments <= L + 1 and items <= K + 1; each (segment, item) pair at most
# (len(segment) + 1) * (len(item) + 1), which sums to (L + 1) * (K + 3) (a trailing '/' adds
# '**'). Altogether under 7 * (L + 1) * (K + 1).
C = 7


def _assert_linear(
    pattern: str, path: str, expected: bool, expected_folded: bool | None = None
) -> None:
    for ignore_case in (False, True):
        hit, steps = _match_steps(compile_glob(pattern, ignore_case=ignore_case), path)
        want = expected_folded if ignore_case and expected_folded is not None else expected
        assert hit is want, (pattern, ignore_case)
        assert steps <= C * (len(path) + 1) * (len(pattern) + 1), (pattern, steps)


ADVERSARIAL: list[tuple[str, str, bool]] = [
    # the plan glob that made the old regex backtrack for minutes, on 5,000 segments
    ("src/**/a/**/b/**/*.py", "src/" + "a/" * 4998 + "x.py", False),
    ("src/**/a/**/b/**/*.py", "src/" + "a/b/" * 2499 + "x.pyc", False),
    ("src/**/a/**/b/**/*.py", "src/" + "a/b/" * 2499 + "x.py", True),
    ("src/**/a/**/b/**/*.py", "src/" + "a/" * 4997 + "b/x.py", True),
    ("src/**/a/**/b/**/*.py", "src/" + "a/" * 4998 + "x.pyc", False),
    ("**/a/**/a/**/a/**/a/**/a/**/b", "a/" * 5000 + "c", False),
    ("**/*a*/**/*a*/**/*a*/**/b/", "a/" * 3000 + "b", False),
    ("**/" * 40 + "x", "a/" * 3000 + "y", False),
    ("*a*a*a*a*a*a*a*a*a*a*b", "a" * 5000, False),
    ("*a*a*a*a*a*a*a*a*a*a*b", "a" * 5000 + "b", True),
    ("*?*?*?*?*?*?*?*?*?*?*b", "a" * 5000, False),
    ("*" + "a" * 50 + "b", "a" * 5000, False),  # every restart rescans 50 tokens
    ("*[a-b]*[!c]*[ab]*[A-z]*?*c", "ab" * 2500, False),
    ("**/" + "*a" * 30 + "*b", ("a" * 100 + "/") * 50, False),
    ("x/" * 200 + "**", "x/" * 199 + "y/z", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), ADVERSARIAL)
def test_work_is_bounded_by_path_times_pattern(pattern: str, path: str, expected: bool) -> None:
    _assert_linear(pattern, path, expected)


@given(pattern=piece_patterns, path=segment_paths)
def test_work_bound_holds_on_random_inputs(pattern: str, path: str) -> None:
    if _old_error(pattern) is not None:
        return
    _assert_linear(
        pattern,
        path,
        _oracle(pattern, False).fullmatch(path) is not None,
        _oracle(pattern, True).fullmatch(path) is not None,  # 'AA/?' matches 'aa/' folded
    )


_SEG = st.sampled_from(["a", "A", "b", "src", "SRC", "*", "?", "[a-b]", "**", "x.md", "ß", "SS"])


@settings(max_examples=400, derandomize=True, deadline=None)
@given(
    patterns=st.lists(st.lists(_SEG, min_size=1, max_size=3).map("/".join), max_size=6),
    path=st.lists(st.sampled_from(["a", "A", "b", "src", "Src", "x.md", "ss", ""]), min_size=1,
                  max_size=4).map("/".join),
    ignore_case=st.booleans(),
)  # fmt: skip
def test_match_any_is_the_first_pattern_that_matches_in_order(
    patterns: list[str], path: str, ignore_case: bool
) -> None:
    """Trying only the patterns a path's first segment can start finds what trying every
    pattern in order finds (or raises where that would)."""

    def every() -> str | None:
        return next(
            (p for p in patterns if compile_glob(p, ignore_case=ignore_case).match(path)), None
        )

    try:
        expected: str | type[ValueError] | None = every()
    except ValueError:
        expected = ValueError
    try:
        got: str | type[ValueError] | None = match_any(path, patterns, ignore_case=ignore_case)
    except ValueError:
        got = ValueError
    assert got == expected


# Literal folders and a trailing '**' (the usual scope lock) are matched by comparing their
# first segments: always the program's answer.
prefix_patterns = st.lists(
    st.sampled_from(["a", "b", "A", "ß", "ss", "K", "\u212a", ".x", "a.b"]), min_size=1, max_size=3
).map(lambda segs: "/".join(segs) + ("/" if len(segs) % 2 else "/**"))


@settings(max_examples=300, derandomize=True)
@given(
    patterns=st.lists(prefix_patterns | piece_patterns, min_size=1, max_size=4),
    path=st.lists(
        st.sampled_from(["a", "b", "A", "ß", "ss", "SS", "k", "\u212a", ".x", "a.b", ""]),
        min_size=1,
        max_size=5,
    ).map("/".join),
)
def test_match_any_and_match_are_the_programs_answer(patterns: list[str], path: str) -> None:
    for ignore_case in (False, True):
        usable = []
        for pattern in patterns:
            try:
                glob = compile_glob(pattern, ignore_case=ignore_case)
            except ValueError:
                continue
            usable.append(pattern)
            assert glob.match(path) is _match_steps(glob, path)[0], (pattern, path, ignore_case)
        want = next(
            (p for p in usable if _match_steps(compile_glob(p, ignore_case=ignore_case), path)[0]),
            None,
        )
        assert match_any(path, usable, ignore_case=ignore_case) == want
