"""Holdout scenarios: the markdown format, parsed as markdown.

A scenario file::

    # Scenario: <name>
    ## Category
    <one line>
    ## Preconditions            (optional)
    ## Behavioral Expectation
    ## Evaluation Method
    ```bash                     (one fenced block: bash/sh/none, powershell/pwsh, python)
    <command>
    ```
    ## Pass Criteria
    ## Evidence Required        (optional)

Headings count only outside fenced code (a ``## `` inside the evaluation method is code), so
the parser tracks fences as CommonMark does: an opening run of three or more backticks or
tildes, closed by a run of the same character at least as long. An operator may plant canary
tokens (``<!-- canary: TOKEN -->``) anywhere: they must never reach an agent.

Every problem is a :class:`ScenarioError` naming the file, the line and what is missing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from tools.codex.factory.core.text import strip_bom, utf16_kind
from tools.codex.factory.errors import UsageError

REQUIRED = ("Category", "Behavioral Expectation", "Evaluation Method", "Pass Criteria")
OPTIONAL = ("Preconditions", "Evidence Required")
LANGUAGES = {
    "": "bash",
    "bash": "bash",
    "sh": "bash",
    "shell": "bash",
    "powershell": "powershell",
    "pwsh": "powershell",
    "ps1": "powershell",
    "python": "python",
    "py": "python",
    "python3": "python",
}
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_TITLE = re.compile(r"^#\s+Scenario:\s*(.*?)\s*#*\s*$", re.IGNORECASE)
_SECTION = re.compile(r"^##\s+(.*?)\s*#*\s*$")
_OTHER_HEADING = re.compile(r"^#{1,6}\s")
_CANARY = re.compile(r"<!--\s*canary:\s*(\S(?:.*?\S)?)\s*-->", re.IGNORECASE)


class ScenarioError(UsageError):
    """A scenario file that cannot be used: names the file, the line and the rule."""


@dataclass(frozen=True)
class Scenario:
    """One parsed scenario. ``id`` is opaque (a hash of the path): it is what agents may see."""

    id: str
    path: str
    sha256: str
    name: str
    category: str
    preconditions: str
    expectation: str
    language: str  # bash | powershell | python
    code: str
    pass_criteria: str
    evidence: str
    canaries: tuple[str, ...]


def scenario_id(path: str) -> str:
    """A stable, opaque ID for the scenario at ``path`` (repository-relative, POSIX)."""
    return "S-" + hashlib.sha256(path.encode("utf-8")).hexdigest()[:10]


def _text(data: bytes, path: str) -> list[str]:
    kind = utf16_kind(data)
    if kind is not None:
        raise ScenarioError(f"scenario {path}: the file is {kind}, not UTF-8; save it as UTF-8")
    try:
        text = strip_bom(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"scenario {path}: byte {exc.start} is not UTF-8; save the file as UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def parse(path: str, data: bytes) -> Scenario:
    """The scenario in ``data`` (the bytes of the file at ``path``)."""
    lines = _text(data, path)
    name: str | None = None
    sections: dict[str, list[str]] = {}
    where: dict[str, int] = {}
    current: str | None = None
    fence: tuple[str, int, int, str] | None = None  # (char, length, line, info) of the open fence
    blocks: dict[str, list[tuple[str, list[str], int]]] = {}
    block: list[str] = []
    for n, line in enumerate(lines, 1):
        m = _FENCE.match(line)
        if fence is not None:
            closes = m is not None and m.group(1)[0] == fence[0] and len(m.group(1)) >= fence[1]
            if closes and m is not None and not m.group(2).strip():
                if current is not None:
                    blocks.setdefault(current, []).append((fence[3], block, fence[2]))
                fence = None
            else:
                block.append(line)
            if current is not None:
                sections[current].append(line)
            continue
        if m:
            marker, info = m.group(1), m.group(2).strip()
            if marker[0] == "`" and "`" in info:
                pass  # not a fence (CommonMark): a backtick in a backtick fence's info string
            else:
                fence, block = (marker[0], len(marker), n, info), []
                if current is not None:
                    sections[current].append(line)
                continue
        title = _TITLE.match(line)
        if title and name is None and current is None:
            name = title.group(1)
            if not name:
                raise ScenarioError(f"scenario {path}: line {n}: the title names no scenario")
            continue
        heading = _SECTION.match(line)
        if heading:
            if name is None:
                raise ScenarioError(
                    f"scenario {path}: line {n}: a section before the '# Scenario: <name>' title"
                )
            current = _known(heading.group(1))
            if current in sections:
                raise ScenarioError(f"scenario {path}: line {n}: section '{current}' appears twice")
            sections[current] = []
            where[current] = n
            continue
        if _OTHER_HEADING.match(line) and name is None:
            raise ScenarioError(
                f"scenario {path}: line {n}: the first heading must be '# Scenario: <name>'"
            )
        if current is not None:
            sections[current].append(line)
    if fence is not None:
        raise ScenarioError(f"scenario {path}: line {fence[2]}: a code fence is never closed")
    if name is None:
        raise ScenarioError(f"scenario {path}: no '# Scenario: <name>' title")
    for section in REQUIRED:
        if section not in sections:
            raise ScenarioError(f"scenario {path}: the '## {section}' section is missing")
    method = blocks.get("Evaluation Method", [])
    if len(method) != 1:
        raise ScenarioError(
            f"scenario {path}: line {where['Evaluation Method']}: '## Evaluation Method' must hold "
            f"exactly one fenced code block (found {len(method)})"
        )
    info, code, fence_line = method[0]
    lang = info.split()[0].lower() if info else ""
    if lang not in LANGUAGES:
        raise ScenarioError(
            f"scenario {path}: line {fence_line}: code fence language {lang!r} is not one of "
            "bash, sh, powershell, pwsh, python"
        )
    if not "\n".join(code).strip():
        raise ScenarioError(f"scenario {path}: line {fence_line}: the evaluation method is empty")
    category = _prose(sections["Category"])
    if not category:
        raise ScenarioError(
            f"scenario {path}: line {where['Category']}: '## Category' names no category"
        )
    text = "\n".join(lines)
    return Scenario(
        id=scenario_id(path),
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        name=name,
        category=category.splitlines()[0].strip(),
        preconditions=_prose(sections.get("Preconditions", [])),
        expectation=_prose(sections["Behavioral Expectation"]),
        language=LANGUAGES[lang],
        code="\n".join(code) + "\n",
        pass_criteria=_prose(sections["Pass Criteria"]),
        evidence=_prose(sections.get("Evidence Required", [])),
        canaries=tuple(sorted(set(_CANARY.findall(text)))),
    )


def _known(title: str) -> str:
    """A section title as the format spells it (case and spacing aside); others as written."""
    folded = " ".join(title.split()).casefold()
    for known in (*REQUIRED, *OPTIONAL):
        if known.casefold() == folded:
            return known
    return " ".join(title.split())


def _prose(lines: list[str]) -> str:
    return "\n".join(lines).strip()


def render(s: Scenario) -> str:
    """The canonical markdown of a scenario (what :func:`parse` reads back to the same fields)."""
    fence = "```"
    while fence in s.code:
        fence += "`"
    lang = {"bash": "bash", "powershell": "powershell", "python": "python"}[s.language]
    parts = [f"# Scenario: {s.name}", "", "## Category", s.category, ""]
    if s.preconditions:
        parts += ["## Preconditions", s.preconditions, ""]
    parts += ["## Behavioral Expectation", s.expectation, ""]
    parts += ["## Evaluation Method", f"{fence}{lang}", s.code.rstrip("\n"), fence, ""]
    parts += ["## Pass Criteria", s.pass_criteria, ""]
    if s.evidence:
        parts += ["## Evidence Required", s.evidence, ""]
    return "\n".join(parts)
