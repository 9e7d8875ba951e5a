"""Filesystem helpers shared by the stages (one copy of each).

Everything here treats the tree as hostile: links are never followed (a link is listed or
removed as itself, never its target), nothing recurses (a folder can be nested deeper than
Python's recursion limit), and a file that must be regular is checked on the open handle,
so a link or a FIFO swapped in cannot redirect or hang the factory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.infra import clock

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0)
O_BINARY = getattr(os, "O_BINARY", 0)
# Folders of one path read_regular_files keeps open for the paths after it (deeper ones are
# opened again for each path): bounded, since a process may hold as few as 256 descriptors.
HELD_FOLDERS = 32
DIR_FLAGS = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
# Opening relative to a directory handle (openat and friends) is what makes "never through a
# link" hold for every component, not only the last. Windows has none of it.
HAVE_DIR_FD = (
    sys.platform != "win32"
    and O_NOFOLLOW != 0
    and O_DIRECTORY != 0
    and {os.open, os.mkdir, os.rename, os.unlink, os.rmdir, os.stat} <= os.supports_dir_fd
    and os.scandir in os.supports_fd
)
# A link refused by O_NOFOLLOW: ELOOP on Linux and macOS, EMLINK on FreeBSD.
LINK_ERRNOS = frozenset({errno.ELOOP, getattr(errno, "EMLINK", errno.ELOOP)})
_REPARSE_LINK_TAGS = frozenset(
    {
        getattr(stat, "IO_REPARSE_TAG_SYMLINK", 0xA000000C),
        getattr(stat, "IO_REPARSE_TAG_MOUNT_POINT", 0xA0000003),
    }
)
RETRIES = 5
RETRY_FIRST_DELAY = 0.1
_WINERRORS_TRANSIENT = (5, 32)  # access denied, sharing violation (another process has it open)

_T = TypeVar("_T")


class NotRegularFileError(OSError):
    """A path that must be a regular file is something else; ``kind`` says what."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"is {kind}", str(path))
        self.kind = kind


class HardLinkedError(NotRegularFileError):
    """A file opened to be written has other names (``nlink`` in all): writing it would write
    whatever file those names belong to (``ln someone.py factory_ledger.sha256``)."""

    def __init__(self, path: Path | str, nlink: int) -> None:
        super().__init__(path, f"a file with {nlink} hard links")
        self.nlink = nlink


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND


def check_one_link(path: Path | str, st: os.stat_result) -> None:
    """Refuse (HardLinkedError) a regular file with other names than this one."""
    if stat.S_ISREG(st.st_mode) and st.st_nlink != 1:
        raise HardLinkedError(path, st.st_nlink)


def is_link(st: os.stat_result) -> bool:
    """A symbolic link, or on Windows a junction (both redirect whoever follows them)."""
    if stat.S_ISLNK(st.st_mode):
        return True
    return getattr(st, "st_reparse_tag", 0) in _REPARSE_LINK_TAGS  # pragma: no cover - Windows


