"""Crank manifests: the units of a feature, their dependencies and the execution groups that
order them, read from markdown (or JSON), checked, and written back with progress marked.

The markdown form::

    ---
    title: Checkout
    status: pending            # pending | in_progress | completed | failed
    threshold: 0.90            # optional (0.90): the satisfaction a unit needs
    max_iterations: 5          # optional (5): attempts per unit
    ---
    ## Units
    - [ ] ve1: Cart model — no dependencies
    - [x] ve2: Cart API — after: ve1
    ## Execution Order
    Group 1 (sequential): ve1
    Group 2 (parallel): ve2

The dependency clause follows an em dash (or an en dash, `` - `` or `` -- ``). Lines in fenced
code are not read; prose between the lines is. Every problem is one line naming the file, the
line (or the JSON path) and the rule, e.g. ``manifest.md: line 9: ... [unknown-unit]``.

A unit ID is a lowercase letter then up to 14 lowercase letters or digits: it names the unit's
spec file and its worker, ``U<id>`` (:func:`worker_id`), which maps back (:func:`unit_of`); one
case only, so no two units can share a file or worker folder on a case-insensitive disk.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from tools.codex.factory.core import frontmatter
from tools.codex.factory.core.convergence import parse_threshold
from tools.codex.factory.core.frontmatter import Entry, FrontmatterError, Line
from tools.codex.factory.core.globs import validate_glob
from tools.codex.factory.core.text import clip, one_line, strip_bom, utf16_kind
from tools.codex.factory.errors import UsageError
from tools.codex.factory.records.common import SCHEMA_VERSION
from tools.codex.factory.records.manifest import (
    MODES,
    STATUSES,
    Group,
    GroupDoc,
    Manifest,
    ManifestDoc,
    Unit,
    UnitDoc,
    UnitScope,
)

UNIT_ID_RE = re.compile(r"[a-z][a-z0-9]{0,14}")
AGENT_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
WORKER_PREFIX = "U"
DEFAULT_THRESHOLD = "0.90"
DEFAULT_MAX_ITERATIONS = 5
MAX_ITERATIONS = 100
MAX_UNITS = 100
MAX_BYTES = 256 * 1024
MAX_PROBLEMS = 100  # kept on an error (the message counts them all)
MANIFEST_KEYS = ("title", "status", "threshold", "max_iterations")
SCOPE_KEYS = ("allow", "deny", "shared", "agent")

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_LIST_ITEM = re.compile(r"[ \t]*[-*+][ \t]")
_UNIT = re.compile(r"[ \t]*[-*+][ \t]+\[(?P<box>[ xX])\][ \t]+(?P<id>[^\s:]+):[ \t]*(?P<rest>.*)$")
_CLAUSE = re.compile(
    r"(?P<title>.*\S)(?:[ \t]+--?[ \t]+|[ \t]*[\u2014\u2013][ \t]*)"
    r"(?P<deps>(?i:no dependencies)|(?i:after)[ \t]*:(?P<after>.*))$"
)
_GROUP_START = re.compile(r"[ \t]*(?:[-*+][ \t]+)?group[ \t]*\d", re.IGNORECASE)
_GROUP = re.compile(
    r"[ \t]*(?:[-*+][ \t]+)?group[ \t]+(?P<n>\d{1,6})[ \t]*\((?P<mode>[^)]*)\)[ \t]*:(?P<ids>.*)$",
    re.IGNORECASE,
)
_UNIT_FORM = "'- [ ] <id>: <title> — no dependencies' or '- [ ] <id>: <title> — after: <id>, <id>'"


class ManifestError(UsageError):
    """A manifest or unit spec that cannot be used. The message is the first problem (one line:
    file, line, rule); ``problems`` holds them all, in file order."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems[:MAX_PROBLEMS])
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")


@dataclass(frozen=True)
class _Spans:
    """Where the values :func:`render` may change sit in the text: the status value's
    characters and each unit's checkbox character (by unit ID)."""

    status: tuple[int, int]
    boxes: dict[str, int]


@dataclass(frozen=True)
class _Placed:
    """A unit or a group with where it was written (``line 9``, ``units[2]``) and its rank in
    the file, so problems come out in file order."""

    where: str
    rank: int


# -- worker IDs --------------------------------------------------------------------------------
def worker_id(unit: str) -> str:
    """The worker a unit runs as: ``ve1`` -> ``Uve1`` (a valid worker ID for every unit ID)."""
    if not UNIT_ID_RE.fullmatch(unit):
        raise UsageError(f"unit ID {unit!r}: {_ID_RULE}")
    return WORKER_PREFIX + unit


