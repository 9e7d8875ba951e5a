"""REPORT.html: a run's (or a crank's) report as one self-contained page. Data in, string out.

Every string that reaches the page goes through :func:`esc`: worker paths, summaries, findings
and check output are hostile input. The page loads nothing (no scripts, fonts, images or
links to fetch): inline CSS and inline SVG only. Nothing here reads a clock or sorts by
chance, so the same data gives the same bytes.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TypedDict

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f3f4f6}
code,pre{font:12px/1.35 ui-monospace,monospace}pre{background:#f6f8fa;padding:6px;margin:4px 0;
max-height:320px;overflow:auto;white-space:pre-wrap;word-break:break-all}
.st{font-weight:bold;padding:1px 6px;border-radius:3px;color:#fff;background:#6b7280}
.PASS,.pass,.CONVERGED,.ok{background:#15803d}.BLOCKED,.flaky,.STALLED,.EXHAUSTED,.HALTED{background:#b45309}
.FAIL,.fail,.infra{background:#b91c1c}.none{color:#6b7280}svg text{font:11px sans-serif}
"""
_COLOURS = {
    "PASS": "#15803d",
    "BLOCKED": "#b45309",
    "FAIL": "#b91c1c",
    "SKIPPED": "#9ca3af",
}
_LANE_H = 22


class Bar(TypedDict):
    """One bar of the timeline: seconds from the first event."""

    lane: str
    label: str
    start: float
    end: float
    status: str


class Note(TypedDict):
    """A finding or warning of bundle-validate."""

    rule: str
    worker: str
    path: str
    message: str


class Check(TypedDict):
    name: str
    required: bool
    ok: bool
    result: str  # rc=N or timeout
    tail: str  # the last lines of a failing check's output ("" when none)


class Scenario(TypedDict):
    iteration: str
    id: str
    name: str
    outcome: str
    passes: str  # passes/trials
    symptom: str


class Stage(TypedDict):
    stage: str
    status: str
    reason: str


class Page(TypedDict, total=False):
    """What the page shows; a section whose key is missing is left out."""

    title: str
    status: str
    meta: list[tuple[str, str]]
    stages: list[Stage]
    timeline: list[Bar]
    workers: list[str]
    overlaps: list[tuple[str, list[str]]]  # (path, the workers sharing it)
    findings: list[Note]
    warnings: list[Note]
    checks: list[Check]
    scenarios: list[Scenario]
    trajectory: list[float]  # satisfaction 0..1 per iteration
    ledger_head: str
    attestations: list[tuple[str, str]]


# Paths shown in one cell of the overlap matrix: the pairs grow with the workers squared, so a
# cell lists a few and counts the rest (VALIDATION.json holds them all).
MAX_CELL_PATHS = 20
_LABEL_W = 220
_CHART_W = 760


def esc(value: object) -> str:
    """Any value as HTML text (quotes too: the same text may go into an attribute)."""
    return html.escape(str(value), quote=True)


def status_tag(status: object) -> str:
    """A coloured status word; the class is one of a fixed set, never the raw text."""
    word = str(status)
    known = word if word.replace("_", "").isalnum() and len(word) <= 16 else "other"
    return f'<span class="st {esc(known)}">{esc(word)}</span>'


def table(head: Sequence[str], rows: Iterable[Sequence[str]], empty: str = "none") -> str:
    """A table of cells that are already HTML (callers escape what they put in)."""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="none">{esc(empty)}</p>'
    cols = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f"<table><thead><tr>{cols}</tr></thead><tbody>{body}</tbody></table>"


def _num(x: float) -> str:
    """Fixed-precision numbers: the same input gives the same bytes on every platform."""
    return f"{x:.1f}"


