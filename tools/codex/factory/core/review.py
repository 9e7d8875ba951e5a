"""Gate 0: the deterministic test-honesty review of one worker's patch.

A worker can make a failing check pass without fixing anything: delete or empty the test,
skip it, assert nothing, assert ``True``, catch every exception, mock the very function under
test, make the code notice it runs under pytest, deselect tests in the configuration, or
return the literals its own new test expects. This module finds those moves in a patch.

Pure: a function of the patch (:mod:`core.patchparse`), the base content of the files the
rules need (:func:`needed_preimages`; the caller reads them from the base commit) and the
settings, so ``ledger-replay`` recomputes the same findings. Python test code is read with
:mod:`ast` where its post-image can be rebuilt; anything that does not parse (invalid Python,
NUL bytes, UTF-16, a hunk that does not fit its pre-image) gets the line rules only. No input
raises: every file is reviewed within fixed bounds (line length, source size, findings).
"""

from __future__ import annotations

import ast
import bisect
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from tools.codex.factory.core import patchparse
from tools.codex.factory.core.globs import compile_glob
from tools.codex.factory.records.validation import ReviewFinding, ReviewSettings, ReviewSeverity

# Each rule and its default severity: critical BLOCKS the worker, warning is reported.
RULES: dict[str, ReviewSeverity] = {
    "test-deleted": "critical",
    "test-emptied": "critical",
    "test-module-skipped": "critical",
    "skip-added": "critical",
    "xfail-added": "critical",
    "no-assertion": "warning",
    "tautology": "critical",
    "raises-everything": "critical",
    "self-mock": "critical",
    "test-detection": "critical",
    "test-selection-changed": "critical",
    "check-config-changed": "warning",
    "hardcoded-output": "warning",
    "test-deleted-glob": "critical",
    "skip-added-pattern": "critical",
    "line-too-long": "critical",
    "hidden-line-break": "critical",
    "file-too-long": "critical",
    "source-encoding": "critical",
    "hunk-misplaced": "critical",
}
# Rules newer than Gate 0 itself, by the policy version that brought each: settings of an
# earlier policy do not name them, and a rule its settings do not name is off (a run
# recorded before it is judged as it was).
RULES_SINCE = {
    "line-too-long": 9,
    "hidden-line-break": 10,
    "file-too-long": 10,
    "source-encoding": 10,
    "hunk-misplaced": 10,
}
DEFAULT_TEST_GLOBS = [
    "tests/**",
    "**/tests/**",
    "**/test_*.py",
    "**/*_test.py",
    "**/conftest.py",
    "**/__tests__/**",
    "**/*.test.js",
    "**/*.spec.js",
    "**/*.test.ts",
    "**/*.spec.ts",
    "**/*.test.tsx",
    "**/*.spec.tsx",
    "**/*_test.go",
    "**/src/test/**",
]
DEFAULT_SKIP_PATTERNS = [
    r"\bit\.skip\(",
    r"\bdescribe\.skip\(",
    r"\btest\.skip\(",
    r"\bxit\(",
    r"\bxdescribe\(",
    r"\bt\.Skip(?:f|Now)?\(",
    r"@Disabled\b",
    r"@Ignore\b",
]
# Test code in languages other than Python (test-deleted-glob, skip-added-pattern).
CODE_EXTENSIONS = frozenset(
    [
        "js",
        "jsx",
        "mjs",
        "cjs",
        "ts",
        "tsx",
        "go",
        "java",
        "kt",
        "kts",
        "scala",
        "rb",
        "rs",
        "cs",
        "fs",
        "vb",
        "php",
        "swift",
        "c",
        "cc",
        "cpp",
        "cxx",
        "h",
        "hpp",
        "m",
        "mm",
        "dart",
        "ex",
        "exs",
        "erl",
        "clj",
        "lua",
        "pl",
        "r",
        "jl",
        "sh",
        "bash",
        "ps1",
        "groovy",
    ]
)
# Bounds: longer lines are matched on their start; bigger sources get the line rules only.
MAX_LINE = 4000
MAX_SOURCE = 2_000_000
MAX_FINDINGS = 1000
MAX_NAME = 200
# Files whose settings choose which tests run (pytest, tox, coverage).
SELECTION_FILES = frozenset(
    {"pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", ".coveragerc"}
)
# Those pytest reads with iniconfig, which splits lines where str.splitlines does.
INI_FILES = frozenset({"pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg"})
_SOFT_BREAK = re.compile("[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_SELECTION_KEY = re.compile(
    r"^\s*(addopts|testpaths|python_files|python_classes|python_functions|norecursedirs"
    r"|collect_ignore(?:_glob)?|omit|fail_under|fail-under|source|include|exclude)\s*[=:]"
)
_COVERAGE_KEYS = frozenset({"omit", "source", "include", "exclude", "fail_under", "fail-under"})
_SECTION = re.compile(r"[ \t]*\[\[?([^\]\[\n]+)\]")  # matched at a line's start
_SELECTION_OPT = re.compile(
    r"--deselect\b|--ignore(?:-glob)?\b|(?:^|[\s\"'\[=,])-[km](?:[\s=\"']|$)|--last-failed\b"
    r"|--lf\b|--co\b|--collect-only\b|--exitfirst\b|--maxfail\b"
)
_KEY_LINE = re.compile(r"^\s*[\[\w.\"'-]+\s*[=:\]]")
_CONFTEST_HOOK = re.compile(
    r"collect_ignore|pytest_collection_modifyitems|pytest_ignore_collect|pytest_deselected"
    r"|\.deselect\b|pytest_runtest_setup|pytest_collect_file"
    r"|pytest_pycollect_makeitem|\bconfig\.(?:args|option)\b|\baddopts\b"
)
_DETECTION = [
    re.compile(r"[\"']_?pytest[\"']\s+(?:not\s+)?in\s+sys\.modules"),
    re.compile(r"sys\.modules\s*(?:\.get\(|\[)\s*[\"']_?pytest"),
    re.compile(r"[\"']unittest[\"']\s+(?:not\s+)?in\s+sys\.modules"),
    re.compile(r"PYTEST_CURRENT_TEST|PYTEST_VERSION|PYTEST_XDIST_WORKER"),
]
# sys.argv sniffed for a test runner: both on one line (two linear searches, where one
# pattern with '.*' between them backtracks quadratically on a long line of either).
_ARGV = re.compile(r"sys\.argv")
_ARGV_RUNNER = re.compile(r"py\.?test|unittest|\btest")
_HOOK_DEF = re.compile(
    r"\s*(?:async\s+)?def\s+pytest_(?:collection_modifyitems|ignore_collect|deselected"
    r"|collect_file|pycollect_makeitem|runtest_setup|runtest_call|runtest_protocol"
    r"|runtest_makereport|collection|make_collect_report|report_teststatus)\b"
)
# A source encoding declaration as Python reads it on a file's first two lines (PEP 263).
_CODING = re.compile(r"[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.ASCII)
# Names of the codecs that decode a file to the text Gate 0 reads (UTF-8), in lower case with
# '-' for '_'; by name, not by the codec registry, so the finding is the same on every Python.
# Python's tokenizer reads any name starting 'utf-8-' as UTF-8 ('utf-8-unix').
_UTF8 = frozenset({"utf-8", "utf8", "utf-8-sig", "utf8-sig", "ascii", "us-ascii"})
# A first line after which Python reads a declaration on line 2: blank or a comment.
_BLANK_OR_COMMENT = re.compile(r"[ \t\f]*(?:[#\r]|$)")
_MODULES = re.compile(r"\bsys\.modules\b")
_PYTEST_STRING = re.compile(r"[\"']_?pytest\b")
# What every line the detection rules flag holds, once its strings are joined.
_DETECTION_ANY = re.compile(r"sys\.(?:modules|argv)|PYTEST_")
_JOINED = re.compile(r"([\"'])[ \t]*(?:\+[ \t]*)?\1")  # the seam of two adjacent or added strings
# add_marker(...skip|xfail): the marker searched after the call, linearly.
_ADD_MARKER = re.compile(r"add_marker\(")
_SKIP_WORD = re.compile(r"\b(?:skip|xfail)")
_LINE_SKIP = re.compile(
    r"@(?:pytest\.)?mark\.skip\b(?!if)|@unittest\.skip\b|@skip\(|skip[iI]f\(\s*(?:True|1)\s*[,)]"
    r"|\bpytest\.skip\(|\.skipTest\("
)
_LINE_XFAIL = re.compile(
    r"@(?:pytest\.)?mark\.xfail\b|@unittest\.expectedFailure\b|pytest\.xfail\("
)
_LINE_MODULE_SKIP = re.compile(
    r"^pytestmark\s*=.*\b(?:skip|xfail)\b|allow_module_level\s*=\s*True|^raise\s+(?:unittest\.)?SkipTest"
)
_LINE_TAUTOLOGY = re.compile(r"^\s*assert\s+(?:True|1|\"[^\"]+\"|'[^']+')\s*(?:#.*)?$")
_LINE_RAISES_ALL = re.compile(r"(?:\braises|assertRaises)\(\s*\(?\s*(?:Base)?Exception\s*[,)]")
# Every string is matched whole (then those of 2 to 80 characters kept): a bounded match
# would resynchronise on a closing quote ("'x', 3) == {'" from "f('x', 3) == {'a': 1}").
# A string followed by ':' is a dict key: the shape of a result, not a value of it.
_LITERAL = re.compile(
    r"\"([^\"\\]*)\"([ \t]*:)?|'([^'\\]*)'([ \t]*:)?|(?<![\w.])(-?\d+(?:\.\d+)?)(?![\w.])"
)
_HUNK = re.compile(rb"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_RETURN_LITERAL = re.compile(r"\s*return\s*[\[{(\"'0-9-]")
_TABLES = (ast.Dict, ast.List, ast.Tuple, ast.Set, ast.Constant)
_ASSERTING = ("assert", "raises", "warns", "fail", "expect", "verify", "check", "ensure")
_ASSERTING_WORD = re.compile("|".join(_ASSERTING))
_BROAD = frozenset({"Exception", "BaseException"})
_TRIVIAL_NUMBERS = frozenset({"0", "1", "-1", "2", "0.0", "1.0"})


@dataclass
class Section:
    """One file section of the patch, as the rules read it: its changed lines, numbered."""

    old_path: str | None
    new_path: str | None
    status: str
    binary: bool
    added: list[tuple[int, str]] = field(default_factory=list)  # (new line, text)
    removed: list[tuple[int, str]] = field(default_factory=list)  # (old line, text)
    long: list[tuple[int, int]] = field(default_factory=list)  # (new line, length) > MAX_LINE
    breaks: list[int] = field(default_factory=list)  # new lines holding a lone '\r'
    head: dict[int, tuple[bool, str]] = field(default_factory=dict)  # new lines 1-2: added?
    misplaced: bool = False  # a hunk out of order, or its new line not git's
    hunks: list[tuple[int, int, list[tuple[str, str]]]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.new_path if self.new_path is not None else self.old_path or ""

    def added_lines(self) -> set[int]:
        return {n for n, _ in self.added}


def settings_of(
    enabled: bool,
    severity: Mapping[str, str],
    test_globs: Sequence[str],
    skip_patterns: Sequence[str],
    check_argvs: Iterable[Sequence[str]],
    policy_version: int | None = None,
) -> ReviewSettings:
    """The settings a run reviews by: its config, the severity of every rule its policy
    version knows (None: the latest) spelled out, and the files its required checks run."""
    sev: dict[str, ReviewSeverity] = {
        rule: level
        for rule, level in RULES.items()
        if policy_version is None or RULES_SINCE.get(rule, 0) <= policy_version
    }
    for rule, value in severity.items():
        if rule in sev and value in ("critical", "warning", "off"):
            sev[rule] = value  # type: ignore[assignment]
    files = sorted({f for argv in check_argvs for f in check_files(argv)})
    return {
        "enabled": bool(enabled),
        "severity": dict(sorted(sev.items())),
        "test_globs": list(test_globs),
        "skip_patterns": list(skip_patterns),
        "check_files": files,
    }


_SCRIPT_EXT = (".py", ".sh", ".bash", ".ps1", ".bat", ".cmd", ".js", ".mjs", ".cjs", ".ts", ".rb")
_CONFIG_EXT = (".ini", ".cfg", ".toml", ".json", ".yml", ".yaml", ".mk")
_RUNNER_FILES = {
    "make": ["Makefile", "makefile", "GNUmakefile"],
    "tox": ["tox.ini"],
    "nox": ["noxfile.py"],
}


def check_files(argv: Sequence[str]) -> list[str]:
    """Repository files a check command runs or reads: its script and config arguments
    (``scripts/check.sh``, ``-c ci/pytest.ini``) and the file its runner reads (``make``:
    Makefile)."""
    out: list[str] = []
    if argv:
        runner = argv[0].replace("\\", "/").rsplit("/", 1)[-1].lower()
        runner = runner[:-4] if runner.endswith(".exe") else runner
        out.extend(_RUNNER_FILES.get(runner, []))
    for arg in argv[1:] if argv else ():
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if value.startswith("-") or "{" in value or value.startswith("/") or ":" in value:
            continue
        value = value.replace("\\", "/").removeprefix("./")
        if ".." in value.split("/") or not value:
            continue
        if value.lower().endswith(_SCRIPT_EXT + _CONFIG_EXT):
            out.append(value)
    return out


# -- reading the patch ---------------------------------------------------------------------
def sections(patch: patchparse.Patch, settings: ReviewSettings | None = None) -> list[Section]:
    """Each file section with its numbered added and removed lines (binary ones without),
    and its hunks where a rule reads them: in test and test settings files (all, without
    ``settings``)."""
    if settings is None:
        return [_section(f, True) for f in patch.files]
    return [_section(f, _reads_hunks(f, settings)) for f in patch.files]


def _reads_hunks(f: patchparse.FileChange, settings: ReviewSettings) -> bool:
    """Whether a rule reads the section's hunks: a test file's (its post-image, whether it
    is emptied whole) or a test settings file's (the settings section of each line)."""
    return any(
        p is not None and (_basename(p) in SELECTION_FILES or is_test(p, settings))
        for p in (f.new_path, f.old_path)
    )


def _text(raw: bytes, limit: int | None = MAX_LINE) -> str:
    """A line as the rules read it (``_section`` inlines it: a line split on b"\n" has no
    "\n" to strip, and no decoding makes one); whole with no ``limit``."""
    line = raw.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
    return line[:limit]


def _section(f: patchparse.FileChange, hunks: bool) -> Section:
    sec = Section(f.old_path, f.new_path, f.status, f.binary)
    if f.binary:
        return sec
    lines = f.raw.split(b"\n")
    i, n = 0, len(lines)
    while i < n and not lines[i].startswith(b"@@"):
        i += 1
    end = delta = 0  # where the last hunk ends in the old file; the lines added so far, net
    while i < n:
        m = _HUNK.match(lines[i])
        if m is None:
            break
        old_no, new_no = int(m[1]), int(m[3])
        old_left = 1 if m[2] is None else int(m[2])
        new_left = 1 if m[4] is None else int(m[4])
        start = old_no if old_left else old_no + 1
        if start < end or new_no != start + delta - (not new_left):
            sec.misplaced = True
        end, delta = start + old_left, delta + new_left - old_left
        body: list[tuple[str, str]] = []
        i += 1
        while i < n and (old_left > 0 or new_left > 0):
            line = lines[i]
            kind = line[:1]
            if kind == b"+":
                if b"\r" in line and b"\r" in line[1 : -1 if line.endswith(b"\r") else None]:
                    sec.breaks.append(new_no)
                text = line[1:].decode("utf-8", "replace").rstrip("\r")  # _text
                if len(text) > MAX_LINE:
                    sec.long.append((new_no, len(text)))
                    text = text[:MAX_LINE]
                sec.added.append((new_no, text))
                if new_no <= 2:
                    sec.head[new_no] = (True, text)
                if hunks:
                    body.append(("+", text))
                new_no += 1
                new_left -= 1
            elif kind == b"-":
                text = line[1:].decode("utf-8", "replace").rstrip("\r")[:MAX_LINE]
                sec.removed.append((old_no, text))
                if hunks:
                    body.append(("-", text))
                old_no += 1
                old_left -= 1
            elif kind == b"\\":
                pass
            else:
                if hunks or new_no <= 2:
                    text = line[1:].decode("utf-8", "replace").rstrip("\r")[:MAX_LINE]
                    if hunks:
                        body.append((" ", text))
                    if new_no <= 2:
                        sec.head[new_no] = (False, text)
                old_no += 1
                new_no += 1
                old_left -= 1
                new_left -= 1
            i += 1
        while i < n and lines[i].startswith(b"\\"):
            i += 1
        if hunks:
            sec.hunks.append((start, len([k for k, _ in body if k != "+"]), body))
    return sec


def _lines(data: bytes | None, limit: int | None = MAX_LINE) -> list[str] | None:
    if data is None:
        return None
    return [_text(x, limit) for x in data.split(b"\n")][: -1 if data.endswith(b"\n") else None]


def post_image(sec: Section, pre: list[str] | None) -> list[str] | None:
    """The file's lines after the patch: an added file's added lines; a changed one's
    pre-image with the hunks applied (None when a hunk does not fit it). A line of ``pre``
    longer than the rules read fits a hunk's line cut to MAX_LINE, and is kept whole."""
    if sec.status == "added":
        return [t for _, t in sec.added]
    if sec.status == "deleted" or pre is None:
        return None
    out: list[str] = []
    pos = 0
    for start, _count, body in sec.hunks:
        at = max(start - 1, 0)
        if at < pos or at > len(pre):
            return None
        out.extend(pre[pos:at])
        pos = at
        for kind, text in body:
            if kind == "+":
                out.append(text)
                continue
            if pos >= len(pre) or pre[pos][:MAX_LINE] != text:
                return None
            if kind == " ":
                out.append(pre[pos])
            pos += 1
    out.extend(pre[pos:])
    return out


def pre_image(sec: Section, pre: list[str] | None) -> list[str] | None:
    """The file's lines before the patch: a deleted file's removed lines, else the base's."""
    if sec.status == "deleted":
        return [t for _, t in sec.removed]
    if sec.status == "added":
        return []
    return pre


# -- what the caller must read -------------------------------------------------------------
def is_code(path: str) -> bool:
    """Whether ``path`` is source code by its extension: test folders also hold data (JSON,
    text, images) whose removal is no test removed."""
    return path.rsplit("/", 1)[-1].rpartition(".")[2].lower() in CODE_EXTENSIONS


def is_test(path: str, settings: ReviewSettings) -> bool:
    return _is_test(path, tuple(settings["test_globs"]))


@functools.lru_cache(maxsize=65536)
def _is_test(path: str, globs: tuple[str, ...]) -> bool:
    return any(m(path) for m in _matchers(globs))


@functools.lru_cache(maxsize=64)
def _matchers(globs: tuple[str, ...]) -> tuple[Callable[[str], bool], ...]:
    """Matchers that together match what any usable glob matches (an invalid one, possible
    only in a forged record, matches nothing): one regular expression for the globs with no
    class, at most two stars in a segment and at most two '**' segments (linear enough on a
    worker's deepest path, and many times faster), the glob matcher for each other one."""
    out: list[Callable[[str], bool]] = []
    fast: list[str] = []
    for glob in globs:
        try:
            compiled = compile_glob(glob)
        except ValueError:
            continue
        regex = _glob_regex(glob)
        if regex is None:
            out.append(compiled.match)
        else:
            fast.append(f"(?:{regex.pattern})")
    if fast:
        out.insert(0, functools.partial(_full, re.compile("|".join(fast))))
    return tuple(out)


def _full(regex: re.Pattern[str], path: str) -> bool:
    return regex.fullmatch(path) is not None


def _glob_regex(glob: str) -> re.Pattern[str] | None:
    """The scope-glob semantics (:mod:`core.globs`) as a regular expression, for globs of
    literals, ``*``, ``?`` and ``**`` segments; None for others."""
    segments = glob.split("/")
    if segments[-1] == "":
        segments[-1] = "**"
    if any("[" in seg or seg.count("*") > 2 for seg in segments if seg != "**"):
        return None
    if segments.count("**") > 2:  # each more backtracks a power of the segments further
        return None
    out = ""
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            out += ONE_OR_MORE if last else ZERO_OR_MORE
            continue
        for ch in seg:
            out += "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
        out += "" if last else "/"
    return re.compile(out)


ONE_OR_MORE = "[^/]+(?:/[^/]+)*"  # a trailing '**': one or more whole segments
ZERO_OR_MORE = "(?:[^/]+/)*"  # a leading or inner '**': zero or more


def needed_preimages(patch: patchparse.Patch, settings: ReviewSettings) -> list[str]:
    """Base paths whose content the review needs: changed (not added or deleted) test files,
    to rebuild their post-image and tell a new skip from an old one, and changed settings
    files, to know the section a changed line is in."""
    if not settings["enabled"]:
        return []
    out = {
        f.old_path
        for f in patch.files
        if f.old_path is not None
        and not f.binary
        and f.status in ("modified", "renamed")
        and (is_test(f.old_path, settings) or _basename(f.old_path) in SELECTION_FILES)
    }
    return sorted(out)


# -- the review -----------------------------------------------------------------------------
@dataclass
class _Context:
    worker: str
    settings: ReviewSettings
    secs: list[Section]
    found: list[ReviewFinding] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)

    # Read by few rules on few files: each is taken from the whole patch when first asked.
    @functools.cached_property
    def removed_defs(self) -> set[str]:
        """Names the patch's removed ``def``/``class`` lines define, but those it adds again
        (the line edited: a type hint, a parameter): a test of such a definition removed is
        no test removed with its code."""
        removed: set[str] = set()
        added: set[str] = set()
        for sec in self.secs:
            removed.update(_defs(sec.removed))
            added.update(_defs(sec.added))
        return removed - added

    @functools.cached_property
    def test_literals(self) -> set[str]:
        """The string and number literals of the added test-file lines."""
        out: set[str] = set()
        for sec in self.secs:
            if is_test(sec.path, self.settings):
                for _, text in sec.added:
                    out.update(_literals(text))
        return out

    @functools.cached_property
    def added_tests(self) -> set[str]:
        """Names the added test-file lines define."""
        out: set[str] = set()
        for sec in self.secs:
            if is_test(sec.path, self.settings):
                out.update(_defs(sec.added))
        return out

    def add(self, path: str, line: int, rule: str, message: str) -> None:
        sev = self.settings["severity"].get(rule)
        if sev is None:
            sev = "off" if rule in RULES_SINCE else RULES[rule]
        if sev == "off" or len(self.found) >= MAX_FINDINGS:
            return
        self.found.append(
            {
                "worker": self.worker,
                "path": path,
                "line": line,
                "rule": rule,
                "severity": "critical" if sev == "critical" else "warning",
                "message": message,
            }
        )


def review(
    worker: str,
    patch: patchparse.Patch,
    preimages: Mapping[str, bytes | None],
    settings: ReviewSettings,
) -> list[ReviewFinding]:
    """Every Gate 0 finding on one worker's patch, sorted (path, line, rule, message)."""
    if not settings["enabled"]:
        return []
    ctx = _Context(worker, settings, sections(patch, settings))
    for sec in ctx.secs:
        if sec.old_path is not None and sec.status in ("deleted", "renamed"):
            ctx.deleted.add(sec.old_path)
    for sec in ctx.secs:
        if sec.binary:
            if sec.status == "deleted" and is_test(sec.path, settings):
                _file_deleted(ctx, sec)
            continue
        _review_section(ctx, sec, preimages)
    unique = {(f["path"], f["line"], f["rule"], f["message"]): f for f in ctx.found}
    return [unique[k] for k in sorted(unique)]


_DEF = re.compile(r"\s*(?:async\s+)?def\s+(\w+)|\s*class\s+(\w+)")


def _defs(lines: Iterable[tuple[int, str]]) -> set[str]:
    """Names the ``def`` and ``class`` lines among ``lines`` define."""
    return {m[1] or m[2] for _, text in lines if (m := _DEF.match(text))}


def _review_section(ctx: _Context, sec: Section, preimages: Mapping[str, bytes | None]) -> None:
    settings = ctx.settings
    path = sec.path
    test = is_test(path, settings)
    old_test = sec.old_path is not None and is_test(sec.old_path, settings)
    if sec.status == "deleted" and old_test:
        _file_deleted(ctx, sec)
        return
    if sec.status == "renamed" and old_test and (not test or _uncollected(sec.old_path, path)):
        _file_deleted(ctx, sec)
        return
    base = _basename(path)
    read = base in SELECTION_FILES or path.endswith(".py") or (test and is_code(path))
    if read and sec.breaks:
        ctx.add(
            path,
            sec.breaks[0],
            "hidden-line-break",
            "an added line holds a carriage return that Python and its settings parsers "
            "read as a line break: Gate 0 numbers and reads lines as git does; end lines "
            "with '\\n'",
        )
    if base in INI_FILES:
        _soft_breaks(ctx, sec)
    if path.endswith(".py"):
        _source_encoding(ctx, sec)
    if read and sec.misplaced:
        _misplaced(ctx, sec)
    if read and sec.long:
        line, length = sec.long[0]
        more = f" (and {len(sec.long) - 1} more)" if len(sec.long) > 1 else ""
        ctx.add(
            path,
            line,
            "line-too-long",
            f"an added line of {length} characters{more}: Gate 0 reads the first {MAX_LINE} "
            "of a line, so a skip or a test switch after them would pass unseen; split it",
        )
    if sec.status == "renamed" and SELECTION_FILES & {base, _basename(sec.old_path or "")}:
        ctx.add(
            path,
            0,
            "test-selection-changed",
            f"a test settings file moved ({sec.old_path!r} to {path!r}): pytest, tox or "
            "coverage read their settings by name and place",
        )
    if base in SELECTION_FILES:
        raw = preimages.get(sec.old_path) if sec.old_path is not None else None
        settings_pre = pre_image(sec, _lines(raw))
        if settings_pre is not None and post_image(sec, settings_pre) is None:
            _misplaced(ctx, sec)
        _selection(ctx, sec, settings_pre)
    if base == "conftest.py":
        _conftest(ctx, sec)
    elif path.endswith(".py"):
        _plugin_hooks(ctx, sec)
    if any(_under(path, f) for f in settings["check_files"]) or (
        sec.old_path is not None and any(_under(sec.old_path, f) for f in settings["check_files"])
    ):
        first = sec.added[0][0] if sec.added else 0
        ctx.add(
            path,
            first,
            "check-config-changed",
            f"changes {path!r}, a file the required checks run: the check that judges this "
            "change is changed by it",
        )
    if not test:
        _detection(ctx, sec)
        if path.endswith(".py"):
            _hardcoded(ctx, sec)
        return
    if sec.status == "deleted":
        return
    pre_raw = preimages.get(sec.old_path or "") if sec.old_path is not None else None
    pre = pre_image(sec, _lines(pre_raw))
    post = post_image(sec, pre)
    if post is None and pre is not None:
        _misplaced(ctx, sec)
    if path.endswith(".py"):
        _python_test(ctx, sec, pre, post, _parsed_images(sec, pre_raw, pre, post))
    elif is_code(path):
        _emptied_generic(ctx, sec, pre, post)
        _skip_patterns(ctx, sec)


def _misplaced(ctx: _Context, sec: Section) -> None:
    """git places a hunk by its content near the old line its header names, and ignores the
    new line it names: hunks out of order, a new line not git's, or a hunk whose content
    is not at its old line still apply, while Gate 0 numbers and rebuilds the file by the
    headers (an added ``assert True`` read as an unchanged line)."""
    ctx.add(
        sec.path,
        0,
        "hunk-misplaced",
        "a hunk does not sit where its header says (out of order, or at another line than "
        "git applies it): Gate 0 numbers and rebuilds the file by the headers; write the "
        "patch with git diff",
    )


def _soft_breaks(ctx: _Context, sec: Section) -> None:
    """An added line of a settings file pytest reads with iniconfig holding a character
    str.splitlines breaks at (a vertical tab, a form feed, U+2028...): pytest reads two lines
    ('x = 1<VT>testpaths = elsewhere' sets testpaths) where Gate 0 reads one."""
    for line, text in sec.added:
        if m := _SOFT_BREAK.search(text):
            ctx.add(
                sec.path,
                line,
                "hidden-line-break",
                f"an added line holds {m[0]!r}, which pytest reads as a line break in this "
                "file: Gate 0 numbers and reads lines as git does; end lines with '\\n'",
            )
            return


def _source_encoding(ctx: _Context, sec: Section) -> None:
    """A coding declaration other than UTF-8 added to a Python file: Python decodes the file
    by it, Gate 0 reads UTF-8 (``# coding: utf-7`` spells any skip in letters and digits).
    A UTF-8 byte-order mark is no finding: both read the file as UTF-8. Lines 1 and 2 are
    read as Python's tokenizer reads them: the first declaration only, line 2 only after a
    blank or comment line 1 (an unseen line 1 is taken as one)."""
    for line in (1, 2):
        added, text = sec.head.get(line, (False, None))
        if text is None:
            continue
        text = text.removeprefix("\ufeff") if line == 1 else text
        m = _CODING.match(text)
        if m is None:
            if line == 1 and _BLANK_OR_COMMENT.match(text) is None:
                return
            continue
        name = m[1].lower().replace("_", "-")
        if not added or name in _UTF8 or name.startswith("utf-8-"):
            return
        ctx.add(
            sec.path,
            line,
            "source-encoding",
            f"line {line} declares the source encoding {m[1][:40]!r}: Python decodes the "
            "file by it, Gate 0 reads UTF-8 and would not see what it spells; write the file "
            "in plain UTF-8",
        )
        return


def _collected(path: str) -> bool:
    """Whether pytest collects the file by its default name patterns (test_*.py, *_test.py)."""
    name = _basename(path)
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _uncollected(old: str | None, new: str) -> bool:
    """A test module renamed to a name pytest does not collect (``test_calc.py.bak``,
    ``calc_checks.py``): its tests no longer run, though the file stays under tests/."""
    return old is not None and _collected(old) and not _collected(new)


def _under(path: str, target: str) -> bool:
    return path == target or (target.endswith("/") and path.startswith(target))


# -- deleted test files ---------------------------------------------------------------------
def _file_deleted(ctx: _Context, sec: Section) -> None:
    old = sec.old_path or ""
    python = old.endswith(".py")
    if python and _imports_deleted(ctx, [t for _, t in sec.removed]):
        return
    if python and _moved(ctx, [t for _, t in sec.removed]):
        return
    if not python and (not is_code(old) or _sibling_deleted(ctx, old)):
        return
    how = "deleted" if sec.status == "deleted" else f"renamed away to {sec.new_path!r}"
    rule = "test-deleted" if python else "test-deleted-glob"
    ctx.add(
        old,
        0,
        rule,
        f"test file {how}, while the code it tests stays: remove tests only with that code",
    )


def _moved(ctx: _Context, lines: list[str]) -> bool:
    """Whether every test of a deleted test file is defined again by the patch's added
    test-file lines (the file moved or split, its tests reviewed where they land)."""
    tests = {name for name in _defs(enumerate(lines)) if name.startswith("test")}
    return bool(tests) and tests <= ctx.added_tests


def _imports_deleted(ctx: _Context, lines: list[str]) -> bool:
    """Whether a module the deleted test imports is deleted (or renamed away) too."""
    modules: set[str] = set()
    tree = _parse(lines)
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module)
                modules.update(f"{node.module}.{a.name}" for a in node.names)
    else:
        for text in lines:
            m = re.match(r"\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", text)
            if m:
                modules.add(m[1] or m[2])
    stems = {p[:-3] if p.endswith(".py") else p for p in ctx.deleted}
    for mod in modules:
        rel = mod.replace(".", "/")
        for stem in stems:
            if stem.endswith(("/__init__",)):
                stem = stem[: -len("/__init__")]
            if stem == rel or stem.endswith("/" + rel):
                return True
    return False


_TEST_AFFIXES = re.compile(r"(?:^test_|_test$|\.test$|\.spec$|^test(?=[A-Z])|Tests?$)")


def _sibling_deleted(ctx: _Context, old: str) -> bool:
    """Whether the source a non-Python test file names (``foo_test.go``: ``foo.go``,
    ``foo.test.js``: ``foo.js``, ``FooTest.java``: ``Foo.java``) is deleted too."""
    name = old.rsplit("/", 1)[-1]
    stem = name.split(".", 1)[0] if "." in name else name
    if name.count(".") >= 2:
        stem = name.rsplit(".", 1)[0]
    subject = _TEST_AFFIXES.sub("", stem)
    if not subject:
        return False
    for path in ctx.deleted:
        other = path.rsplit("/", 1)[-1]
        if path != old and other.split(".", 1)[0] == subject:
            return True
    return False


# -- Python test files -----------------------------------------------------------------------
def _parse(lines: Sequence[str] | None) -> ast.Module | None:
    """The module, or None for anything that does not parse (never an exception)."""
    if lines is None:
        return None
    return _parse_source("\n".join(lines))


def _parse_source(source: str) -> ast.Module | None:
    """A leading byte-order mark is read as Python reads it (the file's encoding, UTF-8),
    not refused: a test file saved with one is parsed, not read line by line only."""
    if len(source) > MAX_SOURCE or "\x00" in source:
        return None
    try:
        return ast.parse(source.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


@dataclass
class _Test:
    name: str
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    markers: list[tuple[int, str]]  # (line, skip|xfail)


@dataclass
class _Module:
    tests: dict[str, _Test]
    module_skips: list[int]
    tree: ast.Module
    nodes: list[ast.AST]
    ascii_source: str | None  # the source when all ASCII: its names are spelled as parsed

    def may_name(self, *words: str) -> bool:
        """Whether a name in the module can hold one of ``words``: false only for an ASCII
        source without them (a non-ASCII name can spell one, as Python folds it by NFKC)."""
        text = self.ascii_source
        return text is None or any(w in text for w in words)


# Fields that hold no node a rule reads: names (str) and the operator singletons (Load,
# Add, Eq, And, Not), which are childless and carry no line.
_LEAF_FIELDS = frozenset(
    {"ctx", "op", "ops", "id", "attr", "arg", "name", "asname", "module", "level", "kind"}
    | {"type_comment", "is_async", "conversion", "lineno", "col_offset"}
)
_OPERATORS = (ast.expr_context, ast.operator, ast.cmpop, ast.boolop, ast.unaryop)


_FIELDS: dict[type[ast.AST], tuple[str, ...]] = {}  # per node class: as many as ast has


def _child_fields(kind: type[ast.AST]) -> tuple[str, ...]:
    fields = _FIELDS.get(kind)
    if fields is None:
        fields = _FIELDS[kind] = tuple(f for f in kind._fields if f not in _LEAF_FIELDS)
    return fields


def _walk(node: ast.AST) -> list[ast.AST]:
    """The nodes of :func:`ast.walk` (the same breadth-first order) but the operator
    singletons no rule reads: one loop over a growing list and the fields that can hold a
    node, where ``ast.walk`` runs two generators over every field of every node."""
    out = [node]
    fields = _FIELDS
    for cur in out:  # the loop reads what it appends
        kind = type(cur)
        names = fields.get(kind) or _child_fields(kind)
        for name in names:
            value = getattr(cur, name, None)
            if type(value) is list:
                out.extend([x for x in value if isinstance(x, ast.AST)])
            elif isinstance(value, ast.AST) and not isinstance(value, _OPERATORS):
                out.append(value)
    return out


def _lazy_walk(node: ast.AST) -> Iterator[ast.AST]:
    """:func:`_walk`'s nodes one by one: a search that stops at its first hit reads only
    the nodes up to it."""
    out = [node]
    i = 0
    while i < len(out):
        cur = out[i]
        i += 1
        yield cur
        for name in _child_fields(type(cur)):
            value = getattr(cur, name, None)
            if isinstance(value, list):
                out.extend(x for x in value if isinstance(x, ast.AST))
            elif isinstance(value, ast.AST) and not isinstance(value, _OPERATORS):
                out.append(value)


def _dotted(node: ast.expr) -> str:
    """``pytest.mark.skip`` for ``pytest.mark.skip(...)`` and its attribute chain (a call's
    result is named by what it calls; iterative: chains may be deep)."""
    parts: list[str] = []
    cur: ast.expr = node
    while True:
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Call) and not parts:
            cur = cur.func
            continue
        break
    if isinstance(cur, ast.Name):
        parts.append(cur.id)
    return ".".join(reversed(parts))


def _truthy(node: ast.expr | None) -> bool:
    """A condition that always holds: a constant expression that is true (``True``,
    ``not 0``, ``1 == 1``, ``x or True``), or pytest's string condition ``"True"``/``"1"``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.strip() in ("True", "1")
    return node is not None and _value(node) is True


def _falsy(node: ast.expr | None) -> bool:
    return node is not None and _value(node) is False


_COMPARE: dict[type[ast.cmpop], Callable[[object, object], object]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,  # type: ignore[operator]
    ast.LtE: lambda a, b: a <= b,  # type: ignore[operator]
    ast.Gt: lambda a, b: a > b,  # type: ignore[operator]
    ast.GtE: lambda a, b: a >= b,  # type: ignore[operator]
}


def _value(node: ast.expr, depth: int = 0) -> bool | None:
    """The truth of an expression whose value the source fixes (literals, a non-empty
    display, ``not``, ``and``/``or``, comparisons of literals); None when it depends on
    anything else. Nesting beyond 32 is unknown."""
    if depth > 32:
        return None
    if isinstance(node, ast.Constant):
        return bool(node.value) if not isinstance(node.value, (bytes, complex)) else None
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) if not any(isinstance(e, ast.Starred) for e in node.elts) else None
    if isinstance(node, ast.Dict):
        return bool(node.keys) if all(k is not None for k in node.keys) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _value(node.operand, depth + 1)
        return None if inner is None else not inner
    if isinstance(node, ast.BoolOp):
        either = isinstance(node.op, ast.Or)
        values = [_value(v, depth + 1) for v in node.values]
        if either in values:
            return either  # 'x or True' holds, 'x and False' fails, whatever x is
        return None if None in values else not either
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right = node.left, node.comparators[0]
        compare = _COMPARE.get(type(node.ops[0]))
        if compare is None or not isinstance(left, ast.Constant):
            return None
        if not isinstance(right, ast.Constant):
            return None
        try:
            return bool(compare(left.value, right.value))
        except TypeError:
            return None
    return None


def _marker(dec: ast.expr) -> str | None:
    """'skip' or 'xfail' for a decorator (or marker expression) that skips or expects
    failure unconditionally; None otherwise (``skipif(sys.platform == 'win32')`` is not)."""
    name = _dotted(dec).rsplit(".", 1)[-1]
    first = dec.args[0] if isinstance(dec, ast.Call) and dec.args else None
    if isinstance(dec, ast.Call) and first is None:
        first = next((k.value for k in dec.keywords if k.arg == "condition"), None)
    if name == "skip":
        return "skip"
    if name in ("skipif", "skipIf"):
        return "skip" if _truthy(first) else None
    if name == "skipUnless":
        return "skip" if _falsy(first) else None
    if name in ("xfail", "expectedFailure"):
        return "xfail"
    return None


def _call_markers(nodes: Iterable[ast.AST]) -> tuple[list[tuple[int, str]], list[int]]:
    """(line, skip|xfail) of every skip or xfail call (``pytest.skip()``, ``self.skipTest()``,
    ``pytest.xfail()``), and the lines of those that skip the whole module
    (``allow_module_level=True``), from one walk's nodes."""
    marks: list[tuple[int, str]] = []
    module: list[int] = []
    for call in nodes:
        if isinstance(call, ast.Raise) and call.exc is not None:
            if _dotted(call.exc).endswith("SkipTest"):
                marks.append((call.lineno, "skip"))  # in a test; at module level: a module skip
            continue
        if not isinstance(call, ast.Call):
            continue
        name = _dotted(call.func)
        if any(k.arg == "allow_module_level" and _truthy(k.value) for k in call.keywords):
            if name.endswith("skip"):
                module.append(call.lineno)
        elif name.endswith(("pytest.skip", "skipTest")) or name == "skip":
            marks.append((call.lineno, "skip"))
        elif name.endswith("pytest.xfail"):
            marks.append((call.lineno, "xfail"))
    return marks, module


def _module(lines: Sequence[str] | None) -> _Module | None:
    """The module's tests with their markers and its module-level skips, in one walk."""
    if lines is None:
        return None
    source = "\n".join(lines)
    tree = _parse_source(source)
    if tree is None:
        return None
    nodes = _walk(tree)
    ascii_source = source if source.isascii() else None
    calls: list[tuple[int, str]] = []
    skips: list[int] = []
    if ascii_source is None or any(w in source for w in _MARKER_WORDS):
        calls, skips = _call_markers(nodes)
    calls.sort()
    aliases = _marker_aliases(tree.body)
    tests: dict[str, _Test] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("test"):
                tests[node.name] = _Test(node.name, node, _fn_markers(node, calls, aliases))
        elif isinstance(node, ast.ClassDef):
            marks = _decorator_marks(node.decorator_list, aliases)
            marks += [(line, "skip") for line in _not_collected(node)]
            if marks:
                tests[node.name] = _Test(node.name, node, marks)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    item.name.startswith("test")
                ):
                    name = f"{node.name}.{item.name}"
                    tests[name] = _Test(name, item, _fn_markers(item, calls, aliases))
        else:
            skips.extend(_module_skips(node))
    return _Module(tests, sorted(skips), tree, nodes, ascii_source)


# What every name :func:`_call_markers` reads holds (``pytest.skip``, ``skipTest``,
# ``SkipTest``, ``pytest.xfail``): a module without them has no skip or xfail call.
_MARKER_WORDS = ("skip", "Skip", "xfail")


def _marker_aliases(body: Sequence[ast.stmt]) -> dict[str, str]:
    """Module-level names bound to a skip or xfail marker (``later = pytest.mark.skip``)."""
    out: dict[str, str] = {}
    for node in body:
        if isinstance(node, ast.Assign) and (kind := _marker(node.value)):
            out.update((t.id, kind) for t in node.targets if isinstance(t, ast.Name))
    return out


def _decorator_marks(decs: Sequence[ast.expr], aliases: Mapping[str, str]) -> list[tuple[int, str]]:
    """(line, skip|xfail) of decorators that are markers or a name bound to one."""
    out: list[tuple[int, str]] = []
    for dec in decs:
        kind = _marker(dec) or aliases.get(_dotted(dec))
        if kind:
            out.append((dec.lineno, kind))
    return out


def _fn_markers(
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    calls: list[tuple[int, str]],
    aliases: Mapping[str, str],
) -> list[tuple[int, str]]:
    """The function's skip/xfail decorators and calls; ``calls`` is sorted by line, so each
    test takes its own by bisection (a file of thousands of skipping tests stays linear)."""
    marks = _decorator_marks(fn.decorator_list, aliases)
    marks += _param_marks(fn.decorator_list)
    end = fn.end_lineno or fn.lineno
    lo = bisect.bisect_left(calls, (fn.lineno, ""))
    hi = bisect.bisect_right(calls, (end, "\uffff"))
    return marks + calls[lo:hi]


def _param_marks(decorators: Sequence[ast.expr]) -> list[tuple[int, str]]:
    """(line, skip|xfail) of the ``marks=`` of each ``pytest.param`` in a ``parametrize``
    decorator: ``pytest.param(1, marks=pytest.mark.skip)`` skips that case."""
    out: list[tuple[int, str]] = []
    for dec in decorators:
        if not (isinstance(dec, ast.Call) and _dotted(dec.func).endswith("parametrize")):
            continue
        for node in ast.walk(dec):
            if not isinstance(node, ast.keyword) or node.arg != "marks":
                continue
            value = node.value
            values = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
            out.extend((v.lineno, k) for v in values if (k := _marker(v)))
    return out


def _not_collected(cls: ast.ClassDef) -> list[int]:
    """Lines of a class body's ``__test__ = False``: pytest collects none of its tests."""
    return [
        item.lineno
        for item in cls.body
        if isinstance(item, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__test__" for t in item.targets)
        and _falsy(item.value)
    ]


def _module_skips(node: ast.stmt) -> list[int]:
    """Lines of module-level statements that skip the whole module (calls aside)."""
    targets = node.targets if isinstance(node, ast.Assign) else []
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        targets = [node.target]
    value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
    if value is not None and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets):
        values = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
        return [node.lineno for v in values if _marker(v)]
    if (
        isinstance(node, ast.Raise)
        and node.exc is not None
        and _dotted(node.exc).endswith("SkipTest")
    ):
        return [node.lineno]
    return []


def _parsed_images(
    sec: Section, raw: bytes | None, pre: list[str] | None, post: list[str] | None
) -> tuple[list[str] | None, list[str] | None]:
    """The pre- and post-image to parse: with the base's lines whole where one is longer than
    the rules read (a data blob), so the file parses as Python reads it."""
    if raw is None or not pre or all(len(x) < MAX_LINE for x in pre):
        return pre, post
    full = pre_image(sec, _lines(raw, None))
    return full, post_image(sec, full)


def _python_test(
    ctx: _Context,
    sec: Section,
    pre: list[str] | None,
    post: list[str] | None,
    whole: tuple[list[str] | None, list[str] | None],
) -> None:
    """The rules on a Python test file: on its module where it parses (``whole``: its
    images with the base's long lines whole), else line by line."""
    path = sec.path
    new = _module(whole[1])
    if new is None:
        _too_long(ctx, sec, whole[1])
        _python_lines(ctx, sec, pre, post)
        return
    old: _Module | None = None
    if sec.status != "added" and _needs_base(sec, new):
        old = _module(whole[0])
        if old is None:
            _python_lines(ctx, sec, pre, post)
    added = sec.added_lines()
    lines = sorted(added)
    old_tests = old.tests if old is not None else {}
    if old is not None:
        if old.tests and not new.tests:
            ctx.add(
                path,
                0,
                "test-emptied",
                f"every test of the file is gone ({len(old.tests)} in the base, none now)",
            )
        _tests_removed(ctx, sec, old, new)
        if len(new.module_skips) > len(old.module_skips):
            line = new.module_skips[-1]
            ctx.add(path, line, "test-module-skipped", "the whole test module is skipped now")
    elif sec.status == "added" and new.module_skips:
        ctx.add(path, new.module_skips[0], "test-module-skipped", "a new test module skipped whole")
    for name, test in new.tests.items():
        before = old_tests.get(name)
        for kind in ("skip", "xfail"):
            now = [line for line, k in test.markers if k == kind]
            was = [line for line, k in (before.markers if before else []) if k == kind]
            if len(now) > len(was):
                fresh = [n for n in now if n in added] or now
                rule = "skip-added" if kind == "skip" else "xfail-added"
                what = "skipped" if kind == "skip" else "marked as expected to fail"
                ctx.add(path, fresh[0], rule, f"test {_name(name)} is {what}; it was not before")
        node = test.node
        if isinstance(node, ast.ClassDef):
            continue
        end = node.end_lineno or node.lineno
        if _touches(lines, node.lineno, end) and not _asserts(node):
            ctx.add(
                path,
                node.lineno,
                "no-assertion",
                f"test {_name(name)} is added or changed and asserts nothing",
            )
    _assertions(ctx, sec, new.nodes, added)
    if new.may_name(*_MOCK_WORDS):
        _self_mock(ctx, sec, new.nodes, added)


def _too_long(ctx: _Context, sec: Section, post: list[str] | None) -> None:
    """A test module too long to parse is read line by line only, where a skip written
    otherwise than the line rules spell it passes unseen."""
    size = sum(map(len, post)) + len(post) - 1 if post else 0
    if size > MAX_SOURCE:
        ctx.add(
            sec.path,
            0,
            "file-too-long",
            f"the test file is {size} characters after the patch: Gate 0 parses up to "
            f"{MAX_SOURCE} and reads a longer one line by line only, where a skip can pass "
            "unseen; split it",
        )


def _touches(lines: Sequence[int], first: int, last: int) -> bool:
    """Whether a sorted list of added lines has one in ``first..last`` (by bisection: a file
    of thousands of tests stays linear)."""
    at = bisect.bisect_left(lines, first)
    return at < len(lines) and lines[at] <= last


_TEST_DEF = re.compile(r"\s*(?:async\s+)?def\s+test|\s*class\s")


def _needs_base(sec: Section, new: _Module) -> bool:
    """Whether the base's module can change a finding: the file has markers or module skips
    now, has no test left, or the patch removes a test or class line. Otherwise nothing was
    skipped, emptied or removed, and the base is not parsed."""
    return (
        bool(new.module_skips)
        or not new.tests
        or any(t.markers for t in new.tests.values())
        or any(_TEST_DEF.match(text) for _, text in sec.removed)
    )


def _name(name: str) -> str:
    return repr(name[:MAX_NAME])


def _tests_removed(ctx: _Context, sec: Section, old: _Module, new: _Module) -> None:
    """Test functions the base had and the patch removes (renames aside: fewer tests after)."""
    gone = sorted(set(old.tests) - set(new.tests))
    if not gone or _cases(new) >= _cases(old):
        return
    for name in gone:
        node = old.tests[name].node
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        used |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
        if used & ctx.removed_defs:
            continue  # removed with the code it tested
        if name.rsplit(".", 1)[-1] in ctx.added_tests:
            continue  # moved: a test file the patch changes defines it (split, regrouped)
        ctx.add(
            sec.path,
            0,
            "test-deleted",
            f"test {_name(name)} (line {node.lineno} of the base) is removed while the code "
            "it tests stays",
        )


def _cases(module: _Module) -> int:
    """How many test cases the module's tests run: a ``parametrize`` over a literal list
    of n values is n (two tests merged into one parametrized test are no test removed)."""
    total = 0
    for test in module.tests.values():
        node = test.node
        if isinstance(node, ast.ClassDef):
            continue  # a marked class: its methods are counted themselves
        count = 1
        for dec in node.decorator_list:
            if isinstance(dec, ast.Call) and _dotted(dec.func).endswith("parametrize"):
                values = dec.args[1] if len(dec.args) > 1 else None
                if isinstance(values, (ast.List, ast.Tuple)) and values.elts:
                    count *= min(len(values.elts), 10_000)
        total += min(count, 10_000_000)
    return total


def _asserts(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for node in _lazy_walk(fn):
        if isinstance(node, (ast.Assert, ast.Raise)):
            return True
        if isinstance(node, ast.Call):
            name = _dotted(node.func).rsplit(".", 1)[-1].lower()
            if _ASSERTING_WORD.search(name):
                return True
    return False


def _same(a: ast.expr, b: ast.expr) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, ast.Constant) and isinstance(b, ast.Constant):
        return type(a.value) is type(b.value) and a.value == b.value
    try:
        return ast.dump(a) == ast.dump(b)
    except RecursionError:
        return False


def _tautology(node: ast.AST) -> bool:
    if isinstance(node, ast.Assert):
        test = node.test
        if _value(test) is True:
            return True  # 'assert 1', 'assert (x, "why")', 'assert x or True'
        if (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and isinstance(test.ops[0], (ast.Eq, ast.Is, ast.LtE, ast.GtE))
        ):
            return _same(test.left, test.comparators[0])
        return False
    if isinstance(node, ast.Call):
        name = _dotted(node.func).rsplit(".", 1)[-1]
        if name == "assertTrue" and node.args:
            return _value(node.args[0]) is True
        if name in ("assertEqual", "assertIs", "assertEquals") and len(node.args) >= 2:
            return _same(node.args[0], node.args[1])
    return False


def _raises_everything(call: ast.Call) -> bool:
    name = _dotted(call.func).rsplit(".", 1)[-1]
    if name not in ("raises", "assertRaises") or not call.args:
        return False
    first = call.args[0]
    types = first.elts if isinstance(first, ast.Tuple) else [first]
    return any(
        isinstance(t, (ast.Name, ast.Attribute)) and _dotted(t).rsplit(".", 1)[-1] in _BROAD
        for t in types
    )


def _assertions(ctx: _Context, sec: Section, nodes: list[ast.AST], added: set[int]) -> None:
    for node in nodes:
        if not isinstance(node, (ast.Assert, ast.Call)):
            continue  # the only nodes either rule flags
        line = node.lineno
        if line not in added:
            continue
        if _tautology(node):
            ctx.add(sec.path, line, "tautology", "an assertion that cannot fail")
        if isinstance(node, ast.Call) and _raises_everything(node):
            ctx.add(
                sec.path,
                line,
                "raises-everything",
                "expects any exception at all (Exception): every error passes; name the "
                "exception the code raises",
            )


def _subject(path: str) -> str | None:
    """The module a test file tests by its name: ``test_foo.py``/``foo_test.py``: foo."""
    name = path.rsplit("/", 1)[-1][:-3]
    if name.startswith("test_"):
        return name[5:] or None
    if name.endswith("_test"):
        return name[:-5] or None
    return None


def _self_mock(ctx: _Context, sec: Section, nodes: list[ast.AST], added: set[int]) -> None:
    """``patch('pkg.foo.func')`` in ``test_foo.py`` of a ``func`` the test imports from
    ``pkg.foo`` (or calls as ``foo.func``): the test replaces what it should test."""
    subject = _subject(sec.path)
    if subject is None:
        return
    aliases: set[str] = set()  # local names of the subject module
    names: set[str] = set()  # names the test takes from the subject module
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.rsplit(".", 1)[-1] == subject:
                names.update(a.name for a in node.names)
            for a in node.names:
                if a.name == subject:
                    aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.rsplit(".", 1)[-1] == subject:
                    aliases.add(a.asname or a.name)
    for node in nodes:
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            names.add(node.attr)
    if not aliases and not names:
        return
    for call in nodes:
        if not isinstance(call, ast.Call) or call.lineno not in added:
            continue
        target = _mock_target(call, aliases, subject)
        if target is not None and target in names:
            ctx.add(
                sec.path,
                call.lineno,
                "self-mock",
                f"mocks {_name(target)} of the module under test ({subject!r}), which the test "
                "itself calls: mock its collaborators, not the code under test",
            )


# What the name of every call :func:`_mock_target` takes holds (``patch``, ``patch.object``,
# ``monkeypatch.setattr``): a module without them mocks nothing.
_MOCK_WORDS = ("patch", "setattr")


def _mock_target(call: ast.Call, aliases: set[str], subject: str) -> str | None:
    """The attribute of the subject module a mock call replaces, if any."""
    func = _dotted(call.func)
    last = func.rsplit(".", 1)[-1]
    args = call.args
    first = args[0] if args else None
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        if last not in ("patch", "setattr"):
            return None
        module, _, attr = first.value.rpartition(".")
        if module.rsplit(".", 1)[-1] == subject:
            return attr
        return None
    is_object = func.endswith("patch.object") or (last == "setattr" and "monkeypatch" in func)
    if is_object and len(args) >= 2 and isinstance(args[1], ast.Constant):
        owner = _dotted(args[0]) if isinstance(args[0], (ast.Name, ast.Attribute)) else ""
        if (owner in aliases or owner.rsplit(".", 1)[-1] == subject) and isinstance(
            args[1].value, str
        ):
            return args[1].value
    return None


def _python_lines(
    ctx: _Context, sec: Section, pre: list[str] | None, post: list[str] | None
) -> None:
    """Line rules for Python test code that cannot be read as a module."""
    path = sec.path
    removed = [t for _, t in sec.removed]
    for pattern, rule, what in (
        (_LINE_SKIP, "skip-added", "a skip marker is added"),
        (_LINE_XFAIL, "xfail-added", "an expected-failure marker is added"),
        (_LINE_MODULE_SKIP, "test-module-skipped", "the whole test module is skipped"),
    ):
        for line in _new_matches(pattern, sec.added, removed):
            ctx.add(path, line, rule, what)
    for line, text in sec.added:
        if _LINE_TAUTOLOGY.match(text):
            ctx.add(path, line, "tautology", "an assertion that cannot fail")
        if _LINE_RAISES_ALL.search(text):
            ctx.add(path, line, "raises-everything", "expects any exception at all (Exception)")
    _emptied_generic(ctx, sec, pre, post)


def _new_matches(
    pattern: re.Pattern[str],
    added: Sequence[tuple[int, str]],
    removed: Sequence[str],
) -> list[int]:
    """Lines of added matches beyond those removed (a marker moved or edited is not new)."""
    hits = [n for n, t in added if pattern.search(t)]
    extra = len(hits) - sum(1 for t in removed if pattern.search(t))
    return hits[: max(extra, 0)]


def _blank(lines: Sequence[str]) -> bool:
    return all(not t.strip() or t.lstrip().startswith(("#", "//", "/*", "*", "--")) for t in lines)


def _emptied_generic(
    ctx: _Context, sec: Section, pre: list[str] | None, post: list[str] | None
) -> None:
    if sec.status == "added":
        return
    gone = pre is not None and not _blank(pre)
    if post is not None:
        empty = _blank(post)
    else:
        empty = bool(sec.removed) and _blank([t for _, t in sec.added]) and pre is None
        gone = gone or (empty and not _blank([t for _, t in sec.removed]))
        empty = empty and pre is None and _whole(sec)
    if gone and empty:
        ctx.add(sec.path, 0, "test-emptied", "the test file is emptied")


def _whole(sec: Section) -> bool:
    """Whether the one hunk replaces the whole file (starts at line 1, no context)."""
    return (
        len(sec.hunks) == 1 and sec.hunks[0][0] == 1 and all(k != " " for k, _ in sec.hunks[0][2])
    )


def _skip_patterns(ctx: _Context, sec: Section) -> None:
    removed = [t for _, t in sec.removed]
    for source in ctx.settings["skip_patterns"]:
        try:
            pattern = re.compile(source)
        except (re.error, RecursionError, OverflowError):
            continue
        for line in _new_matches(pattern, sec.added, removed):
            ctx.add(
                sec.path,
                line,
                "skip-added-pattern",
                f"a skip marker is added (matches {source!r})",
            )


# -- configuration, detection, hard-coded outputs ---------------------------------------------
def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _sections_by_line(pre: Sequence[str] | None) -> list[str] | None:
    """The section (``[tool.ruff]``: ``tool.ruff``; ``""`` before any) each base line ends
    in, in one pass; None when the base is unknown."""
    if pre is None:
        return None
    out: list[str] = []
    current = ""
    for text in pre:
        m = _SECTION.match(text)
        if m:
            current = m[1].strip().lower()
        out.append(current)
    return out


def _counts(key: str, section: str | None, path: str) -> bool:
    """Whether a settings key chooses tests: coverage's ``omit``/``include``/``exclude``/
    ``source``/``fail_under`` only in a coverage section (ruff's or setuptools' ``exclude``
    chooses no test); an unknown section counts."""
    if key not in _COVERAGE_KEYS or _basename(path) == ".coveragerc" or section is None:
        return True
    return "coverage" in section


def _selection(ctx: _Context, sec: Section, pre: Sequence[str] | None) -> None:
    """Changed lines of a pytest/tox/coverage settings file that choose which tests run."""
    by_line = _sections_by_line(pre)
    for _start, _count, body in sec.hunks:
        key: str | None = None
        new_no = _start
        at = max(_start - 1, 0)
        section = None if by_line is None else (by_line[at - 1] if 0 < at <= len(by_line) else "")
        for kind, text in body:
            header = _SECTION.match(text)
            if header and kind != "-":
                section = header[1].strip().lower()
            is_key = _KEY_LINE.match(text) is not None
            if is_key:
                km = _SELECTION_KEY.match(text)
                key = km[1] if km and _counts(km[1], section, sec.path) else None
            if kind != " " and (
                (is_key and key is not None)
                or _SELECTION_OPT.search(text)
                or (key is not None and not is_key and text.strip())
            ):
                ctx.add(
                    sec.path,
                    new_no if kind == "+" else 0,
                    "test-selection-changed",
                    f"changes which tests run or count ({text.strip()[:120]!r})",
                )
            if kind != "-":
                new_no += 1


def _conftest(ctx: _Context, sec: Section) -> None:
    for line, text in sec.added:
        if _CONFTEST_HOOK.search(text) or _adds_skip_marker(text):
            ctx.add(
                sec.path,
                line,
                "test-selection-changed",
                f"a conftest hook or setting that deselects, ignores or skips tests "
                f"({text.strip()[:120]!r})",
            )


def _plugin_hooks(ctx: _Context, sec: Section) -> None:
    """A collection hook defined outside a conftest: a plugin module (``pytest_plugins``,
    ``-p``, a ``pytest11`` entry point) chooses which tests run as a conftest would."""
    for line, text in sec.added:
        if _HOOK_DEF.match(text):
            ctx.add(
                sec.path,
                line,
                "test-selection-changed",
                f"a pytest hook that chooses which tests run ({text.strip()[:120]!r})",
            )


def _adds_skip_marker(text: str) -> bool:
    call = _ADD_MARKER.search(text)
    return call is not None and _SKIP_WORD.search(text, call.end()) is not None


def _sniffs_argv(text: str) -> bool:
    return _ARGV.search(text) is not None and _ARGV_RUNNER.search(text) is not None


def _sniffs_modules(text: str) -> bool:
    """``sys.modules`` and a ``"pytest"`` string on one line, however they are combined
    (``any("pytest" in m for m in sys.modules)``, ``sys.modules.__contains__("pytest")``)."""
    return _MODULES.search(text) is not None and _PYTEST_STRING.search(text) is not None


def _detection(ctx: _Context, sec: Section) -> None:
    # Seams never span lines: the joined text of all the lines is theirs, joined one by one.
    if _DETECTION_ANY.search(_JOINED.sub("", "\n".join(t for _, t in sec.added))) is None:
        return
    for line, raw in sec.added:
        text = _JOINED.sub("", raw)  # "py" "test", "PYTEST_" + "CURRENT_TEST": one string
        if any(p.search(text) for p in _DETECTION) or _sniffs_argv(text) or _sniffs_modules(text):
            ctx.add(
                sec.path,
                line,
                "test-detection",
                "code that checks whether it runs under a test: it can behave differently "
                "for the tests",
            )


def _literals(text: str, keys: bool = True) -> set[str]:
    """The string and number literals of a line (``keys``: dict keys too)."""
    out = set()
    for m in _LITERAL.finditer(text):
        if not keys and (m[2] or m[4]):
            continue
        value = m[1] if m[1] is not None else m[3] if m[3] is not None else m[5]
        if value and len(value) <= 80 and _kept(value):
            out.add(value)
    return out


def _hardcoded(ctx: _Context, sec: Section) -> None:
    """A return of a literal table whose literals the change's tests expect."""
    if not sec.added or (sec.status == "added" and not ctx.test_literals):
        return  # (a changed file's returns are found first: most have none)
    returns: list[tuple[int, set[str]]] = []
    tree = _parse([t for _, t in sec.added]) if sec.status == "added" else None
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Return) and isinstance(node.value, _TABLES):
                keys = {
                    id(k)
                    for d in ast.walk(node.value)
                    if isinstance(d, ast.Dict)
                    for k in d.keys
                    if k is not None
                }
                found = {
                    str(c.value)
                    for c in ast.walk(node.value)
                    if isinstance(c, ast.Constant)
                    and id(c) not in keys
                    and isinstance(c.value, (str, int, float))
                    and not isinstance(c.value, bool)
                }
                returns.append((node.lineno, {x for x in found if _kept(x)}))
    else:
        added = sec.added
        starts = [i for i, (_, text) in enumerate(added) if _RETURN_LITERAL.match(text)]
        for k, i in enumerate(starts):
            # A table ends by its brackets, within 200 lines, at the next return at the
            # latest: each added line is read once, however many returns a patch opens.
            stop = min(i + 200, starts[k + 1] if k + 1 < len(starts) else len(added))
            line = added[i][0]
            seen: set[str] = set()
            depth = 0
            for j in range(i, stop):
                chunk = added[j][1]
                seen |= _literals(chunk, keys=False)
                depth += sum(chunk.count(c) for c in "([{") - sum(chunk.count(c) for c in ")]}")
                if depth <= 0:
                    break
            returns.append((line, seen))
    for line, found in returns:
        shared = found & ctx.test_literals
        if len(shared) >= 2:
            sample = ", ".join(sorted(repr(x[:40]) for x in shared)[:4])
            ctx.add(
                sec.path,
                line,
                "hardcoded-output",
                f"returns literals the change's tests expect ({sample}): compute the "
                "result, do not hard-code it",
            )


def _kept(value: str) -> bool:
    return len(value) >= 2 and value not in _TRIVIAL_NUMBERS