def unit_of(worker: str) -> str | None:
    """The unit a worker runs, or None when the worker is not a unit's (``Uve1`` -> ``ve1``)."""
    unit = worker[len(WORKER_PREFIX) :] if worker.startswith(WORKER_PREFIX) else ""
    return unit if UNIT_ID_RE.fullmatch(unit) else None


_ID_RULE = "a unit ID is a lowercase letter then up to 14 lowercase letters or digits"


# -- reading -----------------------------------------------------------------------------------
def _text(data: bytes, source: str) -> tuple[bool, str]:
    """(had a BOM, the text) of a UTF-8 file, or a one-line refusal."""
    if len(data) > MAX_BYTES:
        raise ManifestError([f"{source}: {len(data)} bytes; the limit is {MAX_BYTES} [size]"])
    kind = utf16_kind(data)
    if kind is not None:
        raise ManifestError(
            [f"{source}: the file is {kind}, not UTF-8; save it as UTF-8 [encoding]"]
        )
    body = strip_bom(data)
    try:
        return len(body) != len(data), body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            [f"{source}: byte {exc.start} is not UTF-8; save the file as UTF-8 [encoding]"]
        ) from None


def _frontmatter(
    lines: Sequence[Line], source: str, keys: Sequence[str], lists: Sequence[str] = ()
) -> tuple[dict[str, Entry], int]:
    try:
        return frontmatter.read(lines, keys, lists)
    except FrontmatterError as exc:
        raise ManifestError([f"{source}: line {exc.line}: {exc.rule} [frontmatter]"]) from None


def parse(data: bytes, source: str) -> Manifest:
    """The manifest in ``data`` (the bytes of the file ``source`` names), checked."""
    return _parse(data, source)[0]


def _parse(data: bytes, source: str) -> tuple[Manifest, _Spans]:
    _bom, text = _text(data, source)
    lines = frontmatter.split_lines(text)
    entries, body = _frontmatter(lines, source, MANIFEST_KEYS)
    head = _head(entries, source, lines[0].number)
    units, groups, boxes = _sections(lines[body:], source, len(lines))
    manifest = Manifest(
        title=head[0],
        status=head[1],
        threshold=head[2],
        max_iterations=head[3],
        units=tuple(u for u, _ in units),
        groups=tuple(g for g, _ in groups),
    )
    _raise(_check(source, units, groups))
    return manifest, _Spans(entries["status"].span, boxes)


def _head(
    entries: dict[str, Entry], source: str, first: int
) -> tuple[str, str, tuple[int, int], int]:
    """(title, status, threshold, max_iterations) from the frontmatter."""
    for key in ("title", "status"):
        if key not in entries:
            raise ManifestError([f"{source}: line {first}: the frontmatter has no {key!r} [{key}]"])
    title, status = entries["title"], entries["status"]
    if not str(title.value).strip():
        raise ManifestError([f"{source}: line {title.line}: the title is empty [title]"])
    where = f"{source}: line {status.line}"
    return (
        str(title.value),
        _status(str(status.value), where),
        _threshold_of(entries, source),
        _iterations_of(entries, source),
    )


def _status(value: str, where: str) -> str:
    if value not in STATUSES:
        raise ManifestError(
            [f"{where}: status {_show(value)} is not one of {', '.join(STATUSES)} [status]"]
        )
    return value


def _threshold_of(entries: dict[str, Entry], source: str) -> tuple[int, int]:
    entry = entries.get("threshold")
    if entry is None:
        return parse_threshold(DEFAULT_THRESHOLD)
    return _threshold(str(entry.value), f"{source}: line {entry.line}")


def _threshold(value: str, where: str) -> tuple[int, int]:
    try:
        return parse_threshold(value)
    except UsageError as exc:
        raise ManifestError([f"{where}: {exc} [threshold]"]) from None


def _iterations_of(entries: dict[str, Entry], source: str) -> int:
    entry = entries.get("max_iterations")
    if entry is None:
        return DEFAULT_MAX_ITERATIONS
    value = str(entry.value)
    if not re.fullmatch(r"[0-9]{1,3}", value) or not 1 <= int(value) <= MAX_ITERATIONS:
        raise ManifestError(
            [
                f"{source}: line {entry.line}: max_iterations {_show(value)} is not a whole "
                f"number from 1 to {MAX_ITERATIONS} [max-iterations]"
            ]
        )
    return int(value)


def _show(value: str) -> str:
    return repr(clip(one_line(value), 80))


_Units = list[tuple[Unit, _Placed]]
_Groups = list[tuple[Group, _Placed]]
_Say = Callable[[_Placed, str, str], None]


