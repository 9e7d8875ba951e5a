"""``factory report --html``: gather a run's (or a crank's) recorded facts and write REPORT.html.

The page is rendered by the pure :mod:`core.htmlreport` from the ledger's events and the run's
JSON artifacts (each checked against its schema first), written through the run's guarded
writer and recorded by a ``report.html.written`` event with its sha256, which ledger-replay
checks against the file. Nothing on the page depends on when it was written: the same ledger
and files give the same bytes, however often the page is written again.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.codex.factory.audit.diskcheck import STATUS_REL, read_doc
from tools.codex.factory.core import htmlreport
from tools.codex.factory.core.htmlreport import Bar, Check, Note, Page, Scenario, Stage
from tools.codex.factory.core.ids import validate_run_id
from tools.codex.factory.core.paths import REPORT_HTML, VALIDATION
from tools.codex.factory.errors import UsageError
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.ledger.store import Event, Filter
from tools.codex.factory.records.status import Status
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.handle import RunHandle, run_folder, run_lock
from tools.codex.factory.run.outcome import Outcome

HTML_REL = REPORT_HTML
EVENT = "report.html.written"
TAIL_LINES = 40
TAIL_CHARS = 4000


# -- the timeline ---------------------------------------------------------------------------------
def _seconds(ts: str) -> float:
    return _dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _span_of(ev: Event) -> tuple[str, str, str] | None:
    """(lane, label, "start"|"end") when ``ev`` opens or closes a bar of the timeline."""
    p, t = ev.payload, ev.event_type
    pairs = {
        "stage.started": ("stage", ev.stage, "start"),
        "stage.finished": ("stage", ev.stage, "end"),
        "worker.started": ("worker", str(p.get("worker")), "start"),
        "worker.finished": ("worker", str(p.get("worker")), "end"),
        "check.started": ("check", str(p.get("name")), "start"),
        "check.finished": ("check", str(p.get("name")), "end"),
        "scenarios.started": ("scenarios", f"iteration {p.get('iteration', '-')}", "start"),
        "scenarios.finished": ("scenarios", f"iteration {p.get('iteration', '-')}", "end"),
        "iteration.started": ("iteration", str(p.get("iteration")), "start"),
        "iteration.decided": ("iteration", str(p.get("iteration")), "end"),
    }
    return pairs.get(t)


def _bar_status(ev: Event) -> str:
    p = ev.payload
    if ev.event_type == "check.finished":
        return "PASS" if p.get("rc") == 0 and not p.get("timed_out") else "FAIL"
    if ev.event_type == "iteration.decided":
        return str((p.get("decision") or {}).get("decision", ""))
    return str(p.get("status", ""))


def timeline(events: Sequence[Event], prefix: Mapping[str, str] | None = None) -> list[Bar]:
    """Bars from the events' timestamps: each start paired with the next matching end (an end
    without a start, e.g. a check of an older release, starts at the event before it). A bar
    never ended (a run killed mid-agent) ends at the last event that is not a page write:
    writing the page again later gives the same bytes."""
    events = [e for e in events if e.event_type != EVENT]
    if not events:
        return []
    t0 = _seconds(events[0].ts_utc)
    open_: dict[tuple[str, str, str], tuple[float, int]] = {}
    bars: list[tuple[float, int, Bar]] = []
    prev = t0
    for i, ev in enumerate(events):
        now = _seconds(ev.ts_utc)
        span = _span_of(ev)
        if span is not None:
            lane, label, edge = span
            who = (prefix or {}).get(ev.run_id, "")
            key = (who, lane, label)
            if edge == "start":
                open_[key] = (now, i)
            else:
                start, at = open_.pop(key, (prev, i))
                bars.append((start, at, _bar(who + lane, label, start - t0, now - t0, ev)))
        prev = now
    for (who, lane, label), (start, at) in sorted(open_.items()):
        bars.append((start, at, _bar(who + lane, label, start - t0, prev - t0, None)))
    # In the order they started (by time, then by ledger order: a pinned clock ties them all).
    return [b for _s, _i, b in sorted(bars, key=lambda x: (x[0], x[1]))]


def _bar(lane: str, label: str, start: float, end: float, ev: Event | None) -> Bar:
    status = _bar_status(ev) if ev is not None else "running"
    return Bar(lane=lane, label=label, start=start, end=end, status=status)


# -- what a run's page shows -------------------------------------------------------------------------
def _last(events: Iterable[Event], event_type: str) -> Event | None:
    found = [e for e in events if e.event_type == event_type]
    return found[-1] if found else None


def _tail(value: object) -> str:
    """A check's output tail as one bounded text (a string, or {stdout, stderr})."""
    if isinstance(value, Mapping):
        parts = [f"{k}:\n{_text(value.get(k))}" for k in ("stdout", "stderr") if value.get(k)]
        text = "\n".join(parts)
    else:
        text = str(value or "")
    lines = text.splitlines()[-TAIL_LINES:]
    return "\n".join(lines)[-TAIL_CHARS:]


