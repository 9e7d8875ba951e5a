"""watch: follows the ledger while other processes append, and exits with the run's status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.scratch import PINNED, RUNS_REL, factory, make_repo, scratch_env
from tools.codex.factory.infra import jsonio

LEDGER = f"{RUNS_REL}/factory_ledger.jsonl"
FAILING_CHECK = {
    "schema_version": 1,
    "checks": {
        "required": [
            {
                "name": "always-fails",
                "argv": ["{python}", "-c", "raise SystemExit(1)"],
                "timeout_s": 60,
            }
        ]
    },
}


def start_watch(repo: Path, env: dict[str, str], run_id: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.codex.factory",
            "--repo",
            str(repo),
            "watch",
            "--run-id",
            run_id,
            *extra,
        ],
        cwd=str(repo),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def wait_for_notice(proc: subprocess.Popen[str]) -> str:
    """watch says it is waiting for the ledger (the repository has none yet): it is running."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "waiting for the ledger" in line, line
    return line


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def event_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln[:6].strip().isdigit()]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return scratch_env(tmp_path / "home")


def test_watch_sees_a_run_appended_by_another_process(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    watcher = start_watch(repo, env, "run-live", "--timeout", "120")
    try:
        wait_for_notice(watcher)
        res = factory(
            repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", "run-live"
        )
        assert res.returncode == 0, res.stderr
        rc, out, err = finish(watcher)
    finally:
        watcher.kill()
    assert rc == 0, err
    lines = event_lines(out)
    ledger = [json.loads(x) for x in (repo / LEDGER).read_bytes().splitlines()]
    run_events = [e for e in ledger if e["run_id"] == "run-live"]
    assert len(lines) == len(run_events)
    assert [int(ln.split()[0]) for ln in lines] == [e["seq"] for e in run_events]
    assert "run.started" in lines[[e["event_type"] for e in run_events].index("run.started")]
    assert "run.finished" in lines[-1] and "status=PASS" in lines[-1]
    assert out.rstrip().endswith("run run-live finished: PASS")
    # The run is over: a second watch reports it at once.
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.codex.factory",
            "--repo",
            str(repo),
            "watch",
            "--run-id",
            "run-live",
            "--timeout",
            "10",
        ],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert again.returncode == 0 and event_lines(again.stdout) == lines


