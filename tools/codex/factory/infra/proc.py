"""The one subprocess wrapper: argv lists only, never a shell; errors show cmd, rc and output.

Every child is started through here. ``argv[0]`` is resolved with :func:`shutil.which` on the
child's PATH first (on Windows that honours PATHEXT, so npm's ``codex.cmd``/``claude.cmd``
shims start; ``Popen(["codex"])`` alone cannot start them).

Children started by :func:`start` (agents, checks) die with the factory, however it ends: on
POSIX a watchdog process (:mod:`watchdog`) SIGKILLs their process groups when the factory's
end of a pipe closes; on Windows each child runs in a job object that kills its whole tree when
the factory's handle to it closes. Short calls through :func:`run` (git) are not covered.

Git starts only through :mod:`gitops`: :func:`run` and :func:`start` refuse a program named git
unless the call carries the permit gitops claims once, at import. The operator's configured
commands (checks, agents), whose program may be git (the default check is ``git diff
--check``), start through :func:`run_logged` and :func:`start_configured`, which say so.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tools.codex.factory.errors import ProcessError
from tools.codex.factory.infra.clock import real_monotonic

# Variables that would point git at another repository than the one we name.
GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


class GitBoundaryError(RuntimeError):
    """A programming error: git started somewhere other than :mod:`gitops` (not a
    :class:`ProcessError`, so no handler of failed commands can swallow it)."""


_GIT_PROGRAMS = frozenset({"git", "git.exe"})
_GIT_PERMIT = object()
_permit_claimed = False


def claim_git_permit() -> object:
    """The permit that lets :mod:`gitops` start git, handed out once: gitops claims it when it
    is imported, so a later caller anywhere else is refused."""
    global _permit_claimed
    if _permit_claimed:
        raise GitBoundaryError("the git permit is gitops' own: run git through infra/gitops.py")
    _permit_claimed = True
    return _GIT_PERMIT


def _is_git(program: str) -> bool:
    return program.replace("\\", "/").rsplit("/", 1)[-1].lower() in _GIT_PROGRAMS


def _refuse_git(args: Sequence[str], resolved: Sequence[str], permit: object) -> None:
    """Refuse git, however its command line was built, unless ``permit`` is gitops' permit.

    The program is judged by the name as written and by the file it resolves to (a link named
    otherwise that points at git is git).
    """
    if permit is _GIT_PERMIT:
        return
    if _is_git(args[0]) or _is_git(os.path.realpath(resolved[0])):
        raise GitBoundaryError(
            f"refused to start {args[0]!r}: git runs only through infra/gitops.py "
            "(its named operations); a configured check or agent runs through "
            "proc.run_logged / proc.start_configured"
        )


@dataclass(frozen=True)
class Result:
    argv: list[str]
    rc: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def base_env(extra: Mapping[str, str] | None = None, drop_git: bool = False) -> dict[str, str]:
    """The environment for a child: ours minus repository-locating git variables."""
    env = dict(os.environ)
    for key in list(env):
        if (drop_git and key.startswith("GIT_")) or key in GIT_LOCATION_VARS:
            del env[key]
    if extra:
        env.update(extra)
    return env


@functools.lru_cache(maxsize=256)
def _which(program: str, path: str | None) -> str | None:
    return shutil.which(program, path=path)


def resolve_argv(
    argv: Sequence[str], env: Mapping[str, str] | None, error: type[ProcessError] = ProcessError
) -> list[str]:
    """``argv`` as strings with ``argv[0]`` resolved on the child's PATH (PATHEXT on Windows).

    A program that is not found is one ``error`` line naming it. A path with a directory part
    is used as given (relative to the child's working folder).
    """
    args = [str(a) for a in argv]
    if not args:
        raise error(args, None, "", "", why="could not start: empty command")
    prog = args[0]
    if os.sep in prog or (os.altsep and os.altsep in prog):
        return args
    path = (env if env is not None else os.environ).get("PATH")
    found = _which(prog, path if path is not None else os.defpath)
    if found is None:
        raise error(args, None, "", "", why=f"could not start: {prog!r} not found on PATH")
    return [found, *args[1:]]


def run(
    argv: Sequence[str],
    cwd: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
    check: bool = True,
    error: type[ProcessError] = ProcessError,
    git_permit: object = None,
) -> Result:
    """Run ``argv``; raise ``error`` on a non-zero rc when ``check``, a missing program always.

    git is refused without ``git_permit`` (:mod:`gitops` alone holds it).
    """
    child_env = dict(env) if env is not None else base_env()
    args = [str(a) for a in argv]  # as given: messages and results name the command as written
    resolved = resolve_argv(args, child_env, error)
    _refuse_git(args, resolved, git_permit)
    try:
        proc = subprocess.run(
            resolved,
            cwd=str(cwd) if cwd is not None else None,
            env=child_env,
            input=input,
            capture_output=True,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise error(
            args, None, "", "", why=f"could not start: {args[0]!r} not found on PATH"
        ) from None
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode("utf-8", "replace")
        err = (exc.stderr or b"").decode("utf-8", "replace")
        raise error(args, None, out, err, why=f"timed out after {timeout}s") from None
    except OSError as exc:
        raise error(args, None, "", "", why=f"could not start: {exc.strerror}") from None
    result = Result(args, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise error(args, proc.returncode, result.out, result.err)
    return result


@dataclass(frozen=True)
class Finished:
    rc: int | None
    timed_out: bool
    interrupted: bool = False


class _Watchdog:
    """The factory's side of the POSIX watchdog: one per process, started before the first
    child group, told of every group by a line on a pipe only the factory can write to.

    Only this process holds the write end (``os.pipe`` descriptors are not inherited, and the
    watchdog gets the read end as its stdin), so the watchdog sees end of file exactly when
    this process is gone. It runs in its own session with no stdout or stderr: a caller waiting
    for the factory's output is not kept waiting by it, and a signal to the factory's process
    group does not take it down with the factory.
    """

    PROGRAM = Path(__file__).with_name("watchdog.py")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._groups: set[int] = set()

    def ensure(self) -> None:
        """Start the watchdog unless it runs: only processes that start children pay for it."""
        with self._lock:
            if self._fd is None:
                if self._proc is None:
                    atexit.register(self.close)
                self._restart()

    def close(self) -> None:
        """At a normal exit: let the watchdog stop what is left and wait for it (briefly), so
        the children are gone when the factory is and no watchdog outlives it."""
        with self._lock:
            if self._fd is None or self._proc is None:
                return
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=2)

    def register(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            self._send(f"+{pgid}\n".encode())

    def unregister(self, pgid: int) -> None:
        """Forget a group once it is stopped, so a later group reusing its id is left alone."""
        with self._lock:
            if pgid not in self._groups:
                return
            self._groups.discard(pgid)
            if self._fd is not None:
                with contextlib.suppress(OSError):  # a dead watchdog is replaced by register
                    self._write(f"-{pgid}\n".encode())

    def _send(self, line: bytes) -> None:
        try:
            self._write(line)
        except OSError:  # the watchdog was killed: a new one takes over every group
            self._restart()

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def _restart(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._proc is not None:
            self._proc.poll()  # reap a dead one
        argv = [sys.executable, "-I", "-S", str(self.PROGRAM), str(int(signal.SIGKILL))]
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=os.sep,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(write_fd)
            raise ProcessError(
                argv, None, "", "", why=f"could not start the watchdog: {exc.strerror}"
            ) from None
        finally:
            os.close(read_fd)
        self._fd = write_fd
        if self._groups:
            self._write("".join(f"+{g}\n" for g in sorted(self._groups)).encode())


_WATCHDOG = _Watchdog()


if sys.platform == "win32":  # pragma: no cover - Windows
    import ctypes
    from ctypes import wintypes

    _KILL_ON_JOB_CLOSE = 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    _EXTENDED_LIMIT_INFORMATION = 9  # JobObjectExtendedLimitInformation
    _CREATE_SUSPENDED = 0x4
    _PROCESS_RIGHTS = 0x0001 | 0x0100 | 0x0800  # TERMINATE | SET_QUOTA | SUSPEND_RESUME

    class _BasicLimits(ctypes.Structure):
        _fields_ = (
            ("PerProcessUserTimeLimit", ctypes.c_int64),
            ("PerJobUserTimeLimit", ctypes.c_int64),
            ("LimitFlags", wintypes.DWORD),
            ("MinimumWorkingSetSize", ctypes.c_size_t),
            ("MaximumWorkingSetSize", ctypes.c_size_t),
            ("ActiveProcessLimit", wintypes.DWORD),
            ("Affinity", ctypes.c_size_t),
            ("PriorityClass", wintypes.DWORD),
            ("SchedulingClass", wintypes.DWORD),
        )

    class _ExtendedLimits(ctypes.Structure):
        _fields_ = (
            ("BasicLimitInformation", _BasicLimits),
            ("IoInfo", ctypes.c_uint64 * 6),
            ("ProcessMemoryLimit", ctypes.c_size_t),
            ("JobMemoryLimit", ctypes.c_size_t),
            ("PeakProcessMemoryUsed", ctypes.c_size_t),
            ("PeakJobMemoryUsed", ctypes.c_size_t),
        )

    _K32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _K32.CreateJobObjectW.argtypes = (wintypes.LPVOID, wintypes.LPCWSTR)
    _K32.CreateJobObjectW.restype = wintypes.HANDLE
    _K32.SetInformationJobObject.argtypes = (
        wintypes.HANDLE,
        ctypes.c_int,
        wintypes.LPVOID,
        wintypes.DWORD,
    )
    _K32.SetInformationJobObject.restype = wintypes.BOOL
    _K32.AssignProcessToJobObject.argtypes = (wintypes.HANDLE, wintypes.HANDLE)
    _K32.AssignProcessToJobObject.restype = wintypes.BOOL
    _K32.TerminateJobObject.argtypes = (wintypes.HANDLE, wintypes.UINT)
    _K32.TerminateJobObject.restype = wintypes.BOOL
    _K32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    _K32.OpenProcess.restype = wintypes.HANDLE
    _K32.CloseHandle.argtypes = (wintypes.HANDLE,)
    _K32.CloseHandle.restype = wintypes.BOOL
    _NTDLL = ctypes.WinDLL("ntdll")
    _NTDLL.NtResumeProcess.argtypes = (wintypes.HANDLE,)
    _NTDLL.NtResumeProcess.restype = ctypes.c_long

    def _job_create() -> int:
        """A job whose processes all die when its last handle closes: ours is the only one (not
        inheritable), so the factory's death, SIGKILL-like TerminateProcess included, kills it."""
        job = _K32.CreateJobObjectW(None, None)
        if not job:
            raise ctypes.WinError(ctypes.get_last_error())
        info = _ExtendedLimits()
        info.BasicLimitInformation.LimitFlags = _KILL_ON_JOB_CLOSE
        if not _K32.SetInformationJobObject(
            job, _EXTENDED_LIMIT_INFORMATION, ctypes.byref(info), ctypes.sizeof(info)
        ):
            code = ctypes.get_last_error()
            _K32.CloseHandle(job)
            raise ctypes.WinError(code)
        return int(job)

    def _job_adopt(job: int, pid: int) -> None:
        """Put a child started suspended into ``job``, then let it run: nothing it starts can
        be created outside the job."""
        handle = _K32.OpenProcess(_PROCESS_RIGHTS, False, pid)
        if not handle:
            raise ctypes.WinError(ctypes.get_last_error())
        try:
            if not _K32.AssignProcessToJobObject(job, handle):
                raise ctypes.WinError(ctypes.get_last_error())
            status = _NTDLL.NtResumeProcess(handle)
            if status != 0:
                raise OSError(0, f"could not resume the process (0x{status & 0xFFFFFFFF:08x})")
        finally:
            _K32.CloseHandle(handle)

    def _job_stop(job: int) -> None:
        _K32.TerminateJobObject(job, 1)
        _K32.CloseHandle(job)

    def _start_in_job(
        args: list[str],
        cwd: Path,
        env: Mapping[str, str],
        stdout: IO[bytes],
        stderr: IO[bytes],
        stdin_data: bool,
    ) -> subprocess.Popen[bytes]:
        """Start suspended, put into its own kill-on-close job, then resume."""
        try:
            job = _job_create()
        except OSError as exc:
            raise ProcessError(args, None, "", "", why=f"could not start: {exc.strerror}") from None
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | _CREATE_SUSPENDED
        try:
            p = _popen(args, cwd, env, stdout, stderr, stdin_data, flags)
        except ProcessError:
            _job_stop(job)
            raise
        try:
            _job_adopt(job, p.pid)
        except OSError as exc:
            p.kill()
            p.wait()
            _job_stop(job)
            raise ProcessError(args, None, "", "", why=f"could not start: {exc.strerror}") from None
        with _JOBS_LOCK:
            _JOBS[p] = job
        return p


# Windows: the job of each child started by start(), until kill_group stops it.
_JOBS: dict[subprocess.Popen[bytes], int] = {}
_JOBS_LOCK = threading.Lock()


def kill_group(p: subprocess.Popen[bytes]) -> None:
    """Stop whatever is left of a child started by :func:`start` and everything it started,
    running or not: its process group (POSIX) or its job object (Windows). Call it once the
    child is done: the group is then dropped from what the factory's death would stop."""
    if sys.platform == "win32":  # pragma: no cover - Windows
        with _JOBS_LOCK:
            job = _JOBS.pop(p, None)
        if job is not None:
            _job_stop(job)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)
    _WATCHDOG.unregister(p.pid)


