"""Headless workers: real agent processes in real worktrees, in parallel, with honest bundles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.repos import git, snapshot
from tests.support.workers import (
    FILES,
    agent_env,
    apply_to_fresh_clone,
    assert_events_valid,
    base_commit,
    cli,
    events,
    factory_branches,
    run_dir,
    status_doc,
    tree_files,
    work_repo,
    worktrees,
)
from tools.codex.factory.core import patchparse

PNG = "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000a49444154789c6360000000020001e221bc330000000049454e44ae426082"


def test_four_headless_workers_run_in_parallel_and_integrate_to_pass(tmp_path: Path) -> None:
    repo = work_repo(tmp_path, {**FILES, "tests/fixture.txt": "old data\n"})
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    wait4 = {"dir": str(barrier), "n": 4}
    spec = {
        "A": {
            "barrier": wait4,
            "write": {"src/util.py": "X = 1\n", "src/logo.png": {"hex": PNG}},
            "rename": {"src/app.py": "src/main.py"},
            "notes": {"SUMMARY.md": "# A\n\nMoved app to main.\n"},
        },
        "B": {
            "barrier": wait4,
            "write": {"tests/test_util.py": "def test_x():\n    assert 2 + 2 == 4\n"},
            "delete": ["tests/fixture.txt"],
            "commit": True,
        },
        "C": {
            "barrier": wait4,
            "write": {"docs/guide.md": "guide\nmore\n", "docs/new page.md": "ünïcode\n"},
        },
        "D": {
            "barrier": wait4,
            "write": {"setup.cfg": "[metadata]\nname = demo2\n"},
            "chmod_x": ["setup.cfg"],
        },
    }
    before = snapshot(repo)
    res = cli(repo, "oneshot", "--json", env=agent_env(tmp_path / "spec.json", spec))
    assert res.returncode == 0, res.stderr + res.stdout
    out = json.loads(res.stdout)
    assert out["status"] == "PASS"
    assert "started" not in res.stderr  # no progress lines with --json
    run_id = out["run_id"]

    # The user's repository is exactly as before once the kept worker branches are cleaned:
    # tree, index, HEAD, branches, worktrees.
    assert len(factory_branches(repo)) == 4
    assert cli(repo, "clean", "--run-id", run_id).returncode == 0
    assert snapshot(repo) == before
    assert worktrees(repo) == {} and factory_branches(repo) == []
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "multi-codex-factory" / "wt"
    assert not cache.exists() or list(cache.iterdir()) == []

    # Parallel: every worker started before the first one finished.
    evs = events(repo, run_id)
    kinds = [e["event_type"] for e in evs]
    first_finished = kinds.index("worker.finished")
    assert kinds[:first_finished].count("worker.started") == 4
    finished = {
        e["payload"]["worker"]: e["payload"] for e in evs if e["event_type"] == "worker.finished"
    }
    assert {w: (p["status"], p["rc"], p["timed_out"]) for w, p in finished.items()} == {
        w: ("DONE", 0, False) for w in "ABCD"
    }
    assert set(finished["A"]["logs"]) == {"agent.stdout.log", "agent.stderr.log", "agent.log"}

    # Each bundle is honest: its DIFF.patch applied to a fresh clone gives what the agent did.
    commit = base_commit(repo)
    expected = {
        "A": {
            "src/main.py": b"print('app')\n",
            "src/util.py": b"X = 1\n",
            "src/logo.png": bytes.fromhex(PNG),
        },
        "B": {"tests/test_util.py": b"def test_x():\n    assert 2 + 2 == 4\n"},
        "C": {"docs/guide.md": b"guide\nmore\n", "docs/new page.md": "ünïcode\n".encode()},
        "D": {"setup.cfg": b"[metadata]\nname = demo2\n"},
    }
    gone = {"A": {"src/app.py"}, "B": {"tests/fixture.txt"}, "C": set(), "D": set()}
    base_tree = tree_files(apply_to_fresh_clone(repo, commit, b"", tmp_path / "base"))
    for w in "ABCD":
        folder = run_dir(repo, run_id) / f"{w}_worker"
        patch = (folder / "DIFF.patch").read_bytes()
        clone = apply_to_fresh_clone(repo, commit, patch, tmp_path / f"clone-{w}")
        want = {k: v for k, v in base_tree.items() if k not in gone[w]}
        want.update(expected[w])
        assert tree_files(clone) == want, w
        files = json.loads((folder / "FILES_CHANGED.json").read_text(encoding="utf-8"))["files"]
        assert files == patchparse.parse(patch).touched()
        assert not any(f.startswith(("scenarios/", ".factory/")) for f in files)
        assert status_doc(repo, run_id, w)["source"] == "agent"
    assert (tmp_path / "clone-D" / "setup.cfg").stat().st_mode & 0o111
    a_patch = patchparse.parse((run_dir(repo, run_id) / "A_worker" / "DIFF.patch").read_bytes())
    assert {f.status for f in a_patch.files} >= {"renamed", "added"} and any(
        f.binary for f in a_patch.files
    )
    assert (run_dir(repo, run_id) / "A_worker" / "SUMMARY.md").read_text(
        encoding="utf-8"
    ) == "# A\n\nMoved app to main.\n"
    assert "generated by the factory" in (
        run_dir(repo, run_id) / "B_worker" / "SUMMARY.md"
    ).read_text(encoding="utf-8")

    # Z's merged patch reproduces every change at once.
    z = (run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch").read_bytes()
    merged = tree_files(apply_to_fresh_clone(repo, commit, z, tmp_path / "merged"))
    assert merged["src/main.py"] == b"print('app')\n" and "tests/fixture.txt" not in merged
    assert merged["docs/new page.md"] == "ünïcode\n".encode()
    assert "scenarios/holdout.md" in merged  # held out of the worktrees, never deleted

    res = cli(repo, "ledger-replay", "--run-id", run_id)
    assert res.returncode == 0 and "REPLAY OK" in res.stdout, res.stdout + res.stderr
    removed = [
        (e["payload"]["worker"], e["payload"]["reason"])
        for e in evs
        if e["event_type"] == "worktree.removed"
    ]
    assert removed == [(w, "integrated") for w in "ABCD"] + [(w, "clean") for w in "ABCD"]
    assert_events_valid(repo)
    home = str(Path(os.environ["XDG_CACHE_HOME"]).parent)
    for e in evs:  # worktree paths never reach the ledger (only relative to the worktrees folder)
        assert home not in json.dumps(e), e["event_type"]


def test_progress_lines_on_stderr_and_the_prompt_on_stdin(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    env = agent_env(
        tmp_path / "spec.json",
        {"A": {"stdin": True, "write": {"src/a.py": "a\n"}}},
        per_worker={"A": {"prompt_via": "stdin"}},
    )
    res = cli(repo, "launch", "--workers", "A", env=env)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("factory: A_worker")]
    assert len(lines) == 2
    assert lines[0].startswith("factory: A_worker started (script, timeout 1800s)")
    assert (
        lines[1].startswith("factory: A_worker finished: DONE rc=0")
        and "1 file(s) changed" in lines[1]
    )
    assert "started" not in res.stdout
    run_id = res.stdout.split()[1]
    log = (run_dir(repo, run_id) / "A_worker" / "LOGS" / "agent.stdout.log").read_text(
        encoding="utf-8"
    )
    assert log.startswith(f"stdin: # Worker A of run {run_id}")
    assert "A_worker" in res.stdout and "next:" in res.stdout
    # Not integrated yet: the worktree stays until then (clean removes it).
    assert list(worktrees(repo)) == [f"factory/{run_id}/A"]
    assert cli(repo, "clean", "--run-id", run_id, "--force").returncode == 0
    assert worktrees(repo) == {} and factory_branches(repo) == []


def test_holdout_is_absent_and_scope_or_holdout_writes_block(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    spec = {
        "A": {"read_holdout": True, "write": {"src/ok.py": "ok\n"}},
        "B": {"write": {"scenarios/new_case.md": "sneaky\n"}},
        "C": {"write": {"src/app.py": "print('not my scope')\n"}},
        "D": {},
    }
    res = cli(repo, "oneshot", "--json", env=agent_env(tmp_path / "spec.json", spec))
    assert res.returncode == 3, res.stderr
    out = json.loads(res.stdout)
    run_id = out["run_id"]
    log = (run_dir(repo, run_id) / "A_worker" / "LOGS" / "agent.stdout.log").read_text(
        encoding="utf-8"
    )
    assert json.loads(log.splitlines()[0]) == {"scenarios_exists": False, "listing": []}
    validation = json.loads((run_dir(repo, run_id) / "VALIDATION.json").read_text(encoding="utf-8"))
    found = {(f["worker"], f["path"], f["rule"]) for f in validation["findings"]}
    assert ("B", "scenarios/new_case.md", "protected-path") in found
    assert ("C", "src/app.py", "scope-not-allowed") in found
    assert validation["verdicts"] == {"A": "PASS", "B": "BLOCKED", "C": "BLOCKED", "D": "PASS"}
    assert validation["touched"]["A"] == ["src/ok.py"]  # the absent holdout is not a deletion
    report = (run_dir(repo, run_id) / "Z_integrator" / "FINAL_REPORT.txt").read_text(
        encoding="utf-8"
    )
    assert (
        "STATUS:      BLOCKED" in report
        and "scenarios/new_case.md" in report
        and "src/app.py" in report
    )
    # BLOCKED: the worktrees stay for fixing; the holdout is absent there too.
    assert "worktrees kept (BLOCKED)" in res.stderr
    trees = worktrees(repo)
    assert len(trees) == 4
    assert not (trees[f"factory/{run_id}/A"] / "scenarios").exists()
    assert git(trees[f"factory/{run_id}/D"], "status", "--porcelain") == ""
    assert cli(repo, "clean", "--run-id", run_id, "--force").returncode == 0
    assert worktrees(repo) == {}


def test_timeout_and_crash_yield_bundles_that_say_so_and_block(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    spec = {
        "A": {"write": {"src/partial.py": "half\n"}, "sleep": 60},
        "B": {"write": {"tests/test_x.py": "x\n"}, "exit": 3},
    }
    env = agent_env(tmp_path / "spec.json", spec, per_worker={"A": {"timeout_s": 1}})
    res = cli(repo, "oneshot", "--workers", "A,B", "--json", env=env)
    assert res.returncode == 3, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    a, b = status_doc(repo, run_id, "A"), status_doc(repo, run_id, "B")
    assert (a["status"], a["timed_out"], a["rc"]) == ("TIMEOUT", True, None)
    assert "timed out after 1s" in a["reason"]
    assert (b["status"], b["rc"]) == ("CRASHED", 3) and b["reason"] == "agent exited with rc=3"
    # What each did before it stopped is still collected.
    assert json.loads((run_dir(repo, run_id) / "A_worker" / "FILES_CHANGED.json").read_text())[
        "files"
    ] == ["src/partial.py"]
    validation = json.loads((run_dir(repo, run_id) / "VALIDATION.json").read_text(encoding="utf-8"))
    not_done = {
        f["worker"]: f["message"] for f in validation["findings"] if f["rule"] == "worker-not-done"
    }
    assert (
        "status is TIMEOUT" in not_done["A"]
        and "status is CRASHED: agent exited with rc=3" in not_done["B"]
    )
    finished = {
        e["payload"]["worker"]: e["payload"]
        for e in events(repo, run_id)
        if e["event_type"] == "worker.finished"
    }
    assert finished["A"]["timed_out"] is True and finished["B"]["rc"] == 3
    cli(repo, "clean", "--run-id", run_id, "--force")


def test_missing_agent_cli_is_a_usage_error_before_anything_is_created(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    env = {
        "FACTORY_WORKERS__AGENT": json.dumps(
            {"preset": "codex", "argv": ["no-such-agent-cli-xyz", "-"]}
        )
    }
    res = cli(repo, "oneshot", env=env)
    assert res.returncode == 2
    assert (
        res.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "factory: error: config workers.agent.argv[0]: 'no-such-agent-cli-xyz' not found on PATH"
        )
    )
    assert "Traceback" not in res.stderr
    runs = repo / "tools/codex/runs"
    assert worktrees(repo) == {}
    assert not runs.exists() or not any(p.is_dir() for p in runs.iterdir())  # no run was created
    bad = {
        "FACTORY_WORKERS__AGENT": json.dumps({"preset": "script", "argv": ["{python}", "{nope}"]})
    }
    res = cli(repo, "launch", env=bad)
    assert (
        res.returncode == 2
        and "config workers.agent.argv[1]: unknown placeholder {nope}" in res.stderr
    )
    res = cli(repo, "launch", env={"FACTORY_WORKERS__AGENT": json.dumps({"preset": "script"})})
    assert (
        res.returncode == 2
        and "config workers.agent.argv: preset 'script' needs an argv list" in res.stderr
    )


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_sigint_stops_every_agent_tree_collects_bundles_and_resume_finishes(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.support.repos import PINNED, ROOT, pid_alive

    repo = work_repo(tmp_path)
    pids = tmp_path / "pids"
    pids.mkdir()
    go = tmp_path / "go"
    slow = {"pids": str(pids), "sleep": 120, "unless": str(go)}
    spec = {
        "A": {**slow, "write": {"src/a.py": "a\n"}},
        "B": {**slow, "write": {"tests/test_b.py": "b\n"}},
        "C": {"write": {"docs/c.md": "c\n"}},
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(agent_env(tmp_path / "spec.json", spec))
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.codex.factory",
            "--repo",
            str(repo),
            "--now",
            PINNED,
            "launch",
            "--workers",
            "A,B,C",
            "--run-id",
            "sigint-run",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(list(pids.glob("*.pid"))) < 4 or not _finished(repo, "C"):
        assert p.poll() is None and time.monotonic() < deadline, "agents did not start"
        time.sleep(0.05)
    agent_pids = [int(f.read_text()) for f in pids.glob("*.pid")]
    assert all(pid_alive(pid) for pid in agent_pids)
    p.send_signal(signal.SIGINT)
    _out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "factory: interrupted" in err.decode()
    time.sleep(0.1)
    assert [pid for pid in agent_pids if pid_alive(pid)] == []  # no orphans, grandchildren included
    for w in "AB":
        st = status_doc(repo, "sigint-run", w)
        assert st["status"] == "INTERRUPTED" and "launch --resume" in st["reason"]
        files = json.loads(
            (run_dir(repo, "sigint-run") / f"{w}_worker" / "FILES_CHANGED.json").read_text()
        )["files"]
        assert len(files) == 1  # what it wrote before the interrupt was collected
    assert status_doc(repo, "sigint-run", "C")["status"] == "DONE"
    evs = events(repo, "sigint-run")
    interrupted = [e for e in evs if e["event_type"] == "run.interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["payload"]["workers"] == ["A", "B"]

    go.write_text("go")
    res = cli(
        repo,
        "launch",
        "--resume",
        "--run-id",
        "sigint-run",
        env=agent_env(tmp_path / "spec.json", spec),
    )
    assert res.returncode == 0, res.stderr
    resumed = [e for e in events(repo, "sigint-run") if e["event_type"] == "run.resumed"]
    assert resumed[0]["payload"]["workers"] == ["A", "B"] and resumed[0]["payload"]["finished"] == [
        "C"
    ]
    assert [status_doc(repo, "sigint-run", w)["status"] for w in "ABC"] == ["DONE", "DONE", "DONE"]
    assert cli(repo, "bundle-validate", "--run-id", "sigint-run").returncode == 0
    res = cli(repo, "integrate", "--run-id", "sigint-run")
    assert res.returncode == 0, res.stdout + res.stderr
    assert worktrees(repo) == {}
    assert factory_branches(repo) == [f"factory/sigint-run/{w}" for w in "ABC"]  # kept
    assert_events_valid(repo)
    res = cli(repo, "ledger-replay", "--run-id", "sigint-run")
    assert res.returncode == 0 and "REPLAY OK" in res.stdout, res.stdout + res.stderr


def _finished(repo: Path, worker: str) -> bool:
    if not (repo / "tools/codex/runs/factory_ledger.jsonl").exists():
        return False
    return any(
        e["event_type"] == "worker.finished" and e["payload"]["worker"] == worker
        for e in events(repo)
    )


def test_max_parallel_one_runs_the_agents_one_after_another(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    spec = {"A": {"write": {"src/a.py": "a\n"}}, "B": {"write": {"tests/test_b.py": "b\n"}}}
    env = agent_env(tmp_path / "spec.json", spec, workers__max_parallel=1)
    res = cli(repo, "launch", "--workers", "A,B", "--json", env=env)
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    order = [
        (e["event_type"], e["payload"]["worker"])
        for e in events(repo, run_id)
        if e["event_type"] in ("worker.started", "worker.finished")
    ]
    assert order == [
        ("worker.started", "A"),
        ("worker.finished", "A"),
        ("worker.started", "B"),
        ("worker.finished", "B"),
    ]
    assert cli(repo, "clean", "--run-id", run_id, "--force").returncode == 0
