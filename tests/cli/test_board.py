"""The live board: events -> rows (pure), its lines, and a real oneshot on a pseudo-terminal
whose stderr shows the check's row appear and finish while stdout gets none of it."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.factory import write_config
from tests.support.repos import ROOT, make_repo, run_on_terminal
from tests.support.workers import agent_env, work_repo
from tools.codex.factory.cli.board import Board, LiveBoard, Row, render_board, row_line, update
from tools.codex.factory.ledger.store import Event


def ev(event_type: str, stage: str = "integrate", run_id: str = "r1", **payload: object) -> Event:
    return Event(1, "2026-11-21T20:15:00.000000Z", event_type, run_id, stage, payload, "", "")


def feed(events: list[tuple[Event, float]], board: Board | None = None) -> Board:
    board = board or Board()
    for e, now in events:
        board = update(board, e, now)
    return board


def test_a_check_runs_then_passes_or_fails_with_its_rc() -> None:
    board = feed([(ev("check.started", name="tests", required=True), 10.0)])
    assert board.rows == (Row("check", "tests", "running", "required", started=10.0),)
    done = update(board, ev("check.finished", name="tests", rc=0, timed_out=False), 12.5)
    assert done.rows == (Row("check", "tests", "done", "PASS rc=0", 10.0, 12.5),)
    failed = update(board, ev("check.finished", name="tests", rc=4, timed_out=False), 11.0)
    assert failed.rows[0].state == "failed" and failed.rows[0].detail == "FAIL rc=4"
    slow = update(board, ev("check.finished", name="tests", rc=None, timed_out=True), 11.0)
    assert slow.rows[0].detail == "FAIL timed out"


def test_workers_go_pending_running_done_or_failed() -> None:
    board = feed(
        [
            (ev("worker.prepared", "launch", worker="A", mode="headless"), 0.0),
            (ev("worker.prepared", "launch", worker="B", mode="headless"), 0.0),
            (ev("worker.started", "launch", worker="A", preset="codex"), 1.0),
        ]
    )
    assert [(r.name, r.state) for r in board.rows] == [("A", "running"), ("B", "pending")]
    board = feed(
        [
            (ev("worker.started", "launch", worker="B", preset="codex"), 2.0),
            (ev("worker.finished", "launch", worker="A", status="DONE"), 5.0),
            (ev("worker.finished", "launch", worker="B", status="CRASHED"), 6.0),
            (ev("bundle.collected", "launch", actor="B_worker"), 6.0),
        ],
        board,
    )
    assert [(r.name, r.state, r.detail, r.elapsed(99.0)) for r in board.rows] == [
        ("A", "done", "DONE", 4.0),
        ("B", "failed", "CRASHED", 4.0),
    ]
    dry = update(Board(), ev("bundle.created", "launch", actor="C_worker", dry_run=True), 3.0)
    assert dry.rows == (Row("worker", "C", "done", "dry run", 3.0, 3.0),)


def test_rows_keep_their_kind_order_and_a_new_run_starts_afresh() -> None:
    board = feed(
        [
            (ev("check.started", name="lint", required=False), 0.0),
            (ev("stage.started", "integrate"), 0.0),
            (ev("scenarios.started", "crank", scenarios=3, commit="ab" * 20), 0.0),
            (ev("worker.prepared", "launch", worker="A"), 0.0),
        ]
    )
    assert [r.kind for r in board.rows] == ["stage", "worker", "check", "scenarios"]
    sat = {"passed": 2, "total": 3}
    board = update(board, ev("scenarios.finished", "crank", satisfaction=sat), 4.0)
    assert board.row("scenarios", "") == Row("scenarios", "", "failed", "2/3 passed", 0.0, 4.0)
    assert board.run_id == "r1"
    fresh = update(board, ev("run.started", "launch", run_id="r2"), 5.0)
    assert fresh.run_id == "r2" and fresh.rows == ()
    assert update(board, ev("ledger.note"), 5.0) is board  # not shown: unchanged


def test_lines_show_elapsed_time_and_colour_only_when_asked() -> None:
    row = Row("check", "tests", "running", "required", started=1.0)
    assert (
        row_line(row, 3.25, colour=False)
        == "  check     tests                    running     2.2s  required"
    )
    assert "\x1b[36mrunning \x1b[0m" in row_line(row, 3.25, colour=True)
    hostile = Row("worker", "\x1b[2J\n" + "x" * 300, "pending", "\x1b]0;t\x07" + "y" * 300)
    for on in (False, True):
        line = row_line(hostile, 0.0, colour=on)
        assert "\x1b[2J" not in line and "\x1b]" not in line and "\n" not in line
        assert len(re.sub("\x1b\\[[0-9;]*m", "", line)) <= 100
    assert row_line(hostile, 0.0, False).startswith(
        "  worker    \\x1b[2J\\nxxxxxxxxxxxxxx… pending"
    )
    assert render_board(Board(), 0.0, colour=False) == []
    assert render_board(Board("r1", (row,)), 2.0, False)[0] == "factory: run r1"


def test_the_board_fits_the_terminal() -> None:
    rows = tuple(Row("check", f"c{i}", "pending", "x" * 200) for i in range(30))
    lines = render_board(Board("r" * 300, rows), 0.0, colour=False, width=60, height=10)
    assert len(lines) == 10 and all(len(ln) <= 60 for ln in lines)
    assert lines[1] == "  ... 22 earlier row(s)" and lines[-1].startswith("  check     c29 ")


def test_a_question_holds_the_board_still() -> None:
    out = io.StringIO()
    board = LiveBoard(out, colour=False, clock=lambda: 1.0)
    board.on_event(ev("check.started", name="tests", required=True))
    assert "\x1b[" not in out.getvalue() and "tests" in out.getvalue()
    with board.aside():
        mark = len(out.getvalue())
        board.on_event(ev("check.finished", name="tests", rc=0, timed_out=False))
        assert len(out.getvalue()) == mark  # nothing drawn over the question
    after = out.getvalue()[mark:]
    assert "\x1b[" not in after and after.splitlines()[-1].endswith("PASS rc=0")
    board.say("factory: a line")
    board.close()
    assert out.getvalue().count("factory: a line") == 1
    assert out.getvalue().endswith("PASS rc=0\n")  # the last board stays below the line


def test_help_does_not_load_the_board() -> None:
    code = (
        "import sys\n"
        "from tools.codex.factory.cli.commands import run\n"
        "try:\n    run(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('tools.codex.factory.cli.board' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


def on_terminal(repo: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """The command with stderr on a pseudo-terminal (NO_COLOR) and stdout on a pipe: what
    each received."""
    term, stdout, _rc = run_on_terminal(repo, *args, env={"NO_COLOR": "1", **(env or {})})
    return term, stdout


def rows_of(term: str, name: str) -> list[str]:
    """The board's row for ``name`` in each redraw, in order."""
    return [ln for ln in term.splitlines() if re.match(rf"  \w+ +{name} ", ln)]


