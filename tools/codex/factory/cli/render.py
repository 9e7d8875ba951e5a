"""Human text for the terminal, from what a command handed back (its JSON data and, for text
alone, its view inputs): the library returns data, this module words it.

Each view is named by ``Outcome.view``; live progress (a crank's, a launch's) and the
notices in ``Outcome.messages`` are still worded where they happen.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from tools.codex.factory.audit.describe import ONE_LINE, describe
from tools.codex.factory.audit.diskcheck import REPORT_REL, STATUS_REL
from tools.codex.factory.core.gates import GATES
from tools.codex.factory.core.paths import VALIDATION, worker_dirname
from tools.codex.factory.core.text import clip
from tools.codex.factory.infra import jsonio
from tools.codex.factory.ledger.store import Event
from tools.codex.factory.run.outcome import Outcome
from tools.codex.factory.run.report import check_output_lines, partial_line

# Lines of each kind (findings, warnings, overlaps) the terminal shows, and their length;
# VALIDATION.json has them all, whole.
MAX_SHOWN = 100
MAX_LINE = 2000

# Status words in colour on a terminal: PASS green, BLOCKED yellow, FAIL red.
_ANSI = {"PASS": "32", "BLOCKED": "33", "FAIL": "31"}
# The command's own ledger head: the ledger's last event when it ended.
HEAD_AFTER_COMMAND = "ledger head after this command"
_STATUS_WORD = re.compile(r"(?<![\w.-])(PASS|BLOCKED|FAIL)(?![\w-])")


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (to anything) or TERM=dumb."""
    if os.environ.get("NO_COLOR"):
        return False
    return can_redraw(stream)


def can_redraw(stream: TextIO) -> bool:
    """A terminal that moves its cursor (the live board): a TTY, and TERM is not dumb."""
    if os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False


def colour(text: str, on: bool) -> str:
    """``text`` with its status words coloured when ``on`` (the one place colour is added)."""
    if not on:
        return text
    return _STATUS_WORD.sub(lambda m: f"\x1b[{_ANSI[m.group(1)]}m{m.group(1)}\x1b[0m", text)


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
    if data.get("left_out"):
        lines.append(partial_line(data.get("covers", []), data["left_out"]))
    lines += [
        f"  {s['stage']:<16} {s['status']:<8} {s.get('reason', '')}".rstrip()
        for s in data["stages"]
    ]
    for c in data.get("checks", []):
        if c["timed_out"] or c["rc"] != 0:
            lines.append(f"check {c['name']} failed:")
            lines += [f"  {line}" for line in check_output_lines(c)]
    if data.get("report"):
        lines.append(f"report: {data['report']}")
    head = data["ledger_head"]
    # Not the report's ``ledger head:`` (written before report.written and run.finished).
    lines.append(f"{HEAD_AFTER_COMMAND}: seq={head['seq']} hash={head['hash']}")
    if data.get("land"):
        lines.append(f"next: `{data['land']}` puts the result on a branch of its own")
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
    elif data.get("next"):
        text += f"\n{data['next']}"
    return text


