"""Failing test names and bounded tails from a check's output (pure, hostile input)."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from tools.codex.factory.core import testfailures as tf

PYTEST_OUT = b"""\
============================= test session starts ==============================
collected 3 items

tests/test_x.py::test_ok PASSED                                          [ 33%]
tests/test_x.py::test_y FAILED                                           [ 66%]
tests/test_x.py::test_z[a b] FAILED                                      [100%]

=========================== short test summary info ============================
FAILED tests/test_x.py::test_y - AssertionError: assert 1 == 2
FAILED tests/test_x.py::test_z[a b] - ValueError
ERROR tests/test_broken.py - ImportError: no module named nope
ERROR: Could not find a version that satisfies the requirement
========================= 2 failed, 1 passed in 0.01s ==========================
"""


def test_pytest_summary_verbose_and_collection_errors() -> None:
    assert tf.failing_tests(PYTEST_OUT, b"") == [
        "tests/test_broken.py",
        "tests/test_x.py::test_y",
        "tests/test_x.py::test_z[a b]",
    ]


def test_pytest_xdist_lines() -> None:
    out = b"[gw0] [ 50%] FAILED tests/test_a.py::test_b \n[gw1] [100%] PASSED tests/test_a.py::c\n"
    assert tf.failing_tests(out, b"") == ["tests/test_a.py::test_b"]


def test_unittest_both_formats_on_stderr() -> None:
    err = (
        b"FAIL: test_y (pkg.test_x.TestZ)\r\n"
        b"ERROR: test_w (pkg.test_x.TestZ.test_w)\r\n"
        b"FAIL: test_v (pkg.test_x.TestZ.test_v) (i=1)\r\n"
    )
    assert tf.failing_tests(b"", err) == [
        "pkg.test_x.TestZ.test_v",
        "pkg.test_x.TestZ.test_w",
        "pkg.test_x.TestZ.test_y",
    ]


JUNIT = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
  <testcase classname="tests.test_x" name="test_ok"/>
  <testcase classname="tests.test_x" name="test_y"><failure message="x">boom</failure></testcase>
  <testcase classname="tests.test_x" name="test_e"><error message="e"/></testcase>
  <testcase classname="tests.test_x" name="test_s"><skipped/></testcase>
</testsuite></testsuites>
"""


def test_junit_failures_and_errors_win_over_text() -> None:
    assert tf.failing_tests(PYTEST_OUT, b"", JUNIT) == [
        "tests.test_x.test_e",
        "tests.test_x.test_y",
    ]


def test_junit_with_doctype_or_entities_is_refused_and_text_is_used() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<testsuite><testcase name="&b;"><failure/></testcase></testsuite>'
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<testsuite><testcase name="&x;"><failure/></testcase></testsuite>'
    )
    for doc in (bomb, external, b"<testsuite><testcase", b"\x00\xff"):
        try:
            tf.names_in_junit(doc)
        except tf.JUnitError:
            pass
        else:
            raise AssertionError(f"accepted {doc[:40]!r}")
        assert tf.failing_tests(b"FAILED tests/t.py::a - x\n", b"", doc) == ["tests/t.py::a"]


def test_junit_declaring_an_encoding_expat_cannot_read_is_refused_not_raised() -> None:
    """A check's XML may declare any encoding: one Python has no codec for, a multi-byte or a
    non-text one must be a refused document (the text is used), never an exception."""
    body = b'<testsuite><testcase name="planted"><failure/></testcase></testsuite>'
    for enc in (b"bogus", b"utf-7", b"shift_jis", b"idna", b"rot13", b"punycode", b"undefined"):
        doc = b'<?xml version="1.0" encoding="' + enc + b'"?>' + body
        try:
            tf.names_in_junit(doc)
        except tf.JUnitError:
            pass
        else:
            raise AssertionError(f"accepted encoding {enc!r}")
        assert tf.failing_tests(b"FAILED tests/t.py::a - x\n", b"", doc) == ["tests/t.py::a"]