def kill_tree(p: subprocess.Popen[bytes]) -> None:
    """Stop a child and everything it started (its own process group / job)."""
    if sys.platform == "win32":  # pragma: no cover - Windows
        with _JOBS_LOCK:
            known = p in _JOBS
        if not known and p.poll() is None:  # not started by start(): no job to stop
            with contextlib.suppress(ProcessError):
                run(["taskkill", "/F", "/T", "/PID", str(p.pid)], check=False)
    kill_group(p)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover
        p.kill()


def start(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    stdout: IO[bytes],
    stderr: IO[bytes],
    stdin_data: bool = False,
    *,
    git_permit: object = None,
) -> subprocess.Popen[bytes]:
    """Start in a new process group (POSIX session / Windows job) that dies with the factory.

    Stop it with :func:`kill_tree` or, once the child has exited, :func:`kill_group`; or wait
    for it with :func:`wait`. git is refused without ``git_permit`` (:mod:`gitops` alone holds it).
    """
    args = [str(a) for a in argv]
    _refuse_git(args, resolve_argv(args, env), git_permit)
    return _start(args, cwd, env, stdout, stderr, stdin_data)


def start_configured(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    stdout: IO[bytes],
    stderr: IO[bytes],
    stdin_data: bool = False,
) -> subprocess.Popen[bytes]:
    """Start the operator's configured command (a headless agent) as :func:`start` does: its
    program is the operator's choice, git included, so it is not judged here."""
    return _start([str(a) for a in argv], cwd, env, stdout, stderr, stdin_data)


