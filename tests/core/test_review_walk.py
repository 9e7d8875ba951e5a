"""Gate 0's own tree walk is ast.walk's, less the operator singletons no rule reads."""

from __future__ import annotations

import ast
from pathlib import Path

from tools.codex.factory.core import patchparse, review

ROOT = Path(__file__).resolve().parents[2]
TRICKY = """
@pytest.mark.parametrize("x", [pytest.param(1, marks=pytest.mark.skip)])
async def test_x(x, *a, k: int = 1, **kw) -> None:
    global g
    async with a as b, c:
        [y async for y in z if not y or -y < 2 <= 3]
    match x:
        case {"k": [1, *rest]} | Point(x=0) as p if p:
            raise SkipTest from e
    try:
        del x[1:2, ::3]
    except* (ValueError, TypeError) as e:
        f"{x!r:>{k}}"
    lambda q=1: (yield from q)
"""


def test_walk_is_ast_walk_without_operators() -> None:
    sources = [TRICKY] + [p.read_text() for p in sorted(ROOT.glob("tools/codex/factory/**/*.py"))]
    for source in sources:
        tree = ast.parse(source)
        want = [n for n in ast.walk(tree) if not isinstance(n, review._OPERATORS)]
        got = review._walk(tree)
        assert [id(n) for n in got] == [id(n) for n in want]
        assert [id(n) for n in review._lazy_walk(tree)] == [id(n) for n in want]


def test_section_lines_read_as_text_reads_them() -> None:
    """The inlined line decoding of sections is _text's: CR endings, broken UTF-8, long
    lines, a non-ASCII first byte."""
    old = [b"a\r", b"\xc3", b"x" * (review.MAX_LINE + 9), b"\xe2\x82", b"keep"]
    new = [b"b\r\r", b"\xff\xfe", b"y" * (review.MAX_LINE + 1), b"\xe2\x82", b"keep"]
    body = b"".join(b"-" + line + b"\n" for line in old[:3])
    body += b"".join(b"+" + line + b"\n" for line in new[:3])
    body += b" \xe2\x82\n keep\n"
    data = b"diff --git a/t.py b/t.py\n--- a/t.py\n+++ b/t.py\n@@ -1,5 +1,5 @@\n" + body
    (sec,) = review.sections(patchparse.parse(data))
    assert sec.removed == [(i + 1, review._text(line)) for i, line in enumerate(old[:3])]
    assert sec.added == [(i + 1, review._text(line)) for i, line in enumerate(new[:3])]
    assert [t for k, t in sec.hunks[0][2] if k == " "] == [review._text(x) for x in old[3:]]
