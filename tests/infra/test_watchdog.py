"""Children die with the factory: a SIGKILLed factory leaves no check or agent tree running.

Real processes only: a child that starts a grandchild (both record their pids and sleep), a
factory (a small driver, or the real CLI) that is SIGKILLed while they run, and the watchdog.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.factory import write_config
from tests.support.repos import ROOT, make_repo, pid_alive

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals (Windows uses job objects)")

ON_PROC = Path("/proc/self/stat").exists()

# A check or agent: starts a grandchild, records both pids (atomically), then waits for `go`
# (or a minute). argv: the folder for the pid files, the `go` file.
CHILD = """
import os, subprocess, sys, time
from pathlib import Path
folder, go = Path(sys.argv[1]), Path(sys.argv[2])
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
for name, pid in (("grandchild", g.pid), ("child", os.getpid())):
    (folder / (name + ".tmp")).write_text(str(pid))
    os.replace(folder / (name + ".tmp"), folder / (name + ".pid"))
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
"""

# A factory process that runs one check through proc.run_logged, as integrate does.
DRIVER = """
import sys
from pathlib import Path
from tools.codex.factory.infra import proc
folder = Path(sys.argv[1])
argv = [sys.executable, "-c", sys.argv[2], str(folder), str(folder / "go")]
with open(folder / "out.log", "wb") as out, open(folder / "err.log", "wb") as err:
    proc.run_logged(argv, folder, proc.base_env(), out, err, 120)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _wait_for_pids(folder: Path, factory: subprocess.Popen[bytes] | None) -> dict[str, int]:
    deadline = time.monotonic() + 60
    names = ("child", "grandchild")
    while not all((folder / f"{n}.pid").exists() for n in names):
        assert factory is None or factory.poll() is None, factory.communicate()
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.02)
    return {n: int((folder / f"{n}.pid").read_text()) for n in names}


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still running after ``seconds`` (zombies count as gone)."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


@contextlib.contextmanager
def _no_leftovers(folder: Path) -> Iterator[None]:
    """Whatever the outcome, the test leaves no sleeping process behind."""
    try:
        yield
    finally:
        (folder / "go").touch()
        for f in folder.glob("*.pid"):
            pid = int(f.read_text())
            if pid_alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> dict[int, str]:
    """Children of ``pid`` and their command lines (Linux /proc; none elsewhere)."""
    found: dict[int, str] = {}
    if not ON_PROC:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found[int(entry.name)] = cmdline
    return found


def _watchdog_of(pid: int) -> int:
    found = [c for c, cmd in _children(pid).items() if "watchdog.py" in cmd]
    assert len(found) == 1, _children(pid)
    return found[0]


def _check_repo(tmp_path: Path, folder: Path) -> Path:
    repo = make_repo(tmp_path / "repo")
    argv = ["{python}", "-c", CHILD, str(folder), str(folder / "go")]
    write_config(repo, {"checks": {"required": [{"name": "spawns", "argv": argv}]}})
    return repo


def _cli(repo: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.codex.factory", "--repo", str(repo), "oneshot", "--dry-run"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkilled_factory_takes_its_check_tree_with_it(tmp_path: Path) -> None:
    """The defect: the check's group ran on after `kill -9` of its factory (its own session
    shields it from any signal to the factory's group, and nothing else was left to stop it)."""
    folder = tmp_path / "pids"
    folder.mkdir()
    with _no_leftovers(folder):
        driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(folder), CHILD],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        pids = _wait_for_pids(folder, driver)
        assert all(pid_alive(pid) for pid in pids.values())
        driver.kill()
        driver.communicate(timeout=30)
        assert driver.returncode == -signal.SIGKILL
        assert _gone_within(list(pids.values()), 5) == [], pids


