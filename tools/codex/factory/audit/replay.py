"""``ledger-replay``: rebuild a run from its ledger events and audit it against the artifacts.

The replay trusts nothing it can recompute:

1. the hash chain the run depends on is verified: from its first event to the highest ledger
   head recorded for it, read by offset through the run index, plus the ledger's end (last
   line, head file); the whole chain without an index (``Ledger.verify``);
2. the run's events are folded, in chain order, into its state, and every decision is
   recomputed from the inputs recorded in the events with the same pure functions the live run
   used (:mod:`audit.fold`);
3. that state is compared with the files on disk: the recorded hash of every artifact, Z's
   STATUS.json and FINAL_REPORT.txt, VALIDATION.json, the workers' STATUS.json, and the facts
   re-derived from every bundle that still hashes as recorded (:mod:`audit.diskcheck`);
4. the ledger head written into FINAL_REPORT.txt / STATUS.json / ``report.written`` must be the
   hash of the ledger line at that seq, with every line up to it sound; events beyond the
   report's head are listed with what anchors them, if anything (:mod:`audit.anchors`).

Nothing read is trusted before it is checked: every ledger event of the run against
``schemas/ledger_event.schema.json`` and every artifact against its schema; a malformed, empty,
missing or unreadable file is a one-line divergence naming the file and the rule, never an
internal error. A FINAL_REPORT.txt on disk that no ``report.written`` event records (the run's
tail removed) is a divergence, and its head is checked too.

Every mismatch is a :class:`Divergence` (event seq, what, expected, found), one line each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.codex.factory.audit import crankreplay, diskcheck
from tools.codex.factory.audit.anchors import Anchors
from tools.codex.factory.audit.describe import describe
from tools.codex.factory.audit.fold import DIFF_REL, AnchoredHead, Divergence, divergence, fold
from tools.codex.factory.core.ids import validate_run_id
from tools.codex.factory.errors import FactoryError
from tools.codex.factory.infra import fsutil, gitops
from tools.codex.factory.ledger.store import Event, VerifyResult
from tools.codex.factory.records.status import Status
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.handle import run_folder
from tools.codex.factory.run.outcome import Outcome

__all__ = ["Divergence", "describe", "replay"]

# Other runs' reports after this run's last event that are tried as its later anchor.
LATER_REPORTS = 100


def replay(ctx: Context, run_id: str) -> Outcome:
    """Replay one run (see the module docstring); exit 0 consistent, 3 divergent or tampered."""
    validate_run_id(run_id)
    ledger = ctx.ledger
    run_dir = ctx.layout.run_dir(run_id)
    ledger_rel = ctx.config.ledger_rel
    read_problems: list[Divergence] = []
    end = _end(ctx)  # first: reading through the index brings it up to date with the file
    events, later_reports = _select(ctx, run_id, read_problems)
    if not events:
        run_folder(ctx, run_id, f" and no events in {ledger_rel}")
    if crankreplay.is_crank(events):
        cstate, cfound = crankreplay.check(ctx, run_id, events)
        cchain, broken = _verify(ctx, events, [], end)
        chead = {"seq": cchain.head.seq, "hash": cchain.head.hash} if cchain else {"seq": None}
        return _crank_outcome(
            run_id, len(events), cstate, broken + read_problems + cfound,
            cchain is not None and cchain.ok, chead,
        )  # fmt: skip
    if not events:
        read_problems.append(
            divergence(
                None,
                "run events",
                f"events of run {run_id} in {ledger_rel}",
                "none, but the run folder exists",
            )
        )
    docs = diskcheck.read_docs(run_dir, run_id)
    folded = fold(run_id, events, docs)
    disk = diskcheck.check(ctx, run_dir, folded, docs)
    anchors = Anchors(ctx, folded.events, [*folded.heads, *disk.heads], disk.report_head)
    chain: VerifyResult | None = None
    found: list[Divergence] = []
    try:
        anchors.find_later(later_reports)
        chain, found = _verify(ctx, events, anchors.heads, end)
        anchors.check_heads(ledger, chain)
    except (OSError, FactoryError) as exc:
        anchors.diverge(None, f"{ledger_rel} (ledger heads)", "a readable ledger", _io_reason(exc))
    state = {
        **folded.state.as_dict(),
        "artifacts_checked": disk.artifacts_checked,
        "facts_rederived": disk.facts_rederived,
        "anchor": anchors.state(),
    }
    head = (
        {"seq": chain.head.seq, "hash": chain.head.hash} if chain else {"seq": None, "hash": None}
    )
    return _outcome(
        run_id,
        state,
        folded.timeline,
        found + read_problems + folded.divergences + disk.divergences + anchors.divergences
        + landed_trees(ctx, run_dir, folded.events),
        chain is not None and chain.ok,
        head,
    )  # fmt: skip


MAX_LANDED_PATCH = 512 * 1024 * 1024  # as land reads it


def landed_trees(ctx: Context, run_dir: Path, events: list[Event]) -> list[Divergence]:
    """Each ``run.landed``: its recorded tree is base + the DIFF.patch it names (recomputed in
    a throwaway index and object folder), and its commit, while git still has it, holds that
    tree. A patch on disk that is not the one named is the artifact check's divergence."""
    out: list[Divergence] = []
    for ev in events:
        p = ev.payload
        if ev.event_type != "run.landed" or not isinstance(p.get("diff_sha256"), str):
            continue
        try:
            # A regular file, never through a link (a FIFO or /dev/zero there cannot hang it).
            data = fsutil.read_file(run_dir / DIFF_REL, DIFF_REL, limit=MAX_LANDED_PATCH)
            if hashlib.sha256(data).hexdigest() != p["diff_sha256"]:
                continue
            tree = gitops.tree_with_patch(ctx.repo, str(p["base_commit"]), data)
            committed = gitops.tree_if_present(ctx.repo, str(p["commit"]))
        except (OSError, FactoryError) as exc:
            out.append(divergence(ev.seq, "run.landed tree", "base + DIFF.patch", _io_reason(exc)))
            continue
        if tree != p.get("tree"):
            out.append(
                divergence(ev.seq, "run.landed tree (base + DIFF.patch)", tree, p.get("tree"))
            )
        if committed is not None and committed != p.get("tree"):
            out.append(divergence(ev.seq, "run.landed commit's tree", p.get("tree"), committed))
    return out


