"""The append-only, hash-chained JSONL ledger.

Line format: one canonical JSON object (sorted keys, no spaces, UTF-8, ``\\n``) with
``event_type``, ``hash``, ``payload``, ``prev_hash``, ``run_id``, ``seq``, ``stage``,
``ts_utc``. ``hash`` is sha256 of the canonical line *without* the ``hash`` member; because
keys are sorted and ``hash`` is never last, that is exactly the stored line with the bytes
``"hash":"<64 hex>",`` cut out, which lets ``verify`` check stored bytes without re-encoding.

The ledger, its head file and its lock file must be regular files: each is opened without
following a link and without blocking (a FIFO would hang the reader), and checked on the
open handle, so a link planted at one of those names can neither redirect an append nor
hide a cut. Opened to be written, each (and the run index's SQLite files) must also have one
link: a hard link to someone's file there is refused, never written through.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import add, methodcaller
from pathlib import Path
from typing import Any, BinaryIO, Concatenate, ParamSpec, TypeVar

import orjson

from tools.codex.factory.core.paths import head_path, lock_path
from tools.codex.factory.errors import (
    BlockedError,
    FactoryError,
    LedgerCorruptError,
    TornTailError,
    UsageError,
)
from tools.codex.factory.infra import fsutil, jsonio
from tools.codex.factory.infra.clock import Clock, format_ts, parse_instant
from tools.codex.factory.infra.locks import ProcessLock
from tools.codex.factory.ledger.index import (
    RUN_EVENTS,
    Entry,
    Indexed,
    IndexError_,
    LedgerIndex,
    RunRow,
    short_hash,
)

GENESIS = "0" * 64
EVENT_TYPE_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
TOKEN_RE = re.compile(r"[A-Za-z0-9._-]*")
BLOCK = 64 * 1024
HEAD_RECORD = 100
HEAD_READ_LIMIT = 4096  # a head file is one HEAD_RECORD; anything far larger is not one
# Appended lines reach the index in batches, inside the lock (a whole batch costs about what
# one line alone would); a query or close() flushes the rest first.
INDEX_BATCH = 256
_HASH_KEY = b'"hash":"'
_PREV_KEY = b'"prev_hash":"'
_SEQ_KEY = b'"seq":'
_O_BINARY = getattr(os, "O_BINARY", 0)
# The one stored form of ts_utc (RFC 3339, UTC, microseconds, ``Z``): fixed width, so byte
# order is time order. Anything else (a 3-digit year, an offset, no fraction) breaks the
# never-decreasing rule's meaning and fails verify.
_TS_FORM = (
    rb"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z"
)
_TS_RE = re.compile(_TS_FORM)
_TS_STR_RE = re.compile(_TS_FORM.decode("ascii"))
TS_FORM_HINT = "YYYY-MM-DDTHH:MM:SS.ffffffZ"
# The fix shown (preflight, doctor) when verify fails only because the head file is missing.
MISSING_HEAD_FIX = (
    "run `factory ledger verify --no-head` if you removed it on purpose; otherwise investigate"
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _io_error(exc: OSError, path: Path, base: Path | None = None) -> FactoryError:
    """One line naming the path for an OSError on the ledger, its head or its lock file."""
    where = exc.filename if exc.filename else path
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, fsutil.HardLinkedError):
        return BlockedError(
            f"ledger: {_shown(Path(where), base)} has {exc.nlink} hard links; the ledger's files "
            "must be regular files with one link: remove it"
        )
    if isinstance(exc, fsutil.NotRegularFileError) and exc.kind != "a directory":
        return BlockedError(
            f"ledger: {_shown(Path(where), base)} is {exc.kind}; the ledger's files must be "
            "regular files: remove it"
        )
    if isinstance(
        exc, (IsADirectoryError, NotADirectoryError, FileExistsError, fsutil.NotRegularFileError)
    ):
        return UsageError(
            f"ledger: {where}: {reason} (the ledger, its head and lock files must be files inside a "
            "folder: fix ledger.path or paths.runs_dir, or move what is in the way)"
        )
    return BlockedError(f"ledger: {where}: {reason}")


def _shown(path: Path, base: Path | None) -> str:
    """``path`` relative to ``base`` (the repository) when it is inside it, for messages."""
    if base is not None:
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            pass
    return str(path)


def _guarded(fn: Callable[Concatenate[Ledger, _P], _R]) -> Callable[Concatenate[Ledger, _P], _R]:
    """Turn an OSError on the ledger's files into a one-line error naming the path."""

    @functools.wraps(fn)
    def wrapper(self: Ledger, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(self, *args, **kwargs)
        except OSError as exc:
            raise _io_error(exc, self.path, self.base) from None

    return wrapper


@dataclass(frozen=True)
class Event:
    seq: int
    ts_utc: str
    event_type: str
    run_id: str
    stage: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_line(cls, line: bytes) -> Event:
        obj = orjson.loads(line)
        return cls(
            seq=obj["seq"],
            ts_utc=obj["ts_utc"],
            event_type=obj["event_type"],
            run_id=obj["run_id"],
            stage=obj["stage"],
            payload=obj["payload"],
            prev_hash=obj["prev_hash"],
            hash=obj["hash"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "hash": self.hash,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "run_id": self.run_id,
            "seq": self.seq,
            "stage": self.stage,
            "ts_utc": self.ts_utc,
        }

    def sort_key(self) -> tuple[str, str, int]:
        return (self.ts_utc, self.event_type, self.seq)


def encode(body: dict[str, Any]) -> tuple[bytes, str]:
    """Return the stored line (with ``\\n``) and its hash for an event body without ``hash``.

    With sorted keys ``hash`` follows ``event_type`` (a plain dotted name, never escaped), so
    the stored line is the hashed bytes with ``"hash":"<hex>",`` spliced in after it.
    """
    unhashed = jsonio.canonical(body)
    digest = hashlib.sha256(unhashed).hexdigest()
    k = 17 + len(body["event_type"])  # len('{"event_type":"') + name + '",'
    line = b"".join((unhashed[:k], b'"hash":"', digest.encode("ascii"), b'",', unhashed[k:], b"\n"))
    return line, digest


def _indexed(body: dict[str, Any], line: bytes, digest: str, off: int) -> Indexed:
    """What the index records for a line just appended, from the values that made it (no
    re-parse); a run event's payload is read back from the line, not the caller's object."""
    etype = body["event_type"]
    entry = Entry(
        body["seq"], off, len(line), body["run_id"], etype, body["ts_utc"], int(digest[:15], 16)
    )
    return entry, orjson.loads(line)["payload"] if etype in RUN_EVENTS else None


def line_hash_ok(line: bytes) -> bool:
    """Does the stored ``hash`` equal sha256 of the line without its hash member?"""
    i = line.find(_HASH_KEY)
    if i < 0 or line[i + 72 : i + 74] != b'",':
        return False
    stored = line[i + 8 : i + 72]
    body = line[:i] + line[i + 74 :]
    return hashlib.sha256(body).hexdigest().encode("ascii") == stored


@dataclass
class Head:
    seq: int
    hash: str
    ts_utc: str


@dataclass
class VerifyResult:
    ok: bool
    lines: int
    head: Head
    first_bad_seq: int | None = None
    reason: str = ""
    torn_tail: bool = False
    torn_bytes: int = 0
    head_file: str = "absent"
    notes: list[str] = field(default_factory=list)
    head_missing: bool = False  # failed only for want of the head file (not in the JSON)

    @property
    def first_bad_line(self) -> int | None:
        """The first stored line that fails the line checks (hash, link, seq, ts_utc), or None:
        a torn tail or a head file that disagrees is about the ledger's end, not one of its lines."""
        if self.ok or self.torn_tail or self.head_file in ("ahead", "mismatch"):
            return None
        return self.first_bad_seq

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "lines": self.lines,
            "head": {"seq": self.head.seq, "hash": self.head.hash},
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "torn_tail": self.torn_tail,
            "torn_bytes": self.torn_bytes,
            "head_file": self.head_file,
            "notes": sorted(self.notes),
        }


@dataclass(frozen=True)
class Filter:
    """Event filters shared by ``ledger``, ``watch`` and replay."""

    run_id: str | None = None
    status: str | None = None
    kind: str | None = None
    actor: str | None = None
    event_type: str | None = None
    rc: int | None = None
    since: str | None = None

    def matches(self, ev: Event) -> bool:
        p = ev.payload
        if self.run_id is not None and ev.run_id != self.run_id:
            return False
        if self.event_type is not None:
            pat = self.event_type
            if pat.endswith("*"):
                if not ev.event_type.startswith(pat[:-1]):
                    return False
            elif ev.event_type != pat:
                return False
        if self.status is not None and str(p.get("status", "")).upper() != self.status.upper():
            return False
        if self.kind is not None and p.get("kind") != self.kind:
            return False
        if self.actor is not None and p.get("actor") != self.actor:
            return False
        if self.rc is not None and p.get("rc") != self.rc:
            return False
        return not (self.since is not None and ev.ts_utc < self.since)

    @classmethod
    def build(
        cls,
        run_id: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        actor: str | None = None,
        event_type: str | None = None,
        rc: int | None = None,
        since: str | None = None,
    ) -> Filter:
        since_ts = (
            format_ts(parse_instant(since, "since", arg="since", bounded=False)) if since else None
        )
        return cls(run_id, status, kind, actor, event_type, rc, since_ts)


def run_row_of(run_id: str, events: Sequence[Event]) -> RunRow:
    """The index's row for a run, from its events (what the index holds, computed by a scan)."""
    kind = started = base = status = finished_ts = None
    workers: list[str] = []
    finished_seq = None
    for ev in events:
        p = ev.payload
        if ev.event_type == "run.started" and isinstance(p, dict):
            kind, started = _text(p.get("kind")), ev.ts_utc
            base = _text(p.get("base_commit"))
            w = p.get("workers")
            workers = [str(x) for x in w] if isinstance(w, list) else []
        elif ev.event_type == "run.finished" and isinstance(p, dict):
            status, finished_seq, finished_ts = _text(p.get("status")), ev.seq, ev.ts_utc
    seqs = [ev.seq for ev in events]
    return RunRow(
        run_id, kind, min(seqs), max(seqs), started, base, workers, status, finished_seq,
        finished_ts,
    )  # fmt: skip


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class StaleIndexError(Exception):
    """A line is not where the index says: the index is rebuilt (it is only a cache)."""


def _strip_eol(line: bytes) -> bytes:
    """Readers accept ``\\r\\n``; the stored form for hashing is without line end."""
    return line[:-1] if line.endswith(b"\r") else line


class Ledger:
    """One ledger file plus its head mirror and lock file."""

    def __init__(
        self,
        path: Path,
        clock: Clock,
        *,
        fsync: bool = True,
        lock_timeout: float = 30.0,
        base: Path | None = None,
        index: bool = True,
    ) -> None:
        self.path = path
        self.base = base  # messages name the files relative to it (the repository)
        self.head_path = head_path(path)
        self.lock_path = lock_path(path)
        self.clock = clock
        self.fsync = fsync
        self.lock_timeout = lock_timeout
        self._lock: ProcessLock | None = None
        self._path_s = str(path)
        self._fd: int | None = None
        self._head_fd: int | None = None
        self._cache: tuple[int, int, int, Head] | None = None  # (ino, size, mtime_ns, head)
        self._use_index = index
        self._index: LedgerIndex | None = None
        self._pending: list[Indexed] = []  # appended lines the index has not seen
        # Told of each event this object appended, after its lock is released (progress lines);
        # what it raises is its own affair, never the append's.
        self.on_append: Callable[[Event], None] | None = None
        # Told once, (asked, used), when a pinned clock is earlier than the ledger's last
        # event and the append stamps that later time instead (times never go back).
        self.on_clock_raised: Callable[[str, str], None] | None = None
        self._raised_told = False

    # -- locking -------------------------------------------------------------------------
    @_guarded
    def lock(self) -> ProcessLock:
        """The cross-process lock (re-entrant within this object)."""
        if self._lock is None:
            self._lock = _LedgerLock(
                self.lock_path, self.lock_timeout, f"ledger lock for {self.path.name}", self.base
            )
        return self._lock

    def close(self) -> None:
        if self._pending and self._lock is not None:
            self._flush_soon()
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._lock is not None:
            self._lock.close()
        for name in ("_fd", "_head_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading the end -----------------------------------------------------------------
    def _open_append(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = fsutil.open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        return self._fd

    def _open_read(self) -> BinaryIO | None:
        """The ledger opened for reading (a regular file, not through a link), or None."""
        try:
            fd = fsutil.open_regular(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        return os.fdopen(fd, "rb")

    @_guarded
    def read_head(self) -> Head:
        """The last complete event's (seq, hash, ts), reading only the end of the file.

        Raises TornTailError if the file ends in an unterminated fragment, LedgerCorruptError
        if the last line is not an event or its ts_utc is not in the stored form (appending
        after it would carry the bad timestamp on).
        """
        fh = self._open_read()
        if fh is None:
            return Head(0, GENESIS, "")
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return Head(0, GENESIS, "")
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                pos = _last_newline(fh, size)
                raise TornTailError(
                    f"ledger {self.path.name} ends with a torn line ({size - pos - 1} bytes after the last "
                    "newline, a crash mid-write): run `factory ledger repair` to move it aside"
                )
            line = _last_line(fh, size)
        try:
            ev = Event.from_line(_strip_eol(line))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise LedgerCorruptError(
                f"ledger {self.path.name}: last line is not a valid event; run `factory ledger verify`"
            ) from None
        if not isinstance(ev.ts_utc, str) or not _TS_STR_RE.fullmatch(ev.ts_utc):
            raise LedgerCorruptError(
                f"ledger {self.path.name}: seq {ev.seq}: ts_utc {ev.ts_utc!r} is not {TS_FORM_HINT}; "
                "run `factory ledger verify`"
            )
        return Head(ev.seq, ev.hash, ev.ts_utc)

    def _head_locked(self) -> Head:
        try:
            st = os.lstat(self._path_s)
        except FileNotFoundError:
            self._cache = None
            self.close()
            return Head(0, GENESIS, "")
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._cache is not None and self._cache[:3] == key:
            return self._cache[3]  # the cache came from our fd's fstat: same inode, unchanged
        if self._fd is not None and os.fstat(self._fd).st_ino != st.st_ino:
            self.close()  # the file was replaced under us: append to the new one
        head = self.read_head()
        self._cache = (*key, head)
        return head

    # -- append --------------------------------------------------------------------------
    @_guarded
    def append(self, event_type: str, run_id: str, stage: str, payload: dict[str, Any]) -> Event:
        with self.lock():
            ev = self.append_locked(event_type, run_id, stage, payload)
        if self.on_append is not None:
            with contextlib.suppress(OSError, ValueError):  # a closed stderr stops no run
                self.on_append(ev)
        return ev

    @_guarded
    def append_locked(
        self, event_type: str, run_id: str, stage: str, payload: dict[str, Any]
    ) -> Event:
        """Append while the caller already holds :meth:`lock`."""
        if not EVENT_TYPE_RE.fullmatch(event_type):
            raise UsageError(f"ledger: event type {event_type!r} is not dotted lower-case")
        for name, value in (("run_id", run_id), ("stage", stage)):
            if not TOKEN_RE.fullmatch(value):
                raise UsageError(f"ledger: {name} {value!r} has characters outside [A-Za-z0-9._-]")
        if not isinstance(payload, dict):
            raise UsageError("ledger: payload must be an object")
        head = self._head_locked()
        asked = ts = self.clock.now_ts()
        if head.ts_utc and ts < head.ts_utc:
            ts = head.ts_utc
        body = {
            "event_type": event_type,
            "payload": payload,
            "prev_hash": head.hash,
            "run_id": run_id,
            "seq": head.seq + 1,
            "stage": stage,
            "ts_utc": ts,
        }
        line, digest = encode(body)
        fd = self._open_append()
        self._open_head()  # a head file that must be refused is refused before the line
        if self._use_index and len(self._pending) + 1 >= INDEX_BATCH:
            index = self._index_obj()  # so is an index file this append's flush would refuse
            try:
                index.check_files()
            except fsutil.HardLinkedError as exc:
                raise _io_error(exc, index.path, self.base) from None
        _write_all(fd, line)
        if self.fsync:
            os.fsync(fd)
        new_head = Head(head.seq + 1, digest, ts)
        self._write_head_file(new_head)
        if ts != asked:  # said once the event is written with that time, not before
            self._tell_raised(asked, ts)
        st = os.fstat(fd)
        self._cache = (st.st_ino, st.st_size, st.st_mtime_ns, new_head)
        if self._use_index:
            self._pending.append(_indexed(body, line, digest, st.st_size - len(line)))
            if len(self._pending) >= INDEX_BATCH:
                self._flush_locked()
        return Event(head.seq + 1, ts, event_type, run_id, stage, payload, head.hash, digest)

    def _tell_raised(self, asked: str, used: str) -> None:
        """A pinned clock behind the ledger is said once, not silently raised."""
        if self.clock.pinned is None or self._raised_told or self.on_clock_raised is None:
            return
        self._raised_told = True
        with contextlib.suppress(OSError, ValueError):  # a closed stderr stops no run
            self.on_clock_raised(asked, used)

    def _write_head_file(self, head: Head) -> None:
        """Mirror (seq, hash) so a cut-off ledger shows as shorter than its head.

        The record is fixed-width (HEAD_RECORD bytes) and overwritten in place with one write
        at offset 0: a single-sector write, so a reader sees the old or the new record, and no
        rename means no extra metadata for the next fsync to flush.
        """
        record = jsonio.canonical({"hash": head.hash, "seq": head.seq})
        data = record.ljust(HEAD_RECORD - 1) + b"\n"
        fd = self._open_head()
        if hasattr(os, "pwrite"):
            n = os.pwrite(fd, data, 0)
        else:  # Windows
            os.lseek(fd, 0, os.SEEK_SET)
            n = os.write(fd, data)
        if n != len(data):
            raise BlockedError(
                f"ledger head file {self.head_path.name}: short write ({n} of {len(data)} bytes)"
            )

    def _open_head(self) -> int:
        """The head file, kept open for writing (a regular file, not through a link)."""
        if self._head_fd is None:
            self._head_fd = fsutil.open_regular(self.head_path, os.O_RDWR | os.O_CREAT)
            if os.fstat(self._head_fd).st_size > HEAD_RECORD:
                os.ftruncate(self._head_fd, HEAD_RECORD)
        return self._head_fd

    @_guarded
    def read_head_file(self) -> tuple[int, str] | None:
        try:
            data = fsutil.read_regular(self.head_path, HEAD_READ_LIMIT + 1)
        except FileNotFoundError:
            return None
        if len(data) > HEAD_READ_LIMIT:
            raise LedgerCorruptError(
                f"ledger head file {self.head_path.name} is unreadable (over {HEAD_READ_LIMIT} bytes)"
            )
        try:
            obj = orjson.loads(data.strip())
            return int(obj["seq"]), str(obj["hash"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise LedgerCorruptError(
                f"ledger head file {self.head_path.name} is unreadable"
            ) from None

    # -- the run index ---------------------------------------------------------------------
    def _index_obj(self) -> LedgerIndex:
        if self._index is None:
            self._index = LedgerIndex(self.path)
        return self._index

    def _flush_locked(self) -> None:
        """Hand the pending lines to the index (the caller holds the lock). An index that
        cannot take them is dropped: it is caught up or rebuilt from the file when next used."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        index = self._index_obj()
        try:
            index.add(batch)
        except fsutil.HardLinkedError as exc:
            raise _io_error(exc, index.path, self.base) from None
        except (sqlite3.Error, OSError):
            index.forget()

    def _flush_soon(self) -> None:
        """At close: flush under the lock if it is free within a moment; otherwise leave the
        lines to the next open's catch-up (they are in the file; the index is only behind)."""
        try:
            self.lock().acquire(timeout=1.0)
        except FactoryError:
            self._pending = []
            return
        try:
            self._flush_locked()
        except FactoryError:
            self._pending = []  # an index refused: the next open says so, before it is used
        finally:
            self.lock().release()

    def indexed(self) -> LedgerIndex | None:
        """The index, caught up with the file under the lock; None when there is no ledger
        or the index cannot serve (it cannot be written, or a line cannot be read): callers
        then read the file itself, which names any corrupt line."""
        if not self._use_index or not (self.path.is_file() and not self.path.is_symlink()):
            return None
        with self.lock():
            self._flush_locked()
            index = self._index_obj()
            try:
                index.sync()
            except fsutil.HardLinkedError as exc:
                raise _io_error(exc, index.path, self.base) from None
            except (sqlite3.Error, IndexError_, OSError):
                index.forget()
                return None
        return index

    @_guarded
    def reindex(self) -> tuple[int, Path]:
        """Rebuild the run index from the whole file (it is only a cache: nothing is lost);
        (lines indexed, the index file)."""
        if not (self.path.is_file() and not self.path.is_symlink()):
            fh = self._open_read()  # not a ledger: the open says what is there instead
            if fh is not None:
                fh.close()
            raise UsageError(f"ledger {self.path.name}: no ledger yet, nothing to index")
        with self.lock():
            self._pending = []  # in the file already: the rebuild reads them
            index = self._index_obj()
            try:
                index.forget()
                index.sync()
                return index.last_seq(), index.path
            except IndexError_ as exc:
                raise LedgerCorruptError(
                    f"ledger {self.path.name}: {exc}; run `factory ledger verify`"
                ) from None
            except sqlite3.Error as exc:
                index.forget()
                raise BlockedError(
                    f"ledger index {_shown(index.path, self.base)} cannot be written: {exc}"
                ) from None

    @_guarded
    def read_entries(self, entries: Sequence[Entry]) -> list[Event]:
        """The events at the index's offsets, each checked to be the line the index says
        (its seq and hash): a line that is not is :class:`StaleIndexError`."""
        out: list[Event] = []
        if not entries:
            return out
        fh = self._open_read()
        if fh is None:
            raise StaleIndexError("the ledger is gone")
        with fh:
            for e in entries:
                fh.seek(e.off)
                data = fh.read(e.length)
                if not data.endswith(b"\n"):
                    raise StaleIndexError(f"no line ends at byte {e.off + e.length}")
                try:
                    ev = Event.from_line(_strip_eol(data[:-1]))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    raise StaleIndexError(f"no event at byte {e.off}") from None
                if ev.seq != e.seq or short_hash(ev.hash) != e.hash:
                    raise StaleIndexError(f"seq {e.seq} is not at byte {e.off}")
                out.append(ev)
        return out

    def _by_index(self, query: Callable[[LedgerIndex], _R]) -> tuple[bool, _R | None]:
        """Run ``query`` on the caught-up index: (True, result), or (False, None) when the
        index cannot serve. A stale answer (a line not where the index says) rebuilds the
        index once and asks again."""
        for _attempt in range(2):
            index = self.indexed()
            if index is None:
                return False, None
            try:
                return True, query(index)
            except StaleIndexError:
                index.forget()
            except sqlite3.Error:
                index.forget()
                return False, None
        return False, None

    def run_events(self, run_id: str) -> list[Event]:
        """The run's events in chain order, read by offset (a scan without the index)."""
        return self.run_events_upto(run_id)[0]

    def run_events_upto(self, run_id: str) -> tuple[list[Event], int | None]:
        """The run's events in chain order and the byte offset up to which the file was
        indexed when they were read (every later line is new to the caller); without the
        index, a scan of the whole file and None."""

        def query(ix: LedgerIndex) -> tuple[list[Event], int]:
            end = ix.end()  # first: another process may index more lines meanwhile
            entries = [e for e in ix.entries(run_id=run_id, by_seq=True) if e.off < end]
            return self.read_entries(entries), end

        ok, found = self._by_index(query)
        if ok and found is not None:
            return found
        return [e for e in self.events() if e.run_id == run_id], None

    def run_row(self, run_id: str) -> RunRow | None:
        ok, row = self._by_index(lambda ix: ix.run(run_id))
        if ok:
            return row
        events = self.run_events(run_id)
        return run_row_of(run_id, events) if events and run_id else None

    def runs(self, status: str | None = None, limit: int | None = None) -> list[RunRow]:
        """Runs (those with a run.started) newest first, from the run index alone: a list of
        runs never reads the whole ledger. BlockedError when the index cannot serve."""
        if not self._exists():
            return []
        ok, rows = self._by_index(lambda ix: ix.runs(status=status, limit=limit, started=True))
        if not ok or rows is None:
            raise self._no_index()
        return rows

    def run_ids(self) -> list[str]:
        """Every run ID in the ledger (runs and cranks), from the run index ([] without one:
        only suggestions are made from it)."""
        ok, ids = self._by_index(lambda ix: ix.run_ids())
        return ids if ok and ids is not None else []

    def newest_with(self, event_type: str) -> str | None:
        """The run of the last ``event_type`` line (run.started: the newest run), from the
        run index."""
        if not self._exists():
            return None
        ok, found = self._by_index(lambda ix: ix.newest_with(event_type))
        if not ok:
            raise self._no_index()
        return found

    def _exists(self) -> bool:
        """Is there a ledger at all (a link or other non-file there is not "no ledger")?"""
        return self.path.exists() or self.path.is_symlink()

    def _no_index(self) -> BlockedError:
        where = _shown(self._index_obj().path, self.base)
        return BlockedError(
            f"ledger index {where} cannot be read or written; run `factory ledger reindex`"
        )

    def events_after(self, seq: int, event_type: str, limit: int) -> list[Event]:
        """The first ``limit`` events of ``event_type`` after ``seq``, in chain order."""
        ok, found = self._by_index(
            lambda ix: self.read_entries(ix.entries_after(seq, event_type, limit))
        )
        if ok and found is not None:
            return found
        out: list[Event] = []
        for ev in self.events():
            if ev.seq > seq and ev.event_type == event_type:
                out.append(ev)
                if len(out) >= limit:
                    break
        return out

    @_guarded
    def lines_at(self, seqs: Sequence[int]) -> dict[int, bytes]:
        """The stored lines at ``seqs`` (line numbers) that exist, without their line ends."""
        wanted = set(seqs)
        if not wanted:
            return {}

        def query(ix: LedgerIndex) -> dict[int, bytes]:
            out: dict[int, bytes] = {}
            fh = self._open_read()
            if fh is None:
                return out
            with fh:
                for seq in sorted(wanted):
                    e = ix.entry(seq)
                    if e is None:
                        continue
                    fh.seek(e.off)
                    data = fh.read(e.length)
                    if not data.endswith(b"\n"):
                        raise StaleIndexError(f"no line ends at byte {e.off + e.length}")
                    out[seq] = _strip_eol(data[:-1])
            return out

        ok, found = self._by_index(query)
        if ok and found is not None:
            return found
        out: dict[int, bytes] = {}
        for n, line in enumerate(self.iter_lines(), 1):
            if n in wanted:
                out[n] = line
            if n >= max(wanted):
                break
        return out

    @_guarded
    def span_lines(self, first: int, last: int) -> list[bytes] | None:
        """The stored lines ``first``..``last`` (line numbers) in one read, or None when the
        index cannot say where they are (the caller verifies the whole file instead)."""

        def query(ix: LedgerIndex) -> list[bytes] | None:
            a, b = ix.entry(first), ix.entry(last)
            if a is None or b is None:
                return None
            fh = self._open_read()
            if fh is None:
                return None
            with fh:
                fh.seek(a.off)
                data = fh.read(b.off + b.length - a.off)
            if not data.endswith(b"\n"):
                raise StaleIndexError(f"no line ends at byte {b.off + b.length}")
            lines = data.split(b"\n")
            lines.pop()
            if len(lines) != last - first + 1:
                raise StaleIndexError(f"lines {first}..{last} are not where the index says")
            return lines

        ok, found = self._by_index(query)
        return found if ok else None

    def verify_span(self, first: int, last: int) -> VerifyResult | None:
        """The chain from line ``first`` to ``last``: each line hashed as stored, linked to the
        one before (the first to the ``prev_hash`` it stores), seq consecutive, ts_utc never
        backwards; None when the index cannot locate the span (verify the whole file then).
        What lies outside the span is ``ledger verify``'s to judge."""
        lines = self.span_lines(first, last)
        if lines is None:
            return None
        head = lines[0]
        p = head.rfind(_PREV_KEY)
        t = head.rfind(_TS_KEY)
        prev = head[p + 13 : p + 77] if p >= 0 else b""
        last_ts = head[t + 10 : t + 37] if t >= 0 else b""
        fast = _fast_block(b"\n".join(lines) + b"\n", first - 1, prev, last_ts)
        if fast is not None:
            seq, prev, last_ts, bad, reason = first - 1 + fast[0], fast[1], fast[2], None, ""
        else:
            seq, prev, last_ts, bad, reason = _check_lines(lines, first - 1, prev, last_ts)
        return VerifyResult(
            ok=bad is None,
            lines=seq,
            head=Head(seq, prev.decode("ascii", "replace"), last_ts.decode("ascii", "replace")),
            first_bad_seq=bad,
            reason=reason,
            head_file="not checked (a span)",
        )

    # -- streaming -----------------------------------------------------------------------
    def iter_lines(self) -> Iterator[bytes]:
        """Every newline-terminated line, without its line end; a torn tail is not yielded."""
        try:
            fh = self._open_read()
            if fh is None:
                return
            with fh:
                rest = b""
                while True:
                    block = fh.read(1 << 20)
                    if not block:
                        break
                    parts = (rest + block).split(b"\n")
                    rest = parts.pop()
                    for part in parts:
                        yield _strip_eol(part)
        except OSError as exc:
            raise _io_error(exc, self.path, self.base) from None

    def events(self) -> Iterator[Event]:
        for n, line in enumerate(self.iter_lines(), 1):
            try:
                yield Event.from_line(line)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise LedgerCorruptError(
                    f"ledger {self.path.name}: line {n} is not a valid event; run `factory ledger verify`"
                ) from None

    def select(self, flt: Filter, limit: int | None = None) -> list[Event]:
        """Matching events sorted by (ts_utc, event_type, seq); with ``limit``, the last N.

        With a limit the file is read backwards in blocks: ts_utc never decreases along the
        file, so once N matches are held, only earlier lines with the same ts as the oldest
        held one can still sort into the last N.

        Cost: that stop needs time to have moved. Lines sharing the oldest held ts must all
        be read, because event_type (not file order) decides their place; so a ledger written
        under one pinned clock (``--now``/``FACTORY_NOW``: every ts_utc equal) is read whole,
        O(n) like an unlimited select. Real clocks give distinct instants and a flat cost.
        """
        if limit is not None and limit <= 0:
            return []
        if flt.run_id is not None or flt.event_type is not None or flt.since is not None:
            ok, found = self._by_index(lambda ix: self._select_indexed(ix, flt, limit))
            if ok and found is not None:
                return found
        if limit is None:
            return sorted((e for e in self.events() if flt.matches(e)), key=Event.sort_key)
        held: list[Event] = []
        floor: str | None = None
        for ev in self._events_backwards():
            if floor is not None and ev.ts_utc < floor:
                break
            if flt.matches(ev):
                held.append(ev)
                if floor is None and len(held) >= limit:
                    floor = min(e.ts_utc for e in held)
        held.sort(key=Event.sort_key)
        return held[-limit:]

    def _select_indexed(self, ix: LedgerIndex, flt: Filter, limit: int | None) -> list[Event]:
        """The index narrows by run, type and time; the payload filters are applied to the lines
        read. With ``limit`` the newest candidates are read first, until ``limit`` match."""
        pattern = flt.event_type
        prefix = pattern is not None and pattern.endswith("*")
        kind = pattern[:-1] if prefix and pattern is not None else pattern
        payload_filters = (flt.status, flt.kind, flt.actor, flt.rc) != (None, None, None, None)
        entries = ix.entries(
            run_id=flt.run_id,
            event_type=kind,
            prefix=prefix,
            since=flt.since,
            newest_first=limit is not None,
            limit=limit if not payload_filters else None,
        )
        held: list[Event] = []
        step = 256
        for i in range(0, len(entries), step):
            held += [e for e in self.read_entries(entries[i : i + step]) if flt.matches(e)]
            if limit is not None and len(held) >= limit:
                break
        held.sort(key=Event.sort_key)
        return held if limit is None else held[-limit:]

    def _events_backwards(self) -> Iterator[Event]:
        """Events from the last to the first, parsed as they are read from the end."""
        for line in self._lines_backwards():
            try:
                yield Event.from_line(line)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise LedgerCorruptError(
                    f"ledger {self.path.name}: a line read from the end is not a valid event; run `factory ledger verify`"
                ) from None

    def run_ids_since(self, event_type: str, floor_ts: str) -> set[str]:
        """Run IDs of ``event_type`` events with ts_utc >= ``floor_ts``, reading from the end.

        ts_utc never decreases along the file, so the scan stops at the first older line:
        the cost follows how recent ``floor_ts`` is, not the ledger's size.
        """
        ok, ids = self._by_index(lambda ix: ix.run_ids_since(event_type, floor_ts))
        if ok and ids is not None:
            return ids
        found: set[str] = set()
        for ev in self._events_backwards():
            if ev.ts_utc < floor_ts:
                break
            if ev.event_type == event_type:
                found.add(ev.run_id)
        return found

    def _lines_backwards(self) -> Iterator[bytes]:
        try:
            yield from self._lines_backwards_raw()
        except OSError as exc:
            raise _io_error(exc, self.path, self.base) from None

    def _lines_backwards_raw(self) -> Iterator[bytes]:
        fh = self._open_read()
        if fh is None:
            return
        with fh:
            end = fh.seek(0, os.SEEK_END)
            pos = end
            rest = b""
            first = True
            while pos > 0:
                step = min(BLOCK, pos)
                pos -= step
                fh.seek(pos)
                chunk = fh.read(step) + rest
                parts = chunk.split(b"\n")
                if first:
                    # The piece after the final newline is a torn tail (or empty): skip it,
                    # however many blocks it spans.
                    if len(parts) == 1:
                        rest = b""
                        continue
                    parts.pop()
                    first = False
                rest = parts[0]
                tail = parts[1:]
                for part in reversed(tail):
                    yield _strip_eol(part)
            if rest and not first:
                yield _strip_eol(rest)

    # -- the end of the file ------------------------------------------------------------------
    @_guarded
    def check_end(self) -> VerifyResult:
        """What can be judged without reading the whole file: the last line (complete, an
        event whose hash covers its bytes), the head file against it, and the lines the index
        recorded still being there as recorded. ``lines`` is the last line's seq. The chain
        below the last line is :meth:`verify`'s to judge."""
        if not (self.path.is_file() and not self.path.is_symlink()):
            fh = self._open_read()  # nothing there, or not a ledger (the open says which)
            if fh is not None:
                fh.close()
            return VerifyResult(ok=True, lines=0, head=Head(0, GENESIS, ""), head_file="absent")
        with self.lock():
            self._flush_locked()
            mirrored = self.read_head_file()
            try:
                head = self.read_head()
            except TornTailError as exc:
                seq = self.last_complete_seq()
                return VerifyResult(
                    ok=False, lines=seq, head=Head(seq, "", ""), first_bad_seq=seq + 1,
                    reason=str(exc), torn_tail=True, torn_bytes=self._torn_bytes(),
                )  # fmt: skip
            except LedgerCorruptError as exc:
                return VerifyResult(
                    ok=False, lines=0, head=Head(0, GENESIS, ""), first_bad_seq=None,
                    reason=str(exc),
                )  # fmt: skip
            last = self._last_line()
            if last is not None and not line_hash_ok(last):
                return VerifyResult(
                    ok=False, lines=head.seq, head=head, first_bad_seq=head.seq,
                    reason="hash does not match the last line's bytes (edited line)",
                )  # fmt: skip
            moved = self._index_obj().disagreement() if self._use_index else ""
        result = VerifyResult(ok=True, lines=head.seq, head=head)
        self._check_head_file(result, True, mirrored)
        if result.ok and moved:
            result.ok = False
            result.reason = f"ledger {self.path.name}: {moved}"
        return result

    def _last_line(self) -> bytes | None:
        fh = self._open_read()
        if fh is None:
            return None
        with fh:
            size = os.fstat(fh.fileno()).st_size
            return _strip_eol(_last_line(fh, size)) if size else None

    def _torn_bytes(self) -> int:
        fh = self._open_read()
        if fh is None:
            return 0
        with fh:
            size = os.fstat(fh.fileno()).st_size
            return size - _last_newline(fh, size) - 1

    def last_complete_seq(self) -> int:
        """The seq of the last complete line (before a torn fragment), 0 if none parses."""
        for line in self._lines_backwards():
            try:
                seq = orjson.loads(line)["seq"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return 0
            return seq if isinstance(seq, int) else 0
        return 0

    # -- verify --------------------------------------------------------------------------
    @_guarded
    def verify(self, *, require_head: bool = True) -> VerifyResult:
        """Stream the file: seq has no gaps, prev_hash links, each hash matches its bytes,
        each ts_utc has the stored form and none goes backwards, each line is the canonical
        JSON of its event, and the head file agrees.

        Without the head file a cut-off end would go unseen, so a missing head file fails
        unless ``require_head`` is False (the operator removed it knowingly).

        Blocks of whole lines go through :func:`_fast_block` (a handful of C-level passes
        per block); a block it cannot vouch for is re-checked line by line by
        :func:`_check_lines`, which names the first bad seq and why.
        """
        seq = 0
        prev = GENESIS.encode("ascii")
        last_ts = b""
        bad: int | None = None
        reason = ""
        torn = 0
        # A consistent snapshot: the file's length and the head record, taken together under the
        # lock (appends hold it), so a concurrent append cannot look like a cut or a bad head.
        if not (self.path.is_file() and not self.path.is_symlink()):
            # Nothing to verify, or not a ledger (the open below says which): no lock file is
            # created for it.
            fh = self._open_read()
            size = os.fstat(fh.fileno()).st_size if fh is not None else 0
            mirrored = self.read_head_file()
        else:
            with self.lock():
                fh = self._open_read()
                size = os.fstat(fh.fileno()).st_size if fh is not None else 0
                mirrored = self.read_head_file()
        if fh is not None:
            with fh:
                rest = b""
                left = size
                while left > 0:
                    block = fh.read(min(VERIFY_BLOCK, left))
                    if not block:
                        break
                    left -= len(block)
                    chunk = rest + block
                    cut = chunk.rfind(b"\n") + 1
                    rest = chunk[cut:]
                    if not cut:
                        continue
                    fast = _fast_block(memoryview(chunk)[:cut], seq, prev, last_ts)
                    if fast is not None:
                        seq += fast[0]
                        prev, last_ts = fast[1], fast[2]
                        continue
                    lines = chunk[:cut].split(b"\n")
                    lines.pop()
                    seq, prev, last_ts, bad, reason = _check_lines(lines, seq, prev, last_ts)
                    if bad is not None:
                        break
                if bad is None and rest:
                    torn = len(rest)
        head = Head(seq, prev.decode("ascii"), last_ts.decode("ascii", "replace"))
        result = VerifyResult(
            ok=bad is None and torn == 0, lines=seq, head=head, first_bad_seq=bad, reason=reason
        )
        if torn:
            result.torn_tail = True
            result.torn_bytes = torn
            result.first_bad_seq = seq + 1
            result.reason = f"torn tail: {torn} bytes after the last newline (crash mid-write); run `factory ledger repair`"
        if bad is None:
            self._check_head_file(result, require_head, mirrored)
        return result

    def _check_head_file(
        self, result: VerifyResult, require_head: bool, mirrored: tuple[int, str] | None
    ) -> None:
        if mirrored is None:
            result.head_file = "absent"
            if not result.lines:
                return
            if not require_head:
                result.notes.append(
                    "head file is absent (accepted: --no-head); it is rewritten on the next append"
                )
                return
            result.ok = False
            result.head_missing = True
            if not result.torn_tail:
                result.first_bad_seq = result.lines + 1
            missing = (
                f"head file {self.head_path.name} is missing, so lines cut off the end would go "
                "unseen; if it was removed on purpose, `factory ledger verify --no-head` accepts it"
            )
            result.reason = f"{result.reason}; {missing}" if result.torn_tail else missing
            return
        hseq, hhash = mirrored
        if hseq > result.lines:
            result.ok = False
            result.head_file = "ahead"
            result.first_bad_seq = result.lines + 1
            cut = (
                f"ledger is shorter than its head file: head says seq {hseq}, the ledger ends at seq "
                f"{result.lines} (lines were cut off the end)"
            )
            # Keep the torn-tail diagnosis (and its `ledger repair` hint) when there is one.
            result.reason = f"{result.reason}; {cut}" if result.torn_tail else cut
        elif hseq == result.lines and hhash != result.head.hash:
            result.ok = False
            result.head_file = "mismatch"
            result.first_bad_seq = hseq
            result.reason = f"last line's hash differs from the head file's hash at seq {hseq}"
        elif hseq < result.lines:
            result.head_file = "behind"
            result.notes.append(
                f"head file is at seq {hseq}, the ledger at {result.lines} (a crash between a write and "
                "its head update); the next append rewrites it"
            )
        else:
            result.head_file = "ok"

    # -- repair --------------------------------------------------------------------------
    @_guarded
    def repair(self, actor: str = "operator") -> dict[str, Any]:
        """Move a torn tail aside to a side file (nothing is deleted) and record it."""
        with self.lock():
            fh = self._open_read()
            if fh is None:
                return {"repaired": False, "reason": "ledger does not exist"}
            with fh:
                size = os.fstat(fh.fileno()).st_size
                if size == 0:
                    return {"repaired": False, "reason": "ledger is empty"}
                fh.seek(size - 1)
                if fh.read(1) == b"\n":
                    result = self.verify()
                    if not result.ok:
                        raise LedgerCorruptError(
                            f"ledger {self.path.name}: seq {result.first_bad_seq}: {result.reason}; this is "
                            "corruption, not a torn tail, and is not repaired automatically"
                        )
                    return {"repaired": False, "reason": "no torn tail"}
                cut = _last_newline(fh, size) + 1
                fh.seek(cut)
                torn = fh.read()
            # The lines before the fragment must themselves be sound.
            check = _prefix_ok(self)
            if check is not None:
                raise LedgerCorruptError(
                    f"ledger {self.path.name}: seq {check[0]}: {check[1]}; refusing to repair a ledger "
                    "that is corrupt before its torn tail"
                )
            side, fd = self._new_side_file()
            try:
                _write_all(fd, torn)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.close()
            fd = fsutil.open_regular(self.path, os.O_RDWR)
            try:
                os.ftruncate(fd, cut)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._cache = None
            ev = self.append_locked(
                "ledger.repaired",
                "",
                "ledger",
                {
                    "actor": actor,
                    "side_file": side.name,
                    "torn_bytes": len(torn),
                    "torn_sha256": hashlib.sha256(torn).hexdigest(),
                },
            )
            return {
                "repaired": True,
                "side_file": side.name,
                "torn_bytes": len(torn),
                "seq": ev.seq,
            }

    def _new_side_file(self) -> tuple[Path, int]:
        """A side file for torn bytes: a name never used before, created exclusively (so
        nothing at that name, a link included, is ever written through)."""
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%S%fZ")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | fsutil.O_NOFOLLOW | fsutil.O_CLOEXEC
        for n in range(1, 10_000):
            suffix = f"-{n}" if n > 1 else ""
            side = self.path.with_name(f"{self.path.name}.torn-{stamp}{suffix}")
            try:
                return side, os.open(side, flags | _O_BINARY, 0o644)
            except FileExistsError:
                continue
        raise BlockedError(
            f"ledger {self.path.name}: no free side-file name for {stamp}; move old "
            f"{self.path.name}.torn-* files away"
        )


# -- verify internals ----------------------------------------------------------------------------
# A stored line is ``{"event_type":E,"hash":H,"payload":P,"prev_hash":V,"run_id":R,"seq":N,
# "stage":S,"ts_utc":T}`` in canonical JSON (orjson, sorted keys, no spaces), ``\n``-ended.
# _check_lines is the definition of a good line: no CR before its ``\n``; the first
# ``"hash":"`` member holds sha256 of the line without it; the last ``"prev_hash":"`` holds
# the previous line's hash; the last ``"seq":`` is one more than the previous line's; the
# 27 bytes after the last ``"ts_utc":"`` are a timestamp of the stored form (_TS_FORM)
# closed by a quote, and do not sort before the previous line's; the line parses as JSON
# to an object of exactly those eight members with those values (so readers see what was
# checked), and re-encoding it gives the same bytes (canonical: nothing was edited that
# the hash does not bind, and nothing a reader would refuse).
#
# _fast_block checks a whole block in a few C-level passes instead of ~20 Python operations
# per line, and only ever accepts a block that _check_lines would accept. One regex split
# matches every line boundary ``<tail of line k>}\n{<head of line k+1>`` (a fake tail and a
# fake head close the block) and cuts out the hash member; each line is then its head, its
# payload (the text between two matches) and its tail. A match at every boundary means:
# every line starts ``{"event_type":"E","hash":"H","payload":{`` and ends
# ``,"prev_hash":"V","run_id":"R","seq":N,"stage":"S","ts_utc":"T"}``, where E, R and S are
# printable ASCII without quote or backslash (so each is one JSON string, as orjson writes
# it) and T has the stored form; N is compared as text with the expected numbers (so it is
# written as orjson writes it). The payloads are parsed one by one and re-encoded together:
# equal bytes mean each is canonical JSON on its own (a JSON value is prefix-free, so equal
# concatenations of canonical values and of pieces split alike), and none holds a newline,
# so no line has more than its one. The line is then exactly the canonical encoding of those
# eight members. Anything else (a run ID with non-ASCII letters, say) is left to
# _check_lines, which also names the first bad seq and why.
_TS_KEY = b'"ts_utc":"'
_TOKEN = rb"[ !#-\[\]-~]*"  # printable ASCII but '"' and '\'
_BOUNDARY = re.compile(
    rb'(,"prev_hash":"(.{64})","run_id":"'
    + _TOKEN
    + rb'","seq":(\d+),"stage":"'
    + _TOKEN
    + rb'","ts_utc":"('
    + _TS_FORM
    + rb')"\})\n'
    rb'(\{"event_type":"' + _TOKEN + rb'",)"hash":"(.{64})",(?="payload":\{)'
)
_FAKE_TAIL = (
    b',"prev_hash":"'
    + b"0" * 64
    + b'","run_id":"","seq":0,"stage":"","ts_utc":"0000-01-01T00:00:00.000000Z"}\n'
)
_FAKE_HEAD = b'{"event_type":"","hash":"' + b"0" * 64 + b'","payload":{'
_FAKE_REST = b'"payload":{'  # what follows the last match when it is the fake head's
_PAYLOAD_KEY = b'"payload":'
_HEXDIGEST = methodcaller("hexdigest")
_EVENT_KEYS = frozenset(
    ("event_type", "hash", "payload", "prev_hash", "run_id", "seq", "stage", "ts_utc")
)
VERIFY_BLOCK = 64 * 1024  # small enough that the passes over one block stay in cache


def _fast_block(
    body: bytes | memoryview, seq: int, prev: bytes, last_ts: bytes
) -> tuple[int, bytes, bytes] | None:
    """Check whole ``\\n``-terminated lines at once; (lines, new prev, new last ts) or None."""
    # [text, tail, prev, seq, ts, head, hash, text, ...]: one group of 6 per boundary; the
    # tail ends line k, the head starts line k+1, the text after the hash is line k+1's
    # payload. The first tail and the last head and text are the fakes'.
    parts = _BOUNDARY.split(b"".join((_FAKE_TAIL, body, _FAKE_HEAD)))
    n = len(parts) // 7 - 1
    if n <= 0 or parts[0] or parts[-1] != _FAKE_REST:
        return None  # the first or the last line is not in the shape matched
    heads, stored, texts = parts[5::7], parts[6::7], parts[7::7]
    del heads[-1], stored[-1], texts[-1]
    tails, prevs, seqs, stamps = parts[8::7], parts[9::7], parts[10::7], parts[11::7]
    lines = map(add, map(add, heads, texts), tails)  # each without its hash member
    if "".join(map(_HEXDIGEST, map(hashlib.sha256, lines))).encode("ascii") != b"".join(stored):
        return None
    if prevs[0] != prev or prevs[1:] != stored[:-1]:
        return None
    expected = ("%d," * n % tuple(range(seq + 1, seq + 1 + n))).encode("ascii")
    if b",".join(seqs) + b"," != expected:  # the numbers as orjson writes them
        return None
    if stamps[0] < last_ts or stamps != sorted(stamps):
        return None
    if not _canonical_payloads(texts):
        return None
    return n, stored[-1], stamps[-1]


def _canonical_payloads(texts: list[bytes]) -> bool:
    """Is each ``"payload":P`` piece's P one JSON object in canonical form, on one line?

    Equal pieces are checked once: payloads repeat (the same status, the same actor).
    """
    unique = set(texts)
    joined = b"\n".join(unique)
    if joined.count(_PAYLOAD_KEY) != len(unique):
        return False  # a payload that itself holds a "payload" member: line by line
    pieces = joined.replace(_PAYLOAD_KEY, b"").split(b"\n")
    if len(pieces) != len(unique):
        return False  # a newline inside a payload: that line is more than one line
    try:
        objs = list(map(orjson.loads, pieces))
    except orjson.JSONDecodeError:
        return False
    return orjson.dumps(objs, option=orjson.OPT_SORT_KEYS) == b"".join(
        (b"[", b",".join(pieces), b"]")
    )


def _check_lines(
    lines: list[bytes], seq: int, prev: bytes, last_ts: bytes
) -> tuple[int, bytes, bytes, int | None, str]:
    """Line by line; (seq, prev, last ts, first bad seq or None, reason)."""
    sha = hashlib.sha256
    for line in lines:
        expect = seq + 1
        if line.endswith(b"\r"):
            return (
                seq,
                prev,
                last_ts,
                expect,
                "line ends with CR (a CRLF line end): the ledger's lines end with LF only, so "
                "a tool rewrote its line ends; restore the file from a trusted copy",
            )
        i = line.find(_HASH_KEY)
        if i < 0 or line[i + 72 : i + 74] != b'",':
            return seq, prev, last_ts, expect, "line is not a ledger event (no hash member)"
        stored = line[i + 8 : i + 72]
        if sha(line[:i] + line[i + 74 :]).hexdigest().encode("ascii") != stored:
            return seq, prev, last_ts, expect, "hash does not match the line's bytes (edited line)"
        p = line.rfind(_PREV_KEY)
        if p < 0 or line[p + 13 : p + 77] != prev:
            return (
                seq,
                prev,
                last_ts,
                expect,
                "prev_hash does not link to the previous line (removed, reordered or inserted line)",
            )
        s = line.rfind(_SEQ_KEY)
        c = line.find(b",", s)
        try:
            found = int(line[s + 6 : c])
        except ValueError:
            found = -1
        if s < 0 or found != expect:
            return seq, prev, last_ts, expect, f"seq is {found}, expected {expect}"
        t = line.rfind(_TS_KEY)
        ts = line[t + 10 : t + 37]
        if t < 0 or line[t + 37 : t + 38] != b'"' or not _TS_RE.fullmatch(ts):
            return (
                seq,
                prev,
                last_ts,
                expect,
                f"ts_utc is not {TS_FORM_HINT} (RFC 3339, UTC, microseconds)",
            )
        if ts < last_ts:
            return seq, prev, last_ts, expect, "ts_utc goes backwards"
        why = _json_problem(line, stored, prev, expect, ts)
        if why:
            return seq, prev, last_ts, expect, why
        seq, prev, last_ts = expect, stored, ts
    return seq, prev, last_ts, None, ""


def _json_problem(line: bytes, stored: bytes, prev: bytes, seq: int, ts: bytes) -> str:
    """Why readers would not see exactly the checked event in ``line`` ("" if they would)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "line is not valid JSON (readers cannot parse it)"
    if not (
        isinstance(obj, dict)
        and obj.keys() == _EVENT_KEYS
        and isinstance(obj["payload"], dict)
        and all(isinstance(obj[k], str) for k in ("event_type", "run_id", "stage"))
        and obj["hash"] == stored.decode("ascii")
        and obj["prev_hash"] == prev.decode("ascii")
        and type(obj["seq"]) is int
        and obj["seq"] == seq
        and obj["ts_utc"] == ts.decode("ascii")
    ):
        return "line's JSON members are not those of a ledger event (missing, extra or misplaced)"
    if orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) != line:
        return (
            "line is not in the ledger's canonical JSON form (spaces, key order, number or "
            "string escapes differ from what the factory writes)"
        )
    return ""


def _prefix_ok(ledger: Ledger) -> tuple[int, str] | None:
    """Verify the lines before a torn tail; return (bad seq, reason) or None."""
    probe = ledger.verify()
    if probe.torn_tail and probe.first_bad_seq == probe.lines + 1:
        return None
    if probe.ok:
        return None
    return (probe.first_bad_seq or 0, probe.reason)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _last_newline(fh: BinaryIO, size: int) -> int:
    """Offset of the last ``\\n`` in the file, or -1."""
    pos = size
    while pos > 0:
        step = min(BLOCK, pos)
        pos -= step
        fh.seek(pos)
        chunk = fh.read(step)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return pos + i
    return -1


def _last_line(fh: BinaryIO, size: int) -> bytes:
    """The last line of a file that ends with ``\\n``, without that newline."""
    pos = size - 1
    buf = b""
    while pos > 0:
        step = min(BLOCK, pos)
        pos -= step
        fh.seek(pos)
        buf = fh.read(step) + buf
        k = buf.rfind(b"\n")
        if k >= 0:
            return buf[k + 1 :]
    return buf


class _LedgerLock(ProcessLock):
    """The ledger's ProcessLock; an OSError on the lock file is a one-line error naming it."""

    def __init__(self, path: Path, timeout: float, what: str, base: Path | None) -> None:
        self.base = base
        try:
            super().__init__(path, timeout, what)
        except OSError as exc:
            raise _io_error(exc, path, base) from None

    def acquire(self, timeout: float | None = None) -> None:
        try:
            super().acquire(timeout)
        except OSError as exc:
            raise _io_error(exc, self.path, self.base) from None

    def _not_regular(self, exc: fsutil.NotRegularFileError) -> FactoryError:
        return _io_error(exc, self.path, self.base)