def test_children_left_running_at_a_normal_exit_die_with_the_factory(tmp_path: Path) -> None:
    """A child the factory started and never stopped (a bug, an exception path) does not
    outlive a factory that exits normally either."""
    folder = tmp_path / "pids"
    folder.mkdir()
    forgets = """
import os, sys, time
from pathlib import Path
from tools.codex.factory.infra import proc
folder = Path(sys.argv[1])
argv = [sys.executable, "-c", sys.argv[2], str(folder), str(folder / "go")]
with open(os.devnull, "wb") as null:
    proc.start(argv, folder, proc.base_env(), null, null)
while not (folder / "child.pid").exists():
    time.sleep(0.02)
"""
    with _no_leftovers(folder):
        res = subprocess.run(
            [sys.executable, "-c", forgets, str(folder), CHILD],
            env=_env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        pids = _wait_for_pids(folder, None)
        assert _gone_within(list(pids.values()), 5) == [], pids


def test_sigkilled_cli_during_a_required_check_leaves_nothing_running(tmp_path: Path) -> None:
    folder = tmp_path / "pids"
    folder.mkdir()
    repo = _check_repo(tmp_path, folder)
    with _no_leftovers(folder):
        cli = _cli(repo)
        pids = _wait_for_pids(folder, cli)
        watchdogs = [c for c, cmd in _children(cli.pid).items() if "watchdog.py" in cmd]
        cli.kill()
        cli.communicate(timeout=30)
        assert cli.returncode == -signal.SIGKILL
        assert _gone_within(list(pids.values()), 5) == [], pids
        if ON_PROC:  # and the watchdog went too, its work done
            assert len(watchdogs) == 1 and _gone_within(watchdogs, 5) == []


@pytest.mark.skipif(not ON_PROC, reason="finds the watchdog through /proc")
def test_normal_run_leaves_no_watchdog_and_it_holds_none_of_the_factorys_output(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pids"
    folder.mkdir()
    repo = _check_repo(tmp_path, folder)
    with _no_leftovers(folder):
        cli = _cli(repo)
        pids = _wait_for_pids(folder, cli)
        watchdog = _watchdog_of(cli.pid)
        fds = {fd.name: os.readlink(fd) for fd in Path(f"/proc/{watchdog}/fd").iterdir()}
        outputs = {os.readlink(f"/proc/{cli.pid}/fd/{n}") for n in (1, 2)}
        assert fds["1"] == fds["2"] == os.devnull
        assert fds["0"].startswith("pipe:")
        assert outputs.isdisjoint(fds.values()), (fds, outputs)  # communicate() is not held up
        (folder / "go").touch()
        out, err = cli.communicate(timeout=120)
        assert cli.returncode == 0, out + err
        assert _gone_within([watchdog, *pids.values()], 5) == []


@pytest.mark.skipif(not ON_PROC, reason="finds the watchdog through /proc")
def test_watchdog_starts_with_the_first_child_only() -> None:
    """`--help` (and anything else that starts no agent or check) pays nothing for it."""
    probe = """
import json, os, sys
from tests.infra.test_watchdog import _children
from tools.codex.factory.cli import main
from tools.codex.factory.infra import proc
try:
    main(["--help"])
except SystemExit:
    pass
proc.run([sys.executable, "-c", "pass"])  # short calls (git) do not need it either
before = list(_children(os.getpid()).values())
with open(os.devnull, "wb") as null:
    for _ in range(2):
        proc.kill_tree(proc.start([sys.executable, "-c", "pass"], ".", proc.base_env(), null, null))
after = list(_children(os.getpid()).values())
print(json.dumps([before, after]), file=sys.stderr)
"""
    res = subprocess.run(
        [sys.executable, "-c", probe], env=_env(), capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    before, after = json.loads(res.stderr.strip().splitlines()[-1])
    assert before == []
    assert len(after) == 1 and "watchdog.py" in after[0]  # one, however many children


@pytest.mark.skipif(not ON_PROC, reason="finds the watchdog through /proc")
def test_a_killed_watchdog_is_replaced_for_the_next_child(tmp_path: Path) -> None:
    """Someone killed the watchdog: the next child starts a new one that covers every group."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
    probe = """
import os, signal, sys, time
from pathlib import Path
from tests.support.repos import pid_alive
from tests.infra.test_watchdog import _watchdog_of
from tools.codex.factory.infra import proc
def run(folder):
    argv = [sys.executable, "-c", sys.argv[1], folder, os.path.join(folder, "go")]
    with open(os.devnull, "wb") as null:
        return proc.start(argv, Path(folder), proc.base_env(), null, null)
run(sys.argv[2])
watchdog = _watchdog_of(os.getpid())
os.kill(watchdog, signal.SIGKILL)
while pid_alive(watchdog):
    time.sleep(0.01)
run(sys.argv[3])
assert _watchdog_of(os.getpid()) != watchdog
print("started", flush=True)
sys.stdin.read()
"""
    with _no_leftovers(first), _no_leftovers(second):
        driver = subprocess.Popen(
            [sys.executable, "-c", probe, CHILD, str(first), str(second)],
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert driver.stdout is not None
        assert driver.stdout.readline() == b"started\n", driver.communicate()
        pids = [*_wait_for_pids(first, driver).values(), *_wait_for_pids(second, driver).values()]
        driver.kill()
        driver.communicate(timeout=30)
        assert _gone_within(pids, 5) == [], pids
