"""Human text for the terminal, from what a command handed back (its JSON data and, for text
alone, its view inputs): the library returns data, this module words it.

Each view is named by ``Outcome.view``; an outcome without one brings its own text (commands
not moved here yet).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tools.codex.factory.core.paths import VALIDATION, worker_dirname
from tools.codex.factory.core.text import clip
from tools.codex.factory.run.outcome import Outcome

# Lines of each kind (findings, warnings, overlaps) the terminal shows, and their length;
# VALIDATION.json has them all, whole.
MAX_SHOWN = 100
MAX_LINE = 2000


def preflight_text(checks: list[dict[str, Any]]) -> str:
    """One line per check: level, name, detail and its fix."""
    lines = []
    for c in checks:
        line = f"{c['level']:<4} {c['name']}: {c['detail']}"
        if c["fix"]:
            line += f" -> fix: {c['fix']}"
        lines.append(line)
    return "\n".join(lines)


def validation_text(doc: Mapping[str, Any]) -> str:
    """The verdict per worker and the first findings, warnings and overlaps of each kind."""
    lines = [f"bundle-validate {doc['run_id']}: {doc['status']}"]
    for w in doc["workers"]:
        lines.append(f"  {w}_worker: {doc['verdicts'][w]}")
    kinds = (
        ("finding", doc["findings"], "  BLOCK [{rule}] {worker} {path}: {message}"),
        ("warning", doc["warnings"], "  WARN  [{rule}] {worker} {path}: {message}"),
    )
    for what, items, form in kinds:
        lines += [clip(form.format(**f), MAX_LINE) for f in items[:MAX_SHOWN]]
        lines += _more(what, len(items))
    for o in doc["overlaps"][:MAX_SHOWN]:
        line = f"  overlap {o['path']}: {', '.join(o['workers'])} -> {o['resolution']}"
        lines.append(clip(line, MAX_LINE))
    lines += _more("overlap", len(doc["overlaps"]))
    return "\n".join(lines)


def _more(what: str, count: int) -> list[str]:
    if count <= MAX_SHOWN:
        return []
    return [f"  ... and {count - MAX_SHOWN} more {what}(s): see {VALIDATION}"]


def summary_text(data: Mapping[str, Any]) -> str:
    """A run's end: its status, one line per stage, the report and the ledger head."""
    lines = [f"run {data['run_id'] or '-'}: {data['status']}"]
    lines += [
        f"  {s['stage']:<16} {s['status']:<8} {s.get('reason', '')}".rstrip()
        for s in data["stages"]
    ]
    if data.get("report"):
        lines.append(f"report: {data['report']}")
    head = data["ledger_head"]
    lines.append(f"ledger head: seq={head['seq']} hash={head['hash']}")
    return "\n".join(lines)


def rows_text(rows: list[dict[str, Any]]) -> str:
    """A compact console form of the runboard."""
    out = []
    for r in rows:
        out.append(
            f"  {worker_dirname(r['worker']):<10} {r['status']:<11} {r['mode']:<12} {r['branch']}"
        )
        out.append(f"  {'':<10} worktree: {r['worktree'] or '(none)'}")
    return "\n".join(out)


def runboard_lines(board: Mapping[str, Any]) -> list[str]:
    """Where RUNBOARD.md is and its rows (without its "next" line)."""
    return [f"runboard: {board['path']}", rows_text(board["rows"])]


def _launch(data: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    text = (
        f"{inputs['verb']} {data['run_id']} at {data['base_commit'][:12]} with workers "
        f"{', '.join(data['workers'])}\nrun folder: {data['run_dir']}"
    )
    board = inputs.get("runboard")
    if board is not None:
        text += "\n" + "\n".join([*runboard_lines(board), board["next"]])
    return text


def _pending(data: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    return "\n".join([summary_text(data), *runboard_lines(inputs["runboard"]), data["next"]])


VIEWS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], str]] = {
    "preflight": lambda data, _inputs: preflight_text(data["checks"]),
    "validation": lambda data, _inputs: validation_text(data),
    "run": lambda data, _inputs: summary_text(data),
    "run-preflight": lambda data, inputs: (
        summary_text(data) + "\n" + preflight_text(inputs["checks"])
    ),
    "run-pending": _pending,
    "launch": _launch,
}


def text(outcome: Outcome) -> str:
    """The outcome's human text: its view's rendering, or the text it brought."""
    if not outcome.view:
        return outcome.text
    data = outcome.data
    assert isinstance(data, dict)
    return VIEWS[outcome.view](data, outcome.view_inputs)
