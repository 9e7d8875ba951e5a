"""``watch``: follow the ledger and print a run's events as they are appended.

The run's events already in the ledger are read by offset through the run index (a run that
already finished is reported at once), then the ledger is polled from the indexed end: each
poll reads only the bytes appended since the last offset, never the whole file. A torn last line (another process mid-write, or a crash) is held back until its newline
arrives; if ``ledger repair`` moves it aside, it is dropped. The watch ends at the run's last
``run.finished`` event whenever the run has finished, however often it was reopened since (a
re-validation, a re-integration or a resume need not end with a new verdict: waiting for one
could last forever); a reopened run is said to be so. It exits with that verdict's status code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import orjson

from tools.codex.factory.core.ids import validate_run_id
from tools.codex.factory.errors import (
    ArgumentError,
    BlockedError,
    FactoryError,
    LedgerCorruptError,
)
from tools.codex.factory.infra import fsutil
from tools.codex.factory.infra.clock import real_monotonic, sleep
from tools.codex.factory.ledger.store import Event
from tools.codex.factory.records.status import Status
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.handle import run_folder
from tools.codex.factory.run.outcome import Outcome

POLL_S = 0.2
# Events that start a new round of a finished run (the watch says the run was reopened);
# anything else after run.finished (worktree clean-up, say) is an epilogue.
RESTART_EVENTS = frozenset({"stage.started", "run.resumed", "run.started"})
READ_MAX = 1 << 20
# A run with no run folder and no event in an existing ledger is unknown (a typo, most likely):
# after this many seconds (room for a run started next to the watch) it is a usage error.
START_GRACE_S = 5.0


class Follower:
    """Reads whole lines appended to a file since the last call; keeps a torn tail for later."""

    def __init__(self, path: Path, shown: str = "") -> None:
        self.path = path
        self.shown = shown or str(path)  # how messages name the file
        self.offset = 0  # bytes consumed: the end of the last complete line
        self.partial = b""
        self._fh: BinaryIO | None = None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def poll(self) -> list[tuple[int, bytes]]:
        """New complete lines as (byte offset, line without its line end)."""
        if self._fh is None:
            try:  # a regular file, not through a link: a FIFO would hang the watch
                fd = fsutil.open_regular(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return []
            except fsutil.NotRegularFileError as exc:
                raise BlockedError(
                    f"ledger: {self.shown} is {exc.kind}; the ledger's files must be regular "
                    "files: remove it"
                ) from None
            self._fh = os.fdopen(fd, "rb")
        size = os.fstat(self._fh.fileno()).st_size
        if size < self.offset:
            raise FactoryError(
                f"ledger {self.path.name} shrank to {size} bytes while watched at offset {self.offset}: "
                "it was rewritten; run `factory ledger verify`"
            )
        if self.partial:
            # The held torn piece must still be there: `ledger repair` may have moved it aside
            # (and a new line taken its place) since the last poll.
            self._fh.seek(self.offset)
            if self._fh.read(len(self.partial)) != self.partial:
                self.partial = b""
        out: list[tuple[int, bytes]] = []
        start = self.offset + len(self.partial)
        while start < size:
            self._fh.seek(start)
            chunk = self._fh.read(min(READ_MAX, size - start))
            if not chunk:
                break
            start += len(chunk)
            data = self.partial + chunk
            parts = data.split(b"\n")
            self.partial = parts.pop()
            pos = self.offset
            for part in parts:
                line = part[:-1] if part.endswith(b"\r") else part
                if line:
                    out.append((pos, line))
                pos += len(part) + 1
            self.offset = pos
        return out


def follow(
    ctx: Context,
    run_id: str,
    timeout: float | None,
    echo: Callable[[Event], None],
    note: Callable[[str], None],
    poll_s: float = POLL_S,
) -> Outcome:
    """Hand each of the run's events to ``echo`` as it arrives (the caller words it) until the
    run finishes; ``note`` gets what the operator should know meanwhile."""
    validate_run_id(run_id)
    if timeout is not None and timeout <= 0:
        raise ArgumentError("timeout", "give a number of seconds greater than 0", label="timeout")
    path = ctx.layout.ledger_path
    follower = Follower(path, ctx.config.ledger_rel)
    # Real time (never pinned): a pinned clock (--now) must not stop a watch from timing out.
    started = real_monotonic()
    deadline = None if timeout is None else started + timeout
    seen: list[Event] = []
    finished: Event | None = None
    reopened: Event | None = None
    waiting_noted = False

    def take(ev: Event) -> None:
        nonlocal finished, reopened
        echo(ev)
        seen.append(ev)
        if ev.event_type == "run.finished":
            finished, reopened = ev, None
        elif ev.event_type in RESTART_EVENTS and finished is not None and reopened is None:
            reopened = ev  # re-validated, re-integrated, resumed: maybe never to finish again

    # What the ledger holds already: the run's own lines, read by offset through the run index;
    # then only what is appended after the indexed end is read, however long the ledger is.
    if path.is_file():
        earlier, end = ctx.ledger.run_events_upto(run_id)
        for ev in earlier:
            take(ev)
        if end is not None:
            follower.offset = end
    try:
        while True:
            lines = follower.poll()
            if not lines and not path.exists() and not waiting_noted:
                note(f"factory: waiting for the ledger {ctx.config.ledger_rel} to appear")
                waiting_noted = True
            for offset, line in lines:
                try:
                    ev = Event.from_line(line)
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    raise LedgerCorruptError(
                        f"ledger {path.name}: the line at byte {offset} is not a valid event; run `factory ledger verify`"
                    ) from None
                if ev.run_id == run_id:
                    take(ev)
            if finished is not None:
                if reopened is not None:
                    note(
                        f"factory: watch: run {run_id} was reopened after it finished (seq "
                        f"{reopened.seq}: {reopened.event_type} {reopened.stage}) and has not "
                        f"finished again; its last verdict: {finished.payload.get('status')}"
                    )
                return _finished(run_id, finished, seen)
            if not seen and path.exists() and real_monotonic() - started >= START_GRACE_S:
                no_events = (
                    f" and no event in the ledger after {START_GRACE_S:g}s (no such run); "
                    "list runs with `factory ledger`"
                )
                run_folder(ctx, run_id, no_events)
            if deadline is not None and real_monotonic() >= deadline:
                last = (
                    f"; last event seq {seen[-1].seq} ({seen[-1].event_type})"
                    if seen
                    else "; no event of this run seen"
                )
                data = {
                    "run_id": run_id,
                    "finished": False,
                    "status": None,
                    "timed_out": True,
                    "events": [e.as_dict() for e in seen],
                }
                msg = (
                    f"factory: watch: run {run_id} did not finish within {timeout:g}s{last}; "
                    "the run may still be going: watch again, or check the run's events (`factory ledger`)"
                )
                return Outcome(Status.FAIL, data, messages=[msg], view="watch")
            sleep(poll_s)
    finally:
        follower.close()


def _finished(run_id: str, ev: Event, seen: list[Event]) -> Outcome:
    raw = str(ev.payload.get("status", "FAIL"))
    status = Status(raw) if raw in ("PASS", "BLOCKED", "FAIL") else Status.FAIL
    data = {
        "run_id": run_id,
        "finished": True,
        "status": raw,
        "timed_out": False,
        "events": [e.as_dict() for e in seen],
    }
    return Outcome(status, data, view="watch")
