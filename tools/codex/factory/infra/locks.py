"""Cross-process locks: ``flock`` on POSIX, ``filelock`` on Windows.

On POSIX the lock file is opened once and kept open: stock filelock reopens it with
O_TRUNC and chmods it on every acquire, which dirties its inode, and a dirty inode rides the
next fsync of the ledger (measured: a third slower appends); its acquire's bookkeeping also
cost more than the flock itself. The inode is re-checked on each
acquire, so a deleted or replaced lock file is reopened rather than silently not shared.
A threading lock in front makes one process's threads exclude each other too, since flock
treats every holder of the same open file as one.

A lock file must be a regular file with one link: it is opened without following a link and
without blocking (a FIFO planted there would hang the open), and anything else (a hard link to
someone's file included) is refused.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from pathlib import Path
from typing import Any

from tools.codex.factory.errors import BlockedError, FactoryError, LockHeldError
from tools.codex.factory.infra import clock, fsutil

if sys.platform != "win32":
    import errno
    import fcntl

    from filelock import Timeout

    _POLL = 0.05  # seconds between tries while another process holds the lock

    class _KeptOpenLock:
        """flock on the kept-open lock file, counted for re-entry (ProcessLock's thread lock
        guards the count). Not filelock's acquire: its bookkeeping (thread-local context,
        logging, a timed loop even for a free lock) cost more than the flock itself on every
        ledger append."""

        def __init__(self, path: str, timeout: float) -> None:
            self.lock_file = path
            self.timeout = timeout
            self._kept_fd: int | None = None
            self._held = 0

        @property
        def is_locked(self) -> bool:
            return self._held > 0

        def _fd(self) -> int:
            """The lock file, reopened if it was deleted or replaced since it was opened."""
            fd = self._kept_fd
            if fd is not None:
                try:
                    same = os.fstat(fd).st_ino == os.lstat(self.lock_file).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    fd = self._kept_fd = None
            if fd is None:
                fd = fsutil.open_regular(Path(self.lock_file), os.O_RDWR | os.O_CREAT, 0o644)
                self._kept_fd = fd
            return fd

        def _try(self) -> bool:
            try:
                fcntl.flock(self._fd(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise
                return False
            return True

        def acquire(self, timeout: float) -> None:
            """Wait up to ``timeout`` seconds (< 0: for ever, 0: one try), else Timeout."""
            if self._held:
                self._held += 1
                return
            start = clock.real_monotonic()
            while not self._try():
                if 0 <= timeout <= clock.real_monotonic() - start:
                    raise Timeout(self.lock_file)
                clock.sleep(_POLL)
            self._held = 1

        def release(self) -> None:
            if self._held == 0:
                return
            self._held -= 1
            if self._held == 0 and self._kept_fd is not None:
                fcntl.flock(self._kept_fd, fcntl.LOCK_UN)

        def close_kept(self) -> None:
            if self._kept_fd is not None and not self._held:
                os.close(self._kept_fd)
                self._kept_fd = None

    def _make(path: Path, timeout: float) -> Any:
        return _KeptOpenLock(str(path), timeout)

else:  # pragma: no cover - Windows
    from filelock import FileLock

    class _CheckedLock(FileLock):  # type: ignore[misc, unused-ignore]
        """filelock opens by name (following links): check the name first."""

        def _acquire(self) -> None:
            try:
                st = os.lstat(self.lock_file)
            except FileNotFoundError:
                st = None
            if st is not None and (fsutil.is_link(st) or not stat.S_ISREG(st.st_mode)):
                raise fsutil.NotRegularFileError(self.lock_file, fsutil.kind_of(st))
            if st is not None:
                fsutil.check_one_link(self.lock_file, st)
            super()._acquire()

    def _make(path: Path, timeout: float) -> Any:
        return _CheckedLock(str(path), timeout=timeout, thread_local=False)


class ProcessLock:
    """Re-entrant lock held across threads and processes; ``timeout=0`` means don't wait."""

    def __init__(self, path: Path, timeout: float, what: str, shown: str | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.timeout = timeout
        self.what = what
        self.shown = shown or str(path)  # how messages name the lock file
        self._thread = threading.RLock()
        self._file = _make(path, timeout)

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (default: the lock's own) for the lock."""
        from filelock import Timeout

        wait = self.timeout if timeout is None else timeout
        if not self._thread.acquire(timeout=wait if wait >= 0 else -1):
            raise LockHeldError(f"{self.what} ({self.path.name}) is held by another thread")
        try:
            self._file.acquire(timeout=wait)
        except fsutil.NotRegularFileError as exc:
            self._thread.release()
            raise self._not_regular(exc) from None
        except Timeout:
            self._thread.release()
            if wait == 0:
                raise LockHeldError(
                    f"{self.what} ({self.path.name}) is held by another process"
                ) from None
            raise LockHeldError(
                f"{self.what} ({self.path.name}) is held by another process for over {wait}s"
            ) from None
        except BaseException:
            self._thread.release()
            raise

    def _not_regular(self, exc: fsutil.NotRegularFileError) -> FactoryError:
        """The one-line refusal of a lock file that is a link, FIFO, hard link or other non-file."""
        if isinstance(exc, fsutil.HardLinkedError):
            return BlockedError(
                f"{self.what}: {self.shown} has {exc.nlink} hard links; lock files must be "
                "regular files with one link: remove it"
            )
        return BlockedError(
            f"{self.what}: {self.shown} is {exc.kind}; lock files must be regular files: remove it"
        )

    def release(self) -> None:
        try:
            self._file.release()
        finally:
            self._thread.release()

    def close(self) -> None:
        closer = getattr(self._file, "close_kept", None)
        if closer is not None:
            closer()
