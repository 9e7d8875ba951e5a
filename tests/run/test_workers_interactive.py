"""Interactive workers: launch prepares worktrees and prompts; people edit; the factory collects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.repos import PINNED, ROOT, git, snapshot
from tests.support.workers import (
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


def test_launch_edit_by_hand_collect_validate_integrate(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    before = snapshot(repo)
    res = cli(repo, "launch", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    run_id = out["run_id"]
    assert out["pending"] == ["A", "B", "C", "D"] and out["dry_run"] is False
    assert res.stderr == ""  # nothing ran, nothing to report

    trees = worktrees(repo)
    assert sorted(trees) == [f"factory/{run_id}/{w}" for w in "ABCD"]
    cache = Path(os.environ["XDG_CACHE_HOME"])
    for w, path in zip("ABCD", sorted(trees.values()), strict=True):
        assert path.parent.parent == cache / "multi-codex-factory" / "wt" and path.name == w
        assert not (path / "scenarios").exists()  # held out of the checkout
        assert (path / "src" / "app.py").read_text() == "print('app')\n"
        assert (
            git(path, "status", "--porcelain") == ""
        )  # .factory/ ignores itself; holdout not "deleted"
        prompt = (path / ".factory" / "PROMPT.md").read_text(encoding="utf-8")
        assert prompt == (run_dir(repo, run_id) / f"{w}_worker" / "PROMPT.md").read_text(
            encoding="utf-8"
        )
        assert (
            str(path) not in prompt and str(tmp_path) not in prompt
        )  # deterministic: no absolute paths
        assert "`.factory/DONE`" in prompt and "bundle-collect" in prompt
        st = status_doc(repo, run_id, w)
        assert st["status"] == "PENDING" and "bundle-collect" in st["reason"]
    board = (run_dir(repo, run_id) / "RUNBOARD.md").read_text(encoding="utf-8")
    for w, path in trees.items():
        assert f"| {w[-1]} | PENDING | interactive | `{w}` | `{path}` |" in board
    assert "next: finish workers A, B, C, D" in board
    prompt_a = (run_dir(repo, run_id) / "A_worker" / "PROMPT.md").read_text(encoding="utf-8")
    assert (
        "Source code changes." in prompt_a and "`src/**`" in prompt_a and "`scenarios/`" in prompt_a
    )

    # bundle-validate before anything was collected: BLOCKED, naming the pending workers.
    res = cli(repo, "bundle-validate", "--run-id", run_id, "--json")
    assert res.returncode == 3
    msgs = [
        f["message"] for f in json.loads(res.stdout)["findings"] if f["rule"] == "worker-not-done"
    ]
    assert any("status is PENDING" in m for m in msgs)

    # A commits its work; C leaves its work uncommitted (modified, new, deleted).
    a, c = trees[f"factory/{run_id}/A"], trees[f"factory/{run_id}/C"]
    (a / "src" / "feature.py").write_text("def feature():\n    return 42\n")
    git(a, "add", "-A")
    git(a, "commit", "-q", "-m", "A: feature")
    (a / ".factory" / "SUMMARY.md").write_text("# A\n\nAdded feature().\n")
    (a / ".factory" / "HANDOFF_NOTE.json").write_text(
        json.dumps({"schema_version": 1, "worker": "A", "depends_on": [], "notes": "independent"})
    )
    (c / "docs" / "guide.md").write_text("guide\nfeature() returns 42\n")
    (c / "docs" / "api.md").write_text("# API\n")
    (c / "README.md").unlink()

    res = cli(repo, "bundle-collect", "--run-id", run_id, "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)["workers"]
    assert got["A"]["files"] == ["src/feature.py"] and got["A"]["notes"]["SUMMARY.md"] == "worker"
    assert got["C"]["files"] == ["README.md", "docs/api.md", "docs/guide.md"]
    assert got["B"]["files"] == [] and got["D"]["files"] == []
    assert (
        run_dir(repo, run_id) / "A_worker" / "SUMMARY.md"
    ).read_text() == "# A\n\nAdded feature().\n"
    assert (
        json.loads((run_dir(repo, run_id) / "A_worker" / "HANDOFF_NOTE.json").read_text())["notes"]
        == "independent"
    )
    collected = [
        e["payload"] for e in events(repo, run_id) if e["event_type"] == "bundle.collected"
    ]
    assert [(p["worker"], p["previous_status"], p["status"]) for p in collected] == [
        (w, "PENDING", "DONE") for w in "ABCD"
    ]
    assert "| A | DONE | interactive |" in (run_dir(repo, run_id) / "RUNBOARD.md").read_text(
        encoding="utf-8"
    )

    assert cli(repo, "bundle-validate", "--run-id", run_id).returncode == 0
    res = cli(repo, "integrate", "--run-id", run_id, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "removed 4 worktree(s)" in res.stderr
    z = (run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch").read_bytes()
    merged = tree_files(apply_to_fresh_clone(repo, base_commit(repo), z, tmp_path / "merged"))
    assert merged["src/feature.py"] == b"def feature():\n    return 42\n"
    assert merged["docs/guide.md"] == b"guide\nfeature() returns 42\n" and "README.md" not in merged
    assert_events_valid(repo)
    res = cli(repo, "ledger-replay", "--run-id", run_id)
    assert res.returncode == 0 and "REPLAY OK" in res.stdout, res.stdout + res.stderr
    assert len(factory_branches(repo)) == 4  # the worker branches stay until land or clean
    assert cli(repo, "clean", "--run-id", run_id).returncode == 0
    assert snapshot(repo) == before  # branches and worktrees gone again, nothing else touched
    assert worktrees(repo) == {} and factory_branches(repo) == []


def test_oneshot_with_interactive_workers_stops_pending_with_next_steps(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    res = cli(repo, "oneshot", "--workers", "A,B")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    run_id = lines[0].split()[1].rstrip(":")
    assert lines[0] == f"run {run_id}: PENDING"
    assert "bundle-validate  SKIPPED  waiting for interactive workers A, B" in res.stdout
    assert f"factory/{run_id}/A" in res.stdout and "worktree: " in res.stdout
    assert lines[-1].startswith(
        "next: collect, validate, integrate: `factory bundle-collect --run-id"
    )
    pending = [e for e in events(repo, run_id) if e["event_type"] == "run.pending"]
    assert pending[0]["payload"]["workers"] == ["A", "B"]
    assert not (run_dir(repo, run_id) / "Z_integrator" / "STATUS.json").exists()
    res = cli(repo, "oneshot", "--workers", "A", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["status"] == "PENDING"
    res = cli(repo, "clean")  # both runs are pending, not finished: their workers may be at work
    assert res.returncode == 3 and len(worktrees(repo)) == 3
    assert res.stderr.count("has not finished") == 3
    assert cli(repo, "clean", "--force").returncode == 0
    assert worktrees(repo) == {}


def test_oneshot_wait_collects_each_worker_when_it_marks_itself_done(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.codex.factory",
            "--repo",
            str(repo),
            "--now",
            PINNED,
            "oneshot",
            "--workers",
            "A,C",
            "--wait",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        # Ready when both prompts are in place (each worktree is checked out before its prompt).
        while len(worktrees(repo)) < 2 or not all(
            (path / ".factory" / "PROMPT.md").exists() for path in worktrees(repo).values()
        ):
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        trees = {b[-1]: path for b, path in worktrees(repo).items()}
        (trees["A"] / "src" / "app.py").write_text("print('waited')\n")
        (trees["A"] / ".factory" / "DONE").write_text("")
        (trees["C"] / "docs" / "guide.md").write_text("guide v2\n")
        time.sleep(1.5)
        assert p.poll() is None  # still waiting for C
        (trees["C"] / ".factory" / "DONE").write_text("")
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    doc = json.loads(out)
    assert doc["status"] == "PASS"
    run_id = doc["run_id"]
    assert json.loads((run_dir(repo, run_id) / "A_worker" / "FILES_CHANGED.json").read_text())[
        "files"
    ] == ["src/app.py"]
    assert worktrees(repo) == {}


def test_real_run_is_byte_identical_in_two_clones_at_different_paths(tmp_path: Path) -> None:
    """Worktree paths reach only RUNBOARD.md: bundles, decisions and ledger lines do not differ."""
    origin = work_repo(tmp_path / "origin")
    outputs = []
    for name in ("first/clone", "second/much/deeper/clone"):
        clone = tmp_path / name
        clone.parent.mkdir(parents=True)
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
        res = cli(clone, "launch", "--workers", "A,C", "--json")
        assert res.returncode == 0, res.stderr
        run_id = json.loads(res.stdout)["run_id"]
        trees = {b[-1]: p for b, p in worktrees(clone).items()}
        (trees["A"] / "src" / "app.py").write_text("print('same everywhere')\n")
        git(trees["A"], "commit", "-q", "-am", "A")
        (trees["C"] / "docs" / "new.md").write_text("new\n")
        assert cli(clone, "bundle-collect", "--run-id", run_id).returncode == 0
        assert cli(clone, "bundle-validate", "--run-id", run_id).returncode == 0
        assert cli(clone, "integrate", "--run-id", run_id).returncode == 0
        run = run_dir(clone, run_id)
        files = {
            p.relative_to(run).as_posix(): p.read_bytes()
            for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != "RUNBOARD.md"
        }
        ledger = (clone / "tools/codex/runs/factory_ledger.jsonl").read_bytes()
        outputs.append((run_id, files, ledger, trees["A"]))
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][1].keys() == outputs[1][1].keys()
    for key in outputs[0][1]:
        assert outputs[0][1][key] == outputs[1][1][key], key
    assert outputs[0][2] == outputs[1][2]
    assert str(tmp_path).encode() not in outputs[0][2]
    assert os.environ["XDG_CACHE_HOME"].encode() not in outputs[0][2]
    assert outputs[0][3] != outputs[1][3]  # the worktrees really were in different places
