"""Module boundaries the design fixes, checked on the source: one module each for time, processes
and git, and no text-mode file writes (CRLF on Windows)."""

from __future__ import annotations

import ast
import os
import sys
import time
from pathlib import Path

import pytest

from tools.codex.factory.errors import ProcessError
from tools.codex.factory.infra import proc

PACKAGE = Path(__file__).resolve().parents[1] / "tools" / "codex" / "factory"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _trees() -> list[tuple[str, ast.AST]]:
    return [(p.name, ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in MODULES]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def test_only_clock_reads_the_time() -> None:
    found = []
    for name, tree in _trees():
        if name == "clock.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "time" for a in node.names):
                found.append(f"{name}:{node.lineno} import time")
            elif isinstance(node, ast.ImportFrom) and node.module == "time":
                found.append(f"{name}:{node.lineno} from time import")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr in ("now", "utcnow", "today")
                and "date" in _dotted(node.value).lower()
            ):
                found.append(f"{name}:{node.lineno} {_dotted(node)}")
    assert found == []


def test_only_proc_starts_or_stops_processes() -> None:
    starters = {
        "subprocess.run",
        "subprocess.Popen",
        "subprocess.call",
        "subprocess.check_call",
        "subprocess.check_output",
        "os.system",
        "os.popen",
        "os.killpg",
        "os.kill",
    }
    # The watchdog is a separate program that proc starts; stopping groups is its one job.
    allowed = {"proc.py": starters, "watchdog.py": {"os.killpg"}}
    found = [
        f"{name}:{node.lineno} {_dotted(node.func)}"
        for name, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _dotted(node.func) in starters - allowed.get(name, set())
    ]
    # Nor under another name (``import subprocess as sp``, ``from subprocess import run``):
    # subprocess is imported by proc alone (elsewhere for type hints only).
    for name, tree in _trees():
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and _dotted(node.test) == "TYPE_CHECKING"
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if "subprocess" in mods and name != "proc.py" and id(node) not in typing_only:
                found.append(f"{name}:{node.lineno} imports subprocess")
    assert found == []


# Where a command line given as text would run: a string starting with "git " passed to these.
_RUNNERS = {
    "shlex.split",
    "proc.run",
    "proc.start",
    "proc.start_configured",
    "proc.run_logged",
    "proc.spawn_detached",
    "run",
    "start",
}
# The operator's configured commands (their program may be git) start only where the package
# runs them: checks in integrate, agents in agents, the holdout's scenarios in evaluate, the
# scenarios' service in service.
_CONFIGURED = {
    "proc.run_logged": ("integrate.py", "evaluate.py"),
    "proc.start_configured": ("agents.py", "service.py"),
}
# Command lines starting with git that are data, not calls: the default required check.
_GIT_DATA = {"config.py": 1}


def _starts_git(node: ast.AST) -> bool:
    """A string or f-string starting with "git " (a command line built as text)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (
            node.value.startswith("git ") and len(node.value.split()) > 1 and "`" not in node.value
        )
    if isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        return isinstance(head, ast.Constant) and str(head.value).startswith("git ")
    return False


def _git_list(node: ast.AST) -> bool:
    """["git", ...] or ("git", ...): a command line as a list."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        first = node.elts[0]
        return isinstance(first, ast.Constant) and first.value == "git"
    return False


