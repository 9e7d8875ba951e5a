"""The convergence loop end to end: real worktrees, real agents (scripted), real scenarios."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.loop.conftest import (
    SCENARIOS,
    crank,
    crashed_crank,
    culprit_crank_repo,
    make_crank_repo,
    plan_of,
    resume,
    scenario,
    settle,
)
from tests.support.contract import check_keys
from tests.support.repos import PINNED, git, run_cli
from tools.codex.factory.core.scenarios import scenario_id

ADD, MUL, SUB = (scenario_id(f"scenarios/{op}.md") for op in ("add", "mul", "sub"))
TWO = {k: v for k, v in SCENARIOS.items() if "sub" not in k}


def crank_dir(repo: Path, crank_id: str) -> Path:
    return repo / "tools/codex/runs" / crank_id


def events(repo: Path, crank_id: str) -> list[dict[str, object]]:
    lines = (repo / "tools/codex/runs/factory_ledger.jsonl").read_text(encoding="utf-8")
    return [e for e in map(json.loads, lines.splitlines()) if e["run_id"] == crank_id]


def replay(repo: Path, crank_id: str) -> str:
    res = run_cli("--repo", str(repo), "ledger-replay", "--run-id", crank_id)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_an_agent_that_reads_its_feedback_converges_in_three_iterations(converging: Path) -> None:
    before = git(converging, "rev-parse", "HEAD")
    branches = git(converging, "branch", "--list")
    code, data, out = crank(converging, "--threshold", "1.0")
    assert code == 0, out
    check_keys("crank", data)
    assert data["decision"] == "CONVERGED"
    assert [r["satisfaction"] for r in data["trajectory"]] == ["1/3", "2/3", "3/3"]
    # The user's branch, HEAD and index are untouched; the result is on the crank's branch.
    assert git(converging, "rev-parse", "HEAD") == before
    assert git(converging, "branch", "--list").replace(f"  {data['branch']}\n", "") == branches
    assert data["branch"] == f"factory/crank/{data['crank_id']}"
    assert git(converging, "rev-parse", data["branch"]).strip() == data["tip"]
    calc = git(converging, "show", f"{data['tip']}:src/calc.py")
    assert "def add" in calc and "def mul" in calc and "def sub" in calc
    folder = crank_dir(converging, data["crank_id"])
    assert sorted(p.name for p in folder.glob("feedback_iter_*.md")) == [
        "feedback_iter_1.md",
        "feedback_iter_2.md",
    ]
    first = (folder / "feedback_iter_1.md").read_text(encoding="utf-8")
    assert f"- {MUL} (mul): fail, 1/1 failures, import" in first
    assert "from src.calc import" not in first  # scenario text never reaches feedback
    report = (folder / "CRANK_REPORT.md").read_text(encoding="utf-8")
    assert "# Crank" in report and "CONVERGED" in report and "**100.0%**" in report
    # The second iteration's prompt holds the first iteration's feedback, and the trace.
    prompt = (converging / "tools/codex/runs" / data["runs"][1] / "A_worker/PROMPT.md").read_text()
    assert first.rstrip("\n") in prompt
    assert f"FACTORY_CRANK_ID={data['crank_id']}" in prompt
    assert "REPLAY OK" in replay(converging, data["crank_id"])


def test_crank_status_reads_the_trajectory_from_the_ledger(converging: Path) -> None:
    code, data, out = crank(converging, "--threshold", "1.0")
    assert code == 0, out
    res = run_cli("--repo", str(converging), "crank-status", "--json")
    status = json.loads(res.stdout)
    check_keys("crank-status", status)
    assert status["crank_id"] == data["crank_id"] and status["decision"] == "CONVERGED"
    assert [r["percent"] for r in status["trajectory"]] == ["33.3%", "66.7%", "100.0%"]


def test_an_agent_that_never_improves_stalls_with_the_signature(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "stuck")
    code, data, out = crank(repo)
    assert (data["decision"], data["kind"]) == ("AWAITING_REVIEW", "escalation"), out
    assert "the crank stalled (same-failure)" in data["reason"]  # it asks before it stops
    code, data, out = settle(repo, code, data, out)
    assert code == 3, out
    assert (data["decision"], data["kind"]) == ("STALLED", "same-failure")
    assert len(data["trajectory"]) == 3
    assert any(e.startswith(f"{ADD}: {ADD}|import|") for e in data["evidence"])
    assert "cannot import name" in " ".join(data["evidence"])
    assert "spec or the scenario" in data["advice"]
    assert "REPLAY OK" in replay(repo, data["crank_id"])


def test_an_agent_that_oscillates_stalls_as_an_oscillation(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "oscillate", scenarios=TWO)
    code, data, out = settle(repo, *crank(repo))
    assert code == 3, out
    assert (data["decision"], data["kind"]) == ("STALLED", "oscillation")
    assert "iteration 3 integrated the same tree as iteration 1" in data["reason"]


def test_a_regression_is_reported_first_and_blocks_with_the_flag(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "regress")
    code, data, out = crank(repo, "--threshold", "0.6")
    assert code == 0, out  # without the flag: 2/3 meets 0.6, the regression is reported
    assert data["decision"] == "CONVERGED" and data["regressions"] == [ADD]
    repo2 = make_crank_repo(tmp_path / "repo2", "regress")
    code, data, out = settle(
        repo2, *crank(repo2, "--threshold", "0.6", "--block-on-regression", "--max-iterations", "3")
    )
    assert code == 3, out
    assert data["decision"] == "EXHAUSTED" and data["regressions"] == [ADD]
    assert "a regression blocks convergence" in data["reason"]
    second = (crank_dir(repo2, data["crank_id"]) / "feedback_iter_2.md").read_text()
    failures = second.split("## Failures", 1)[1].split("## Instructions", 1)[0]
    assert failures.lstrip().startswith("### Regressions (passed before, fail now)")
    assert f"- {ADD} (add): fail, 1/1 failures, assertion" in failures
    assert f"1. Fix the regressions next: {ADD} passed before." in second


def test_an_agent_finds_no_holdout_and_no_canary_in_its_worktree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "CANARY-5f0c2e9a"
    marked = {
        **SCENARIOS,
        "scenarios/add.md": SCENARIOS["scenarios/add.md"] + f"\n<!-- canary: {token} -->\n",
    }
    repo = make_crank_repo(tmp_path / "repo", "peek", scenarios=marked)
    monkeypatch.setenv("CRANK_TEST_CANARY", token)
    code, data, out = crank(repo, "--threshold", "1.0")
    assert code == 0, out
    peek = json.loads(git(repo, "show", f"{data['tip']}:notes/peek.json"))
    assert peek == {"canary_hits": [], "exists": False, "listing": []}
    for run_id in data["runs"]:
        prompt = (repo / "tools/codex/runs" / run_id / "A_worker/PROMPT.md").read_text()
        assert token not in prompt and "from src.calc import" not in prompt
    folder = crank_dir(repo, data["crank_id"])
    for path in folder.glob("feedback_iter_*.md"):
        assert token not in path.read_text(encoding="utf-8")


def test_full_feedback_that_would_echo_a_scenario_halts_the_crank(tmp_path: Path) -> None:
    """A failing Python scenario's traceback shows its own source line: with output tails in
    the feedback, that line would reach the agents. The guard pauses the crank first (nothing
    is sent); approving stops it, rejecting goes on with the operator's words alone."""
    repo = make_crank_repo(tmp_path / "repo", "converge", feedback={"detail": "full"})
    code, data, out = crank(repo)
    assert (code, data["decision"], data["kind"]) == (3, "AWAITING_REVIEW", "escalation"), out
    assert "holdout-leak: feedback_iter_1.md" in data["reason"]
    folder = crank_dir(repo, data["crank_id"])
    assert not list(folder.glob("feedback_iter_*.md"))
    assert data["runs"] == [f"{data['crank_id']}.i1"]  # no second iteration, no second prompt
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "reject", "--crank-id", data["crank_id"],
        "--gate", "escalation", "--by", "Al", "--feedback", "Implement mul and sub too.",
        "--json",
    )  # fmt: skip
    again = json.loads(res.stdout)
    prompt = (repo / "tools/codex/runs" / f"{data['crank_id']}.i2/A_worker/PROMPT.md").read_text()
    assert "Implement mul and sub too." in prompt and "from src.calc import" not in prompt
    assert (again["decision"], again["kind"]) == ("AWAITING_REVIEW", "escalation")  # leaks again
    code, final, out = settle(repo, res.returncode, again, res.stdout)
    assert (code, final["decision"], final["kind"]) == (3, "HALTED", "holdout-leak"), out
    assert "nothing was sent" in final["reason"]
    assert "REPLAY OK" in replay(repo, data["crank_id"])


