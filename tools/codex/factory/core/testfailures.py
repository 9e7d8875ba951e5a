"""What a failed check said: its failing test names and a bounded tail of its output.

Pure (no I/O): the caller hands in the last :data:`TAIL_BYTES` of each log (the very bytes
whose hash it recorded) and, when the check writes one, its JUnit XML; replay hands in the same
bytes from the logs on disk and gets the same answer. Every byte here comes from a check that
ran a worker's code, so it is hostile: nothing raises, and the output is bounded whatever comes
in (names and lines clipped, counted, with control characters made visible).
"""

from __future__ import annotations

import re
import unicodedata
from typing import TypedDict
from xml.parsers import expat

from tools.codex.factory.core.text import clip

TAIL_BYTES = 256 * 1024  # of each log, read by the caller: the summary sees no more
TAIL_LINES = 20  # lines of each stream kept in the tail
LINE_CHARS = 300  # characters of a tail line or a test name
MAX_TESTS = 50  # failing test names kept (sorted; the rest are counted in the tail's place)
JUNIT_MAX_BYTES = 4 * 1024 * 1024


class OutputTail(TypedDict):
    stdout: list[str]
    stderr: list[str]


class CheckOutput(TypedDict):
    failing_tests: list[str]
    output_tail: OutputTail


# pytest: "FAILED tests/t.py::test_y - AssertionError" (short summary), "ERROR tests/t.py" (a
# collection error), "tests/t.py::test_y FAILED  [ 50%]" (verbose), "[gw0] [ 50%] FAILED t::y".
_PYTEST_SUMMARY = re.compile(r"^(?:FAILED|ERROR) (?P<name>\S.*?)(?: - .*)?$")
# Verbose, read in two linear steps (one pattern with "\S+::\S.*?" backtracks quadratically on
# a long line of colons a check prints): the earliest outcome word that ends the line, then a
# name whose first word holds "::" between two characters.
_PYTEST_VERBOSE_END = re.compile(r" (?:FAILED|ERROR)(?:\s+\[\s*\d+%\])?$")
_FIRST_WORD = re.compile(r"\S+")
_PYTEST_XDIST = re.compile(r"^\[gw\d+\] \[\s*\d+%\] (?:FAILED|ERROR) (?P<name>\S+)")
# unittest: "FAIL: test_y (pkg.test_x.TestZ)" or, from Python 3.11, "(pkg.test_x.TestZ.test_y)".
_UNITTEST = re.compile(r"^(?:FAIL|ERROR): (?P<test>\w+) \((?P<where>[\w.]+)\)")
_PYTEST_NAME = re.compile(r"::|\.py\b")