def git_command_lines(tree: ast.AST) -> list[tuple[int, str]]:
    """Where ``tree`` builds or runs a git command line: a list starting with "git" (anywhere),
    a name bound to "git", text starting with "git " that is split, formatted, concatenated or
    passed to a runner, a call of ``gitops.git`` or a use of the git permit."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if _git_list(node):
            found.append((line, "command line as a list"))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and (
            isinstance(node.value, ast.Constant) and node.value.value == "git"
        ):
            found.append((line, 'a name bound to "git"'))
        elif isinstance(node, ast.Attribute) and node.attr in ("split", "format"):
            if _starts_git(node.value):
                found.append((line, f"command line as text (.{node.attr})"))
        elif isinstance(node, ast.BinOp) and (_starts_git(node.left) or _starts_git(node.right)):
            found.append((line, "command line as text (+)"))
        elif isinstance(node, ast.Call):
            if _dotted(node.func) in ("gitops.git", "claim_git_permit", "proc.claim_git_permit"):
                found.append((line, f"{_dotted(node.func)}(...)"))
            if any(k.arg == "git_permit" for k in node.keywords):
                found.append((line, "git_permit="))
            if _dotted(node.func) in _RUNNERS and any(
                _starts_git(a) for a in [*node.args, *(k.value for k in node.keywords)]
            ):
                found.append((line, "command line as text (run)"))
        elif isinstance(node, ast.Name) and "GIT_PERMIT" in node.id:
            found.append((line, node.id))
    return found


def test_only_gitops_runs_git() -> None:
    """git runs only in gitops, which offers named operations: no command line starting with
    git is built anywhere else (list, name, split/formatted/joined text, text passed to a
    runner), nothing outside gitops calls its low-level ``gitops.git`` or touches its permit,
    and the operator's configured commands start only where checks and agents run. (proc
    refuses git at run time too: see test_proc_refuses_git_outside_gitops.)"""
    found = []
    data: dict[str, int] = {}
    for name, tree in _trees():
        if name in ("gitops.py", "proc.py"):
            continue
        for line, what in git_command_lines(tree):
            if what == "command line as a list" and name in _GIT_DATA:
                data[name] = data.get(name, 0) + 1
            else:
                found.append(f"{name}:{line} {what}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and name not in _CONFIGURED.get(
                _dotted(node.func), (name,)
            ):
                found.append(f"{name}:{node.lineno} {_dotted(node.func)} (a configured command)")
    assert found == []
    assert data == _GIT_DATA


# Each way a git command line got past the source check before (added to run/clean.py).
SNEAKY = [
    'proc.run(f"git -C {x} status".split())',
    'cmd = ["git", "-C", x, "status"]\nproc.run(cmd)',
    'proc.run(["git"] + ["-C", x, "status"])',
    'GIT = "git"\nproc.run([GIT, "-C", x, "status"])',
    'proc.run("git -C {} status".format(x).split())',
    'proc.run(("git -C " + x + " status").split())',
    'proc.run(["g" + "it", "-C", x, "status"])',
]


@pytest.mark.parametrize("source", SNEAKY)
def test_proc_refuses_git_outside_gitops(tmp_path: Path, source: str) -> None:
    """However the command line is built, proc refuses to start git without gitops' permit (the
    source check sees every form but the last)."""
    from tests.support.repos import make_repo

    repo = make_repo(tmp_path / "repo")
    with pytest.raises(proc.GitBoundaryError, match=r"git runs only through infra/gitops\.py"):
        exec(source, {"proc": proc, "x": str(repo)})
    if '+ "it"' not in source:
        assert git_command_lines(ast.parse(source)) != []


def test_proc_refuses_git_by_any_name(tmp_path: Path) -> None:
    """git.exe, a path to git, a link named otherwise, and every way of starting a child."""
    import shutil

    from tools.codex.factory.infra import gitops

    real = shutil.which("git")
    assert real is not None
    alias = tmp_path / "g"
    alias.symlink_to(real)
    env = proc.base_env()
    for argv in (["GIT.EXE", "--version"], [real, "--version"], [str(alias), "--version"]):
        if argv[0] == "GIT.EXE" and shutil.which("GIT.EXE") is None:
            assert proc._is_git(argv[0])  # only Windows can start it by that name
            continue
        with pytest.raises(proc.GitBoundaryError):
            proc.run(argv)
    with open(os.devnull, "wb") as null:
        with pytest.raises(proc.GitBoundaryError):
            proc.start(["git", "--version"], tmp_path, env, null, null)
        # The operator's configured commands may be git: a check (the default is
        # `git diff --check`) and an agent.
        assert proc.run_logged(["git", "--version"], tmp_path, env, null, null, 60).rc == 0
        child = proc.start_configured(["git", "--version"], tmp_path, env, null, null)
        assert proc.wait(child, 60).rc == 0
    with pytest.raises(proc.GitBoundaryError):
        proc.spawn_detached(["git", "--version"])
    with pytest.raises(proc.GitBoundaryError, match="gitops' own"):
        proc.claim_git_permit()  # gitops claimed it at import
    assert gitops.version() >= gitops.MIN_VERSION  # gitops' own calls pass


def test_wait_stops_a_child_on_timeout_and_on_stop(tmp_path: Path) -> None:
    """proc.wait owns the time limit and the stop event: the child's whole tree goes."""
    import threading

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    env = proc.base_env()
    with open(os.devnull, "wb") as null:
        began = time.monotonic()
        done = proc.wait(proc.start(sleeper, tmp_path, env, null, null), 0.5)
        assert (done.rc, done.timed_out, done.interrupted) == (None, True, False)
        stop = threading.Event()
        child = proc.start(sleeper, tmp_path, env, null, null)
        threading.Timer(0.3, stop.set).start()
        done = proc.wait(child, 60, stop)
        assert (done.rc, done.timed_out, done.interrupted) == (None, False, True)
        assert child.poll() is not None
        assert time.monotonic() - began < 30
        quick = proc.start([sys.executable, "-c", "raise SystemExit(4)"], tmp_path, env, null, null)
        assert proc.wait(quick, 60, stop=threading.Event()).rc == 4