def test_tail_is_bounded_visible_and_decoded() -> None:
    lines = [f"line {i}" for i in range(30)]
    out = ("\r\n".join(lines) + "\r\n\r\n").encode()
    assert tf.tail(out) == lines[-20:]
    hostile = b"\x1b[2Jcleared\x07 \xe2\x80\xae evil \xff" + b"x" * 1000
    (line,) = tf.tail(hostile)
    assert "\x1b" not in line and "\u202e" not in line and "\\x1b[2J" in line
    assert "\\u202e" in line and "\ufffd" in line and len(line) <= tf.LINE_CHARS
    utf16 = "\ufeffFAIL: test_y (m.T)\r\nsecond\r\n".encode("utf-16-le")
    assert tf.tail(utf16) == ["FAIL: test_y (m.T)", "second"]
    assert tf.failing_tests(b"", utf16) == ["m.T.test_y"]


def test_names_are_capped() -> None:
    out = "".join(f"FAILED tests/t.py::test_{i:03} - x\n" for i in range(200)).encode()
    names = tf.failing_tests(out, b"")
    assert len(names) == tf.MAX_TESTS and names[-1] == "... and 151 more"


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.binary(max_size=4000), st.binary(max_size=4000), st.none() | st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_and_stay_bounded(
    out: bytes, err: bytes, junit: bytes | None
) -> None:
    got = tf.summarize(out, err, junit)
    assert len(got["failing_tests"]) <= tf.MAX_TESTS
    for stream in ("stdout", "stderr"):
        assert len(got["output_tail"][stream]) <= tf.TAIL_LINES
    for line in got["failing_tests"] + got["output_tail"]["stdout"] + got["output_tail"]["stderr"]:
        assert len(line) <= tf.LINE_CHARS and "\n" not in line and "\r" not in line
        assert not [c for c in line if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["FAILED a.py::t - x", "FAIL: t (m.C)", "\r", "\x00", "é"])))
def test_structured_noise_never_raises(parts: list[str]) -> None:
    data = "\n".join(parts).encode()
    assert tf.summarize(data, data[::-1], data) == tf.summarize(data, data[::-1], data)


def test_a_long_hostile_line_is_read_in_linear_time() -> None:
    """A check's one long line of colons (worker output) once made the verbose pattern
    backtrack quadratically: minutes of integrate and replay for a 256 KiB tail."""
    import time

    for line in (b":" * 64 * 1024, b"a::" * 20_000 + b" FAILE", b"x:: FAILED" * 6000):
        started = time.monotonic()
        tf.summarize(line, line)
        assert time.monotonic() - started < 2.0, line[:20]
    assert tf.names_in_text(b"a:::: FAILED [ 5%]\n") == {"a::::"}
    assert tf.names_in_text(b"a:: FAILED\n::b FAILED\nt.py::x y FAILED  [100%]\n") == {"t.py::x y"}


def test_the_tail_of_a_long_utf16_log_is_still_read_as_utf16() -> None:
    """A UTF-16 log (Windows tools) longer than the tail loses its byte-order mark to the cut,
    at an even or an odd byte: its lines and failing tests are still read, not NUL escapes."""
    text = "\ufeff" + "noise line\r\n" * 30_000 + "FAIL: test_y (m.T)\r\nlast line\r\n"
    data = text.encode("utf-16-le")
    assert len(data) > tf.TAIL_BYTES
    for cut in (tf.TAIL_BYTES, tf.TAIL_BYTES - 1):
        got = tf.summarize(b"", data[-cut:])
        assert got["failing_tests"] == ["m.T.test_y"], cut
        assert got["output_tail"]["stderr"][-2:] == ["FAIL: test_y (m.T)", "last line"], cut
    assert tf.tail(b"a\x00b\x00\xff\x00") == ["a\\x00b\\x00\ufffd\\x00"]  # too short to guess