def decode(data: bytes) -> str:
    """Text of a log: UTF-16 with a byte-order mark, or a UTF-16-LE tail whose mark was cut
    off, else UTF-8 (a BOM dropped); bad bytes are replaced, never raised on."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    skip = _utf16_le_offset(data)
    if skip is not None:
        return data[skip:].decode("utf-16-le", "replace")
    return data.decode("utf-8-sig", "replace")


def _utf16_le_offset(data: bytes) -> int | None:
    """Where a UTF-16-LE text starts when the tail of a longer log (its mark cut off, at an
    even or an odd byte) is one: mostly ASCII, so nearly every other byte is NUL."""
    sample = data[:4096]
    half = len(sample) // 2
    if half < 32:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd > 0.8 * half and even < 0.1 * half:
        return 0
    if even > 0.8 * half and odd < 0.1 * half:
        return 1
    return None


def visible(text: str) -> str:
    """``text`` with every control, format (bidi) and separator character shown as an escape:
    a log line cannot move the cursor, hide text or break a report line."""
    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _line(text: str) -> str:
    return clip(visible(text), LINE_CHARS)


def lines_of(data: bytes) -> list[str]:
    """The lines of a log (CRLF, CR or LF), decoded, control characters not yet escaped."""
    return decode(data).replace("\r\n", "\n").replace("\r", "\n").split("\n")


def tail(data: bytes, count: int = TAIL_LINES) -> list[str]:
    """The last ``count`` non-blank-ended lines of a log, each visible and clipped."""
    lines = lines_of(data)
    while lines and not lines[-1].strip():
        lines.pop()
    return [_line(x.rstrip()) for x in lines[-count:]]


def _unittest_name(m: re.Match[str]) -> str:
    test, where = m.group("test"), m.group("where")
    return where if where.endswith(f".{test}") else f"{where}.{test}"


def names_in_text(data: bytes) -> set[str]:
    """Failing test names printed by pytest or unittest in one log."""
    found: set[str] = set()
    for raw in lines_of(data):
        text = raw.rstrip()
        m = _UNITTEST.match(text)
        if m:
            found.add(_unittest_name(m))
            continue
        name = _pytest_name(text)
        if name:
            found.add(name)
    return found


def _pytest_name(text: str) -> str:
    """The test a pytest line says failed, or ''."""
    for pattern in (_PYTEST_SUMMARY, _PYTEST_XDIST):
        m = pattern.match(text)
        if m and _PYTEST_NAME.search(m.group("name")):
            return m.group("name").strip()
    end = _PYTEST_VERBOSE_END.search(text)
    if end is None:
        return ""
    name = text[: end.start()]
    first = _FIRST_WORD.match(name)
    word = first.group() if first else ""
    return name.strip() if "::" in word[1:-1] and _PYTEST_NAME.search(name) else ""


class JUnitError(ValueError):
    """A JUnit XML document refused: malformed, with a DOCTYPE or an entity declaration, or in
    an encoding expat cannot read."""


def names_in_junit(data: bytes) -> set[str]:
    """The ``testcase`` elements with a ``failure`` or ``error`` child, as ``classname.name``.

    Parsed with expat directly and defused: a DOCTYPE or an entity declaration is refused
    before anything is expanded (no external entity, no entity bomb), and the size is bounded.
    """
    if len(data) > JUNIT_MAX_BYTES:
        raise JUnitError(f"{len(data)} bytes, over {JUNIT_MAX_BYTES}")
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    found: set[str] = set()
    stack: list[str] = []
    case: list[str] = []  # the name of the testcase being read, if any

    def refuse(*_args: object) -> None:
        raise JUnitError("a DOCTYPE or an entity declaration (refused)")

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag == "testcase":
            cls, name = attrs.get("classname", ""), attrs.get("name", "")
            case[:] = [f"{cls}.{name}" if cls else name]
        elif tag in ("failure", "error") and stack and stack[-1] == "testcase" and case:
            found.add(case[0])
        stack.append(tag)

    def end(tag: str) -> None:
        if stack:
            stack.pop()
        if tag == "testcase":
            case.clear()

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except JUnitError:
        raise
    except expat.ExpatError as exc:
        raise JUnitError(f"not well-formed XML ({exc})") from None
    except RecursionError:
        raise JUnitError("nested too deep") from None
    except (LookupError, ValueError) as exc:  # a declared encoding Python's expat cannot read
        raise JUnitError(f"unreadable encoding ({exc})") from None
    return found


def failing_tests(stdout: bytes, stderr: bytes, junit: bytes | None = None) -> list[str]:
    """Sorted unique failing test names: from the JUnit XML when there is a readable one, else
    from pytest's and unittest's lines in either log; each visible and clipped, at most
    :data:`MAX_TESTS` (then the last entry says how many more)."""
    names: set[str] = set()
    if junit is not None:
        try:
            names = names_in_junit(junit)
        except JUnitError:
            names = set()
    if not names:
        names = names_in_text(stdout) | names_in_text(stderr)
    shown = sorted({_line(n) for n in names if n.strip()})
    if len(shown) > MAX_TESTS:
        return [*shown[: MAX_TESTS - 1], f"... and {len(shown) - MAX_TESTS + 1} more"]
    return shown


def summarize(stdout: bytes, stderr: bytes, junit: bytes | None = None) -> CheckOutput:
    """What a failed check said: its failing tests and the bounded tail of each log. The logs
    passed in are their last :data:`TAIL_BYTES` (more is cut here, from the start)."""
    out, err = stdout[-TAIL_BYTES:], stderr[-TAIL_BYTES:]
    return {
        "failing_tests": failing_tests(out, err, junit),
        "output_tail": {"stdout": tail(out), "stderr": tail(err)},
    }
