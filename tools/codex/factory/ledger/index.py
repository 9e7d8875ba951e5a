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
from typing import BinaryIO, NamedTuple

import orjson

from tools.codex.factory.infra import fsutil

INDEX_VERSION = "2"
_BLOCK = 1 << 20
# The envelope of a stored line: everything but the payload sits at its two ends (keys sorted).
# Its groups take only text that JSON stores as itself (no quote, backslash or non-ASCII), so
# each is the field's value; any other line is read by orjson.
_HEAD = re.compile(rb'\{"event_type":"([a-z0-9_.]+)","hash":"([0-9a-f]{15})[0-9a-f]{49}",')
_TAIL = re.compile(
    rb'"prev_hash":"[0-9a-f]{64}","run_id":"([A-Za-z0-9._-]*)","seq":(\d+),'
    rb'"stage":"([A-Za-z0-9._-]*)","ts_utc":"([ !#-\[\]-~]*)"\}\r?$'
)
# A whole stored line in one match (the envelope at both ends, the payload between, skipped):
# the same fields ``parse_line`` takes, for a block of lines at a time (``(?m)^``: only at a
# line's start). The greedy payload backs off from the line's end, so the tail is the line's
# own (no group in it can hold a quote), never a look-alike inside the payload.
_LINE = re.compile(
    rb'(?m)^\{"event_type":"([a-z0-9_.]+)","hash":"([0-9a-f]{15})[0-9a-f]{49}",[^\n]*'
    rb'"prev_hash":"[0-9a-f]{64}","run_id":"([A-Za-z0-9._-]*)","seq":(\d+),'
    rb'"stage":"[A-Za-z0-9._-]*","ts_utc":"([ !#-\[\]-~]*)"\}\r?\n'
)
# The index file, the files SQLite keeps beside it, and a full rebuild's file before it takes
# the index's name (suffixes of the index's name).
SIDE_SUFFIXES = ("", "-wal", "-shm", "-journal", ".rebuild")
_BUILD_SUFFIX = ".rebuild"
RUN_EVENTS = frozenset({"run.started", "run.finished"})
# Run IDs and event types are stored once (runs, types) and referred to by number; a line's
# hash by its first 15 hex digits (enough to tell that a line is not the one indexed; the
# index vouches for nothing). Secondary indexes: a run's lines by seq, a type's lines by time,
# all lines by time.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS types (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, kind TEXT, first_seq INTEGER,
    last_seq INTEGER, started_ts TEXT, base_commit TEXT, workers TEXT, status TEXT,
    finished_seq INTEGER, finished_ts TEXT
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, off INTEGER NOT NULL, len INTEGER NOT NULL,
    run INTEGER NOT NULL, type INTEGER NOT NULL, ts TEXT NOT NULL, hash INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run, seq);
CREATE INDEX IF NOT EXISTS events_type ON events (type, ts);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""
_SECONDARY = ("events_run", "events_type", "events_ts")
_ENTRY = (
    "SELECT e.seq, e.off, e.len, r.run_id, t.name, e.ts, e.hash FROM events e "
    "JOIN runs r ON r.id = e.run JOIN types t ON t.id = e.type"
)


def short_hash(digest: object) -> int:
    """The first 15 hex digits of a line's hash as a number (-1 if it is not hex)."""
    text = digest if isinstance(digest, str) else ""
    try:
        return int(text[:15], 16) if len(text) >= 15 else -1
    except ValueError:
        return -1


class Entry(NamedTuple):
    """One ledger line as the index holds it (a tuple: a rebuild makes a million of them)."""

    seq: int
    off: int
    length: int  # bytes, with the newline
    run_id: str
    type: str
    ts: str
    hash: int  # short_hash of the line's hash


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


# A line as the index takes it: its entry and, for run events, its payload.
Indexed = tuple[Entry, dict[str, object] | None]


class IndexError_(Exception):
    """A line the index cannot read (the ledger is corrupt there); the caller falls back."""