def test_no_text_mode_writes() -> None:
    """Path.write_text and open(..., "w") without newline= write CRLF on Windows."""
    found = []
    for name, tree in _trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            keywords = {k.arg for k in node.keywords}
            if (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "write_text"
                and "encoding" in keywords
            ):
                found.append(f"{name}:{node.lineno} write_text")
            if (
                isinstance(node.func, ast.Name)
                and node.func.id == "open"
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and set(node.args[1].value) & set("wax")
                and "b" not in node.args[1].value
                and "newline" not in keywords
            ):
                found.append(f"{name}:{node.lineno} open({node.args[1].value!r})")
    assert found == []


def test_programs_are_resolved_on_the_childs_path(tmp_path: Path) -> None:
    """argv[0] goes through shutil.which with the child's PATH (PATHEXT on Windows: npm's .cmd shims)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if os.name == "nt":  # pragma: no cover - Windows: a .cmd shim, as npm installs codex and claude
        tool = bin_dir / "mytool.cmd"
        tool.write_bytes(b"@echo off\r\necho shim %1\r\n")
    else:
        tool = bin_dir / "mytool"
        tool.write_bytes(f"#!{sys.executable}\nimport sys\nprint('shim', sys.argv[1])\n".encode())
        tool.chmod(0o755)
    env = proc.base_env({"PATH": str(bin_dir)})
    assert proc.resolve_argv(["mytool", "x"], env) == [str(tool), "x"]
    res = proc.run(["mytool", "hello"], env=env)
    assert res.out.strip() == "shim hello" and res.argv == [
        "mytool",
        "hello",
    ]  # messages keep the name as written
    with pytest.raises(ProcessError) as err:
        proc.run(["no-such-tool-5c1e"], env=env)
    assert "could not start: 'no-such-tool-5c1e' not found on PATH" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="xdg-open is the opener elsewhere")
def test_open_run_starts_the_opener_detached(tmp_path: Path) -> None:
    from tests.support.repos import make_repo, run_cli

    repo = make_repo(tmp_path / "repo")
    assert run_cli("--repo", str(repo), "launch", "--dry-run", "--run-id", "r-open").returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "opened.txt"
    opener = bin_dir / "xdg-open"
    opener.write_bytes(
        f"#!{sys.executable}\nimport sys\nopen({str(marker)!r}, 'w').write(sys.argv[1])\n".encode()
    )
    opener.chmod(0o755)
    env = {
        "PATH": str(bin_dir) + os.pathsep + os.environ.get("PATH", ""),
        "DISPLAY": ":0",
        "CI": "",
        "SSH_CONNECTION": "",
    }
    res = run_cli("--repo", str(repo), "open-run", "--run-id", "r-open", env=env, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("opened ") and "(xdg-open)" in res.stdout
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text().endswith("r-open")


def test_ledger_schema_closes_the_real_worker_payloads() -> None:
    """No `worktree` path member any more (paths never reach the ledger); the payload lists are closed."""
    from tools.codex.factory.infra import schemas

    payloads = {
        c["if"]["properties"]["event_type"]["const"]: c["then"]["properties"]["payload"]
        for c in schemas.load("ledger_event")["allOf"]
    }
    assert set(payloads["worktree.created"]["properties"]) == {
        "actor",
        "kind",
        "worker",
        "branch",
        "hidden",
    }
    assert set(payloads["worktree.removed"]["properties"]) == {
        "actor",
        "kind",
        "worker",
        "branch",
        "reason",
        "forced",
        "branch_kept",
        "tip",
    }
    for event in (
        "worktree.created",
        "worktree.removed",
        "clean.refused",
        "cleanup.failed",
        "worker.prepared",
        "worker.started",
        "worker.finished",
        "bundle.collected",
        "bundle.imported",
        "run.pending",
    ):
        assert payloads[event]["additionalProperties"] is False, event
    assert schemas.errors(
        "ledger_event",
        {
            "seq": 1,
            "ts_utc": "2026-11-21T20:15:00.000000Z",
            "event_type": "worktree.created",
            "run_id": "r",
            "stage": "launch",
            "prev_hash": "0" * 64,
            "hash": "0" * 64,
            "payload": {
                "actor": "A_worker",
                "kind": "factory",
                "worker": "A",
                "worktree": "/home/me/wt/A",
            },
        },
    )


def test_only_the_recorder_writes_stage_and_run_ends(tmp_path: Path) -> None:
    """``stage.started``, ``stage.finished`` and ``run.finished`` have one writer each (the
    recorder's own methods), reached for stages through run/stages.py alone: Recorder.emit
    refuses them, and nothing else in the package appends to the ledger."""
    from tools.codex.factory.infra.clock import Clock
    from tools.codex.factory.ledger.recorder import RESERVED, Recorder
    from tools.codex.factory.ledger.store import Ledger

    ledger = Ledger(tmp_path / "ledger.jsonl", Clock(None))
    rec = Recorder(ledger, "run-one", "factory")
    try:
        for event_type in sorted(RESERVED):
            with pytest.raises(ValueError, match=f"{event_type} is written by Recorder"):
                rec.emit(event_type, "launch", status="PASS", reason="", reasons=[], stages=[])
        assert ledger.read_head().seq == 0
        rec.stage_started("launch")
        rec.stage_finished("launch", "PASS")
        rec.run_finished([{"stage": "launch", "status": "PASS", "reason": ""}])
        assert ledger.read_head().seq == 3
    finally:
        ledger.close()
    found = []
    for path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            where = f"{path.name}:{node.lineno} {_dotted(node.func)}"
            attr, owner = node.func.attr, _dotted(node.func.value).rpartition(".")[2]
            if attr in ("stage_started", "stage_finished") and path.name != "stages.py":
                found.append(where)
            ledger_append = attr in ("append", "append_locked") and owner in ("ledger", "led")
            if ledger_append and path.name not in ("recorder.py", "store.py"):
                found.append(where)
            first = node.args[0] if node.args else None
            if attr == "emit" and isinstance(first, ast.Constant) and first.value in RESERVED:
                found.append(where)
    assert found == []
