"""The run index: an SQLite cache beside the ledger that maps runs, event types and times to
byte offsets, so a command that needs one run's events reads those lines and nothing else.

The JSONL ledger stays the single source of truth. The index is a cache: deleting it loses
nothing, ``ledger verify`` never trusts it, and it can never be ahead of the ledger, because it
only ever records complete lines that are already in the file. Its state (``meta``) names the
ledger it indexes (the hash of line 1) and the last line it holds (seq, hash, end offset); on
every open that is checked against the file, and the index is caught up from that offset, or
rebuilt from the whole file when it is missing, stale in a way catching up cannot fix (the
ledger was cut, rewritten or replaced), corrupt, or of another ledger. Appends add their lines
in batches inside the ledger lock (:meth:`LedgerIndex.add`); a process killed before its batch
is written leaves the index behind, and the next open catches it up.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

INDEX_VERSION = "1"
_BLOCK = 1 << 20
# The envelope of a stored line: everything but the payload sits at its two ends (keys sorted).
_HEAD = re.compile(rb'\{"event_type":"([a-z0-9_.]+)","hash":"([0-9a-f]{64})",')
_TAIL = re.compile(
    rb'"prev_hash":"[0-9a-f]{64}","run_id":"([A-Za-z0-9._-]*)","seq":(\d+),'
    rb'"stage":"([A-Za-z0-9._-]*)","ts_utc":"([^"\\]*)"\}\r?$'
)
_RUN_EVENTS = frozenset({"run.started", "run.finished"})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, off INTEGER NOT NULL, len INTEGER NOT NULL,
    run_id TEXT NOT NULL, type TEXT NOT NULL, ts TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, seq);
CREATE INDEX IF NOT EXISTS events_type ON events (type, seq);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts, seq);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, kind TEXT, first_seq INTEGER, last_seq INTEGER, started_ts TEXT,
    base_commit TEXT, workers TEXT, status TEXT, finished_seq INTEGER, finished_ts TEXT
);
"""


@dataclass(frozen=True)
class Entry:
    """One ledger line as the index holds it."""

    seq: int
    off: int
    length: int  # bytes, with the newline
    run_id: str
    type: str
    ts: str
    hash: str


@dataclass(frozen=True)
class RunRow:
    run_id: str
    kind: str | None
    first_seq: int
    last_seq: int
    started_ts: str | None
    base_commit: str | None
    workers: list[str]
    status: str | None
    finished_seq: int | None
    finished_ts: str | None


class IndexError_(Exception):
    """A line the index cannot read (the ledger is corrupt there); the caller falls back."""


def parse_line(line: bytes, off: int) -> tuple[Entry, dict[str, object] | None]:
    """The entry for a stored line (without its newline); the payload too for run events."""
    head = _HEAD.match(line)
    tail = _TAIL.search(line)
    if head is None or tail is None:
        try:
            obj = orjson.loads(line)
            entry = Entry(
                int(obj["seq"]), off, len(line) + 1, str(obj["run_id"]),
                str(obj["event_type"]), str(obj["ts_utc"]), str(obj["hash"]),
            )  # fmt: skip
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise IndexError_(f"the line at byte {off} is not a ledger event") from None
        payload = obj.get("payload") if entry.type in _RUN_EVENTS else None
        return entry, payload if isinstance(payload, dict) else None
    entry = Entry(
        int(tail.group(2)), off, len(line) + 1, tail.group(1).decode("ascii"),
        head.group(1).decode("ascii"), tail.group(4).decode("ascii", "replace"),
        head.group(2).decode("ascii"),
    )  # fmt: skip
    if entry.type not in _RUN_EVENTS:
        return entry, None
    try:
        payload = orjson.loads(line).get("payload")
    except orjson.JSONDecodeError:
        raise IndexError_(f"the line at byte {off} is not valid JSON") from None
    return entry, payload if isinstance(payload, dict) else None


