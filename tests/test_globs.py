"""Scope-lock globs: an examples table, refusals, and properties over random paths."""

from __future__ import annotations

import fnmatch
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.codex.factory.core.globs import compile_glob, match_any, validate_glob

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
    assert bool(compile_glob(pattern).fullmatch(path)) is expected
    assert (match_any(path, [pattern]) == pattern) is expected


def test_ignore_case() -> None:
    assert match_any("Docs/README.MD", ["docs/*.md"]) is None
    assert match_any("Docs/README.MD", ["docs/*.md"], ignore_case=True) == "docs/*.md"
    assert match_any("SRC/x", ["[a-z]rc/**"], ignore_case=True) == "[a-z]rc/**"


def test_match_any_returns_first_matching_pattern() -> None:
    assert match_any("src/a.py", ["docs/**", "src/*.py", "src/**"]) == "src/*.py"
    assert match_any("src/a.py", []) is None
    assert match_any("lib/a.py", ["docs/**", "src/**"]) is None


def test_compile_is_cached() -> None:
    assert compile_glob("cache/**") is compile_glob("cache/**")
    assert compile_glob("cache/**") is not compile_glob("cache/**", ignore_case=True)


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
    assert compile_glob(f"**/{name}").fullmatch(full)
    hit = compile_glob(f"**/{name}").fullmatch(path) is not None
    assert hit == (path.split("/")[-1] == name)


@given(a=segment, b=segment, path=paths)
def test_inner_star_star_equivalences(a: str, b: str, path: str) -> None:
    inner = compile_glob(f"{a}/**/{b}").fullmatch(path) is not None
    parts = path.split("/")
    assert inner == (len(parts) >= 2 and parts[0] == a and parts[-1] == b)
    # 'a/**/b' == 'a/b' or 'a/**/b' with at least one segment between
    assert inner == (path == f"{a}/{b}" or (len(parts) >= 3 and parts[0] == a and parts[-1] == b))
    # repeated '**' is one '**'
    assert inner == (compile_glob(f"{a}/**/**/{b}").fullmatch(path) is not None)


@given(path=paths)
def test_star_star_alone_matches_every_path(path: str) -> None:
    assert match_any(path, ["**"]) == "**"


@given(pattern=st.text(alphabet="ab*?", max_size=6), name=st.text(alphabet="ab", max_size=6))
def test_single_segment_agrees_with_fnmatch(pattern: str, name: str) -> None:
    if not pattern or "**" in pattern:
        return
    assert (compile_glob(pattern).fullmatch(name) is not None) == fnmatch.fnmatchcase(name, pattern)


@given(
    cls=st.text(alphabet="abc", min_size=1, max_size=3),
    neg=st.booleans(),
    name=st.text(alphabet="abcd", min_size=1, max_size=1),
)
def test_classes_agree_with_fnmatch(cls: str, neg: bool, name: str) -> None:
    pattern = f"[{'!' if neg else ''}{cls}]"
    assert (compile_glob(pattern).fullmatch(name) is not None) == fnmatch.fnmatchcase(name, pattern)


@given(pattern=st.text(alphabet="ab*?/[]!", min_size=1, max_size=8), path=paths)
def test_without_star_star_a_match_keeps_the_segment_count(pattern: str, path: str) -> None:
    """Random patterns only ever raise ValueError; without '**' no match crosses a '/'."""
    try:
        rx = compile_glob(pattern)
    except ValueError:
        return
    if "**" not in pattern and not pattern.endswith("/") and rx.fullmatch(path):
        assert path.count("/") == pattern.count("/")