def timeline_svg(bars: Sequence[Bar]) -> str:
    """A horizontal bar chart, one lane per bar, in the order given."""
    if not bars:
        return '<p class="none">no timed events</p>'
    span = max(max(b["end"] for b in bars), 0.001)
    height = _LANE_H * len(bars) + 24
    width = _LABEL_W + _CHART_W + 70
    out = [
        f'<svg class="timeline" role="img" aria-label="timeline" xmlns="http://www.w3.org/2000/svg"'
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for i, b in enumerate(bars):
        y = 4 + i * _LANE_H
        x0 = _LABEL_W + b["start"] / span * _CHART_W
        w = max((b["end"] - b["start"]) / span * _CHART_W, 2.0)
        colour = _COLOURS.get(b["status"], "#2563eb")
        secs = b["end"] - b["start"]
        out.append(
            f'<text x="4" y="{y + 14}">{esc(b["lane"])}: {esc(b["label"])}</text>'
            f'<rect x="{_num(x0)}" y="{y + 3}" width="{_num(w)}" height="{_LANE_H - 6}" '
            f'fill="{colour}"><title>{esc(b["lane"])} {esc(b["label"])}: '
            f"{esc(b['status'])} {secs:.3f}s</title></rect>"
            f'<text x="{_num(x0 + w + 4)}" y="{y + 14}">{secs:.3f}s</text>'
        )
    axis_y = height - 6
    out.append(
        f'<text x="{_LABEL_W}" y="{axis_y}">0s</text>'
        f'<text x="{_LABEL_W + _CHART_W - 40}" y="{axis_y}">{span:.3f}s</text></svg>'
    )
    return "".join(out)


def trajectory_svg(points: Sequence[float]) -> str:
    """Satisfaction (0..1) per iteration as a line chart."""
    if not points:
        return '<p class="none">no iteration decided yet</p>'
    w, h, pad = 480, 200, 30
    step = (w - 2 * pad) / max(len(points) - 1, 1)

    def xy(i: int, v: float) -> tuple[str, str]:
        return _num(pad + i * step), _num(h - pad - max(0.0, min(1.0, v)) * (h - 2 * pad))

    coords = [xy(i, v) for i, v in enumerate(points)]
    line = " ".join(f"{x},{y}" for x, y in coords)
    dots = "".join(
        f'<circle cx="{x}" cy="{y}" r="3" fill="#2563eb"><title>iteration {i + 1}: '
        f"{points[i] * 100:.1f}%</title></circle>"
        for i, (x, y) in enumerate(coords)
    )
    return (
        f'<svg class="trajectory" role="img" aria-label="satisfaction" '
        f'xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>'
        f'<text x="2" y="{pad + 4}">100%</text><text x="8" y="{h - pad + 4}">0%</text>'
        f'<polyline points="{line}" fill="none" stroke="#2563eb" stroke-width="2"/>{dots}</svg>'
    )


def overlap_matrix(workers: Sequence[str], overlaps: Sequence[tuple[str, list[str]]]) -> str:
    """Workers x workers; each cell lists the paths both touched (from VALIDATION.json)."""
    if not workers:
        return '<p class="none">no workers</p>'
    shared: dict[tuple[str, str], list[str]] = {}
    for path, sharing in overlaps:
        for a in sharing:
            for b in sharing:
                if a != b:
                    shared.setdefault((a, b), []).append(path)
    head = "".join(f"<th>{esc(w)}</th>" for w in workers)
    rows = []
    for a in workers:
        cells = []
        for b in workers:
            paths = sorted(set(shared.get((a, b), [])))
            if a == b:
                cells.append('<td class="none">-</td>')
            elif paths:
                shown = [f"<code>{esc(p)}</code>" for p in paths[:MAX_CELL_PATHS]]
                if len(paths) > MAX_CELL_PATHS:
                    more = len(paths) - MAX_CELL_PATHS
                    shown.append(f'<span class="none">and {more} more</span>')
                cells.append("<td>" + "<br>".join(shown) + "</td>")
            else:
                cells.append("<td></td>")
        rows.append(f"<tr><th>{esc(a)}</th>{''.join(cells)}</tr>")
    return (
        f'<table class="overlap-matrix"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _findings(items: Sequence[Note], empty: str) -> str:
    rows = [
        [f"<code>[{esc(f['rule'])}]</code>", esc(f["worker"]), f"<code>{esc(f['path'])}</code>",
         esc(f["message"])]
        for f in items
    ]  # fmt: skip
    return table(["rule", "worker", "path", "message"], rows, empty)


def _checks(checks: Sequence[Check]) -> str:
    rows = [
        [
            esc(c["name"]),
            "required" if c["required"] else "advisory",
            status_tag("PASS" if c["ok"] else "FAIL") + " " + esc(c["result"]),
            f"<pre>{esc(c['tail'])}</pre>" if c["tail"] else "",
        ]
        for c in checks
    ]
    return table(["check", "kind", "result", "output (last lines)"], rows, "no check ran")


def _scenarios(items: Sequence[Scenario]) -> str:
    rows = [
        [esc(s["iteration"]), f"<code>{esc(s['id'])}</code>", esc(s["name"]),
         status_tag(s["outcome"]), esc(s["passes"]), esc(s["symptom"])]
        for s in items
    ]  # fmt: skip
    return table(["iteration", "scenario", "name", "outcome", "passes", "symptom"], rows)


def _pairs(pairs: Sequence[tuple[str, str]]) -> str:
    """A two-column table of labels and values (no header row)."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>" for k, v in pairs)
    return f'<table class="pairs"><tbody>{rows}</tbody></table>'


def render(page: Page) -> str:
    """The whole page: a section per key of ``page`` (see :class:`Page`)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        f"<title>{esc(page['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(page['title'])} {status_tag(page['status'])}</h1>",
        _pairs(page.get("meta", [])),
    ]
    if "stages" in page:
        rows = [
            [esc(s["stage"]), status_tag(s["status"]), esc(s["reason"])] for s in page["stages"]
        ]
        parts += ["<h2>Stages</h2>", table(["stage", "status", "reason"], rows)]
    parts += ["<h2>Timeline</h2>", timeline_svg(page.get("timeline", []))]
    if "workers" in page:
        parts += [
            "<h2>Overlap matrix</h2>",
            overlap_matrix(page["workers"], page.get("overlaps", [])),
            "<h2>Findings</h2>",
            _findings(page.get("findings", []), "no findings"),
        ]
        if page.get("warnings"):
            parts += ["<h2>Warnings</h2>", _findings(page.get("warnings", []), "no warnings")]
    if "checks" in page:
        parts += ["<h2>Checks</h2>", _checks(page["checks"])]
    if "trajectory" in page:
        parts += ["<h2>Satisfaction trajectory</h2>", trajectory_svg(page["trajectory"])]
    if "scenarios" in page:
        parts += ["<h2>Scenarios</h2>", _scenarios(page["scenarios"])]
    head = [("ledger head", page.get("ledger_head", "-"))]
    parts += [
        "<h2>Ledger and attestations</h2>",
        _pairs([*head, *sorted(page.get("attestations", []))]),
        "</body></html>",
        "",
    ]
    return "\n".join(parts)