posix = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")


@posix
def test_a_real_oneshot_draws_its_check_on_a_terminal(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    slow = ["{python}", "-c", "import time; time.sleep(1.5)"]
    write_config(repo, {"checks": {"advisory": [{"name": "slowcheck", "argv": slow}]}})
    term, stdout = on_terminal(repo, "oneshot", "--base-ref", "HEAD", "--dry-run")
    rows = rows_of(term, "slowcheck")  # one in each redraw
    running = [i for i, ln in enumerate(rows) if " running " in ln]
    finished = [i for i, ln in enumerate(rows) if " done " in ln and ln.endswith("PASS rc=0")]
    assert running and finished and max(running) < min(finished)
    assert any("running     1." in rows[i] for i in running)  # elapsed moves while it runs
    assert "factory: check slowcheck" not in term  # the board, not the plain lines
    assert "\x1b[" in term and not re.search("\x1b\\[[0-9;]*m", term)  # NO_COLOR: no colour
    assert "run " in stdout and "slowcheck" not in stdout and "\x1b[" not in stdout


@posix
def test_a_real_launch_draws_its_agents_on_a_terminal(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    spec = {"A": {"sleep": 1.2, "write": {"src/app.py": "print('A')\n"}}, "B": {"exit": 3}}
    env = agent_env(tmp_path / "spec.json", spec)
    term, stdout = on_terminal(repo, "launch", "--base-ref", "HEAD", "--workers", "A,B", env=env)
    a, b = rows_of(term, "A"), rows_of(term, "B")
    assert any(" running " in ln for ln in a) and " done " in a[-1]
    assert a[-1].endswith("DONE") and b[-1].endswith("CRASHED") and " failed " in b[-1]
    assert "factory: A_worker started" in term  # worker lines above the board
    assert "\x1b[" not in stdout and "running" not in stdout
