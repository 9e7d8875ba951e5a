"""The one guarded writer: every run artifact is written through it.

Two layers. :meth:`GuardedWriter.target` refuses by name anything that is not a plain
relative path or that resolves outside the run folder, recording the attempt, so the
integrator reports a policy violation instead of writing where it was never asked to.
Then every folder and file is created through directory handles opened one component at a
time from the run folder, none of them through a link, and a file is written to a fresh
temporary name (random, created exclusively) that is then renamed over the final name. So a
link planted anywhere on the way, at the final name or at the temporary name, before or
during the write, is never written through: renaming over a link replaces the link.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tools.codex.factory.errors import FactoryError, PolicyViolation
from tools.codex.factory.infra import fsutil
from tools.codex.factory.records.validation import Violation

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL
_TMP_TRIES = 8


@dataclass
class GuardedWriter:
    root: Path
    written: dict[str, str] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    # Called once per new refusal (the run handle records it in the ledger as it happens).
    on_violation: Callable[[str, str], None] | None = None

    def __post_init__(self) -> None:
        self.root = Path(os.path.abspath(self.root))

    def _real_root(self) -> Path:
        return self.root.resolve()

    def target(self, rel: str) -> Path:
        """The real path for ``rel``; raise PolicyViolation if it lands outside the root."""
        rel_path = PurePosixPath(rel)
        if rel_path.is_absolute() or ".." in rel_path.parts or not rel:
            return self._refuse(rel, "not a plain relative path")
        real_root = self._real_root()
        if self.root.is_symlink() or real_root != self.root.resolve(strict=False):
            return self._refuse(rel, "run folder is a symlink")
        candidate = self.root.joinpath(*rel_path.parts)
        resolved = candidate.resolve(strict=False)
        try:
            resolved.relative_to(real_root)
        except ValueError:
            return self._refuse(rel, "resolves outside the run folder")
        if candidate.is_symlink():
            return self._refuse(rel, "target is a symlink")
        return candidate

    def _refuse(self, rel: str, why: str) -> Path:
        entry: Violation = {"path": rel, "reason": why}
        if entry not in self.violations:
            self.violations.append(entry)
            if self.on_violation is not None:
                self.on_violation(rel, why)
        raise PolicyViolation(f"write to {rel!r} refused: {why}")

    # -- creating ----------------------------------------------------------------------------
    def mkdir(self, rel: str) -> Path:
        """Create the folder ``rel`` and any missing parents, none of them through a link."""
        path = self.target(rel)
        with self._io(rel, "create the folder"):
            if fsutil.HAVE_DIR_FD:
                os.close(self._open_dir(rel, _parts(rel), create=True))
            else:
                self._dirs_by_path(rel, _parts(rel), create=True)
        return path

    def write(self, rel: str, data: bytes, *, scratch: bool = False) -> str:
        """Write atomically (fresh temp file + rename) and return the sha256 of the bytes.

        ``scratch``: a working file (the sandbox's git setup), not an artifact of the run: it is
        guarded like any other write but not listed in ``written`` (nor reported or replayed).
        """
        self.target(rel)
        parts = _parts(rel)
        with self._io(rel, "write"):
            if fsutil.HAVE_DIR_FD:
                dfd = self._open_dir(rel, parts[:-1], create=True)
                try:
                    self._write_at(rel, dfd, parts[-1], data)
                finally:
                    os.close(dfd)
            else:
                self._write_by_path(rel, parts, data)
        digest = hashlib.sha256(data).hexdigest()
        if not scratch:
            self.written[rel] = digest
        return digest

    def write_text(self, rel: str, text: str) -> str:
        return self.write(rel, text.encode("utf-8"))

    def create(self, rel: str) -> BinaryIO:
        """A new, empty file at ``rel`` opened for writing, for a child process's output (a
        log that is written while it runs, so it cannot be renamed into place).

        Whatever is at that name is removed first, as itself: a link or a hard link to
        someone's file is unlinked, never truncated or written through. The file is then
        created exclusively through the folder handles, so nothing can be slipped in between.
        Hash it afterwards with :meth:`record`.
        """
        self.target(rel)
        parts = _parts(rel)
        with self._io(rel, "create"):
            if fsutil.HAVE_DIR_FD:
                dfd = self._open_dir(rel, parts[:-1], create=True)
                try:
                    fd = self._fresh(
                        rel,
                        lambda: os.unlink(parts[-1], dir_fd=dfd),
                        lambda: os.open(parts[-1], _temp_flags(), 0o644, dir_fd=dfd),
                    )
                finally:
                    os.close(dfd)
            else:
                path = self._dirs_by_path(rel, parts[:-1], create=True) / parts[-1]
                fd = self._fresh(
                    rel, lambda: os.unlink(path), lambda: os.open(path, _temp_flags(), 0o644)
                )
                try:  # the handle must be the file at that name, in the folders checked
                    opened, named = os.fstat(fd), os.lstat(path)
                    if fsutil.is_link(named) or (opened.st_dev, opened.st_ino) != (
                        named.st_dev,
                        named.st_ino,
                    ):
                        self._refuse(rel, "the new file was swapped for a link")
                    self._dirs_by_path(rel, parts[:-1], create=False)
                except BaseException:
                    os.close(fd)
                    raise
        return os.fdopen(fd, "wb")

    def _fresh(self, rel: str, unlink: Callable[[], None], create: Callable[[], int]) -> int:
        """Remove what is at the name, then create it exclusively (again if re-planted)."""
        for _ in range(_TMP_TRIES):
            with contextlib.suppress(FileNotFoundError):
                unlink()
            try:
                return create()
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno in fsutil.LINK_ERRNOS:
                    continue
                raise
        self._refuse(
            rel, "something keeps reappearing at that name (the folder is being tampered with)"
        )
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_at(self, rel: str, dfd: int, name: str, data: bytes) -> None:
        fd, tmp = self._create_temp(
            rel, name, lambda n: os.open(n, _temp_flags(), 0o644, dir_fd=dfd)
        )
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
        try:
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise

    def _write_by_path(self, rel: str, parts: tuple[str, ...], data: bytes) -> None:
        """No directory handles (Windows): create exclusively, then check that the handle is
        the file at that name in a folder reached through no link or junction."""
        parent = self._dirs_by_path(rel, parts[:-1], create=True)
        fd, tmp = self._create_temp(
            rel, parts[-1], lambda n: os.open(parent / n, _temp_flags(), 0o644)
        )
        tmp_path = parent / tmp
        try:
            try:
                opened, named = os.fstat(fd), os.lstat(tmp_path)
                if fsutil.is_link(named) or (opened.st_dev, opened.st_ino) != (
                    named.st_dev,
                    named.st_ino,
                ):
                    self._refuse(rel, "the temporary file was swapped for a link")
                self._dirs_by_path(rel, parts[:-1], create=False)
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp_path, parent / parts[-1])
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)
            raise

    def _create_temp(self, rel: str, name: str, opener: Callable[[str], int]) -> tuple[int, str]:
        """A new file at an unpredictable name next to ``name``: (fd, temp name)."""
        for _ in range(_TMP_TRIES):
            tmp = f".{name[:180]}.{secrets.token_hex(8)}.tmp"
            try:
                return opener(tmp), tmp
            except FileExistsError:
                continue  # taken (by a planted file or link): never reused, try another
            except OSError as exc:
                if exc.errno in fsutil.LINK_ERRNOS:
                    continue
                raise
        self._refuse(rel, "no free temporary name next to it (the folder is being tampered with)")
        raise AssertionError("unreachable")  # pragma: no cover

    # -- folders ----------------------------------------------------------------------------
    def _open_root(self, rel: str, create: bool) -> int:
        try:
            return os.open(self.root, fsutil.DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
            self.root.mkdir(parents=True, exist_ok=True)
            return os.open(self.root, fsutil.DIR_FLAGS)
        except OSError as exc:
            if exc.errno in fsutil.LINK_ERRNOS:
                self._refuse(rel, "run folder is a symlink")
            raise

    def _open_dir(self, rel: str, parts: tuple[str, ...], *, create: bool) -> int:
        """A handle on root/parts, each component opened relative to the one before and
        never through a link; missing components are created when ``create``."""
        fd = self._open_root(rel, create)
        try:
            for i, name in enumerate(parts):
                try:
                    nfd = os.open(name, fsutil.DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):  # raced: the open decides
                        os.mkdir(name, 0o777, dir_fd=fd)
                    nfd = self._open_component(rel, parts[: i + 1], fd, name)
                except OSError:
                    nfd = self._open_component(rel, parts[: i + 1], fd, name)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_component(self, rel: str, upto: tuple[str, ...], fd: int, name: str) -> int:
        """Open one folder component again, turning a link in the way into a refusal."""
        try:
            return os.open(name, fsutil.DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                raise exc from None
            if fsutil.is_link(st):
                self._refuse(rel, f"{'/'.join(upto)} is a symbolic link")
            raise

    def _dirs_by_path(self, rel: str, parts: tuple[str, ...], *, create: bool) -> Path:
        """By path (Windows): each component is made if missing and must then be a real folder,
        not a link or junction. Returns the last one."""
        path = self.root
        if create:
            path.mkdir(parents=True, exist_ok=True)
        for i in range(len(parts) + 1):
            if i:
                path = path / parts[i - 1]
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(path)
            st = os.lstat(path)
            if fsutil.is_link(st):
                shown = "/".join(parts[:i])
                self._refuse(rel, f"{shown} is a symbolic link" if i else "run folder is a symlink")
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        return path

    # -- clearing and recording --------------------------------------------------------------
    def clear(self, rel: str) -> None:
        """Empty the folder ``rel`` (a previous attempt's artifacts).

        Nothing is followed: a sub-folder is removed with everything in it, a link is removed
        as itself. A link found directly in ``rel`` was planted (the factory makes none) and
        is refused too, once the folder is empty, so the run is reported as blocked.
        """
        self.target(rel)
        parts = _parts(rel)
        links: list[str] = []
        with self._io(rel, "clear"):
            if fsutil.HAVE_DIR_FD:
                try:
                    fd = self._open_dir(rel, parts, create=False)
                except (FileNotFoundError, NotADirectoryError):
                    return  # nothing to clear
                try:
                    links = fsutil.empty_folder(fd, self.root.joinpath(*parts))
                finally:
                    os.close(fd)
            else:
                try:
                    folder = self._dirs_by_path(rel, parts, create=False)
                except (FileNotFoundError, NotADirectoryError):
                    return  # nothing to clear
                links = fsutil.empty_folder_by_path(folder)
        for name in links:
            entry: Violation = {"path": f"{rel}/{name}", "reason": "target is a symlink"}
            if entry not in self.violations:
                self.violations.append(entry)
                if self.on_violation is not None:
                    self.on_violation(entry["path"], entry["reason"])
        if links:
            raise PolicyViolation(f"write to {f'{rel}/{links[0]}'!r} refused: target is a symlink")

    def record(self, rel: str) -> str:
        """Hash a file a child process wrote at ``rel`` (e.g. a log) as if we wrote it.

        Read through no link and only if it is a regular file (a FIFO would hang the read)."""
        return self.record_tail(rel, 0)[0]

    def record_tail(self, rel: str, keep: int) -> tuple[str, bytes]:
        """:meth:`record`, also keeping the last ``keep`` bytes of the very bytes hashed (one
        read: what is summarised of a log is what its recorded hash vouches for)."""
        path = self.target(rel)
        parts = _parts(rel)
        with self._io(rel, "read"):
            if fsutil.HAVE_DIR_FD:
                dfd = self._open_dir(rel, parts[:-1], create=False)
                try:
                    fd = self._open_regular_at(rel, dfd, parts[-1])
                finally:
                    os.close(dfd)
            else:
                self._dirs_by_path(rel, parts[:-1], create=False)
                try:
                    fd = fsutil.open_regular(path, os.O_RDONLY)
                except fsutil.NotRegularFileError as exc:
                    self._refuse(rel, f"not a regular file ({exc.kind})")
                    raise AssertionError("unreachable") from None  # pragma: no cover
        try:
            with os.fdopen(fd, "rb", closefd=False) as fh:
                digest, last = sha256_stream_tail(fh, keep)
        finally:
            os.close(fd)
        self.written[rel] = digest
        return digest, last

    def _open_regular_at(self, rel: str, dfd: int, name: str) -> int:
        flags = os.O_RDONLY | fsutil.O_NOFOLLOW | fsutil.O_NONBLOCK | fsutil.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in fsutil.LINK_ERRNOS:
                self._refuse(rel, "target is a symlink")
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._refuse(rel, f"not a regular file ({fsutil.kind_of(st)})")
        return fd

    @contextlib.contextmanager
    def _io(self, rel: str, verb: str) -> Iterator[None]:
        """An OSError becomes one line naming the run-relative path and a fix."""
        try:
            yield
        except OSError as exc:
            raise FactoryError(
                f"cannot {verb} {rel} in the run folder: {exc.strerror or type(exc).__name__}; "
                f"{_fix(exc)}"
            ) from None


def _parts(rel: str) -> tuple[str, ...]:
    return PurePosixPath(rel).parts


def _temp_flags() -> int:
    return _FILE_FLAGS | fsutil.O_NOFOLLOW | fsutil.O_CLOEXEC | fsutil.O_BINARY


def _fix(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "free some disk space and run the command again"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "make the run folder writable and run the command again"
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY):
        return "something else is in the way there: move it and run the command again"
    return "check the run folder and run the command again"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sha256_stream(fh: BinaryIO) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def sha256_stream_tail(fh: BinaryIO, keep: int) -> tuple[str, bytes]:
    """The sha256 of a stream read to its end, and its last ``keep`` bytes (the same read)."""
    h = hashlib.sha256()
    last = b""
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
        if keep:
            last = (last + block)[-keep:]
    return h.hexdigest(), last


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return _sha256_stream(fh)