def test_a_plan_that_holds_a_scenario_line_is_refused_before_anything_runs(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge")
    plan = json.loads(plan_of(repo).read_text())
    plan["workers"][0]["task"] = "Make this pass: assert add(2, 3) == 5, 'wrong add result'"
    plan_of(repo).write_text(json.dumps(plan))
    code, _data, out = crank(repo)
    assert code == 3, out
    assert (
        f"holdout-leak: the plan's task of worker A, line 1, holds the evaluation method of scenario {ADD}"
        in out
    )
    assert not (repo / "tools/codex/runs").exists() or not list(
        (repo / "tools/codex/runs").glob("crank_*")
    )


def test_a_scenario_whose_interpreter_is_missing_halts_as_infrastructure(tmp_path: Path) -> None:
    if shutil.which("pwsh") or shutil.which("powershell"):
        pytest.skip("PowerShell is installed here")
    text = scenario("add", 2, 3, 5).replace("```python", "```powershell")
    repo = make_crank_repo(tmp_path / "repo", "converge", scenarios={"scenarios/add.md": text})
    code, data, out = crank(repo)
    assert code == 3, out
    assert (data["decision"], data["kind"]) == ("HALTED", "infrastructure")
    (row,) = data["trajectory"]
    assert row["failing"] == [] and row["satisfaction"] == "0/1"  # never a product failure
    assert data["evidence"] == [f"{ADD}: infrastructure failure"]
    (finished,) = [
        e for e in events(repo, data["crank_id"]) if e["event_type"] == "scenarios.finished"
    ]
    (result,) = finished["payload"]["results"]  # type: ignore[index]
    assert (result["outcome"], result["symptom"]) == (
        "infra",
        "pwsh or powershell not found on PATH",
    )
    trials = finished["payload"]["trials"][ADD]  # type: ignore[index]
    assert len(trials) == 1 and trials[0]["infra"]  # retried once, then recorded as one trial


def test_every_worker_needs_a_headless_agent(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge", workers={"agent": None})
    code, _data, out = crank(repo)
    assert code == 2 and "have no headless agent" in out


def test_the_scenarios_folder_must_be_held_out(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge", scenarios={"src/s.md": "x"})
    code, _data, out = crank(repo)
    assert code == 2  # no scenario at all in scenarios/
    assert "no scenario in scenarios/" in out
    repo2 = make_crank_repo(tmp_path / "repo2", "converge", scenarios={"docs/add.md": "x"})
    res = run_cli(
        "--repo", str(repo2), "crank", "--plan", str(plan_of(repo2)),
        env={"FACTORY_SCENARIOS__DIR": "docs"},
    )  # fmt: skip
    assert res.returncode == 2
    assert "scenarios.dir 'docs' is not inside security.holdout_paths" in res.stderr


def test_a_crank_killed_mid_iteration_resumes_and_converges(tmp_path: Path) -> None:
    repo, env = crashed_crank(tmp_path)
    status = run_cli("--repo", str(repo), "crank-status", "--crank-id", "c1")
    assert "running or stopped, iteration 2" in status.stdout
    assert "factory crank --resume --crank-id c1" in status.stdout
    data = resume(repo, env)
    assert [r["satisfaction"] for r in data["trajectory"]] == ["1/3", "2/3", "3/3"]
    assert [r["run_id"] for r in data["trajectory"]] == ["c1.i1", "c1.i2-2", "c1.i3"]
    assert "REPLAY OK" in replay(repo, "c1")
    again = run_cli("--repo", str(repo), "crank", "--resume", "--crank-id", "c1")
    assert again.returncode == 2 and "has finished" in again.stderr


def test_same_inputs_give_byte_identical_crank_folders_and_ledgers(tmp_path: Path) -> None:
    origin = make_crank_repo(tmp_path / "origin", "converge")
    clones = []
    for name in ("one", "two"):
        clone = tmp_path / name
        git(tmp_path, "clone", "-q", str(origin), str(clone))
        (clone / "tools/codex/factory").mkdir(parents=True, exist_ok=True)
        config = origin / "tools/codex/factory/factory.config.json"
        (clone / "tools/codex/factory/factory.config.json").write_bytes(config.read_bytes())
        plan_of(clone).write_bytes(plan_of(origin).read_bytes())
        code, data, out = crank(clone, "--threshold", "1.0")
        assert code == 0, out
        clones.append((clone, data))
    (a, da), (b, db) = clones
    assert da == db
    ledger = "tools/codex/runs/factory_ledger.jsonl"
    assert (a / ledger).read_bytes() == (b / ledger).read_bytes()

    def files(root: Path) -> dict[str, bytes]:
        folder = crank_dir(root, da["crank_id"])
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and "LOGS" not in p.parts and "locks" not in p.parts
        }

    assert files(a) == files(b) and len(files(a)) >= 5


def test_pr_without_gh_or_a_remote_says_how(converging: Path) -> None:
    res = run_cli(
        "--repo", str(converging), "--now", PINNED, "crank", "--plan", str(plan_of(converging)),
        "--threshold", "1.0", "--pr", env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if "pull request" in ln]
    assert line.startswith("factory: no pull request opened (no git remote); to open one: git push")


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in gh is a script with a shebang")
def test_pr_pushes_the_crank_branch_and_runs_gh(
    converging: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(converging, "remote", "add", "origin", str(remote))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(tmp_path / 'gh.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        "print('https://example.invalid/pull/1')\n"
    )
    gh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, data, out = crank(converging, "--threshold", "1.0", "--pr")
    assert code == 0, out
    assert "factory: pull request: https://example.invalid/pull/1" in out
    assert git(remote, "rev-parse", data["branch"]).strip() == data["tip"]
    argv = json.loads((tmp_path / "gh.json").read_text())
    assert argv[:4] == ["pr", "create", "--head", data["branch"]]
    assert argv[-1].endswith("CRANK_REPORT.md")


def test_checks_of_a_crank_iteration_run_without_the_holdout(tmp_path: Path) -> None:
    """The agents' code runs in the checks, and their output goes back to the agents: the
    holdout is not written into that sandbox."""
    peek = "import os; print('holdout present:', os.path.exists('scenarios/add.md'))"
    check = {"name": "peek", "argv": ["{python}", "-c", peek], "timeout_s": 60}
    repo = make_crank_repo(tmp_path / "repo", "converge", checks={"required": [check]})
    _code, data, out = crank(repo, "--max-iterations", "1")
    assert data["trajectory"][0]["gate1"] == "PASS", out
    log = repo / "tools/codex/runs" / data["runs"][0] / "Z_integrator/LOGS/check-peek.stdout.log"
    assert log.read_text() == "holdout present: False\n"


def test_a_failed_required_check_is_fed_back_to_the_worker_that_broke_it(tmp_path: Path) -> None:
    """Culprit isolation names the worker whose change fails the required check; the next
    iteration's feedback says so (with its failing output's cause), the culprit fixes it and
    the crank converges; replay recomputes the feedback from the recorded blame."""
    repo = culprit_crank_repo(tmp_path / "repo")
    code, data, out = crank(repo, "--threshold", "0.3", "--crank-id", "cul")
    assert code == 0, out
    assert [it["gate1"] for it in data["trajectory"]] == ["BLOCKED", "PASS"]
    folder = repo / "tools/codex/runs/cul"
    feedback = (folder / "feedback_iter_1.md").read_text()
    assert "- no-broken: exit 1 (other); caused by B_worker (it fails with that change alone)" in (
        feedback
    )
    status = json.loads(
        (repo / "tools/codex/runs" / data["runs"][0] / "Z_integrator/STATUS.json").read_text()
    )
    assert status["culprits"] == [{"worker": "B", "check": "no-broken", "how": "alone"}]
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", "cul")
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_latest_is_never_a_new_cranks_id(converging: Path) -> None:
    """`latest` names the newest crank: a new crank refuses it as its ID in one line (it was
    resolved to the newest crank, then refused as taken); --resume still resolves it."""
    want = (
        "factory: error: --crank-id latest: that name refers to the newest crank, so it cannot "
        "be a new crank's ID; leave the crank ID out for a fresh one, or resume the newest crank"
    )
    for _ in range(2):
        code, _data, out = crank(converging, "--crank-id", "latest")
        assert (code, out.strip()) == (2, want), out
        code, data, out = crank(converging, "--threshold", "0.3", "--max-iterations", "1")
        assert code == 0, out
    assert not (converging / "tools/codex/runs/latest").exists()
    resumed = run_cli("--repo", str(converging), "crank", "--resume", "--crank-id", "latest")
    assert f"factory: latest is {data['crank_id']}" in resumed.stderr, resumed.stderr
    assert "cannot be a new crank's ID" not in resumed.stderr