def _text(value: object) -> str:
    """A recorded stream's tail: its lines (as integrate records them) or one text."""
    if isinstance(value, list):
        return "\n".join(str(x) for x in value)
    return str(value or "")


def _blame(doc: Mapping[str, Any]) -> list[tuple[str, object]]:
    """Whom culprit isolation blamed, one line each (STATUS.json's records, worded)."""
    out: list[tuple[str, object]] = []
    for c in doc.get("culprits", []):
        tests = c.get("tests") or []
        said = f"; failing tests: {', '.join(map(str, tests))}" if tests else ""
        out.append(("culprit", f"{c.get('worker')}_worker: {c.get('check')} fails alone{said}"))
    for i in doc.get("interactions", []):
        names = " + ".join(f"{w}_worker" for w in i.get("workers", []))
        out.append(("interaction", f"{names}: {i.get('check')} fails together"))
    out += [("flaky", f"{c}: failed, then passed on a rerun") for c in doc.get("flaky", [])]
    return out


def _checks(status_doc: Mapping[str, Any] | None, events: Sequence[Event]) -> list[Check]:
    """Z's checks, each with its failing output's tail when STATUS.json or the ledger has it."""
    recorded = {
        str(e.payload.get("name")): e.payload.get("output_tail")
        for e in events
        if e.event_type == "check.finished"
    }
    out = []
    for c in (status_doc or {}).get("checks", []):
        # The tail under whatever name STATUS.json keeps it (e.g. output_tail), else the ledger's.
        tail = c.get("output_tail") or recorded.get(str(c.get("name")))
        ok = not c.get("timed_out") and c.get("rc") == 0
        out.append(
            Check(
                name=str(c.get("name")),
                required=bool(c.get("required")),
                ok=ok,
                result="timeout" if c.get("timed_out") else f"rc={c.get('rc')}",
                tail="" if ok else _failing(c) + _tail(tail),
            )
        )
    return out


def _failing(check: Mapping[str, Any]) -> str:
    names = check.get("failing_tests") or []
    return "failing tests:\n" + "\n".join(f"  {n}" for n in names) + "\n" if names else ""


def _notes(items: Iterable[Any]) -> list[Note]:
    return [
        Note(
            rule=str(f.get("rule", "")),
            worker=str(f.get("worker", "")),
            path=str(f.get("path", "")),
            message=str(f.get("message", "")),
        )
        for f in items
        if isinstance(f, Mapping)
    ]


def _scenarios(events: Sequence[Event], last_only: bool) -> list[Scenario]:
    rows = []
    found = [e for e in events if e.event_type == "scenarios.finished"]
    for e in found[-1:] if last_only else found:
        for r in e.payload.get("results", []):
            if isinstance(r, Mapping):
                rows.append(
                    Scenario(
                        iteration=str(e.payload.get("iteration", "-")),
                        id=str(r.get("id", "")),
                        name=str(r.get("name", "")),
                        outcome=str(r.get("outcome", "")),
                        passes=f"{r.get('passes', '')}/{r.get('trials', '')}",
                        symptom=str(r.get("symptom", "")),
                    )
                )
    return rows