def _start(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str],
    stdout: IO[bytes],
    stderr: IO[bytes],
    stdin_data: bool,
) -> subprocess.Popen[bytes]:
    if sys.platform == "win32":  # pragma: no cover - Windows
        return _start_in_job(args, cwd, env, stdout, stderr, stdin_data)
    _WATCHDOG.ensure()  # first, so a watchdog that cannot start means no unwatched child
    p = _popen(args, cwd, env, stdout, stderr, stdin_data, 0)
    try:
        _WATCHDOG.register(p.pid)
    except (ProcessError, OSError):  # pragma: no cover - the watchdog died and cannot restart
        kill_tree(p)
        raise
    return p


def _popen(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str],
    stdout: IO[bytes],
    stderr: IO[bytes],
    stdin_data: bool,
    flags: int,
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            resolve_argv(args, env),
            cwd=str(cwd),
            env=dict(env),
            stdin=subprocess.PIPE if stdin_data else subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            creationflags=flags,
            start_new_session=os.name != "nt",
        )
    except FileNotFoundError:
        raise ProcessError(
            args, None, "", "", why=f"could not start: {args[0]!r} not found on PATH"
        ) from None
    except OSError as exc:
        raise ProcessError(args, None, "", "", why=f"could not start: {exc.strerror}") from None