def test_watch_exits_with_a_blocked_runs_code(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    config = repo / "tools/codex/factory/factory.config.json"
    config.parent.mkdir(parents=True)
    config.write_bytes(jsonio.pretty(FAILING_CHECK))
    watcher = start_watch(repo, env, "run-blocked", "--timeout", "120")
    try:
        wait_for_notice(watcher)
        res = factory(
            repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", "run-blocked"
        )
        assert res.returncode == 3, res.stderr
        rc, out, err = finish(watcher)
    finally:
        watcher.kill()
    assert rc == 3, err
    assert "check.finished" in out and "rc=1" in out
    assert out.rstrip().endswith("run run-blocked finished: BLOCKED")


WRITER = r"""
import sys, time
src, dst, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
with open(dst, "ab") as fh:
    for i in range(0, len(data), step):
        fh.write(data[i:i + step]); fh.flush()
        time.sleep(0.02)
"""


def test_watch_waits_for_the_rest_of_a_torn_line(tmp_path: Path, env: dict[str, str]) -> None:
    """Another process appends the ledger in pieces that cut lines in half: no line is lost or garbled."""
    source = make_repo(tmp_path / "source", env)
    assert (
        factory(
            source, env, "oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", "run-torn"
        ).returncode
        == 0
    )
    data = (source / LEDGER).read_bytes()
    lines = data.splitlines()
    step = (
        max(len(ln) for ln in lines) // 2 + 7
    )  # every piece ends inside a line, most lines span two
    repo = make_repo(tmp_path / "repo", env)
    (repo / LEDGER).parent.mkdir(parents=True, exist_ok=True)
    watcher = start_watch(repo, env, "run-torn", "--timeout", "120")
    try:
        wait_for_notice(watcher)
        writer = subprocess.run(
            [sys.executable, "-c", WRITER, str(source / LEDGER), str(repo / LEDGER), str(step)],
            timeout=120,
            check=False,
        )
        assert writer.returncode == 0
        rc, out, err = finish(watcher)
    finally:
        watcher.kill()
    assert rc == 0, err
    assert len(event_lines(out)) == len(lines)
    assert "Traceback" not in err and "not a valid event" not in err


def test_watch_timeout_exits_1_with_a_clear_message(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    t0 = time.monotonic()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.codex.factory",
            "--repo",
            str(repo),
            "--now",
            PINNED,
            "watch",
            "--run-id",
            "never-started",
            "--timeout",
            "0.5",
        ],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert time.monotonic() - t0 < 30  # a pinned clock must not stop the timeout
    assert res.returncode == 1
    assert "did not finish within 0.5s" in res.stderr and "Traceback" not in res.stderr
    bad = factory(repo, env, "watch", "--run-id", "x", "--timeout", "0")
    assert bad.returncode == 2 and "--timeout" in bad.stderr


@pytest.mark.skipif(os.name == "nt", reason="SIGINT delivery to a child is POSIX-only here")
def test_watch_ctrl_c_exits_130_cleanly(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    watcher = start_watch(repo, env, "run-x")
    try:
        wait_for_notice(watcher)
        watcher.send_signal(signal.SIGINT)
        rc, _out, err = finish(watcher, timeout=30)
    finally:
        watcher.kill()
    assert rc == 130
    assert "interrupted" in err and "Traceback" not in err


def test_follower_holds_a_torn_line_until_its_newline(tmp_path: Path) -> None:
    from tools.codex.factory.audit.watch import Follower

    path = tmp_path / "ledger.jsonl"
    f = Follower(path)
    try:
        assert f.poll() == []  # no file yet
        path.write_bytes(b'{"a":1}\n{"b":')
        assert f.poll() == [(0, b'{"a":1}')]
        assert f.poll() == []  # the torn piece waits
        with open(path, "ab") as fh:
            fh.write(b'2}\r\n{"c":3}\n')
        assert f.poll() == [(8, b'{"b":2}'), (17, b'{"c":3}')]
        with open(path, "ab") as fh:
            fh.write(b'{"torn')
        assert f.poll() == []
        with open(path, "r+b") as fh:  # `ledger repair` moves the torn bytes aside
            fh.truncate(25)
        with open(path, "ab") as fh:
            fh.write(b'{"d":4}\n')
        assert f.poll() == [(25, b'{"d":4}')]
        path.write_bytes(b"")  # rewritten under us
        with pytest.raises(Exception, match="shrank"):
            f.poll()
    finally:
        f.close()


def test_watch_ends_on_the_last_verdict_of_a_finished_run_however_often_it_was_reopened(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """worktree.removed after run.finished is an epilogue; a stage.started after it reopens the
    run, which may never finish again: the watch ends at once on its last verdict and says so."""
    from tools.codex.factory.infra.clock import Clock
    from tools.codex.factory.ledger.recorder import Recorder
    from tools.codex.factory.ledger.store import Ledger

    repo = make_repo(tmp_path / "repo", env)
    ledger = Ledger(repo / LEDGER, Clock(None))
    rec = Recorder(ledger, "run-rounds", "factory")
    rec.stage_started("integrate")
    rec.run_finished([{"stage": "integrate", "status": "PASS", "reason": ""}])
    rec.emit(
        "worktree.removed",
        "summary",
        "A_worker",
        worker="A",
        branch="factory/run-rounds/A",
        worktree="x/A",
        reason="integrated",
        forced=False,
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.codex.factory",
            "--repo",
            str(repo),
            "watch",
            "--run-id",
            "run-rounds",
            "--timeout",
            "20",
        ],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "worktree.removed" in done.stdout
    rec.stage_started("bundle-validate")  # the operator validates again: reopened
    reopened = factory(repo, env, "watch", "--run-id", "run-rounds", "--timeout", "20")
    assert reopened.returncode == 0, reopened.stderr
    assert reopened.stdout.rstrip().endswith("run run-rounds finished: PASS")
    assert "run run-rounds was reopened after it finished" in reopened.stderr
    assert (
        "stage.started bundle-validate" in reopened.stderr
        and "last verdict: PASS" in reopened.stderr
    )
    rec.run_finished([{"stage": "integrate", "status": "BLOCKED", "reason": "x"}])
    rec.stage_started("integrate")  # reopened again
    again = factory(repo, env, "watch", "--run-id", "run-rounds", "--timeout", "20")
    ledger.close()
    assert again.returncode == 3, again.stderr
    assert again.stdout.rstrip().endswith("run run-rounds finished: BLOCKED")


def test_watch_ends_for_a_run_refused_by_preflight(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    watcher = start_watch(repo, env, "run-refused", "--timeout", "60")
    try:
        wait_for_notice(watcher)
        res = factory(
            repo,
            env,
            "oneshot",
            "--base-ref",
            "no-such-ref",
            "--dry-run",
            "--run-id",
            "run-refused",
        )
        assert res.returncode == 3
        rc, out, err = finish(watcher)
    finally:
        watcher.kill()
    assert rc == 3, err
    assert "preflight" in out and out.rstrip().endswith("run run-refused finished: BLOCKED")


def test_watch_of_an_unknown_run_is_a_usage_error_not_a_silent_wait(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.codex.factory.audit import watch

    monkeypatch.setattr(watch, "START_GRACE_S", 0.5)  # the wait for a run that is starting
    repo = make_repo(tmp_path / "repo", env)
    assert (
        factory(
            repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", "run-known"
        ).returncode
        == 0
    )
    t0 = time.monotonic()
    res = factory(repo, env, "watch", "--run-id", "run-knwon", timeout=60)  # a typo, no --timeout
    assert time.monotonic() - t0 < 30
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "factory: error: run run-knwon: no run folder tools/codex/runs/run-knwon and no event"
    ), lines