def kind_of(st: os.stat_result) -> str:
    """What a non-regular file is, for messages ("a symbolic link", "a FIFO", ...)."""
    mode = st.st_mode
    if is_link(st):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    """Open ``path`` as a regular file: never through a link at it, never blocking on a FIFO,
    and, opened to be written, never a file with other hard links (O_TRUNC waits for that check).

    Raises NotRegularFileError (an OSError; HardLinkedError for a hard link) for anything else;
    other OSErrors pass through.
    """
    writing = bool(flags & _WRITE_FLAGS)
    truncate = writing and bool(flags & os.O_TRUNC)
    flags = (flags & ~os.O_TRUNC) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_BINARY
    before: os.stat_result | None = None
    if not O_NOFOLLOW:  # pragma: no cover - Windows: check the name, then the handle
        try:
            before = os.lstat(path)
        except FileNotFoundError:
            before = None
        if before is not None and is_link(before):
            raise NotRegularFileError(path, kind_of(before))
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno in LINK_ERRNOS or exc.errno == errno.ENXIO:  # ENXIO: a FIFO, no reader
            try:
                st = os.lstat(path)
            except OSError:
                raise exc from None
            raise NotRegularFileError(path, kind_of(st)) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(path, kind_of(st))
        if writing:
            check_one_link(path, st)
        if not O_NOFOLLOW:  # pragma: no cover - Windows: the handle must be what the name is
            after = os.lstat(path)
            if is_link(after) or (st.st_dev, st.st_ino) != (after.st_dev, after.st_ino):
                raise NotRegularFileError(path, "a link or was replaced while it was opened")
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes of a regular file (see :func:`open_regular`)."""
    fd = open_regular(path, os.O_RDONLY)
    try:
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_regular_files(root: Path, rels: Iterable[str], limit: int) -> dict[str, bytes | None]:
    """All of each regular file at ``rels`` ('/'-paths) under ``root`` of at most ``limit``
    bytes, or None for anything else: missing, a link at it or at any folder of its path (a
    link there leads out of ``root``: to /dev, a FIFO's writer, a mount that hangs), a FIFO,
    a device, bigger, unreadable (held by another process on Windows), a name the file
    system encoding cannot spell (non-ASCII under a C locale without UTF-8 mode), or a path
    that is not plainly below ``root`` (an empty, '.' or '..' part, or on Windows one with a
    separator or drive).

    Each of a path's first :data:`HELD_FOLDERS` folders is opened once while the paths
    under it follow one another (in sorted order), and only the current path's are held; a
    deeper folder is held only until the next is open, so however deep or wide the tree,
    a few descriptors suffice (a process may have as few as 256)."""
    out: dict[str, bytes | None] = dict.fromkeys(rels)
    below = [rel for rel in out if _plainly_below(rel.split("/"))]
    if not HAVE_DIR_FD:  # pragma: no cover - Windows: check each folder, then open the last
        for rel in below:
            out[rel] = _read_checking_folders(root, rel.split("/"), limit)
        return out
    try:
        top = os.open(root, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    except (OSError, ValueError):
        return out
    chain: list[tuple[str, int]] = []  # the open folders of the current path, outermost first
    try:
        for rel in sorted(below):
            *folders, name = rel.split("/")
            held, deeper = folders[:HELD_FOLDERS], folders[HELD_FOLDERS:]
            keep = 0
            while keep < min(len(chain), len(held)) and chain[keep][0] == held[keep]:
                keep += 1
            while len(chain) > keep:
                os.close(chain.pop()[1])
            try:  # ValueError: a name the file system encoding cannot spell
                for part in held[keep:]:
                    chain.append((part, os.open(part, DIR_FLAGS, dir_fd=_last(chain, top))))
                fd = _open_below(_last(chain, top), deeper, name)
            except (OSError, ValueError):
                continue
            out[rel] = _read_if_within(fd, limit)
    finally:
        for _, fd in chain:
            os.close(fd)
        os.close(top)
    return out


def _plainly_below(parts: list[str]) -> bool:
    """Whether each part names an entry of the folder before it (never that folder, its
    parent, or on Windows another drive or a path of its own): the caller's paths, whoever
    they came from, cannot lead the reader out of its root."""
    odd = ("\\", ":") if os.name == "nt" else ()
    return all(part not in ("", ".", "..") and not any(c in part for c in odd) for part in parts)


def _last(chain: list[tuple[str, int]], top: int) -> int:
    return chain[-1][1] if chain else top


def _open_below(dir_fd: int, folders: list[str], name: str) -> int:
    """The file ``name`` in ``folders`` below the open ``dir_fd`` (left open), through no
    link; each folder closed once the next is open, so depth costs no descriptors."""
    flags = os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
    own = -1
    try:
        for part in folders:
            nxt = os.open(part, DIR_FLAGS, dir_fd=dir_fd if own < 0 else own)
            if own >= 0:
                os.close(own)
            own = nxt
        return os.open(name, flags, dir_fd=dir_fd if own < 0 else own)
    finally:
        if own >= 0:
            os.close(own)


def _read_checking_folders(  # pragma: no cover - Windows
    root: Path, parts: list[str], limit: int
) -> bytes | None:
    """Windows: no folder of the path may be a link (checked by name), then the file opened
    as :func:`open_regular` opens it."""
    for i in range(1, len(parts)):
        try:
            st = os.lstat(root.joinpath(*parts[:i]))
        except (OSError, ValueError):
            return None
        if is_link(st) or not stat.S_ISDIR(st.st_mode):
            return None
    try:
        fd = open_regular(root.joinpath(*parts), os.O_RDONLY)
    except (OSError, ValueError):
        return None
    return _read_if_within(fd, limit)


def _read_if_within(fd: int, limit: int) -> bytes | None:
    """All of the open ``fd`` (closed after) when it is a regular file of at most ``limit``
    bytes, else None."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        # First its size and one byte more (one read, no megabyte buffer for a small file).
        # Its end: a read that brings nothing, or a short one once the size fstat gave is
        # read whole; any other short read (/proc, a network or FUSE file system) goes on.
        chunks: list[bytes] = []
        got, ask = 0, st.st_size + 1
        while ask > 0:
            chunk = os.read(fd, ask)
            chunks.append(chunk)
            got += len(chunk)
            if not chunk or (len(chunk) < ask and got == st.st_size):
                break
            ask = min(limit + 1 - got, 1 << 20)
    except OSError:
        return None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return data if len(data) <= limit else None


# -- walk --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One thing below the walked root: its '/'-separated relative path, path and lstat."""

    rel: str
    path: Path
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode) and not is_link(self.st)

    @property
    def is_regular(self) -> bool:
        return stat.S_ISREG(self.st.st_mode) and not is_link(self.st)