def _head(head: Mapping[str, Any]) -> str:
    return f"seq={head.get('seq')} hash={head.get('hash')}"


def _meta(pairs: Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in pairs]


def _head_before(events: Sequence[Event]) -> str:
    """The ledger line the page's facts end at: the last event that is not a page write."""
    own = [e for e in events if e.event_type != EVENT]
    return _head({"seq": own[-1].seq, "hash": own[-1].hash} if own else {})


def run_page(
    run_id: str,
    manifest: Mapping[str, Any],
    events: Sequence[Event],
    status_doc: Mapping[str, Any] | None,
    validation: Mapping[str, Any] | None,
    problems: Sequence[str],
) -> Page:
    """The data of a run's page: its events (chain order) and artifacts, already read."""
    finished = _last(events, "run.finished")
    report = _last(events, "report.written")
    doc = status_doc or {}
    meta = _meta(
        [
            ("run", run_id),
            ("kind", manifest.get("kind")),
            ("base ref", manifest.get("base_ref")),
            ("base commit", manifest.get("base_commit")),
            ("dry run", str(manifest.get("dry_run")).lower()),
            ("merge order", ", ".join(map(str, doc.get("merge_order", []))) or "-"),
            ("applied", ", ".join(map(str, doc.get("applied", []))) or "-"),
            ("files changed", len(doc.get("files_changed", []))),
            *(("reason", r) for r in (finished.payload.get("reasons", []) if finished else [])),
            *_blame(doc),
            *(("unreadable", p) for p in problems),
        ]
    )
    v = validation or {}
    attest = report.payload.get("attestations", {}) if report else {}
    page = Page(
        title=f"run {run_id}",
        status=str(finished.payload["status"]) if finished else "UNFINISHED",
        meta=meta,
        stages=[
            Stage(stage=str(r["stage"]), status=str(r["status"]), reason=str(r.get("reason", "")))
            for r in (finished.payload["stages"] if finished else [])
        ],
        timeline=timeline(events),
        workers=sorted(str(w) for w in manifest.get("workers", [])),
        overlaps=[
            (str(o.get("path")), sorted(str(w) for w in o.get("workers", [])))
            for o in v.get("overlaps", [])
        ],
        findings=_notes(v.get("findings", [])),
        warnings=_notes(v.get("warnings", [])),
        checks=_checks(status_doc, events),
        ledger_head=_head(report.payload["ledger_head"]) if report else _head_before(events),
        attestations=sorted((str(k), str(x)) for k, x in attest.items()),
    )
    scenarios = _scenarios(events, last_only=True)
    if scenarios:
        page["scenarios"] = scenarios
    return page


def crank_page(crank_id: str, events: Sequence[Event], runs: Mapping[str, Sequence[Event]]) -> Page:
    """The data of a crank's page: its events, and each iteration run's events by run ID."""
    started = _last(events, "crank.started")
    finished = _last(events, "crank.finished")
    p = started.payload if started else {}
    decided = [e.payload for e in events if e.event_type == "iteration.decided"]
    trajectory = []
    for d in decided:
        sat = (d.get("inputs") or {}).get("satisfaction") or {}
        total = int(sat.get("total", 0))
        trajectory.append(int(sat.get("passed", 0)) / total if total else 0.0)
    prefix = {rid: f"it{i + 1} " for i, rid in enumerate(runs)}
    merged = sorted([*events, *(e for evs in runs.values() for e in evs)], key=lambda e: e.seq)
    attest: list[tuple[str, str]] = []
    for rid, evs in runs.items():
        report = _last(evs, "report.written")
        for rel, sha in (report.payload.get("attestations", {}) if report else {}).items():
            attest.append((f"{rid}/{rel}", str(sha)))
    meta = _meta(
        [
            ("crank", crank_id),
            ("branch", p.get("branch")),
            ("base commit", p.get("base_commit")),
            ("iterations", len(decided)),
            ("runs", ", ".join(runs) or "-"),
            *([("reason", finished.payload.get("reason", ""))] if finished else []),
        ]
    )
    return Page(
        title=f"crank {crank_id}",
        status=str(finished.payload.get("decision")) if finished else "UNFINISHED",
        meta=meta,
        timeline=timeline(merged, prefix),
        trajectory=trajectory,
        scenarios=_scenarios(events, last_only=False),
        ledger_head=_head_before(events),
        attestations=sorted(attest),
    )