def _sections(
    lines: Sequence[Line], source: str, last: int
) -> tuple[_Units, _Groups, dict[str, int]]:
    """The Units and Execution Order sections' lines, read (fenced code skipped)."""
    units: _Units = []
    groups: _Groups = []
    boxes: dict[str, int] = {}
    seen: dict[str, int] = {}
    section = ""
    depth = 0  # the current section's heading level
    fence = ""
    for line in lines:
        opened = _FENCE.match(line.text)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = "" if not line.text[opened.end() :].strip() else fence
            continue
        if opened:
            fence = opened.group(1)
            continue
        heading = _HEADING.match(line.text)
        if heading:
            level = len(heading.group(1))
            name = _section(heading.group(2), line.number, seen, source)
            if name or not section or level <= depth:  # a deeper heading stays in its section
                section, depth = name, level
            continue
        if section == "units" and _LIST_ITEM.match(line.text):
            unit = _unit(line, source)
            units.append((unit, _Placed(f"line {line.number}", line.number)))
            box = _UNIT.match(line.text)
            assert box is not None  # _unit refused the line otherwise
            boxes.setdefault(unit.id, line.start + box.start("box"))
        elif section == "order" and _GROUP_START.match(line.text):
            groups.append((_group(line, source), _Placed(f"line {line.number}", line.number)))
    for name, heading_text in (("units", "Units"), ("order", "Execution Order")):
        if name not in seen:
            raise ManifestError(
                [
                    f"{source}: line {last}: no '## {heading_text}' section before the end of "
                    f"the file [section]"
                ]
            )
    return units, groups, boxes


def _section(title: str, number: int, seen: dict[str, int], source: str) -> str:
    folded = " ".join(title.split()).casefold()
    name = {"units": "units", "execution order": "order"}.get(folded, "")
    if name in seen:
        raise ManifestError(
            [
                f"{source}: line {number}: a second '{title}' section (the first is on line "
                f"{seen[name]}) [section]"
            ]
        )
    if name:
        seen[name] = number
    return name


def _unit(line: Line, source: str) -> Unit:
    where = f"{source}: line {line.number}"
    m = _UNIT.match(line.text)
    clause = _CLAUSE.match(m.group("rest")) if m else None
    if m is None or clause is None:
        raise ManifestError(
            [f"{where}: {_show(line.text.strip())} is not {_UNIT_FORM} [unit-line]"]
        )
    after = clause.group("after")
    deps: tuple[str, ...] = ()
    if after is not None:
        deps = tuple(d.strip() for d in after.split(","))
        if not all(deps):
            raise ManifestError(
                [f"{where}: 'after:' needs unit IDs separated by commas [unit-line]"]
            )
    return Unit(m.group("id"), clause.group("title"), m.group("box") != " ", deps)


def _group(line: Line, source: str) -> Group:
    where = f"{source}: line {line.number}"
    m = _GROUP.match(line.text)
    if m is None:
        raise ManifestError(
            [
                f"{where}: {_show(line.text.strip())} is not 'Group <N> (parallel|sequential): "
                "<id>, <id>' [group-line]"
            ]
        )
    mode = m.group("mode").strip().lower()
    if mode not in MODES:
        raise ManifestError(
            [f"{where}: mode {_show(m.group('mode'))} is not parallel or sequential [group-mode]"]
        )
    ids = tuple(i.strip() for i in m.group("ids").split(","))
    if not all(ids):
        raise ManifestError(
            [f"{where}: Group {int(m.group('n'))} needs unit IDs separated by commas [empty-group]"]
        )
    return Group(int(m.group("n")), mode, ids)


# -- the rules (both forms) --------------------------------------------------------------------
def _raise(problems: list[tuple[int, str]]) -> None:
    if problems:
        ordered = sorted(problems, key=lambda p: p[0])  # stable: rule order within a line
        raise ManifestError([text for _rank, text in ordered])


def _check(source: str, units: _Units, groups: _Groups) -> list[tuple[int, str]]:
    """Every rule a manifest breaks, as (rank, one line)."""
    out: list[tuple[int, str]] = []

    def say(at: _Placed, text: str, rule: str) -> None:
        out.append((at.rank, f"{source}: {at.where}: {text} [{rule}]"))

    if not units:
        say(_Placed("units", 0), "the manifest lists no units", "no-units")
    if len(units) > MAX_UNITS:  # the other rules' work grows with the units: stop here
        say(units[MAX_UNITS][1], f"more than {MAX_UNITS} units", "too-many-units")
        return out
    if not groups:
        say(_Placed("groups", 0), "the execution order lists no groups", "no-groups")
    known = _ids(units, say)
    _dependencies(units, known, say)
    placed = _groups(groups, known, say)
    for unit, at in units:
        if unit.id in known and unit.id not in placed:
            say(at, f"unit {unit.id!r} is in no group of the execution order", "unassigned-unit")
    _order(units, known, placed, say)
    return out