def walk(root: Path) -> Iterator[Entry]:
    """Every entry below ``root`` (not ``root`` itself), names sorted within each folder.

    Iterative, so any depth works; links are yielded as links and never descended. A folder
    that cannot be listed (or was swapped for something else meanwhile) is skipped, like
    ``os.walk``. An entry is yielded before anything below it.
    """
    try:
        top = os.lstat(root)
    except OSError:
        return
    if not stat.S_ISDIR(top.st_mode) or is_link(top):
        return
    stack: list[tuple[str, Path, os.stat_result]] = [("", root, top)]
    while stack:
        rel, path, expect = stack.pop()
        below: list[tuple[str, Path, os.stat_result]] = []
        for name, st in sorted(_listing(path, expect)):
            child = Entry(f"{rel}{name}", path / name, st)
            yield child
            if child.is_dir:
                below.append((f"{child.rel}/", child.path, st))
        stack.extend(reversed(below))


def _listing(path: Path, expect: os.stat_result) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of the folder at ``path`` if it is still the folder ``expect`` was."""
    try:
        if HAVE_DIR_FD:
            fd = os.open(path, DIR_FLAGS)
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != (expect.st_dev, expect.st_ino):
                    return []
                with os.scandir(fd) as it:
                    names = [e.name for e in it]
                out = []
                for name in names:
                    try:
                        out.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
                    except FileNotFoundError:
                        continue
                return out
            finally:
                os.close(fd)
        with os.scandir(path) as it:  # pragma: no cover - Windows
            entries = list(it)
        out = []  # pragma: no cover - Windows
        for e in entries:  # pragma: no cover - Windows
            try:
                out.append((e.name, e.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
        return out  # pragma: no cover - Windows
    except OSError:
        return []


# -- remove_tree -------------------------------------------------------------------------------
class RemoveError(FactoryError):
    """A tree could not be removed; the message names the path and what to do."""


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything below it, read-only files included (git objects on
    Windows); a missing path is fine.

    Never follows a link: a link below ``path`` is removed itself, never what it points
    to, and ``path`` itself must be a folder (like ``shutil.rmtree``, a link or a file there
    is refused). Iterative with one directory handle open at a time, so any depth works.
    Each removal is retried on a transient error (another process holding a file open on
    Windows); a lasting failure is one RemoveError naming the path.
    """
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _remove_error(path, exc) from None
    if not stat.S_ISDIR(top.st_mode) or is_link(top):
        raise RemoveError(
            f"cannot remove {path}: it is {kind_of(top)}, not a folder; move it away by hand"
        )
    if HAVE_DIR_FD:
        try:
            fd = os.open(path, DIR_FLAGS)
        except OSError as exc:
            raise _remove_error(path, exc) from None
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (top.st_dev, top.st_ino):
                raise RemoveError(f"cannot remove {path}: it was replaced while being removed")
            empty_folder(fd, path)
        finally:
            os.close(fd)
    else:
        empty_folder_by_path(path)
    _retry(path, partial(_missing_ok, os.rmdir, path))


