"""Ledger events as text for the replay's timeline and ``watch``.

``describe`` gives one line per event whatever its payload holds, so a reader (or a script) can
count events by counting lines. (The ``ledger`` command's table is the CLI renderer's.)
"""

from __future__ import annotations

from typing import Any

import orjson

from tools.codex.factory.infra import jsonio
from tools.codex.factory.ledger.store import Event

# Every character str.splitlines() breaks at, escaped: a timeline entry or divergence stays one line.
ONE_LINE = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def short(value: Any, limit: int = 160) -> str:
    """A value as one line of at most ``limit`` characters (canonical JSON unless a string)."""
    try:
        text = value if isinstance(value, str) else jsonio.canonical(value).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        text = repr(value)
    text = text.translate(ONE_LINE)  # one divergence, one line
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(ev: Event) -> str:
    """One readable line per event (shared with ``watch``); a malformed payload still gets one."""
    try:
        return _describe(ev).translate(ONE_LINE)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return short(
            f"{ev.seq!s:>6}  {ev.ts_utc}  {ev.stage or '-'!s:<16} {ev.event_type!s:<20} (malformed payload)",
            400,
        )


def _describe(ev: Event) -> str:
    p = ev.payload
    t = ev.event_type
    bits: list[str] = []
    if t == "run.started":
        bits = [
            f"base_ref={p.get('base_ref')}",
            f"base_commit={str(p.get('base_commit', ''))[:12]}",
            f"workers={','.join(p.get('workers', []))}",
            f"dry_run={str(p.get('dry_run')).lower()}",
        ]
    elif t == "stage.finished":
        bits = [f"status={p.get('status')}"] + (
            [f"reason={short(p['reason'])}"] if p.get("reason") else []
        )
    elif t == "preflight.check":
        bits = [f"{p.get('name')}={'ok' if p.get('ok') else 'FAILED'}", short(p.get("detail", ""))]
    elif t in ("bundle.created", "artifacts.written"):
        bits = ([f"worker={p['worker']}"] if "worker" in p else []) + [
            f"files={len(p.get('files', {}))}"
        ]
    elif t == "bundle.facts":
        f = p.get("facts", {})
        bits = [
            f"worker={p.get('worker')}",
            f"status={f.get('status')}",
            f"touched={len(f.get('touched', []))}",
            f"files_changed={len(f.get('files_changed', []))}",
        ]
    elif t == "validation.decided":
        verdicts = ",".join(f"{w}={v}" for w, v in sorted(p.get("verdicts", {}).items()))
        bits = [
            f"status={p.get('status')}",
            f"findings={p.get('findings')}",
            f"overlaps={len(p.get('overlaps', []))}",
            f"verdicts={verdicts}",
        ]
    elif t == "merge.planned":
        bits = [f"order={','.join(p.get('order', [])) or '-'}"] + (
            [f"reason={p['reason']}"] if p.get("reason") else []
        )
    elif t == "patch.applied":
        bits = [
            f"worker={p.get('worker')}",
            "ok" if p.get("ok") else "FAILED",
            f"files={len(p.get('files', []))}",
        ]
    elif t == "check.finished":
        rc = "timeout" if p.get("timed_out") else f"rc={p.get('rc')}"
        bits = [f"name={p.get('name')}", "required" if p.get("required") else "advisory", rc]
    elif t == "isolation.probe":
        passed = [
            f"{c.get('name')}={'pass' if c.get('passed') else 'FAIL'}" for c in p.get("checks", [])
        ]
        bits = [f"step={p.get('step')}", f"workers={','.join(p.get('workers', [])) or '-'}"]
        bits += passed
    elif t == "isolation.decided":
        bits = [f"runs={p.get('runs')}"]
        bits += [f"culprit={c.get('worker')}:{c.get('check')}" for c in p.get("culprits", [])]
        bits += [
            f"interaction={'+'.join(i.get('workers', []))}:{i.get('check')}"
            for i in p.get("interactions", [])
        ]
        bits += [f"flaky={c}" for c in p.get("flaky", [])]
        bits += ["exhausted"] if p.get("exhausted") else []
    elif t == "check.started":
        kind = "required" if p.get("required") else "advisory"
        bits = [f"name={p.get('name')}", kind, "running"]
    elif t in ("scenarios.started", "scenarios.finished"):
        bits = [f"iteration={p['iteration']}"] if "iteration" in p else []
        if t == "scenarios.started":
            bits.append(f"scenarios={p.get('scenarios')} running")
        else:
            sat = p.get("satisfaction") or {}
            bits.append(f"passed={sat.get('passed')}/{sat.get('total')}")
    elif t == "report.html.written":
        bits = [f"path={p.get('path')}", f"sha256={str(p.get('sha256'))[:12]}"]
    elif t == "report.written":
        head = p.get("ledger_head", {})
        bits = [
            f"status={p.get('status')}",
            f"files={len(p.get('files', {}))}",
            f"head=seq{head.get('seq')}",
        ]
    elif t == "run.finished":
        bits = [f"status={p.get('status')}"]
    elif t == "ledger.repaired":
        bits = [f"side_file={p.get('side_file')}", f"torn_bytes={p.get('torn_bytes')}"]
    else:
        for key in ("status", "rc", "worker", "name", "path", "reason"):
            if key in p and p[key] not in (None, ""):
                bits.append(f"{key}={short(p[key])}")
    text = " ".join(b for b in bits if b)
    return f"{ev.seq:>6}  {ev.ts_utc}  {ev.stage or '-':<16} {t:<20} {text}".rstrip()