# -- writing it ----------------------------------------------------------------------------------
def _record(rec: Recorder, stage: str, actor: str, sha: str, status: str) -> None:
    rec.emit(EVENT, stage, actor, path=HTML_REL, sha256=sha, status=status)


def write_run(ctx: Context, run_id: str) -> Outcome:
    """Write REPORT.html of a run (under its lock) and record it."""
    validate_run_id(run_id)
    with RunHandle.open(ctx, run_id) as run:
        events = ctx.ledger.run_events(run_id)
        status_doc, p1 = read_doc(run.run_dir, STATUS_REL, "integrator_status")
        validation, p2 = read_doc(run.run_dir, VALIDATION, "validation")
        problems = [p for p, rel in ((p1, STATUS_REL), (p2, VALIDATION)) if p and _there(run, rel)]
        page = run_page(run_id, run.manifest, events, status_doc, validation, problems)
        sha = run.writer.write(HTML_REL, _bytes(page))
        _record(run.recorder, "report", "Z_integrator", sha, page["status"])
    return _outcome(ctx, run_id, page["status"], sha)


def _bytes(page: Page) -> bytes:
    """The page as UTF-8; a lone surrogate in recorded text becomes "?", never a crash."""
    return htmlreport.render(page).encode("utf-8", "replace")


def _there(run: RunHandle, rel: str) -> bool:
    path = run.run_dir / rel
    return path.exists() or path.is_symlink()


def write_crank(ctx: Context, crank_id: str) -> Outcome:
    """Write REPORT.html of a crank (under its lock) and record it."""
    validate_run_id(crank_id, "crank ID")
    if not ctx.ledger.select(Filter(run_id=crank_id, event_type="crank.started"), 1):
        raise UsageError(f"no crank {crank_id} in the ledger")
    folder = run_folder(ctx, crank_id)
    lock = run_lock(ctx, crank_id)
    lock.acquire()
    try:  # the facts are read under the lock: a crank going on cannot add to them meanwhile
        events = ctx.ledger.run_events(crank_id)
        runs = {
            str(e.payload["run_id"]): ctx.ledger.run_events(str(e.payload["run_id"]))
            for e in events
            if e.event_type == "iteration.started"
        }
        page = crank_page(crank_id, events, runs)
        writer = GuardedWriter(folder)
        sha = writer.write(HTML_REL, _bytes(page))
        _record(
            Recorder(ctx.ledger, crank_id, "crank"), "crank", "Z_integrator", sha, page["status"]
        )
    finally:
        lock.release()
        lock.close()
    return _outcome(ctx, crank_id, page["status"], sha)


def _outcome(ctx: Context, run_id: str, status: str, sha: str) -> Outcome:
    path = ctx.layout.run_dir(run_id) / HTML_REL
    data = {
        "run_id": run_id,
        "path": f"{ctx.layout.run_rel(run_id)}/{HTML_REL}",
        "abs_path": str(path),
        "sha256": sha,
        "status": status,
    }
    return Outcome(Status.PASS, data, view="report-html")


def html_path(ctx: Context, run_id: str) -> Path:
    """REPORT.html of a run or crank, which must have been written (``factory report``)."""
    path = run_folder(ctx, run_id) / HTML_REL
    if not path.is_file():
        raise UsageError(
            f"run {run_id} has no {HTML_REL} yet: write it first (`factory report`, as HTML)"
        )
    return path