def _ids(units: _Units, say: _Say) -> dict[str, Unit]:
    known: dict[str, Unit] = {}
    first: dict[str, _Placed] = {}
    for unit, at in units:
        if not UNIT_ID_RE.fullmatch(unit.id):
            say(at, f"unit ID {_show(unit.id)}: {_ID_RULE}", "unit-id")
        elif unit.id in known:
            say(
                at,
                f"unit {unit.id!r} is listed twice (first at {first[unit.id].where})",
                "duplicate-unit",
            )
        else:
            known[unit.id] = unit
            first[unit.id] = at
    return known


def _dependencies(units: _Units, known: dict[str, Unit], say: _Say) -> None:
    for unit, at in units:
        named: set[str] = set()
        for dep in unit.after:
            if dep in named:
                say(
                    at,
                    f"unit {unit.id!r} names {dep!r} twice after 'after:'",
                    "duplicate-dependency",
                )
            elif dep not in known:
                say(
                    at,
                    f"unit {unit.id!r} depends on {_show(dep)}, which is not a unit of this manifest",
                    "unknown-dependency",
                )
            named.add(dep)
    reported: set[str] = set()
    for unit, at in units:
        if unit.id in reported or known.get(unit.id) is not unit:
            continue
        cycle = _cycle_through(unit.id, known)
        if cycle:
            reported.update(cycle)
            say(at, f"dependency cycle {' -> '.join([*cycle, cycle[0]])}", "cycle")


def _cycle_through(start: str, known: dict[str, Unit]) -> list[str]:
    """The shortest dependency path from ``start`` back to itself ([] when there is none):
    breadth first, dependencies in the order written, so the answer is deterministic."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for dep in known[node].after:
                if dep == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                if dep in known and dep not in parent:
                    parent[dep] = node
                    nxt.append(dep)
        frontier = nxt
    return []


def _groups(groups: _Groups, known: dict[str, Unit], say: _Say) -> dict[str, int]:
    """Each unit's group number (its first), saying what breaks the group rules."""
    placed: dict[str, int] = {}
    index: dict[str, int] = {}  # the line (or entry) that placed it: numbers may repeat
    for k, (group, at) in enumerate(groups, 1):
        if group.number != k:
            say(
                at,
                f"Group {group.number} should be Group {k}: number the groups 1, 2, 3, ... in order",
                "group-number",
            )
        for uid in group.units:
            if uid not in known:
                say(
                    at,
                    f"Group {group.number} lists {_show(uid)}, which is not a unit of this manifest",
                    "unknown-unit",
                )
            elif uid in placed:
                where = (
                    "twice in this group"
                    if index[uid] == k
                    else f"in Group {placed[uid]} and Group {group.number}"
                )
                say(
                    at,
                    f"unit {uid!r} is {where}: a unit belongs to exactly one group",
                    "duplicate-group-unit",
                )
            else:
                placed[uid] = group.number
                index[uid] = k
    return placed


def _order(units: _Units, known: dict[str, Unit], placed: dict[str, int], say: _Say) -> None:
    for unit, at in units:
        if known.get(unit.id) is not unit or unit.id not in placed:
            continue
        for dep in unit.after:
            if dep in placed and placed[dep] >= placed[unit.id]:
                say(
                    at,
                    f"unit {unit.id!r} (Group {placed[unit.id]}) depends on {dep!r} (Group "
                    f"{placed[dep]}): a dependency must be in an earlier group",
                    "dependency-order",
                )