def _end(ctx: Context) -> VerifyResult | FactoryError | OSError:
    """The ledger's end as found (or why it cannot be read)."""
    try:
        return ctx.ledger.check_end()
    except (OSError, FactoryError) as exc:
        return exc


def _verify(
    ctx: Context,
    events: Sequence[Event],
    heads: Sequence[AnchoredHead],
    end: VerifyResult | FactoryError | OSError,
) -> tuple[VerifyResult | None, list[Divergence]]:
    """The chain the run depends on, and what is wrong with it (None if it cannot be read).

    The span from the run's first event to the highest head recorded for it is verified line
    by line (read by offset through the run index), and the ledger's end (last line, head file,
    the lines the index recorded, as ``end`` found them) is checked; the rest of the ledger is
    ``ledger verify``'s.
    Without the index, or when the span cannot be located, the whole chain is verified."""
    ledger_rel = ctx.config.ledger_rel
    seqs = [e.seq for e in events if type(e.seq) is int and e.seq > 0]
    tops = seqs + [h.seq for h in heads if type(h.seq) is int and h.seq > 0]
    try:
        if isinstance(end, (OSError, FactoryError)):
            raise end
        if seqs:
            last = end.head.seq or ctx.ledger.last_complete_seq()
            first, top = min(seqs), min(max(tops), last)
            span = ctx.ledger.verify_span(first, top) if first <= top else None
            if span is not None:
                found = (
                    []
                    if span.ok
                    else [_broken(span, f"seq {first} to {top}, the lines this run depends on")]
                )
                if not end.ok:
                    found.append(
                        divergence(
                            end.first_bad_seq,
                            f"{ledger_rel} (the ledger's end)",
                            "sound",
                            end.reason,
                        )
                    )
                span.head, span.ok = end.head, span.ok and end.ok
                return span, found
        chain = ctx.ledger.verify()  # the whole chain, its end included
    except (OSError, FactoryError) as exc:
        reason = _io_reason(exc)
        return None, [
            divergence(
                None, f"{ledger_rel} (ledger verify)", "a readable ledger and head file", reason
            )
        ]
    return chain, [] if chain.ok else [_broken(chain, "ledger verify")]


def _broken(chain: VerifyResult, scope: str) -> Divergence:
    return divergence(
        chain.first_bad_seq, f"ledger chain ({scope})", "every line hashed and linked", chain.reason
    )


def _select(
    ctx: Context, run_id: str, found: list[Divergence]
) -> tuple[list[Event], list[tuple[int, str]]]:
    """The run's events in chain order, and (seq, run ID) of the first other runs'
    ``report.written`` after its last event (a later one may anchor this run's last events);
    an unreadable ledger is added to ``found``."""
    events: list[Event] = []
    later_reports: list[tuple[int, str]] = []
    try:
        events = ctx.ledger.run_events(run_id)
        last = max((ev.seq for ev in events if type(ev.seq) is int), default=0)
        if events:
            later_reports = [
                (ev.seq, ev.run_id)
                for ev in ctx.ledger.events_after(last, "report.written", LATER_REPORTS)
                if isinstance(ev.run_id, str) and type(ev.seq) is int and ev.run_id != run_id
            ]
    except (OSError, FactoryError) as exc:
        found.append(
            divergence(
                None, f"{ctx.config.ledger_rel} (ledger lines)", "valid events", _io_reason(exc)
            )
        )
    return events, later_reports


def _io_reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot read {exc.filename or 'it'} ({exc.strerror or type(exc).__name__})"
    return str(exc)


def _outcome(
    run_id: str,
    state: dict[str, Any],
    timeline: list[str],
    divergences: list[Divergence],
    chain_ok: bool,
    head: dict[str, Any],
) -> Outcome:
    return _result(run_id, state, timeline, divergences, chain_ok, head, {"crank": False})


def _crank_outcome(
    crank_id: str,
    count: int,
    state: dict[str, Any],
    divergences: list[Divergence],
    chain_ok: bool,
    head: dict[str, Any],
) -> Outcome:
    inputs = {"crank": True, "events": count}
    return _result(crank_id, state, [], divergences, chain_ok, head, inputs)


def _result(
    run_id: str,
    state: dict[str, Any],
    timeline: list[str],
    divergences: list[Divergence],
    chain_ok: bool,
    head: dict[str, Any],
    inputs: dict[str, Any],
) -> Outcome:
    """The replay's verdict, for a run or a crank: the same JSON keys (the CLI words them)."""
    ok = not divergences
    data = {
        "run_id": run_id,
        "ok": ok,
        "chain_verified": chain_ok,
        "ledger": head,
        "state": state,
        "timeline": timeline,
        "divergences": [d.as_dict() for d in divergences],
    }
    status = Status.PASS if ok else Status.BLOCKED
    return Outcome(status, data, view="replay", view_inputs=inputs)
