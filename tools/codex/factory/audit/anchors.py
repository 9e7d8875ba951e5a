"""The ledger heads recorded outside the ledger's own chain, and what they anchor.

The head written into FINAL_REPORT.txt / STATUS.json / ``report.written`` must be the hash of
the ledger line at that seq. Every line up to it must be sound, which is
:meth:`Ledger.verify`'s to judge (the replay runs it once; its first bad line is used here): a
forger who edits a payload and re-chains every later hash still cannot change the head already
printed in the report. Here only the hash stored at each anchored seq is looked up.

What the report's anchor does not cover: the head printed in FINAL_REPORT.txt is the ledger
line just before ``report.written``; that event, ``run.finished`` and the epilogue after it
(``worktree.removed``, ``clean.refused``, ...) lie beyond it. ``report.written`` and
``run.finished`` are cross-checked with STATUS.json and FINAL_REPORT.txt, but **events after
``run.finished`` are not covered by the report's anchor**: deleting or editing them and
re-chaining the ledger and its head file is not detectable from this run alone. They are listed
(``state.anchor``) with whether a later run's FINAL_REPORT.txt, whose head lies beyond them,
anchors them instead (its head is then checked like this run's own: a mismatch is a
divergence); without one, keep a copy of the ledger's last line elsewhere to anchor them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TypedDict

import orjson

from tools.codex.factory.audit.diskcheck import REPORT_REL, printed_head, read_report_text
from tools.codex.factory.audit.fold import AnchoredHead, Divergence, LedgerHead, divergence
from tools.codex.factory.errors import UsageError
from tools.codex.factory.ledger.store import Event, Ledger, VerifyResult
from tools.codex.factory.run.context import Context


class EventRef(TypedDict):
    seq: int
    event_type: str


class LaterReport(TypedDict):
    run_id: str
    seq: int
    hash: str
    source: str


class AnchorState(TypedDict):
    """Which of the run's events its report's ledger head covers (``state.anchor``)."""

    report_head: LedgerHead | None
    beyond_report_head: list[EventRef]
    after_run_finished: list[EventRef]
    anchored_by_later_report: LaterReport | None
    unanchored: list[EventRef]


@dataclass
class LaterAnchor:
    """A later run's report whose head lies beyond this run's last event."""

    run_id: str
    seq: int
    hash: str
    source: str
    ok: bool = False  # its head matches the ledger

    def as_report(self) -> LaterReport:
        return {"run_id": self.run_id, "seq": self.seq, "hash": self.hash, "source": self.source}


def _stored_hash(line: bytes) -> object:
    """The ``hash`` member of a ledger line, read and not verified; "" for a line that is not an
    event (no ``seq``, ``hash`` and ``prev_hash`` members)."""
    try:
        obj = orjson.loads(line)
        _seq, digest, _prev = obj["seq"], obj["hash"], obj["prev_hash"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""
    return digest


def stored_hashes(ledger: Ledger, seqs: Collection[int]) -> tuple[dict[int, object], int]:
    """The hash stored on the ledger line at each of ``seqs`` (line numbers), read by offset,
    and the number of the last line read (the ledger's last when it ends before the highest)."""
    lines = ledger.lines_at(sorted(seqs))
    found = {seq: _stored_hash(line) for seq, line in lines.items()}
    top = max(seqs)
    return found, top if top in lines else ledger.last_complete_seq()


class Anchors:
    """The recorded heads of one run checked against the ledger, and its anchor state."""

    def __init__(
        self,
        ctx: Context,
        events: Sequence[Event],
        heads: Sequence[AnchoredHead],
        report_head: tuple[int, str] | None,
    ) -> None:
        self.ctx = ctx
        self.events = events
        self.heads = list(heads)
        self.report_head = report_head  # the head FINAL_REPORT.txt prints
        self.later: LaterAnchor | None = None
        self.divergences: list[Divergence] = []

    def diverge(self, seq: int | None, what: str, expected: object, found: object) -> None:
        self.divergences.append(divergence(seq, what, expected, found))

    def find_later(self, later_reports: Sequence[tuple[int, str]]) -> None:
        """Events of this run beyond its own report's head may be covered by a later run's report.

        ``later_reports``: (seq, run ID) of other runs' ``report.written``. The first other run
        whose ``report.written`` comes after this run's last event and whose FINAL_REPORT.txt
        (on disk) prints a head at or beyond that event anchors them: its head is checked
        against the ledger like this run's own.
        """
        if not self.events:
            return
        last = max(ev.seq for ev in self.events)
        own = self.report_head[0] if self.report_head else 0
        if last <= own:
            return
        tried: set[str] = set()
        for seq, rid in later_reports:
            if seq <= last or rid in tried:
                continue
            tried.add(rid)
            try:
                other = self.ctx.layout.run_dir(rid)
            except UsageError:
                continue
            head = printed_head(read_report_text(other)[0])
            if head is not None and head[0] >= last:
                source = f"{self.ctx.layout.run_rel(rid)}/{REPORT_REL} ledger head (a later run's report)"
                self.later = LaterAnchor(rid, head[0], head[1], source)
                self.heads.append(AnchoredHead(head[0], head[1], source, None))
                return

    def check_heads(self, ledger: Ledger, chain: VerifyResult | None) -> None:
        """Each recorded head must be the hash of the ledger line at that seq, and every line up
        to the highest head must be sound (``chain``: the ledger's verify result, None if the
        ledger could not be verified, which is reported already)."""
        wanted: dict[int, list[tuple[str, str, int | None]]] = {}
        for seq, digest, source, at in self.heads:
            wanted.setdefault(seq, []).append((digest, source, at))
        if not wanted:
            return
        top = max(wanted)
        bad = chain.first_bad_line if chain is not None else None
        if bad is not None and bad <= top:
            self.diverge(
                bad,
                f"ledger line seq {bad} (at or below the head seq {top} anchored in {wanted[top][0][1]})",
                f"seq {bad}, hashed as recorded and linked to the line before",
                "it is not",
            )
        found, last = stored_hashes(ledger, wanted)
        for seq in sorted(wanted):
            for digest, source, at in wanted[seq]:
                actual = found.get(seq)
                if actual is None:
                    self.diverge(
                        at if at is not None else seq,
                        f"ledger head recorded in {source}",
                        f"a ledger line at seq {seq} with hash {digest}",
                        f"the ledger ends at seq {last}",
                    )
                elif actual != digest:
                    self.diverge(
                        seq,
                        f"ledger head recorded in {source} (the ledger was rewritten and re-chained)",
                        f"hash {digest} at seq {seq}",
                        f"hash {actual}",
                    )
                elif self.later is not None and source == self.later.source:
                    self.later.ok = True

    def state(self) -> AnchorState:
        """Which of this run's events the report's ledger head does not cover."""
        head = self.report_head
        own = head[0] if head else 0
        finished = [ev.seq for ev in self.events if ev.event_type == "run.finished"]
        beyond: list[EventRef] = [
            {"seq": ev.seq, "event_type": ev.event_type} for ev in self.events if ev.seq > own
        ]
        after = [b for b in beyond if finished and int(b["seq"]) > finished[-1]]
        later = self.later if self.later is not None and self.later.ok else None
        return {
            "report_head": {"seq": head[0], "hash": head[1]} if head else None,
            "beyond_report_head": beyond,
            "after_run_finished": after,
            "anchored_by_later_report": later.as_report() if later else None,
            "unanchored": [] if later else beyond,
        }
