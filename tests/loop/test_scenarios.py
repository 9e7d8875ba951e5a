"""`scenarios check` and `scenarios run`, and the evaluation sandbox itself (real processes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.loop.conftest import SCENARIOS, make_crank_repo, scenario
from tests.support.contract import check_keys
from tests.support.factory import launch_dry, make_patch, run_dir, set_bundle, write_config
from tests.support.repos import PINNED, git, make_repo, pid_alive, run_cli
from tools.codex.factory.core.scenarios import scenario_id
from tools.codex.factory.loop import evaluate, holdout

ADD = scenario_id("scenarios/add.md")


def test_check_lists_the_scenarios_of_a_commit(converging: Path) -> None:
    res = run_cli("--repo", str(converging), "scenarios", "check", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    check_keys("scenarios check", doc)
    assert [s["path"] for s in doc["scenarios"]] == sorted(SCENARIOS)
    assert {s["language"] for s in doc["scenarios"]} == {"python"}
    text = run_cli("--repo", str(converging), "scenarios", "check").stdout
    assert text.startswith("3 scenario(s) in scenarios/ at ")


def test_check_reads_the_commit_not_the_working_tree(converging: Path) -> None:
    (converging / "scenarios/add.md").write_text("# not a scenario\n")
    (converging / "scenarios/new.md").write_text("# Scenario: planted\n")
    res = run_cli("--repo", str(converging), "scenarios", "check", "--json")
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["scenarios"]) == 3


def test_a_bad_scenario_is_one_line_naming_file_line_and_rule(tmp_path: Path) -> None:
    bad = scenario("add", 2, 3, 5).replace("```python", "```ruby")
    repo = make_crank_repo(tmp_path / "repo", "converge", scenarios={"scenarios/add.md": bad})
    res = run_cli("--repo", str(repo), "scenarios", "check")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "factory: error: scenario scenarios/add.md: line 10: code fence language 'ruby' is not "
        "one of bash, sh, powershell, pwsh, python"
    ]


def test_run_against_a_ref_scores_without_writing(converging: Path) -> None:
    git(converging, "checkout", "-q", "-b", "impl")
    (converging / "src/calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(converging, "commit", "-qam", "add")
    git(converging, "checkout", "-q", "main" if "main" in git(converging, "branch") else "master")
    res = run_cli("--repo", str(converging), "scenarios", "run", "--ref", "impl", "--json")
    assert res.returncode == 1, res.stderr  # one of three passes: not all
    doc = json.loads(res.stdout)
    check_keys("scenarios run", doc)
    assert doc["satisfaction"] == {"passed": 1, "total": 3} and doc["percent"] == "33.3%"
    assert doc["file"] is None
    assert not (converging / "tools/codex/runs").exists()


def test_run_against_a_run_writes_scenarios_json_and_records_it(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge")
    run_id = launch_dry(repo, "--workers", "A", "--plan", str(tmp_path / "repo-plan.json"))
    patch = make_patch(repo, {"src/calc.py": "def add(a, b):\n    return a + b\n"})
    set_bundle(repo, run_id, "A", patch)
    for cmd in ("bundle-validate", "integrate"):
        res = run_cli("--repo", str(repo), "--now", PINNED, cmd, "--run-id", run_id)
        assert res.returncode == 0, res.stdout + res.stderr
    res = run_cli("--repo", str(repo), "--now", PINNED, "scenarios", "run", "--run-id", run_id)
    assert res.returncode == 1
    assert "1/3 passed (33.3%)" in res.stdout
    doc = json.loads((run_dir(repo, run_id) / "SCENARIOS.json").read_text())
    assert doc["satisfaction"] == {"passed": 1, "total": 3}
    assert [r["id"] for r in doc["results"] if r["passed"]] == [ADD]
    # Z's patch is applied as the integration recorded it: a changed one is refused.
    z = run_dir(repo, run_id) / "Z_integrator/DIFF.patch"
    z.write_bytes(z.read_bytes().replace(b"a + b", b"a - b"))
    res = run_cli("--repo", str(repo), "scenarios", "run", "--run-id", run_id)
    assert res.returncode == 3 and "changed since the integration wrote it" in res.stderr


def test_run_needs_exactly_one_target(converging: Path) -> None:
    res = run_cli("--repo", str(converging), "scenarios", "run")
    assert res.returncode == 2 and "exactly one of a run ID or a ref to evaluate" in res.stderr


# -- the sandbox ---------------------------------------------------------------------------------
def evaluate_code(
    tmp_path: Path, code: str, lang: str = "python", **settings: int
) -> tuple[evaluate.Evaluated, dict[str, bytes]]:
    text = scenario("add", 1, 1, 2).replace(
        "```python\nfrom src.calc import add\nassert add(1, 1) == 2, 'wrong add result'\n```",
        f"```{lang}\n{code}```",
    )
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "scenarios/s.md": text})
    commit = git(repo, "rev-parse", "HEAD").strip()
    sealed = holdout.seal(repo, commit, "scenarios", 1 << 20)
    base = {"trials": 1, "pass_trials": 0, "timeout_s": 30, "parallel": 2, "python": "{python}"}
    logs: dict[str, bytes] = {}

    def keep(name: str, data: bytes) -> str:
        logs[name] = data
        return "h"

    result = evaluate.evaluate(
        repo, commit, sealed, evaluate.Settings.of({**base, **settings}), keep
    )
    return result, logs


def test_a_scenario_sees_the_tree_and_the_holdout_but_no_git_and_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_SECRET_TOKEN", "s3cret")
    code = (
        "import os, sys\n"
        "print(sorted(os.listdir('.')))\n"
        "print('git' if os.path.exists('.git') else 'no-git')\n"
        "print(os.environ.get('FACTORY_SECRET_TOKEN', 'clean'))\n"
        "print(os.environ['PYTHONPATH'] == os.getcwd())\n"
        "sys.exit(3)\n"
    )
    result, logs = evaluate_code(tmp_path, code)
    (log,) = logs.values()
    lines = log.decode().splitlines()
    assert lines[1:5] == ["['README.md', 'scenarios']", "no-git", "clean", "True"]
    (r,) = result.results
    assert (r["outcome"], r["rc"]) == ("fail", 3)


def test_a_scenario_that_hangs_is_stopped_with_its_children(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
        "print('pid', child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    result, logs = evaluate_code(tmp_path, code, timeout_s=2)
    (r,) = result.results
    assert (r["outcome"], r["symptom_class"], r["symptom"]) == ("fail", "timeout", "timed out")
    pid = int(next(iter(logs.values())).decode().split("pid ", 1)[1].split()[0])
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)


def test_trials_k_of_n_and_flaky(tmp_path: Path) -> None:
    code = (
        "import os, pathlib\n"
        "marks = pathlib.Path(os.environ['HOME']).parent.parent\n"
        "n = len(list(marks.glob('*.mark')))\n"
        "(marks / f'{os.getpid()}.mark').write_text('x')\n"
        "raise SystemExit(0 if n % 2 == 0 else 1)\n"
    )
    result, _logs = evaluate_code(tmp_path, code, trials=4, pass_trials=2, parallel=1)
    (r,) = result.results
    assert (r["outcome"], r["passes"], r["trials"], r["passed"]) == ("flaky", 2, 4, True)


def test_a_link_at_the_holdout_folder_never_leads_the_evaluation_outside(tmp_path: Path) -> None:
    """The tree under test replaces the folder above the holdout with a link to a folder of
    the user's: nothing there is deleted, and no scenario is written there."""
    victim = tmp_path / "victim"
    (victim / "scenarios").mkdir(parents=True)
    (victim / "scenarios/precious.txt").write_text("keep me\n")
    text = scenario("add", 1, 1, 2)
    repo = make_repo(
        tmp_path / "repo", {"README.md": "x\n", "src/calc.py": "", "qa/scenarios/add.md": text}
    )
    write_config(
        repo,
        {"scenarios": {"dir": "qa/scenarios"}, "security": {"holdout_paths": ["qa/scenarios/"]}},
    )
    git(repo, "checkout", "-q", "-b", "evil")
    git(repo, "rm", "-rq", "qa")
    (repo / "qa").symlink_to(victim, target_is_directory=True)
    git(repo, "add", "qa")
    git(repo, "commit", "-qm", "qa is a link")
    res = run_cli(
        "--repo",
        str(repo),
        "scenarios",
        "run",
        "--ref",
        "evil",
        env={"FACTORY_RUN__BASE_REF": "evil~1"},
    )
    assert res.returncode == 1, res.stdout + res.stderr  # add is missing: a fail, not a crash
    assert sorted(p.name for p in (victim / "scenarios").iterdir()) == ["precious.txt"]
    assert (victim / "scenarios/precious.txt").read_text() == "keep me\n"