def _pending(data: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    return "\n".join([summary_text(data), *runboard_lines(inputs["runboard"]), data["next"]])


def config_text(rows: list[dict[str, Any]]) -> str:
    """``config show``: one aligned line per key, its canonical JSON value and its origin."""
    width = max(len(r["key"]) for r in rows)
    return "\n".join(
        f"{r['key']:<{width}}  {jsonio.canonical(r['value']).decode('utf-8')}  ({r['origin']})"
        for r in rows
    )


def ledger_text(events: list[dict[str, Any]], raw: bool) -> str:
    """``ledger``: the stored lines (raw), or one table row per event, deterministic."""
    if raw:
        return "\n".join(jsonio.canonical(d).decode("utf-8") for d in events)
    if not events:
        return "(no events)"
    rows = []
    for ev in events:
        p = ev["payload"]
        bits = [
            f"{key}={p[key]}"
            for key in ("status", "rc", "worker", "actor", "reason")
            if key in p and p[key] not in (None, "")
        ]
        cells = [ev["ts_utc"], str(ev["seq"]), ev["event_type"], ev["run_id"] or "-", ev["stage"]]
        rows.append([*cells, " ".join(bits)])
    return table(rows, right={1})


def table(rows: list[list[str]], right: frozenset[int] | set[int] = frozenset()) -> str:
    """Rows as columns sized to their widest cell (the last column unpadded): no column is
    wider than what it holds. ``right``: the columns aligned to the right (numbers)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [
            c if i == len(r) - 1 else (c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
            for i, c in enumerate(r)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def runs_text(runs: list[dict[str, Any]]) -> str:
    """``runs``: one row per run, newest first."""
    if not runs:
        return "(no runs)"
    header = ["RUN", "KIND", "STATUS", "STARTED", "WORKERS", "HEAD"]
    rows = [header]
    for r in runs:
        head = r["head"]
        shown = f"seq={head['seq']} {head['hash'][:12]}" if head["hash"] else f"seq={head['seq']}"
        workers = ",".join(r["workers"]) or "-"
        rows.append(
            [r["run_id"], r["kind"] or "-", r["status"], r["started"] or "-", workers, shown]
        )
    return table(rows)


def verify_text(data: Mapping[str, Any]) -> str:
    """``ledger verify``: size, head, the verdict (or the first bad seq) and any notes."""
    head = data["head"]
    lines = [f"ledger {data['path']}: {data['lines']} events"]
    lines.append(f"head seq={head['seq']} hash={head['hash']}")
    if data["ok"]:
        lines.append("VERIFY OK")
    else:
        lines.append(f"VERIFY FAILED at seq {data['first_bad_seq']}: {data['reason']}")
    lines.extend(f"note: {n}" for n in sorted(data["notes"]))
    return "\n".join(lines)


def reindex_text(data: Mapping[str, Any]) -> str:
    return f"REINDEX OK: {data['events']} events of {data['path']} indexed in {data['index']}"


def repair_text(data: Mapping[str, Any]) -> str:
    if data.get("repaired"):
        return (
            f"moved {data['torn_bytes']} torn bytes to {data['side_file']} (nothing deleted); "
            f"recorded ledger.repaired at seq {data['seq']}"
        )
    return f"nothing to repair: {data.get('reason')}"


def doctor_text(data: Mapping[str, Any]) -> str:
    """``doctor``: the checks as preflight words them, the verdict and what to run next."""
    counts = data["counts"]
    verdict = (
        f"doctor: {counts['FAIL']} FAIL, {counts['WARN']} WARN: this machine cannot run the "
        "factory yet"
        if counts["FAIL"]
        else f"doctor: no FAIL ({counts['WARN']} WARN)"
    )
    lines = [preflight_text(data["checks"])] if data["checks"] else []
    lines += [
        verdict,
        f"next: `{data['self_test']}` runs a complete smoke run in a scratch repository",
    ]
    return "\n".join(lines)


def clean_text(data: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """``clean``: one line per worktree or branch removed, or why none (each refusal and
    failure is one line on stderr, never repeated here)."""
    lines = []
    for r in data["removed"]:
        what = r["path"] or f"branch {r['branch']}"
        lines.append(
            f"removed {what} ({worker_dirname(r['worker'])} of {r['run_id']}, {r['bytes']} bytes)"
            + (f" [forced past: {r['forced_reason']}]" if r["forced"] else "")
        )
    if not inputs["found"]:
        run_id = inputs["run_id"]
        lines.append(
            "nothing to clean: no leftover factory worktrees or branches"
            + (f" for {run_id}" if run_id else "")
        )
    return "\n".join(lines)


def land_text(data: Mapping[str, Any]) -> str:
    """``land``: the branch and commit made, then the exact commands to take the result."""
    lines = [
        f"landed {data['run_id']} on branch {data['branch']} (commit {data['commit'][:12]}, "
        f"on base {data['base_commit'][:12]})",
        "next:",
    ]
    # Alternatives, not steps: the merge takes the result onto the current branch; switching
    # first would merge the branch into itself.
    nxt = list(data["next"])
    lines += [f"  {cmd}" for cmd in nxt if not cmd.startswith("git switch ")]
    lines += [
        f"  or: {cmd} (to look at the result on its own branch)"
        for cmd in nxt
        if cmd.startswith("git switch ")
    ]
    return "\n".join(lines)


def replay_text(data: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """``ledger-replay``: what was replayed, the timeline and state (a run), one line per
    divergence and the verdict; every entry kept to one line."""
    state = data["state"]
    if inputs["crank"]:
        lines = [
            f"replay of crank {data['run_id']}: {inputs['events']} events, "
            f"{state.get('iterations', 0)} iteration(s)"
            f" ({', '.join(state.get('trajectory', [])) or 'none'}), decision "
            f"{state.get('decision') or 'not finished'}"
        ]
    else:
        lines = [
            f"replay of {data['run_id']}: {state['events']} events (ledger "
            f"{'verified' if data['chain_verified'] else 'NOT VERIFIED'}, head "
            f"seq={data['ledger']['seq']})",
            *data["timeline"],
            _replay_summary(state),
            *_anchor_lines(state["anchor"]),
        ]
    lines += [_divergence_line(d) for d in data["divergences"]]
    count = len(data["divergences"])
    lines.append("REPLAY OK" if data["ok"] else f"REPLAY DIVERGED: {count} divergence(s)")
    return "\n".join(ln.translate(ONE_LINE) for ln in lines)


def _divergence_line(d: Mapping[str, Any]) -> str:
    where = f"seq={d['seq']}" if d["seq"] is not None else "seq=-"
    return f"DIVERGENCE {where} {d['what']}: expected {d['expected']}; found {d['found']}"


def _replay_summary(state: Mapping[str, Any]) -> str:
    stages = " ".join(f"{k}={v['status']}" for k, v in state["stages"].items()) or "none"
    final = state["final"]
    end = (
        f"final {final['status']} (recomputed {final['recomputed_status']})"
        if final
        else "run not finished"
    )
    v = state["validation"]
    val = (
        f"validation {v['status']} ({len(v['findings'])} finding(s), "
        f"{len(v['overlaps'])} overlap(s))"
        if v
        else "no validation"
    )
    return (
        f"state: stages {stages}; {val}; {end}; {state['artifacts_checked']} artifact hash(es) "
        f"checked; {state['facts_rederived']} bundle(s) re-read for their facts"
    )


def _listing(events: list[dict[str, Any]], limit: int = 12) -> str:
    shown = ", ".join(f"seq {e['seq']} {e['event_type']}" for e in events[:limit])
    return shown + (f", … ({len(events) - limit} more)" if len(events) > limit else "")


def _anchor_lines(anchor: Mapping[str, Any] | None) -> list[str]:
    """What the report's ledger head covers, and what it does not, said plainly."""
    if not anchor or not anchor["beyond_report_head"]:
        return []
    head = anchor["report_head"]
    after = anchor["after_run_finished"]
    later = anchor["anchored_by_later_report"]
    if head is None:
        lines = [
            f"anchor: no ledger head printed in {REPORT_REL}: no event of this run is anchored "
            "by its report"
        ]
    else:
        lines = [
            f"anchor: the ledger head in {REPORT_REL} (seq {head['seq']}) covers this run's "
            f"events up to seq {head['seq']}; beyond it: {_listing(anchor['beyond_report_head'])}"
        ]
    if after:
        lines.append(
            f"anchor: {len(after)} event(s) after run.finished are NOT covered by the report's "
            f"anchor: {_listing(after)}"
        )
    if later is not None:
        lines.append(
            f"anchor: covered instead by {later['source']} at seq {later['seq']}, which matches "
            "the ledger"
        )
    elif after or head is None:
        lines.append(
            "anchor: events beyond the report's head are not anchored: removing or editing them "
            "and re-chaining the ledger and its head file is not detectable by replay; keep a "
            "copy of the ledger's last line elsewhere to anchor them"
        )
    else:
        lines.append(
            "anchor: report.written and run.finished follow the head they print by design; they "
            f"are cross-checked with {STATUS_REL} and {REPORT_REL}"
        )
    return lines


def event_line(ev: Event) -> str:
    """``watch``: one line per event as it arrives (the replay's timeline words them alike)."""
    return describe(ev)


def progress_line(ev: Event) -> str | None:
    """The command's own progress on stderr: each check and scenario evaluation as it starts
    and ends (workers have lines of their own); None for every other event."""
    p, t = ev.payload, ev.event_type
    if t == "check.started":
        kind = "required" if p.get("required") else "advisory"
        return f"factory: check {p.get('name')} ({kind}) running"
    if t == "check.finished":
        ok = p.get("rc") == 0 and not p.get("timed_out")
        rc = "timed out" if p.get("timed_out") else f"rc={p.get('rc')}"
        return f"factory: check {p.get('name')}: {'PASS' if ok else 'FAIL'} ({rc})"
    if t == "scenarios.started":
        return f"factory: scenarios: evaluating {p.get('scenarios')} at {str(p.get('commit'))[:12]}"
    if t == "scenarios.finished":
        sat = p.get("satisfaction") or {}
        return f"factory: scenarios: {sat.get('passed')}/{sat.get('total')} passed"
    return None


def collect_text(data: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """``bundle-collect``: one line per bundle written, then the runboard's next step."""
    lines = [f"collected {len(inputs['workers'])} bundle(s) of {data['run_id']}"]
    for w in inputs["workers"]:
        r = data["workers"][w]
        lines.append(
            f"  {worker_dirname(w):<10} {r['status']:<8} {r['files_count']} file(s) changed  "
            f"DIFF.patch sha256 {r['diff_sha256'][:12]}"
        )
    lines.append(inputs["next"])
    return "\n".join(lines)


def import_text(data: Mapping[str, Any]) -> str:
    """``bundle-import``: what became whose bundle, and the two commands that follow."""
    run_id = data["run_id"]
    return (
        f"imported {data['format']} into {worker_dirname(data['worker'])} of {run_id}: "
        f"{data['files_count']} file(s) changed\n"
        f"next: `factory bundle-validate --run-id {run_id}`, then "
        f"`factory integrate --run-id {run_id}`"
    )


def step_line(step: Mapping[str, Any]) -> str:
    """``self-test``: one line per step as it is done."""
    return f"{'ok  ' if step['ok'] else 'FAIL'} {step['n']:>2} {step['name']}: {step['detail']}"


def selftest_text(data: Mapping[str, Any]) -> str:
    """``self-test``'s verdict: how many steps passed, or the step that did not behave."""
    steps = data["steps"]
    if data["status"] == "PASS":
        return f"SELF-TEST PASS: {sum(1 for s in steps if s['ok'])} steps behaved as expected"
    last = steps[-1]["name"] if steps else "-"
    return f"SELF-TEST FAIL: step {len(steps)} ({last}) did not behave"


def crank_text(data: Mapping[str, Any]) -> str:
    """``crank`` (and ``approve``/``reject``, which go on with it): the decision, the trajectory
    table, the evidence and what to do, the branch and the report."""
    kind = f" ({data['kind']})" if data["kind"] else ""
    lines = [f"crank {data['crank_id']}: {data['decision']}{kind}: {data['reason']}"]
    lines.append("  iteration  gate 1   satisfaction  advisory  run")
    for r in data["trajectory"]:
        lines.append(
            f"  {r['iteration']:>9}  {r['gate1']:<7}  {r['percent']:>6} {r['satisfaction']:>6}"
            f"  {r['advisory']:>8}  {r['run_id']}"
        )
    lines += [f"  evidence: {e}" for e in data["evidence"]]
    if data["regressions"]:
        lines.append(f"  regressions: {', '.join(data['regressions'])}")
    if data["advice"]:
        lines.append(f"  what to do: {data['advice']}")
    lines.append(f"branch: {data['branch']} at {data['tip'][:12]}")
    if data["report"]:
        lines.append(f"report: {data['report']}")
    return "\n".join(lines)


def crank_status_text(data: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """``crank-status``: state and iteration, the trajectory, and the command that goes on."""
    crank_id, waiting = data["crank_id"], inputs["waiting"]
    lines = [
        f"crank {crank_id}: {data['state']}, iteration {data['iteration']}"
        + (f", {data['decision']}: {data['reason']}" if inputs["finished"] else "")
    ]
    for r in data["trajectory"]:
        lines.append(f"  {r['iteration']:>3}  {r['gate1']:<7}  {r['percent']:>6}  {r['run_id']}")
    if waiting:
        lines.append(
            f"approve it with `factory approve --crank-id {crank_id}`, or reject it with "
            f"`factory reject --crank-id {crank_id} --gate {waiting} --feedback TEXT`"
        )
    elif not inputs["finished"]:
        lines.append(f"resume it with `factory crank --resume --crank-id {crank_id}`")
    return "\n".join(lines)


def scenarios_check_text(data: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """``scenarios check``: how many, where and at which commit, then one line each."""
    rows = data["scenarios"]
    lines = [f"{len(rows)} scenario(s) in {inputs['folder']}/ at {data['commit'][:12]}:"]
    lines += [f"  {r['id']}  {r['category']:<14} {r['language']:<10} {r['path']}" for r in rows]
    return "\n".join(lines)


def scenarios_run_text(data: Mapping[str, Any]) -> str:
    """``scenarios run``: the score, one line per scenario (a failure's symptom), the file."""
    sat = data["satisfaction"]
    lines = [
        f"scenarios at {data['commit'][:12]}: {sat['passed']}/{sat['total']} passed "
        f"({data['percent']})"
    ]
    for r in data["results"]:
        tail = f": [{r['symptom_class']}] {r['symptom']}" if not r["passed"] else ""
        lines.append(
            f"  {r['id']}  {r['outcome']:<6} {r['passes']}/{r['trials']}  {r['category']}: "
            f"{r['name']}{tail}"
        )
    if data["file"]:
        lines.append(f"written: {data['file']}")
    return "\n".join(lines)


def gates_text(data: Mapping[str, Any]) -> str:
    """``gates``: the crank's gates as they now stand."""
    described = ", ".join(f"{g}: {data['gates'][g]}" for g in GATES)
    return f"crank {data['crank_id']}: gates {described}"


VIEWS: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {
    "preflight": lambda data, _inputs: preflight_text(data["checks"]),
    "validation": lambda data, _inputs: validation_text(data),
    "run": lambda data, _inputs: summary_text(data),
    "run-preflight": lambda data, inputs: (
        summary_text(data) + "\n" + preflight_text(inputs["checks"])
    ),
    "run-pending": _pending,
    "launch": _launch,
    "config": lambda _data, inputs: inputs["read"] + "\n" + config_text(inputs["rows"]),
    "ledger": lambda data, inputs: ledger_text(data, inputs["raw"]),
    "runs": lambda data, _inputs: runs_text(data),
    "schema": lambda data, _inputs: jsonio.pretty(data).decode("utf-8").rstrip("\n"),
    "ledger-verify": lambda data, _inputs: verify_text(data),
    "ledger-reindex": lambda data, _inputs: reindex_text(data),
    "ledger-repair": lambda data, _inputs: repair_text(data),
    "doctor": lambda data, _inputs: doctor_text(data),
    "clean": clean_text,
    "land": lambda data, _inputs: land_text(data),
    "replay": replay_text,
    "collect": collect_text,
    "import": lambda data, _inputs: import_text(data),
    "report": lambda data, _inputs: data["report"].rstrip("\n"),
    "report-html": lambda data, _inputs: (
        f"{data['status']}: wrote {data['path']} (sha256 {data['sha256'][:12]}); open it with "
        f"`factory open-report --run-id {data['run_id']} --html`"
    ),
    "open": lambda data, _inputs: (
        f"opened {data['path']} ({data['how']})" if data["opened"] else data["path"]
    ),
    "self-test": lambda data, _inputs: selftest_text(data),
    "crank": lambda data, _inputs: crank_text(data),
    "crank-status": crank_status_text,
    "scenarios-check": scenarios_check_text,
    "scenarios-run": lambda data, _inputs: scenarios_run_text(data),
    "gates": lambda data, _inputs: gates_text(data),
    "validation-stopped": lambda data, _inputs: (
        f"bundle-validate: {data['status']}: {data['reason']}"
    ),
    "watch": lambda data, _inputs: (
        f"run {data['run_id']} finished: {data['status']}" if data["finished"] else ""
    ),
}


def text(outcome: Outcome) -> str:
    """The outcome's human text: its view's rendering."""
    return VIEWS[outcome.view](outcome.data, outcome.view_inputs)