def parse_line(line: bytes, off: int) -> Indexed:
    """The entry for a stored line (without its newline); the payload too for run events."""
    head = _HEAD.match(line)
    # The tail is unique (no group in it can hold a quote) and follows the payload: look for
    # it from the payload's last possible key first, not from the line's start.
    k = line.rfind(b',"prev_hash":"')
    tail = _TAIL.match(line, k + 1) if k > 0 else None
    if tail is None:
        tail = _TAIL.search(line)
    if head is None or tail is None:
        try:
            obj = orjson.loads(line)
            entry = Entry(
                int(obj["seq"]), off, len(line) + 1, str(obj["run_id"]),
                str(obj["event_type"]), str(obj["ts_utc"]), short_hash(obj["hash"]),
            )  # fmt: skip
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise IndexError_(f"the line at byte {off} is not a ledger event") from None
        payload = obj.get("payload") if entry.type in RUN_EVENTS else None
        return entry, payload if isinstance(payload, dict) else None
    etype, short = head.groups()
    run_id, seq, _stage, ts = tail.groups()
    entry = Entry(
        int(seq), off, len(line) + 1, run_id.decode("ascii"), etype.decode("ascii"),
        ts.decode("ascii"), int(short, 16),
    )  # fmt: skip
    if entry.type not in RUN_EVENTS:
        return entry, None
    try:
        payload = orjson.loads(line).get("payload")
    except orjson.JSONDecodeError:
        raise IndexError_(f"the line at byte {off} is not valid JSON") from None
    return entry, payload if isinstance(payload, dict) else None


# An entry's fields as a plain tuple (Entry's order): a rebuild makes a million of them.
Row = tuple[int, int, int, str, str, str, int]


def parse_block(
    data: bytes, base: int, lo: int = 0, hi: int | None = None
) -> tuple[list[Row], list[tuple[int, dict[str, object]]]]:
    """The rows of the complete lines in ``data[lo:hi]`` (``data[0]`` is byte ``base`` of the
    file; the span ends with a newline), and the payloads of its run events by row number:
    exactly what ``parse_line`` gives line by line, but one regex pass for the common,
    canonical case."""
    hi = len(data) if hi is None else hi
    rows: list[Row] = [
        (
            int(m[4]),
            base + m.start(),
            m.end() - m.start(),
            m[3].decode("ascii"),
            m[1].decode("ascii"),
            m[5].decode("ascii"),
            int(m[2], 16),
        )
        for m in _LINE.finditer(data, lo, hi)
    ]
    # Each match is one whole line, so as many matches as lines means every line matched.
    if len(rows) != data.count(b"\n", lo, hi):  # a line the pattern does not take: one by one
        rows = []
        pos = lo
        while pos < hi:
            nl = data.index(b"\n", pos)
            rows.append(parse_line(data[pos:nl], base + pos)[0])
            pos = nl + 1
    payloads: list[tuple[int, dict[str, object]]] = []
    for i, r in enumerate(rows):
        if r[4] in RUN_EVENTS:  # few: their payload is read whole, as parse_line reads it
            start = r[1] - base
            try:
                payload = orjson.loads(data[start : start + r[2]]).get("payload")
            except orjson.JSONDecodeError:
                raise IndexError_(f"the line at byte {r[1]} is not valid JSON") from None
            if isinstance(payload, dict):
                payloads.append((i, payload))
    return rows, payloads


def scan_blocks(
    fh: BinaryIO, start: int = 0
) -> Iterator[tuple[list[Row], list[tuple[int, dict[str, object]]]]]:
    """``parse_block`` over every complete line from byte ``start`` (a torn tail is left).
    Each block is parsed where it was read (no copy): only the line it cuts is joined."""
    fh.seek(start)
    pos = start  # the file offset of the first byte not yet parsed (``rest`` starts there)
    rest = b""
    while True:
        block = fh.read(_BLOCK)
        if not block:
            return
        first = block.find(b"\n")
        if first < 0:
            rest += block
            continue
        begin = 0
        if rest:
            head = rest + block[: first + 1]
            yield parse_block(head, pos)
            pos += len(head)
            begin = first + 1
        cut = block.rfind(b"\n") + 1
        if cut > begin:
            yield parse_block(block, pos - begin, begin, cut)
            pos += cut - begin
        rest = block[cut:]


def scan(fh: BinaryIO, start: int = 0) -> Iterator[Indexed]:
    """Every complete line from byte ``start`` of an open binary file (a torn tail is left)."""
    for rows, payloads in scan_blocks(fh, start):
        extra = dict(payloads)
        for i, row in enumerate(rows):
            yield Entry(*row), extra.get(i)