# -- writing back ------------------------------------------------------------------------------
def render(data: bytes, source: str, manifest: Manifest) -> bytes:
    """``data`` (the manifest file) with its status and checkboxes set as ``manifest`` has them,
    and every other byte as it was. ``manifest`` must differ from the file in nothing else."""
    bom, text = _text(data, source)
    current, spans = _parse(data, source)
    _status(manifest.status, f"{source}: status")
    done = {u.id: u.done for u in manifest.units}
    expected = dataclasses.replace(
        current,
        status=manifest.status,
        units=tuple(dataclasses.replace(u, done=done.get(u.id, u.done)) for u in current.units),
    )
    if expected != manifest:
        raise UsageError(
            f"{source}: the manifest to write differs from the file in more than its status and "
            "checkboxes"
        )
    edits: list[tuple[int, int, str]] = []
    if manifest.status != current.status:
        edits.append((*spans.status, manifest.status))
    for old, new in zip(current.units, manifest.units, strict=True):
        if old.done != new.done:
            at = spans.boxes[old.id]
            edits.append((at, at + 1, "x" if new.done else " "))
    for start, end, value in sorted(edits, reverse=True):
        text = text[:start] + value + text[end:]
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def mark(manifest: Manifest, done: Iterable[str], status: str | None = None) -> Manifest:
    """``manifest`` with the units in ``done`` checked (others as they were) and ``status``."""
    finished = set(done)
    return dataclasses.replace(
        manifest,
        status=manifest.status if status is None else status,
        units=tuple(
            dataclasses.replace(u, done=u.done or u.id in finished) for u in manifest.units
        ),
    )


# -- the JSON form -----------------------------------------------------------------------------
def from_doc(doc: ManifestDoc, source: str) -> Manifest:
    """A manifest from its JSON form (already valid against schemas/crank_manifest), checked
    by the same rules; problems name JSON paths where the markdown form names lines."""
    where = f"{source}: threshold"
    threshold = _threshold(doc["threshold"], where)
    _status(doc["status"], f"{source}: status")
    units: _Units = [
        (Unit(u["id"], u["title"], u["done"], tuple(u["after"])), _Placed(f"units[{k}]", k))
        for k, u in enumerate(doc["units"])
    ]
    groups: _Groups = [
        (Group(g["number"], g["mode"], tuple(g["units"])), _Placed(f"groups[{k}]", len(units) + k))
        for k, g in enumerate(doc["groups"])
    ]
    _raise(_check(source, units, groups))
    return Manifest(
        title=doc["title"],
        status=doc["status"],
        threshold=threshold,
        max_iterations=doc["max_iterations"],
        units=tuple(u for u, _ in units),
        groups=tuple(g for g, _ in groups),
    )


def to_doc(manifest: Manifest) -> ManifestDoc:
    """The JSON form (what a record holds): the threshold as exact decimal text."""
    return ManifestDoc(
        schema_version=SCHEMA_VERSION,
        title=manifest.title,
        status=manifest.status,
        threshold=threshold_text(manifest.threshold),
        max_iterations=manifest.max_iterations,
        units=[
            UnitDoc(id=u.id, title=u.title, done=u.done, after=list(u.after))
            for u in manifest.units
        ],
        groups=[
            GroupDoc(number=g.number, mode=g.mode, units=list(g.units)) for g in manifest.groups
        ],
    )


def threshold_text(threshold: tuple[int, int]) -> str:
    """(9, 10) -> ``"0.9"``: exact (a threshold has at most 6 decimals)."""
    value = Decimal(threshold[0]) / Decimal(threshold[1])
    text = format(value.normalize(), "f")
    return text


# -- unit specs --------------------------------------------------------------------------------
def parse_unit_scope(data: bytes, source: str, unit: str) -> UnitScope:
    """The scope lock in the frontmatter of unit ``unit``'s spec file (``units/<id>.md``):
    ``allow`` (required), ``deny``, ``shared`` (glob lists) and ``agent`` (a preset name)."""
    _bom, text = _text(data, source)
    lines = frontmatter.split_lines(text)
    entries, _body = _frontmatter(lines, source, SCOPE_KEYS, lists=("allow", "deny", "shared"))
    globs: dict[str, tuple[str, ...]] = {}
    for key in ("allow", "deny", "shared"):
        entry = entries.get(key)
        value = () if entry is None else entry.value
        items = (value,) if isinstance(value, str) else value
        for pattern in items:
            try:
                validate_glob(pattern)
            except ValueError as exc:
                assert entry is not None
                raise ManifestError([f"{source}: line {entry.line}: {key}: {exc} [glob]"]) from None
        globs[key] = items
    if not globs["allow"]:
        line = entries["allow"].line if "allow" in entries else 1
        raise ManifestError(
            [
                f"{source}: line {line}: 'allow' must list at least one glob, e.g. allow: [src/a/**] [scope]"
            ]
        )
    agent = entries.get("agent")
    if agent is not None and not AGENT_RE.fullmatch(str(agent.value)):
        raise ManifestError(
            [
                f"{source}: line {agent.line}: agent {_show(str(agent.value))} is not a preset name [agent]"
            ]
        )
    return UnitScope(
        unit=unit,
        allow=globs["allow"],
        deny=globs["deny"],
        shared=globs["shared"],
        agent=None if agent is None else str(agent.value),
    )
