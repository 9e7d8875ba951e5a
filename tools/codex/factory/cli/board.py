"""The live board on a terminal's stderr: one row per stage, worker, check and the scenarios,
redrawn in place while a command runs.

Fed by the same ledger listener as the plain progress lines: :func:`update` turns each event
this process records into rows (pure: the event and a real-time reading in, rows out) and
:func:`render` words them; :class:`LiveBoard` redraws with ANSI cursor movement (no
dependency). Elapsed times are real time, shown only here and never recorded.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TextIO

from tools.codex.factory.cli import render
from tools.codex.factory.infra.clock import real_monotonic
from tools.codex.factory.ledger.store import Event

# Row kinds in the order the board shows them.
KINDS = ("stage", "worker", "check", "scenarios")
WIDTH = 100  # a row is clipped to this many characters (worker text is hostile)
_STATE_ANSI = {"running": "36", "pending": "2", "done": "32", "failed": "31"}
_TICK_S = 0.5


@dataclass(frozen=True)
class Row:
    kind: str
    name: str
    state: str  # pending / running / done / failed
    detail: str = ""
    started: float | None = None  # real-time readings, never recorded
    ended: float | None = None

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return None
        return max(0.0, (self.ended if self.ended is not None else now) - self.started)


@dataclass(frozen=True)
class Board:
    run_id: str = ""
    rows: tuple[Row, ...] = ()

    def row(self, kind: str, name: str) -> Row | None:
        return next((r for r in self.rows if (r.kind, r.name) == (kind, name)), None)

    def put(self, row: Row) -> Board:
        """The board with ``row`` replacing its namesake, or added in its kind's place."""
        rows = [r for r in self.rows if (r.kind, r.name) != (row.kind, row.name)]
        at = next(
            (i for i, r in enumerate(self.rows) if (r.kind, r.name) == (row.kind, row.name)),
            None,
        )
        if at is None:
            rank = KINDS.index(row.kind)
            at = sum(1 for r in rows if KINDS.index(r.kind) <= rank)
        rows.insert(at, row)
        return replace(self, rows=tuple(rows))


def _worker(ev: Event) -> str:
    """The worker an event is about: its payload's ``worker``, else its actor (``A_worker``)."""
    w = ev.payload.get("worker")
    if isinstance(w, str) and w:
        return w
    actor = str(ev.payload.get("actor", ""))
    return actor.removesuffix("_worker")


def _start(board: Board, kind: str, name: str, detail: str, now: float) -> Board:
    return board.put(Row(kind, name, "running", detail, started=now))


def _end(board: Board, kind: str, name: str, ok: bool, detail: str, now: float) -> Board:
    old = board.row(kind, name)
    started = old.started if old is not None and old.started is not None else now
    return board.put(Row(kind, name, "done" if ok else "failed", detail, started, now))


def update(board: Board, ev: Event, now: float) -> Board:
    """The board after ``ev`` (recorded at real time ``now``); events it does not show leave
    it as it was. A new run (a crank's next iteration) starts a fresh board."""
    t, p = ev.event_type, ev.payload
    if t == "run.started" and board.run_id and ev.run_id != board.run_id:
        board = Board()
    if not board.run_id:
        board = replace(board, run_id=ev.run_id)
    if t == "stage.started":
        return _start(board, "stage", ev.stage, "", now)
    if t == "stage.finished":
        status = str(p.get("status", ""))
        return _end(board, "stage", ev.stage, status == "PASS", status, now)
    if t == "worker.prepared":
        return board.put(Row("worker", _worker(ev), "pending", str(p.get("mode", ""))))
    if t == "worker.started":
        return _start(board, "worker", _worker(ev), str(p.get("preset", "")), now)
    if t == "worker.finished":
        status = str(p.get("status", ""))
        return _end(board, "worker", _worker(ev), status == "DONE", status, now)
    if t in ("bundle.created", "bundle.imported", "bundle.collected"):
        how = {"bundle.created": "dry run", "bundle.imported": "imported"}.get(t, "collected")
        old = board.row("worker", _worker(ev))
        if old is not None and old.ended is not None:
            return board  # the agent's own end says more (a crashed agent's bundle is collected)
        return _end(board, "worker", _worker(ev), True, how, now)
    if t == "check.started":
        kind = "required" if p.get("required") else "advisory"
        return _start(board, "check", str(p.get("name")), kind, now)
    if t == "check.finished":
        ok = p.get("rc") == 0 and not p.get("timed_out")
        rc = "timed out" if p.get("timed_out") else f"rc={p.get('rc')}"
        return _end(board, "check", str(p.get("name")), ok, f"{'PASS' if ok else 'FAIL'} {rc}", now)
    if t == "scenarios.started":
        return _start(board, "scenarios", "", f"evaluating {p.get('scenarios')}", now)
    if t == "scenarios.finished":
        sat = p.get("satisfaction") or {}
        passed, total = sat.get("passed"), sat.get("total")
        return _end(board, "scenarios", "", passed == total, f"{passed}/{total} passed", now)
    return board