def _connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the index file in WAL mode, unsynchronised: a cache, so losing commits
    only leaves it behind. ``synchronous=OFF`` comes first, so neither the switch to WAL nor
    the schema of a new file waits for a disk flush (6.6 ms -> 1.1 ms to create one)."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_SCHEMA)
    return db


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
    def check_files(self) -> None:
        """Refuse (fsutil.HardLinkedError) an index file or SQLite side file that has other
        hard links: SQLite would write through it into whatever file that name also is."""
        for suffix in SIDE_SUFFIXES:
            path = Path(f"{self.path}{suffix}")
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            fsutil.check_one_link(path, st)

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.check_files()  # before SQLite opens any of them
            try:
                if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
                    self._remove_files()
                self._db = _connect(self.path)
            except sqlite3.Error:
                self._drop()
                self._db = _connect(self.path)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _remove_files(self) -> None:
        for suffix in SIDE_SUFFIXES:
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
        except fsutil.HardLinkedError:
            raise  # refused, never dropped and rebuilt over
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
            fh = self._read_ledger()
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
            with self._read_ledger() as fh:
                if not self._same_ledger(fh, meta):
                    return "its first line is not the one indexed (the ledger was replaced or rewritten)"
                if end > os.fstat(fh.fileno()).st_size:
                    return f"it is shorter than when it was indexed up to seq {seq} (lines were cut off the end)"
                if not self._holds(fh, seq, meta.get("hash", ""), end):
                    return f"its line seq {seq} is not the one indexed (the ledger was rewritten)"
        except fsutil.HardLinkedError:
            raise
        except (sqlite3.Error, IndexError_, OSError, ValueError):
            return ""  # an unreadable index is rebuilt; it says nothing about the ledger
        return ""

    def _read_ledger(self) -> BinaryIO:
        """The ledger for reading: a regular file, not through a link."""
        return os.fdopen(fsutil.open_regular(self.ledger_path, os.O_RDONLY), "rb")

    def _same_ledger(self, fh: BinaryIO, meta: dict[str, str]) -> bool:
        first = meta.get("first", "")
        if not first:
            return True
        fh.seek(0)
        line = fh.readline()
        if not line.endswith(b"\n"):
            return False
        entry, _ = parse_line(line.rstrip(b"\n"), 0)
        return str(entry.hash) == first

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
        return entry.seq == seq and str(entry.hash) == last

    def _catch_up(self, fh: BinaryIO, end: int) -> None:
        batch: list[Indexed] = []
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
        db.execute("DELETE FROM types")
        db.execute("DELETE FROM meta")
        db.execute("COMMIT")
        self._set_meta({"version": INDEX_VERSION, "end": "0", "seq": "0", "hash": "", "first": ""})

    def _rebuild(self) -> str:
        try:
            fh = self._read_ledger()
        except FileNotFoundError:
            self._reset()
            return "rebuilt"
        with fh:
            return self._rebuild_from(fh)

    def _rebuild_from(self, fh: BinaryIO) -> str:
        """Index the whole file into a new database beside the index, then give it the index's
        name: a crash leaves the old index or the new one, never half of either, so the build
        can skip SQLite's journal. The secondary indexes are built once at the end (a sort
        beats a million B-tree inserts)."""
        self.rebuilt += 1
        self.close()
        build = Path(f"{self.path}{_BUILD_SUFFIX}")
        self.check_files()  # before anything is written beside a hard-linked name
        try:
            with _unwritable():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(build)
                os.close(fsutil.open_regular(build, os.O_RDWR | os.O_CREAT | os.O_EXCL))
            db = sqlite3.connect(build, isolation_level=None)
            try:
                _bulk_load(db, fh)
            finally:
                db.close()
            self.check_files()
            for suffix in SIDE_SUFFIXES[1:-1]:  # the old index's journal is not the new one's
                with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                    os.unlink(f"{self.path}{suffix}")
            with _unwritable():
                os.replace(build, self.path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(build)
        return "rebuilt"

    def add(self, lines: Sequence[Indexed]) -> None:
        """Index lines an append just wrote (entry and run payload); the caller holds the
        ledger lock and the lines are in the file. Out of step (another process appended
        lines this one never saw) the index is caught up from the file instead."""
        if not lines:
            return
        try:
            meta = self._meta()
            end = int(meta.get("end", "-1"))
            for entry, _ in lines:  # only lines that follow the index's end without a gap
                if entry.off != end:
                    break
                end = entry.off + entry.length
            else:
                if meta.get("version") == INDEX_VERSION:
                    self._insert(lines)
                    return
            self.sync()  # another process appended in between: read them from the file
            return
        except (sqlite3.Error, IndexError_, ValueError):
            self._drop()

    def _insert(self, batch: Sequence[Indexed]) -> None:
        if not batch:
            return
        db = self._open()
        db.execute("BEGIN")
        try:
            runs = self._ids(db, "runs", "run_id", {e.run_id for e, _ in batch})
            types = self._ids(db, "types", "name", {e.type for e, _ in batch})
            db.executemany(
                "INSERT INTO events (seq, off, len, run, type, ts, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.seq, e.off, e.length, runs[e.run_id], types[e.type], e.ts, e.hash)
                    for e, _ in batch
                ],
            )
            spans: dict[str, tuple[int, int]] = {}
            for e, _ in batch:
                lo, hi = spans.get(e.run_id, (e.seq, e.seq))
                spans[e.run_id] = (min(lo, e.seq), max(hi, e.seq))
            db.executemany(
                "UPDATE runs SET first_seq = min(coalesce(first_seq, ?), ?), "
                "last_seq = max(coalesce(last_seq, ?), ?) WHERE id = ?",
                [(lo, lo, hi, hi, runs[r]) for r, (lo, hi) in sorted(spans.items())],
            )
            for e, payload in batch:
                if payload is not None:
                    _run_event(db, e, payload, runs[e.run_id])
            last = batch[-1][0]
            meta = {
                "end": str(last.off + last.length),
                "seq": str(last.seq),
                "hash": str(last.hash),
            }
            if batch[0][0].seq == 1:
                meta["first"] = str(batch[0][0].hash)
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", sorted(meta.items())
            )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    @staticmethod
    def _ids(db: sqlite3.Connection, table: str, column: str, names: set[str]) -> dict[str, int]:
        """The numbers of ``names`` in ``table`` (``runs`` or ``types``), new ones added."""
        ordered = sorted(names)
        db.executemany(
            f"INSERT OR IGNORE INTO {table} ({column}) VALUES (?)", [(n,) for n in ordered]
        )
        out: dict[str, int] = {}
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.update(
                db.execute(
                    f"SELECT {column}, id FROM {table} WHERE {column} IN ({marks})", chunk
                ).fetchall()
            )
        return out

    # -- queries ----------------------------------------------------------------------------
    def _id(self, table: str, column: str, name: str) -> int | None:
        row = self._open().execute(f"SELECT id FROM {table} WHERE {column} = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

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
        args: list[object] = []
        use = "events_ts" if since is not None else None
        if event_type is not None and not (prefix and not event_type):
            if prefix:
                upper = event_type[:-1] + chr(ord(event_type[-1]) + 1)
                kinds = [
                    int(r[0])
                    for r in self._open().execute(
                        "SELECT id FROM types WHERE name >= ? AND name < ?", (event_type, upper)
                    )
                ]
            else:
                kind = self._id("types", "name", event_type)
                kinds = [] if kind is None else [kind]
            if not kinds:
                return []
            where.append(f"e.type IN ({','.join('?' * len(kinds))})")
            args += kinds
            use = "events_type"
        if run_id is not None:
            run = self._id("runs", "run_id", run_id)
            if run is None:
                return []
            where.append("e.run = ?")
            args.append(run)
            use = "events_run"  # a run's lines are few: never scan a type's or a time's
        if since is not None:
            where.append("e.ts >= ?")
            args.append(since)
        sql = _ENTRY.replace(" e JOIN", f" e INDEXED BY {use} JOIN" if use else " e JOIN", 1)
        sql += " WHERE " + " AND ".join(where) if where else ""
        if by_seq:
            sql += " ORDER BY e.seq DESC" if newest_first else " ORDER BY e.seq"
            if limit is not None:
                sql += " LIMIT ?"
                args.append(limit)
            return [_entry(row) for row in self._open().execute(sql, args)]
        if limit is None:
            rows = [_entry(row) for row in self._open().execute(sql, args)]
            rows.sort(key=_display, reverse=newest_first)
            return rows
        # The last ``limit`` in display order: read by time from the newest, then every line
        # that shares the oldest instant held (the event type decides between them).
        sql += " ORDER BY e.ts DESC"
        held: list[Entry] = []
        for row in self._open().execute(sql, args):
            entry = _entry(row)
            if len(held) >= limit and entry.ts < held[-1].ts:
                break
            held.append(entry)
        held.sort(key=_display, reverse=True)
        out = held[:limit]
        return out if newest_first else out[::-1]

    def entries_after(self, seq: int, event_type: str, limit: int) -> list[Entry]:
        """The first ``limit`` lines of ``event_type`` after ``seq``, in chain order."""
        kind = self._id("types", "name", event_type)
        if kind is None:
            return []
        # Forward from ``seq`` in chain order: the ones wanted are usually a few lines on.
        rows = self._open().execute(
            _ENTRY.replace(" e JOIN", " e NOT INDEXED JOIN", 1)
            + " WHERE e.seq > ? AND e.type = ? ORDER BY e.seq LIMIT ?",
            (seq, kind, limit),
        )
        return [_entry(row) for row in rows]

    def entry(self, seq: int) -> Entry | None:
        row = self._open().execute(_ENTRY + " WHERE e.seq = ?", (seq,)).fetchone()
        return None if row is None else _entry(row)

    def last_seq(self) -> int:
        """The seq of the last line the index holds (0 for none)."""
        return int(self._meta().get("seq", "0"))

    def end(self) -> int:
        """The byte offset just after the last line the index holds."""
        return int(self._meta().get("end", "0"))

    def run_ids_since(self, event_type: str, floor_ts: str, prefix: str = "") -> set[str]:
        kind = self._id("types", "name", event_type)
        if kind is None:
            return set()
        rows = self._open().execute(
            "SELECT DISTINCT r.run_id FROM events e JOIN runs r ON r.id = e.run "
            "WHERE e.type = ? AND e.ts >= ?",
            (kind, floor_ts),
        )
        return {str(r[0]) for r in rows if str(r[0]).startswith(prefix)}

    def runs(
        self, *, status: str | None = None, limit: int | None = None, started: bool = False
    ) -> list[RunRow]:
        """Runs newest first (by their first event); ``started``: only those with a
        run.started (runs, not the cranks that made them)."""
        sql = _RUN + " WHERE first_seq IS NOT NULL AND run_id != ''"
        args: list[object] = []
        if started:
            sql += " AND started_ts IS NOT NULL"
        if status is not None:
            sql += " AND upper(coalesce(status, 'RUNNING')) = upper(?)"
            args.append(status)
        sql += " ORDER BY first_seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_run_row(row) for row in self._open().execute(sql, args).fetchall()]

    def run_ids(self) -> list[str]:
        """Every run ID the ledger names (for suggesting the nearest to a mistyped one)."""
        rows = self._open().execute(
            "SELECT run_id FROM runs WHERE first_seq IS NOT NULL AND run_id != ''"
        )
        return sorted(str(r[0]) for r in rows)

    def newest_with(self, event_type: str) -> str | None:
        """The run of the last line of ``event_type`` in chain order (None: there is none)."""
        found = self.entries(event_type=event_type, by_seq=True, newest_first=True, limit=1)
        return found[0].run_id if found else None

    def run(self, run_id: str) -> RunRow | None:
        """The run's row; None for an unknown run and for "" (events of no run)."""
        if not run_id:
            return None
        row = self._open().execute(_RUN + " WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None or row[2] is None else _run_row(row)


_RUN = (
    "SELECT run_id, kind, first_seq, last_seq, started_ts, base_commit, workers, status, "
    "finished_seq, finished_ts FROM runs"
)


def _entry(row: Sequence[object]) -> Entry:
    seq, off, length, run_id, kind, ts, digest = row
    return Entry(
        int(str(seq)), int(str(off)), int(str(length)), str(run_id), str(kind), str(ts),
        int(str(digest)),
    )  # fmt: skip


def _display(e: Entry) -> tuple[str, str, int]:
    return (e.ts, e.type, e.seq)


def _run_row(row: Sequence[object]) -> RunRow:
    workers = orjson.loads(str(row[6])) if row[6] else []
    return RunRow(
        str(row[0]), _text(row[1]), int(str(row[2])), int(str(row[3])), _text(row[4]),
        _text(row[5]), [str(w) for w in workers] if isinstance(workers, list) else [],
        _text(row[7]), int(str(row[8])) if row[8] is not None else None, _text(row[9]),
    )  # fmt: skip


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@contextlib.contextmanager
def _unwritable() -> Iterator[None]:
    """An index file that cannot be made (a read-only folder, a folder in the way) is what
    SQLite reports when it cannot open one: the index cannot be written (a link is refused)."""
    try:
        yield
    except fsutil.NotRegularFileError:
        raise
    except OSError as exc:
        raise sqlite3.OperationalError(exc.strerror or str(exc)) from None


def _bulk_load(db: sqlite3.Connection, fh: BinaryIO) -> None:
    """Fill a new, empty index database from the whole ledger in one transaction."""
    for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=MEMORY", "cache_size=-32768"):
        db.execute(f"PRAGMA {pragma}")
    db.executescript(_SCHEMA)
    for name in _SECONDARY:
        db.execute(f"DROP INDEX {name}")
    runs: dict[str, int] = {}
    types: dict[str, int] = {}
    run_events: list[tuple[Row, dict[str, object]]] = []
    first: Row | None = None
    last: Row | None = None
    db.execute("BEGIN")
    for rows, payloads in scan_blocks(fh, 0):
        if not rows:
            continue
        for name in {r[3] for r in rows}.difference(runs):
            runs[name] = len(runs) + 1
        for name in {r[4] for r in rows}.difference(types):
            types[name] = len(types) + 1
        db.executemany(
            "INSERT INTO events (seq, off, len, run, type, ts, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(s, o, n, runs[r], types[t], ts, h) for s, o, n, r, t, ts, h in rows],
        )
        run_events += [(rows[i], payload) for i, payload in payloads]
        first = first or rows[0]
        last = rows[-1]
    db.executemany("INSERT INTO runs (id, run_id) VALUES (?, ?)", [(i, r) for r, i in runs.items()])
    db.executemany("INSERT INTO types (id, name) VALUES (?, ?)", [(i, t) for t, i in types.items()])
    db.execute(
        "UPDATE runs SET first_seq = s.lo, last_seq = s.hi FROM "
        "(SELECT run, min(seq) AS lo, max(seq) AS hi FROM events GROUP BY run) AS s "
        "WHERE runs.id = s.run"
    )
    started = [(Entry(*r), p, runs[r[3]]) for r, p in run_events if r[4] == "run.started"]
    finished = [(Entry(*r), p, runs[r[3]]) for r, p in run_events if r[4] == "run.finished"]
    db.executemany(_STARTED, [_started(e, p, run) for e, p, run in started])  # in line order:
    db.executemany(_FINISHED, [_finished(e, p, run) for e, p, run in finished])  # last wins
    meta = {"version": INDEX_VERSION, "end": "0", "seq": "0", "hash": "", "first": ""}
    if last is not None:
        meta.update(end=str(last[1] + last[2]), seq=str(last[0]), hash=str(last[6]))
    if first is not None and first[0] == 1:
        meta["first"] = str(first[6])
    db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(meta.items()))
    db.execute("COMMIT")
    db.executescript(_SCHEMA)


_STARTED = "UPDATE runs SET kind = ?, started_ts = ?, base_commit = ?, workers = ? WHERE id = ?"
_FINISHED = "UPDATE runs SET status = ?, finished_seq = ?, finished_ts = ? WHERE id = ?"


def _started(e: Entry, payload: dict[str, object], run: int) -> tuple[object, ...]:
    """The run.started line's values for its run's row (``_STARTED``)."""
    workers = payload.get("workers")
    return (
        _text(payload.get("kind")), e.ts, _text(payload.get("base_commit")),
        orjson.dumps(workers).decode() if isinstance(workers, list) else "[]", run,
    )  # fmt: skip


def _finished(e: Entry, payload: dict[str, object], run: int) -> tuple[object, ...]:
    """The run.finished line's values for its run's row (``_FINISHED``)."""
    return (_text(payload.get("status")), e.seq, e.ts, run)


def _run_event(db: sqlite3.Connection, e: Entry, payload: dict[str, object], run: int) -> None:
    """What a run.started or run.finished line says about its run."""
    if e.type == "run.started":
        db.execute(_STARTED, _started(e, payload, run))
    elif e.type == "run.finished":
        db.execute(_FINISHED, _finished(e, payload, run))