def feed(p: subprocess.Popen[bytes], data: bytes) -> None:
    """Write ``data`` to a child's stdin and close it, from a thread of its own: a child that
    never reads cannot block the caller, whose :func:`wait` keeps its time limit."""

    def write(pipe: IO[bytes]) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            pipe.write(data)
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            pipe.close()

    if p.stdin is not None:
        threading.Thread(target=write, args=(p.stdin,), daemon=True).start()


# How often :func:`wait` looks at its stop event while the child runs.
_POLL_S = 0.1


def wait(
    p: subprocess.Popen[bytes],
    timeout: float | None,
    stop: threading.Event | None = None,
) -> Finished:
    """Wait for a child started by :func:`start`; the one place a child's time runs out.

    Its whole tree is stopped when ``timeout`` seconds (real time, whatever the factory's clock
    says) have passed (``timed_out``), when ``stop`` is set (``interrupted``: another thread
    stops every agent on Ctrl-C), or on Ctrl-C in this thread (re-raised once it is stopped).
    Whatever it left running in its group is stopped when it exits: grandchildren must not
    outlive it.
    """
    deadline = None if timeout is None else real_monotonic() + timeout
    try:
        while True:
            left = None if deadline is None else max(deadline - real_monotonic(), 0.0)
            step = left if stop is None else min(_POLL_S, _POLL_S if left is None else left)
            try:
                rc = p.wait(timeout=step)
                break
            except subprocess.TimeoutExpired:
                pass
            if stop is not None and stop.is_set():
                kill_tree(p)
                return Finished(None, False, True)
            if deadline is not None and real_monotonic() >= deadline:
                kill_tree(p)
                return Finished(None, True)
    except KeyboardInterrupt:
        kill_tree(p)
        raise
    kill_group(p)
    return Finished(rc, False)


def run_logged(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    out: IO[bytes],
    err: IO[bytes],
    timeout: float | None,
    stdin_data: bytes | None = None,
) -> Finished:
    """Run the operator's configured command (a check): its program is the operator's choice,
    git included (the default check is ``git diff --check``), so it is not judged here.

    Output streams to two open files (the caller creates them, e.g. through the guarded
    writer); on timeout or Ctrl-C the whole tree is stopped (:func:`wait`).
    """
    p = _start([str(a) for a in argv], cwd, env, out, err, stdin_data is not None)
    if stdin_data is not None:
        feed(p, stdin_data)
    return wait(p, timeout)


def spawn_detached(argv: Sequence[str]) -> None:
    """Start a program we do not wait for (a file opener): no stdio, its own session."""
    args = [str(a) for a in argv]
    resolved = resolve_argv(args, None)
    _refuse_git(args, resolved, None)
    try:
        subprocess.Popen(
            resolved,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=os.name != "nt",
        )
    except OSError as exc:
        raise ProcessError(args, None, "", "", why=f"could not start: {exc.strerror}") from None
