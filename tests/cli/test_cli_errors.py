"""Usage errors are one line on stderr with exit 2; run-ID sequencing reads only the ledger's tail."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.support.repos import PINNED, make_repo, run_cli
from tools.codex.factory.infra.clock import Clock, format_ts
from tools.codex.factory.ledger.store import Filter, Ledger


@pytest.mark.parametrize(
    "args",
    [
        ["ledger", "--limit", "-1"],
        ["nosuch-command"],
        ["bundle-validate"],
        ["integrate"],
        ["ledger", "--run-id", "../x"],
        ["print-report", "--run-id", "a/b"],
        ["launch", "--dry-run", "--workers", "A,,Z"],
        ["--now", "yesterday-ish", "ledger"],
        ["open-run", "--run-id", "nosuch"],  # an unknown run is a usage error, as the runbook says
        ["open-report", "--run-id", "nosuch"],
    ],
)
def test_usage_errors_are_one_line_exit_2(repo: Path, args: list[str]) -> None:
    res = run_cli("--repo", str(repo), *args)
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("factory: error:"), res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (
            {"preset": "codx"},
            "config key workers.agent.preset: 'codx' is not one of ['codex', 'claude', 'aider', 'script']",
        ),
        ({"preset": "script", "argv": []}, "config key workers.agent.argv: [] should be non-empty"),
        (
            {"preset": "script", "timeout_s": 0},
            "config key workers.agent.timeout_s: 0 is less than or equal to the minimum",
        ),
        ("codex", "config key workers.agent: 'codex' is not of type 'null' or 'object'"),
        (
            {"preset": "script", "argv": ["{python}", "{prompt_file"]},
            "config workers.agent.argv[1]: unbalanced '{' in '{prompt_file' at column 1",
        ),
        (
            {"preset": "script", "argv": ["{python}", "x}"]},
            "config workers.agent.argv[1]: unbalanced '}' in 'x}'",
        ),
    ],
)
def test_agent_config_errors_name_the_field_and_the_rule(
    repo: Path, agent: object, expected: str
) -> None:
    res = run_cli(
        "--repo",
        str(repo),
        "launch",
        "--workers",
        "A",
        env={"FACTORY_WORKERS__AGENT": json.dumps(agent)},
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("factory: error: " + expected), lines
    assert not (repo / "tools/codex/runs").exists() or not any(
        (repo / "tools/codex/runs").iterdir()
    )


def test_missing_required_option_is_named(repo: Path) -> None:
    res = run_cli("--repo", str(repo), "bundle-validate")
    assert "Missing option '--run-id'" in res.stderr


def test_same_clock_gives_the_next_seq(repo: Path) -> None:
    ids = []
    for _ in range(3):
        res = run_cli("--repo", str(repo), "--now", PINNED, "oneshot", "--dry-run", "--json")
        assert res.returncode == 0, res.stderr
        ids.append(json.loads(res.stdout)["run_id"])
    assert [i[-3:] for i in ids] == ["001", "002", "003"]
    assert len({i[:-3] for i in ids}) == 1
    later = run_cli(
        "--repo", str(repo), "--now", "2026-11-21T20:15:01Z", "oneshot", "--dry-run", "--json"
    )
    assert json.loads(later.stdout)["run_id"].endswith("_001")


def test_run_ids_since_matches_a_full_scan(tmp_path: Path) -> None:
    base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    with Ledger(tmp_path / "l.jsonl", Clock(base), fsync=False) as ledger:
        for i in range(300):
            ledger.clock = Clock(base + dt.timedelta(seconds=i // 7))
            kind = "run.started" if i % 5 == 0 else "stage.started"
            ledger.append(kind, f"run{i % 11}", "launch", {"actor": "t", "i": i})
        for second in (0, 3, 20, 42, 43, 99):
            floor = format_ts(base + dt.timedelta(seconds=second))
            full = {
                e.run_id
                for e in ledger.select(Filter(event_type="run.started"))
                if e.ts_utc >= floor
            }
            assert ledger.run_ids_since("run.started", floor) == full


def test_concurrent_oneshots_each_get_their_own_run(repo: Path) -> None:
    import subprocess
    import sys

    from tests.support.repos import ROOT

    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.codex.factory",
                "--repo",
                str(repo),
                "--now",
                PINNED,
                "oneshot",
                "--dry-run",
                "--json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=300), p.stdout.read() if p.stdout else b"") for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0, 0], [out[-400:] for _, out in results]
    ids = sorted(json.loads(out)["run_id"] for _, out in results)
    assert [i[-3:] for i in ids] == ["001", "002", "003", "004"]
    verify = run_cli("--repo", str(repo), "ledger", "verify")
    assert verify.returncode == 0
    for run_id in ids:
        replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id)
        assert replay.returncode == 0, replay.stdout[-800:]


def test_runs_dir_with_user_files_is_refused_before_anything_is_written(repo: Path) -> None:
    from tests.support.repos import git

    (repo / "app").mkdir()
    (repo / "app" / "main.py").write_text("print(1)\n")
    git(repo, "add", "app/main.py")
    git(repo, "commit", "-q", "-m", "app")
    res = run_cli(
        "--repo", str(repo), "launch", "--dry-run", env={"FACTORY_PATHS__RUNS_DIR": "app"}
    )
    assert res.returncode == 2 and "paths.runs_dir" in res.stderr, res.stderr
    assert not (repo / "app" / ".gitignore").exists()
    assert sorted(p.name for p in (repo / "app").iterdir()) == ["main.py"]


def test_plan_with_a_dependency_cycle_is_refused_at_launch(repo: Path, tmp_path: Path) -> None:
    plan = tmp_path / "cycle.json"
    plan.write_text(
        json.dumps(
            {
                "workers": [
                    {"id": "A", "allow": ["src/**"], "depends_on": ["B"]},
                    {"id": "B", "allow": ["tests/**"], "depends_on": ["A"]},
                ]
            }
        )
    )
    res = run_cli("--repo", str(repo), "launch", "--dry-run", "--plan", str(plan))
    assert res.returncode == 2 and "dependency cycle among workers A, B" in res.stderr, res.stderr
    assert not (repo / "tools/codex/runs").exists() or not [
        p for p in (repo / "tools/codex/runs").iterdir() if p.is_dir()
    ]


def test_json_out_to_a_path_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (tmp_path / "a-file").write_text("not a folder\n")
    target = tmp_path / "a-file" / "out.json"
    res = run_cli("--repo", str(repo), "config", "show", "--json-out", str(target))
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(f"factory: error: --json-out {target}: cannot write (")
    assert len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr
