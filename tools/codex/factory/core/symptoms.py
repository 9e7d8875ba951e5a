"""What a failure looks like: its class, a one-line symptom, and a signature that stays the
same when only numbers, hashes or paths change (the stall protocol compares signatures)."""

from __future__ import annotations

import re

from tools.codex.factory.core.text import clip, one_line

# The order decides: the first class whose pattern a line matches (a timeout beats everything).
CLASSES = (
    "timeout",
    "command-not-found",
    "import",
    "syntax",
    "permission",
    "file-not-found",
    "assertion",
    "other",
)
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "command-not-found",
        re.compile(
            r"command not found|is not recognized as (an internal or external command|the name of a cmdlet)",
            re.IGNORECASE,
        ),
    ),
    ("import", re.compile(r"ModuleNotFoundError|ImportError|No module named", re.IGNORECASE)),
    ("syntax", re.compile(r"SyntaxError|IndentationError|TabError|syntax error", re.IGNORECASE)),
    (
        "permission",
        re.compile(r"PermissionError|Permission denied|Access is denied", re.IGNORECASE),
    ),
    (
        "file-not-found",
        re.compile(
            r"FileNotFoundError|No such file or directory|cannot find the (file|path)",
            re.IGNORECASE,
        ),
    ),
    ("assertion", re.compile(r"AssertionError|\bassert(ion)?\b|\bexpected\b", re.IGNORECASE)),
]
SYMPTOM_CHARS = 200
_PATH = re.compile(
    r"(?:[A-Za-z]:)?(?:[\\/][^\s\\/:'\"]+){2,}[\\/]?|[^\s\\/:'\"]+(?:[\\/][^\s\\/:'\"]+)+"
)
_HEX = re.compile(r"\b(?:0x)?[0-9a-fA-F]{6,}\b")
_DIGITS = re.compile(r"\d+")


def classify(output: str, rc: int | None, timed_out: bool) -> tuple[str, str]:
    """(class, one-line symptom) for a failed command's combined output."""
    if timed_out:
        return "timeout", "timed out"
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for cls, pattern in _PATTERNS:
        for line in reversed(lines):
            if pattern.search(line):
                return cls, _one(line)
    if rc == 127:
        return "command-not-found", _one(lines[-1]) if lines else "exit 127"
    if rc == 126:
        return "permission", _one(lines[-1]) if lines else "exit 126"
    return "other", _one(lines[-1]) if lines else f"exit {rc}"


def _one(line: str) -> str:
    return clip(one_line(line), SYMPTOM_CHARS)


def normalise(message: str) -> str:
    """``message`` with paths, hex runs and digits masked: the same failure, whatever the run."""
    out = _PATH.sub("<path>", message)
    out = _HEX.sub("<hex>", out)
    return _DIGITS.sub("<n>", out)


def signature(scenario_id: str, symptom_class: str, symptom: str) -> str:
    return f"{scenario_id}|{symptom_class}|{normalise(symptom)}"