def fit(text: str, width: int) -> str:
    """``text`` on one terminal line: control characters shown escaped (none reaches the
    terminal), cut to ``width`` with an ellipsis (a wrapped line would break the redraw)."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def row_line(row: Row, now: float, colour: bool, width: int = WIDTH) -> str:
    """One row: kind, name, state (coloured on a terminal), elapsed, detail."""
    secs = row.elapsed(now)
    took = f"{secs:6.1f}s" if secs is not None else " " * 7
    name = fit(row.name, 24)
    plain = f"  {row.kind:<9} {name:<24} {row.state:<8} {took}  {fit(row.detail, width)}"
    line = fit(plain.rstrip(), width)
    if colour:  # the state word in its colour (after fitting: escapes take no columns)
        at = 2 + 9 + 1 + 24 + 1
        tint = f"\x1b[{_STATE_ANSI[row.state]}m{row.state:<8}\x1b[0m"
        line = line[:at] + tint + line[at + 8 :] if len(line) >= at + 8 else line
    return render.colour(line, colour)


def render_board(
    board: Board, now: float, colour: bool, width: int = WIDTH, height: int = 0
) -> list[str]:
    """The board's lines: its run, then one line per row, each within ``width`` so none wraps,
    and with ``height`` at most that many lines (the latest rows; the rest counted), so the
    cursor can always move back to its first line."""
    if not board.rows:
        return []
    width = max(20, min(width, WIDTH))
    rows = board.rows
    hidden = 0
    if height and len(rows) + 1 > height:
        keep = max(1, height - 2)
        hidden, rows = len(rows) - keep, rows[-keep:]
    head = fit(f"factory: run {board.run_id}", width)
    more = [f"  ... {hidden} earlier row(s)"] if hidden else []
    return [head, *more, *(row_line(r, now, colour, width) for r in rows)]


def _size(stream: TextIO) -> tuple[int, int]:
    """The terminal's (columns - 1, lines - 1): a line as wide as the screen would wrap."""
    try:
        cols, lines = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return WIDTH, 0
    # A terminal that tells no size (0 x 0) gets the default width and no height limit.
    return (cols - 1 if cols > 1 else WIDTH), (max(3, lines - 1) if lines > 0 else 0)


class LiveBoard:
    """The board drawn on a terminal and redrawn in place on each event and every half
    second (elapsed times move); lines said meanwhile print above it."""

    def __init__(self, stream: TextIO, colour: bool, clock: Callable[[], float] = real_monotonic):
        self.stream, self.colour, self.clock = stream, colour, clock
        self.board = Board()
        self.drawn = 0  # lines of the board now on the screen
        self.held = False  # a question is on the terminal: no redraws
        self.lock = threading.RLock()
        self.stopped = threading.Event()
        self.ticker: threading.Thread | None = None

    def on_event(self, ev: Event) -> None:
        with self.lock:
            if self.stopped.is_set():
                return
            before, self.board = self.board, update(self.board, ev, self.clock())
            if self.board is not before:  # events the board does not show draw nothing
                self._redraw()
            if self.ticker is None and self.board.rows:
                self.ticker = threading.Thread(target=self._tick, name="factory-board", daemon=True)
                self.ticker.start()

    def say(self, line: str) -> None:
        """A progress line above the board (the board is drawn again below it)."""
        with self.lock:
            self._erase()
            self.stream.write(render.colour(line, self.colour) + "\n")
            self._draw()

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        """The board held still while the terminal asks a question; drawn again below it."""
        with self.lock:
            self.held, self.drawn = True, 0  # what is on screen stays above the question
        try:
            yield
        finally:
            with self.lock:
                self.held = False
                self._redraw()

    def close(self) -> None:
        """Stop redrawing; the last board stays on the screen above what follows."""
        with self.lock:
            if self.stopped.is_set():
                return
            self.stopped.set()
            self._redraw()
        if self.ticker is not None:
            self.ticker.join(timeout=2)

    def _tick(self) -> None:
        while not self.stopped.wait(_TICK_S):
            with self.lock:
                running = any(r.state == "running" for r in self.board.rows)
                if running and not self.stopped.is_set():  # elapsed times move
                    self._redraw()

    def _erase(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")  # up to the board's first line
            self.drawn = 0

    def _draw(self) -> None:
        if self.held:
            self.stream.flush()
            return
        width, height = _size(self.stream)
        lines = render_board(self.board, self.clock(), self.colour, width, height)
        if lines:
            self.stream.write("\n".join(lines) + "\n")
        self.drawn = len(lines)
        self.stream.flush()

    def _redraw(self) -> None:
        try:
            self._erase()
            self._draw()
        except (OSError, ValueError):  # a closed terminal stops no run
            self.stopped.set()
