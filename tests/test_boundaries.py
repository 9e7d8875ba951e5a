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
    assert found == []


# Where a command line given as text would run: a string starting with "git " passed to these.
_RUNNERS = {"shlex.split", "proc.run", "proc.start", "proc.run_logged", "run", "start"}


def _git_literal(node: ast.AST) -> bool:
    """A command line that starts with git: ["git", ...], ("git", ...), or a string or
    f-string starting with "git " (a command built as text to be split)."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        first = node.elts[0]
        return isinstance(first, ast.Constant) and first.value == "git"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (
            node.value.startswith("git ") and len(node.value.split()) > 1 and "`" not in node.value
        )
    if isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        return isinstance(head, ast.Constant) and str(head.value).startswith("git ")
    return False


def test_only_gitops_runs_git() -> None:
    """git runs only in gitops, which offers named operations: no command line starting with
    git is built anywhere else (list, tuple, string or f-string passed to a call), and nothing
    outside gitops calls its low-level ``gitops.git``. (A configured check's argv is data.)"""
    found = []
    for name, tree in _trees():
        if name == "gitops.py":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            if _dotted(node.func) == "gitops.git":
                found.append(f"{name}:{node.lineno} gitops.git(...)")
            runner = _dotted(node.func) in _RUNNERS
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                textual = isinstance(arg, (ast.Constant, ast.JoinedStr))
                if _git_literal(arg) and (runner or not textual):
                    found.append(f"{name}:{node.lineno} git command line")
    assert found == []


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
    assert not schemas.is_valid(
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