def empty_folder(dir_fd: int, where: Path) -> list[str]:
    """Remove everything in the folder open at ``dir_fd`` (shown as ``where``); return the
    names of the links that were directly in it.

    Each sub-folder is opened relative to its parent's handle with O_NOFOLLOW and checked to
    be the folder that was listed; climbing back uses ``..``, checked against the parent's
    identity, so only one handle is open at a time however deep the tree is.
    """
    fd = os.dup(dir_fd)
    links: list[str] = []
    # One frame per level above the current one: (name in parent, parent's remaining names,
    # parent's identity).
    frames: list[tuple[str, list[str], tuple[int, int]]] = []
    here = where
    try:
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        todo = _names(fd, here)
        while True:
            child: tuple[int, str, os.stat_result] | None = None
            while todo:
                name = todo.pop()
                path = here / name
                try:
                    cst = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise _remove_error(path, exc) from None
                if not frames and is_link(cst):
                    links.append(name)
                if not stat.S_ISDIR(cst.st_mode):
                    _retry(path, partial(_missing_ok, os.unlink, name, dir_fd=fd))
                elif not _rmdir_if_empty(fd, name, path):
                    child = (_open_child(fd, name, cst, path), name, cst)
                    break
            if child is not None:
                cfd, name, cst = child
                frames.append((name, todo, ident))
                os.close(fd)
                fd, ident, here = cfd, (cst.st_dev, cst.st_ino), here / name
                todo = _names(fd, here)
                continue
            if not frames:
                return sorted(links)
            name, todo, parent_ident = frames.pop()
            parent = os.open("..", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            pst = os.fstat(fd)
            if (pst.st_dev, pst.st_ino) != parent_ident:
                raise RemoveError(
                    f"cannot remove {here}: a folder above it was moved while it was being "
                    "removed; remove what is left by hand"
                )
            done, here, ident = here, here.parent, parent_ident
            _retry(done, partial(_missing_ok, os.rmdir, name, dir_fd=fd))
    finally:
        os.close(fd)


def _rmdir_if_empty(fd: int, name: str, path: Path) -> bool:
    """Remove an empty sub-folder at once; False if it has entries (descend into it)."""
    try:
        os.rmdir(name, dir_fd=fd)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        _retry(path, partial(_missing_ok, os.rmdir, name, dir_fd=fd))
    return True


def _names(fd: int, where: Path) -> list[str]:
    """The names in the folder open at ``fd``, in reverse order (popped from the end)."""
    try:
        with os.scandir(fd) as it:
            return sorted((e.name for e in it), reverse=True)
    except OSError as exc:
        raise _remove_error(where, exc) from None


def _open_child(fd: int, name: str, expect: os.stat_result, where: Path) -> int:
    """Open the sub-folder ``name`` of ``fd``: no link, and the folder that was listed."""
    try:
        child = os.open(name, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        raise _remove_error(where, exc) from None
    cst = os.fstat(child)
    if (cst.st_dev, cst.st_ino) != (expect.st_dev, expect.st_ino):
        os.close(child)
        raise RemoveError(f"cannot remove {where}: it was replaced while being removed")
    return child


def empty_folder_by_path(root: Path) -> list[str]:
    """:func:`empty_folder` without directory handles (Windows): post-order with an explicit
    stack; a link or junction is removed as itself (``rmdir`` on a directory link removes the
    link, not its target's contents). Returns the names of the links directly in ``root``."""
    links: list[str] = []
    stack: list[tuple[Path, bool]] = [(root, False)]
    while stack:
        path, emptied = stack.pop()
        if emptied:
            if path != root:
                _retry(path, partial(_missing_ok, os.rmdir, path))
            continue
        stack.append((path, True))
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _remove_error(path, exc) from None
        for e in entries:
            child = Path(e.path)
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if path == root and is_link(st):
                links.append(e.name)
            if stat.S_ISDIR(st.st_mode) and not is_link(st):
                stack.append((child, False))
            else:
                _retry(child, partial(_remove_entry, child, st))
    return links


def _remove_entry(path: Path, st: os.stat_result) -> None:
    """Remove one non-folder (or a link to a folder) by path."""
    if stat.S_ISDIR(st.st_mode):  # pragma: no cover - Windows: a junction or directory link
        _missing_ok(os.rmdir, path)
    else:
        _missing_ok(os.unlink, path)


def _missing_ok(op: Callable[..., None], *args: object, **kwargs: object) -> None:
    with contextlib.suppress(FileNotFoundError):
        op(*args, **kwargs)


def _transient(exc: OSError) -> bool:
    """Worth retrying: Windows reports a file another process holds open as access denied
    or a sharing violation, which clears once that process lets go."""
    return (
        isinstance(exc, PermissionError) or getattr(exc, "winerror", None) in _WINERRORS_TRANSIENT
    )


def _retry(path: Path, op: Callable[[], _T]) -> _T:
    """Run ``op``; on a transient error try again, RETRIES tries in all with doubling waits.
    On Windows a read-only file cannot be deleted: it is made writable and retried at once."""
    delay = RETRY_FIRST_DELAY
    for attempt in range(1, RETRIES + 1):
        try:
            return op()
        except OSError as exc:
            if not _transient(exc) or attempt == RETRIES:
                raise _remove_error(path, exc, attempt) from None
            if attempt == 1 and os.name == "nt" and _make_writable(path):  # pragma: no cover
                continue
            clock.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def _make_writable(path: Path) -> bool:  # pragma: no cover - Windows
    """Clear the read-only attribute (git marks its objects so), never through a link."""
    try:
        if is_link(os.lstat(path)):
            return False
        os.chmod(path, stat.S_IWRITE | stat.S_IREAD)
    except OSError:
        return False
    return True


def _remove_error(path: Path, exc: OSError, tries: int = 1) -> RemoveError:
    reason = exc.strerror or type(exc).__name__
    after = f" (after {tries} tries)" if tries > 1 else ""
    return RemoveError(
        f"cannot remove {path}: {reason}{after}; close any program using it (an editor, a "
        "terminal, a virus scanner), then remove it by hand or run the command again"
    )


def read_file(path: Path, label: str, *, limit: int) -> bytes:
    """The bytes of a regular file that is not a link, at most ``limit`` bytes; a one-line
    UsageError naming ``label`` otherwise (a FIFO cannot hang it)."""

    try:
        fd = open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        raise UsageError(f"{label}: file not found") from None
    except NotRegularFileError as exc:
        raise UsageError(f"{label}: {exc.strerror}; it must be a regular file") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot read ({exc.strerror or type(exc).__name__})") from None
    return _read_fd(fd, label, limit)


def _read_fd(fd: int, label: str, limit: int) -> bytes:
    """All of the open regular file ``fd`` (closed after), at most ``limit`` bytes."""
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise UsageError(f"{label}: {size} bytes, over the limit of {limit}")
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise UsageError(f"{label}: cannot read ({exc.strerror or type(exc).__name__})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise UsageError(f"{label}: over the limit of {limit} bytes")
    return data


def read_in_tree(root: Path, rel: str, label: str, *, limit: int) -> bytes:
    """The bytes of the regular file at ``rel`` (a normalised '/'-path) under ``root``, reached
    through no link at any component (a hostile tree cannot point it outside ``root``), at
    most ``limit`` bytes; a one-line UsageError naming ``label`` otherwise."""
    parts = rel.split("/")
    if not HAVE_DIR_FD:  # pragma: no cover - Windows: check each name, then read the last
        for i in range(1, len(parts) + 1):
            try:
                st = os.lstat(root.joinpath(*parts[:i]))
            except OSError:
                raise UsageError(f"{label}: file not found") from None
            if is_link(st):
                raise UsageError(f"{label}: {'/'.join(parts[:i])} is a link; never followed")
        return read_file(root.joinpath(*parts), label, limit=limit)
    try:
        fd = os.open(root, DIR_FLAGS)
    except OSError as exc:
        raise UsageError(f"{label}: cannot open {root.name} ({exc.strerror})") from None
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                why = _why_not_opened(fd, part, exc)
                raise UsageError(f"{label}: {'/'.join(parts[: i + 1])}: {why}") from None
            os.close(fd)
            fd = nxt
        flags = os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        try:
            ffd = os.open(parts[-1], flags, dir_fd=fd)
        except FileNotFoundError:
            raise UsageError(f"{label}: file not found") from None
        except OSError as exc:
            raise UsageError(f"{label}: {_why_not_opened(fd, parts[-1], exc)}") from None
    finally:
        os.close(fd)
    st = os.fstat(ffd)
    if not stat.S_ISREG(st.st_mode):
        os.close(ffd)
        raise UsageError(f"{label}: {kind_of(st)}; it must be a regular file")
    return _read_fd(ffd, label, limit)


def _why_not_opened(dir_fd: int, name: str, exc: OSError) -> str:
    """Why ``name`` in ``dir_fd`` could not be opened: a link (O_NOFOLLOW says ELOOP, or with
    O_DIRECTORY ENOTDIR), or the system's words."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return str(exc.strerror)
    return "a link; never followed" if is_link(st) else str(exc.strerror)