def scan(fh: BinaryIO, start: int = 0) -> Iterator[tuple[Entry, dict[str, object] | None]]:
    """Every complete line from byte ``start`` of an open binary file (a torn tail is left)."""
    fh.seek(start)
    pos = start
    rest = b""
    while True:
        block = fh.read(_BLOCK)
        if not block:
            return
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield parse_line(line, pos)
            pos += len(line) + 1


class LedgerIndex:
    """The index file of one ledger (``<ledger stem>.index.sqlite3`` beside it)."""

    def __init__(self, ledger_path: Path) -> None:
        self.ledger_path = ledger_path
        self.path = ledger_path.with_name(
            ledger_path.name.removesuffix(".jsonl") + ".index.sqlite3"
        )
        self._db: sqlite3.Connection | None = None
        self.rebuilt = 0  # how often this object rebuilt the index from the whole file

    # -- the database -------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
                    self._remove_files()
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=OFF")  # a cache: losing commits only means behind
                db.executescript(_SCHEMA)
                self._db = db
            except sqlite3.Error:
                self._drop()
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=OFF")
                db.executescript(_SCHEMA)
                self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                os.unlink(f"{self.path}{suffix}")

    def _drop(self) -> None:
        """Forget a corrupt or foreign index file entirely (a cache: nothing is lost)."""
        self.close()
        self._remove_files()

    def forget(self) -> None:
        """Drop the index file: the next use rebuilds it from the ledger."""
        self._drop()

    def _meta(self) -> dict[str, str]:
        return dict(self._open().execute("SELECT key, value FROM meta").fetchall())

    def _set_meta(self, values: dict[str, str]) -> None:
        self._open().executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", sorted(values.items())
        )

    # -- keeping up with the ledger ------------------------------------------------------
    def sync(self) -> str:
        """Bring the index up to the ledger's last complete line: 'current', 'caught-up' or
        'rebuilt'. Never trusts the index: its last line must be in the file as recorded."""
        try:
            return self._sync()
        except (sqlite3.Error, IndexError_, OSError, ValueError):
            self._drop()
            try:
                return self._rebuild()
            except IndexError_:
                self._drop()
                raise

    def _sync(self) -> str:
        meta = self._meta()
        try:
            fh = open(self.ledger_path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            if meta.get("end", "0") != "0":
                self._reset()
            return "current"
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if meta.get("version") != INDEX_VERSION or "end" not in meta:
                return self._rebuild_from(fh)
            end, seq, last = int(meta["end"]), int(meta["seq"]), meta["hash"]
            if end > size or not self._same_ledger(fh, meta) or not self._holds(fh, seq, last, end):
                return self._rebuild_from(fh)
            if end == size:
                return "current"
            self._catch_up(fh, end)
            return "caught-up"

    def disagreement(self) -> str:
        """Why the file no longer holds the lines this index recorded ("" when it does, or
        when there is no index yet). Lines are only ever appended, and a repair only moves a
        torn fragment after the last newline aside, so a line the index holds that is gone or
        different means the ledger was cut, rewritten or replaced since it was indexed."""
        if not self.path.is_file() or self.path.is_symlink():
            return ""
        try:
            meta = self._meta()
            if meta.get("version") != INDEX_VERSION or not meta.get("end", "0").isdigit():
                return ""
            end, seq = int(meta["end"]), int(meta.get("seq", "0"))
            if end == 0:
                return ""
            with open(self.ledger_path, "rb") as fh:
                if not self._same_ledger(fh, meta):
                    return "its first line is not the one indexed (the ledger was replaced or rewritten)"
                if end > os.fstat(fh.fileno()).st_size:
                    return f"it is shorter than when it was indexed up to seq {seq} (lines were cut off the end)"
                if not self._holds(fh, seq, meta.get("hash", ""), end):
                    return f"its line seq {seq} is not the one indexed (the ledger was rewritten)"
        except (sqlite3.Error, IndexError_, OSError, ValueError):
            return ""  # an unreadable index is rebuilt; it says nothing about the ledger
        return ""

    def _same_ledger(self, fh: BinaryIO, meta: dict[str, str]) -> bool:
        first = meta.get("first", "")
        if not first:
            return True
        fh.seek(0)
        line = fh.readline()
        if not line.endswith(b"\n"):
            return False
        entry, _ = parse_line(line.rstrip(b"\n"), 0)
        return entry.hash == first

    def _holds(self, fh: BinaryIO, seq: int, last: str, end: int) -> bool:
        """Is the index's last line still the file's line ending at ``end``, as recorded?"""
        if seq == 0:
            return end == 0
        row = self._open().execute("SELECT off, len FROM events WHERE seq = ?", (seq,)).fetchone()
        if row is None or row[0] + row[1] != end:
            return False
        fh.seek(row[0])
        data = fh.read(row[1])
        if not data.endswith(b"\n"):
            return False
        entry, _ = parse_line(data[:-1], row[0])
        return entry.seq == seq and entry.hash == last

    def _catch_up(self, fh: BinaryIO, end: int) -> None:
        batch: list[tuple[Entry, dict[str, object] | None]] = []
        for item in scan(fh, end):
            batch.append(item)
            if len(batch) >= 5000:
                self._insert(batch)
                batch = []
        self._insert(batch)

    def _reset(self) -> None:
        db = self._open()
        db.execute("BEGIN")
        db.execute("DELETE FROM events")
        db.execute("DELETE FROM runs")
        db.execute("DELETE FROM meta")
        db.execute("COMMIT")
        self._set_meta({"version": INDEX_VERSION, "end": "0", "seq": "0", "hash": "", "first": ""})

    def _rebuild(self) -> str:
        try:
            fh = open(self.ledger_path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            self._reset()
            return "rebuilt"
        with fh:
            return self._rebuild_from(fh)

    def _rebuild_from(self, fh: BinaryIO) -> str:
        self._reset()
        self.rebuilt += 1
        self._catch_up(fh, 0)
        return "rebuilt"

    def add(self, lines: Sequence[tuple[int, bytes]]) -> None:
        """Index lines an append just wrote ((offset, line without newline)); the caller holds
        the ledger lock and the lines are in the file. Out of step (another process appended
        lines this one never saw) the index is caught up from the file instead."""
        if not lines:
            return
        try:
            meta = self._meta()
            end = int(meta.get("end", "-1"))
            for off, line in lines:  # only lines that follow the index's end without a gap
                if off != end:
                    break
                end = off + len(line) + 1
            else:
                if meta.get("version") == INDEX_VERSION:
                    self._insert([parse_line(line, off) for off, line in lines])
                    return
            self.sync()  # another process appended in between: read them from the file
            return
        except (sqlite3.Error, IndexError_, ValueError):
            self._drop()

    def _insert(self, batch: Sequence[tuple[Entry, dict[str, object] | None]]) -> None:
        if not batch:
            return
        db = self._open()
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO events (seq, off, len, run_id, type, ts, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.seq, e.off, e.length, e.run_id, e.type, e.ts, e.hash) for e, _ in batch],
            )
            for e, payload in batch:
                if not e.run_id:
                    continue
                db.execute(
                    "INSERT INTO runs (run_id, first_seq, last_seq) VALUES (?, ?, ?) "
                    "ON CONFLICT (run_id) DO UPDATE SET last_seq = excluded.last_seq",
                    (e.run_id, e.seq, e.seq),
                )
                if e.type == "run.started" and payload is not None:
                    workers = payload.get("workers")
                    db.execute(
                        "UPDATE runs SET kind = ?, started_ts = ?, base_commit = ?, workers = ? "
                        "WHERE run_id = ?",
                        (
                            _text(payload.get("kind")), e.ts, _text(payload.get("base_commit")),
                            orjson.dumps(workers).decode() if isinstance(workers, list) else "[]",
                            e.run_id,
                        ),
                    )  # fmt: skip
                elif e.type == "run.finished" and payload is not None:
                    db.execute(
                        "UPDATE runs SET status = ?, finished_seq = ?, finished_ts = ? "
                        "WHERE run_id = ?",
                        (_text(payload.get("status")), e.seq, e.ts, e.run_id),
                    )
            last = batch[-1][0]
            meta = {"end": str(last.off + last.length), "seq": str(last.seq), "hash": last.hash}
            if batch[0][0].seq == 1:
                meta["first"] = batch[0][0].hash
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", sorted(meta.items())
            )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    # -- queries ----------------------------------------------------------------------------
    def entries(
        self,
        *,
        run_id: str | None = None,
        event_type: str | None = None,
        prefix: bool = False,
        since: str | None = None,
        newest_first: bool = False,
        limit: int | None = None,
        by_seq: bool = False,
    ) -> list[Entry]:
        """Lines matching the envelope filters, by (ts, type, seq) (the ledger's display order)
        or by seq (chain order), newest first when asked (with ``limit``: the last N)."""
        where: list[str] = []
        args: list[str | int] = []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        if event_type is not None:
            if prefix:
                where.append("substr(type, 1, ?) = ?")
                args += [len(event_type), event_type]
            else:
                where.append("type = ?")
                args.append(event_type)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        sql = "SELECT seq, off, len, run_id, type, ts, hash FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        order = "DESC" if newest_first else "ASC"
        if by_seq:
            sql += f" ORDER BY seq {order}"
        else:
            sql += f" ORDER BY ts {order}, type {order}, seq {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self._open().execute(sql, args).fetchall()
        return [Entry(*row) for row in rows]

    def entries_after(self, seq: int, event_type: str, limit: int) -> list[Entry]:
        """The first ``limit`` lines of ``event_type`` after ``seq``, in chain order."""
        rows = (
            self._open()
            .execute(
                "SELECT seq, off, len, run_id, type, ts, hash FROM events "
                "WHERE type = ? AND seq > ? ORDER BY seq LIMIT ?",
                (event_type, seq, limit),
            )
            .fetchall()
        )
        return [Entry(*row) for row in rows]

    def entry(self, seq: int) -> Entry | None:
        row = (
            self._open()
            .execute(
                "SELECT seq, off, len, run_id, type, ts, hash FROM events WHERE seq = ?", (seq,)
            )
            .fetchone()
        )
        return None if row is None else Entry(*row)

    def run_ids_since(self, event_type: str, floor_ts: str, prefix: str = "") -> set[str]:
        rows = (
            self._open()
            .execute(
                "SELECT DISTINCT run_id FROM events WHERE type = ? AND ts >= ? "
                "AND substr(run_id, 1, ?) = ?",
                (event_type, floor_ts, len(prefix), prefix),
            )
            .fetchall()
        )
        return {r[0] for r in rows}

    def runs(self, *, status: str | None = None, limit: int | None = None) -> list[RunRow]:
        """Runs newest first (by their first event)."""
        sql = (
            "SELECT run_id, kind, first_seq, last_seq, started_ts, base_commit, workers, status, "
            "finished_seq, finished_ts FROM runs"
        )
        args: list[object] = []
        if status is not None:
            sql += " WHERE upper(coalesce(status, 'RUNNING')) = upper(?)"
            args.append(status)
        sql += " ORDER BY first_seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_run_row(row) for row in self._open().execute(sql, args).fetchall()]

    def run(self, run_id: str) -> RunRow | None:
        for row in self.runs_named([run_id]):
            return row
        return None

    def runs_named(self, run_ids: Sequence[str]) -> list[RunRow]:
        out = []
        for run_id in run_ids:
            row = (
                self._open()
                .execute(
                    "SELECT run_id, kind, first_seq, last_seq, started_ts, base_commit, workers, "
                    "status, finished_seq, finished_ts FROM runs WHERE run_id = ?",
                    (run_id,),
                )
                .fetchone()
            )
            if row is not None:
                out.append(_run_row(row))
        return out


def _run_row(row: Sequence[object]) -> RunRow:
    workers = orjson.loads(str(row[6])) if row[6] else []
    return RunRow(
        str(row[0]), _text(row[1]), int(str(row[2])), int(str(row[3])), _text(row[4]),
        _text(row[5]), [str(w) for w in workers] if isinstance(workers, list) else [],
        _text(row[7]), int(str(row[8])) if row[8] is not None else None, _text(row[9]),
    )  # fmt: skip


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
