"""Culprit isolation end to end: real repositories, real patches, a real pytest suite as the
required check; the culprit, the interacting pair or the flaky check is named, and replayed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.factory import (
    launch_dry,
    make_patch,
    read_json,
    run_dir,
    set_bundle,
    write_config,
    write_plan,
)
from tests.support.ledgers import ledger_lines, rewrite_ledger
from tests.support.repos import PINNED, make_repo, run_cli
from tools.codex.factory.core import isolation
from tools.codex.factory.infra import schemas

FILES = {
    "pytest.ini": "[pytest]\n",
    "pkg/__init__.py": "",
    "pkg/lib.py": "def old(x):\n    return x + 1\n",
    "tests/test_lib.py": "from pkg import lib\n\n\ndef test_old():\n    assert lib.old(1) == 2\n",
}
PYTEST = ["{python}", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def configure(repo: Path, argv: list[str] = PYTEST, **integrate: Any) -> None:
    doc: dict[str, Any] = {"checks": {"required": [{"name": "tests", "argv": argv}]}}
    if integrate:
        doc["integrate"] = integrate
    write_config(repo, doc)


def run_with(repo: Path, patches: dict[str, bytes]) -> str:
    plan = write_plan(
        repo.parent / "plan.json", [{"id": w, "task": w, "allow": ["**"]} for w in patches]
    )
    run_id = launch_dry(repo, "--plan", str(plan))
    for worker, patch in patches.items():
        set_bundle(repo, run_id, worker, patch)
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    return run_id


def integrate(repo: Path, run_id: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id, "--json")
    doc = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
    assert schemas.errors("integrator_status", doc) == []
    return res, doc


def replay(repo: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id, "--json")


def a_test_file(name: str, body: str) -> dict[str, str | bytes | None]:
    return {f"tests/test_{name}.py": f"from pkg import lib\n\n\ndef test_{name}():\n{body}"}


def harmless(repo: Path, w: str) -> bytes:
    return make_patch(repo, {f"notes/{w}.txt": f"{w}\n"})


def integrated_culprit_a(repo: Path) -> str:
    """A run whose worker A breaks the suite alone (B is harmless), integrated: its ID."""
    configure(repo)
    run_id = run_with(
        repo,
        {
            "A": make_patch(repo, a_test_file("a", "    assert False\n")),
            "B": harmless(repo, "B"),
        },
    )
    integrate(repo, run_id)
    return run_id


def probes(repo: Path, run_id: str) -> list[dict[str, Any]]:
    return [
        e["payload"]
        for e in ledger_lines(repo)
        if e["run_id"] == run_id and e["event_type"] == "isolation.probe"
    ]


def test_a_culprit_that_fails_alone_is_named_and_blocked(repo: Path) -> None:
    configure(repo)
    run_id = run_with(
        repo,
        {
            "A": make_patch(repo, a_test_file("a", "    assert lib.old(2) == 4\n")),
            "B": harmless(repo, "B"),
        },
    )
    res, doc = integrate(repo, run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    assert doc["status"] == "BLOCKED"
    # named with the failing tests its own probe showed, not only the merged check's
    assert doc["culprits"] == [
        {"worker": "A", "check": "tests", "how": "alone", "tests": ["tests/test_a.py::test_a"]}
    ]
    assert doc["interactions"] == [] and doc["flaky"] == []
    assert doc["worker_verdicts"] == {
        "A": {"verdict": "BLOCKED", "rule": "check-failed"},
        "B": {"verdict": "PASS", "rule": ""},
    }
    assert any("culprit: A_worker (fails alone)" in r for r in doc["reasons"])
    assert json.loads(res.stdout)["culprits"] == doc["culprits"]  # --json says it too
    report = (run_dir(repo, run_id) / "Z_integrator" / "FINAL_REPORT.txt").read_text()
    assert "  A_worker     BLOCKED check-failed\n" in report
    assert "  B_worker     PASS\n" in report
    assert "culprit     A_worker: tests fails alone" in report
    steps = [(p["step"], p["workers"]) for p in probes(repo, run_id)]
    assert steps == [("rerun", ["A", "B"]), ("alone", ["A"]), ("alone", ["B"])]
    assert doc["isolation_runs"] == 2
    logs = run_dir(repo, run_id) / "Z_integrator" / "LOGS" / "isolation"
    assert "1 failed" in (logs / "probe-002-tests.stdout.log").read_text()
    assert not (run_dir(repo, run_id) / "sandbox-probe").exists()
    assert replay(repo, run_id).returncode == 0


def test_a_pair_failing_only_together_is_an_interaction(repo: Path) -> None:
    configure(repo)
    removed = "def new(x):\n    return x + 1\n"
    run_id = run_with(
        repo,
        {
            "A": make_patch(
                repo,
                {
                    "pkg/lib.py": removed,
                    # Its test follows the rename (deleting it would be refused as a gamed test).
                    "tests/test_lib.py": "from pkg import lib\n\n\ndef test_old():\n"
                    "    assert lib.new(1) == 2\n",
                    **_new_test(),
                },
            ),
            "B": harmless(repo, "B"),
            "C": harmless(repo, "C"),
            "D": make_patch(repo, a_test_file("d", "    assert lib.old(3) == 4\n")),
        },
    )
    res, doc = integrate(repo, run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    assert doc["culprits"] == []
    assert doc["interactions"] == [{"workers": ["A", "D"], "check": "tests"}]
    assert doc["worker_verdicts"]["A"] == {"verdict": "BLOCKED", "rule": "check-interaction"}
    assert doc["worker_verdicts"]["D"] == {"verdict": "BLOCKED", "rule": "check-interaction"}
    assert doc["worker_verdicts"]["B"]["verdict"] == "PASS"
    assert any("interaction: A_worker + D_worker" in r for r in doc["reasons"])
    assert doc["isolation_runs"] <= isolation.default_max_runs(4)
    assert replay(repo, run_id).returncode == 0


def _new_test() -> dict[str, str | bytes | None]:
    return {
        "tests/test_new.py": "from pkg import lib\n\n\ndef test_new():\n    assert lib.new(1) == 2\n"
    }


def test_a_check_failing_once_is_flaky_and_blames_no_one(repo: Path, tmp_path: Path) -> None:
    counter = tmp_path / "runs.count"  # outside the sandbox: the check fails on its first run
    flaky = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1)); "
        "sys.exit(1 if n == 0 else 0)"
    )
    configure(repo, ["{python}", "-c", flaky, str(counter)])
    run_id = run_with(repo, {"A": harmless(repo, "A"), "B": harmless(repo, "B")})
    res, doc = integrate(repo, run_id)
    assert res.returncode == 3
    assert doc["flaky"] == ["tests"] and doc["culprits"] == [] and doc["interactions"] == []
    assert all(v["verdict"] == "PASS" for v in doc["worker_verdicts"].values())
    assert any("passed on a rerun: flaky" in r for r in doc["reasons"])
    assert doc["isolation_runs"] == 0 and counter.read_text() == "2"
    assert replay(repo, run_id).returncode == 0


def test_a_flaky_check_is_accepted_with_a_warning_when_configured(
    repo: Path, tmp_path: Path
) -> None:
    counter = tmp_path / "runs.count"
    flaky = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1)); "
        "sys.exit(1 if n == 0 else 0)"
    )
    configure(repo, ["{python}", "-c", flaky, str(counter)], flaky="warn")
    run_id = run_with(repo, {"A": harmless(repo, "A")})
    res, doc = integrate(repo, run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    integrate_row = next(s for s in doc["stages"] if s["stage"] == "integrate")
    assert integrate_row["status"] == "PASS"
    assert integrate_row["reason"].startswith("warning: required check 'tests'")
    assert replay(repo, run_id).returncode == 0


def test_eight_workers_one_culprit_found_within_the_bound(repo: Path) -> None:
    configure(repo)
    workers = [chr(ord("A") + i) for i in range(8)]
    patches = {w: harmless(repo, w) for w in workers}
    patches["F"] = make_patch(
        repo, {"notes/F.txt": "F\n", **a_test_file("f", "    assert lib.old(0) == 0\n")}
    )
    run_id = run_with(repo, patches)
    res, doc = integrate(repo, run_id)
    assert res.returncode == 3
    assert doc["culprits"] == [
        {"worker": "F", "check": "tests", "how": "alone", "tests": ["tests/test_f.py::test_f"]}
    ]
    assert doc["interactions"] == []
    ran = probes(repo, run_id)
    assert doc["isolation_runs"] == len(ran) - 1 == 9  # 8 alone, the rest together once
    assert len(ran) <= 8 + 2 * 3 + 1  # n + 2*ceil(log2 n) + the rerun
    assert replay(repo, run_id).returncode == 0


def test_isolation_off_keeps_the_plain_verdict(repo: Path) -> None:
    configure(repo, isolate="off")
    run_id = run_with(repo, {"A": make_patch(repo, a_test_file("a", "    assert False\n"))})
    res, doc = integrate(repo, run_id)
    assert res.returncode == 3
    assert "culprits" not in doc and "worker_verdicts" not in doc
    assert doc["reasons"] == ["integrate: required check 'tests' exited with rc=1"]
    assert probes(repo, run_id) == []
    assert replay(repo, run_id).returncode == 0


def test_replay_catches_an_edited_probe_outcome(repo: Path) -> None:
    run_id = integrated_culprit_a(repo)
    assert replay(repo, run_id).returncode == 0
    events = ledger_lines(repo)
    probe = next(
        e
        for e in events
        if e["event_type"] == "isolation.probe" and e["payload"]["step"] == "alone"
    )
    check = probe["payload"]["checks"][0]
    assert check["passed"] is False
    check["passed"], check["rc"] = True, 0  # A "passed" alone: rechained, consistent in itself
    rewrite_ledger(repo, events)
    res = replay(repo, run_id)
    assert res.returncode == 3, res.stdout
    found = json.loads(res.stdout)["divergences"]
    assert any("isolation.decided culprits" in d["what"] for d in found), found


def test_replay_catches_a_probe_the_search_would_not_ask_for(repo: Path) -> None:
    run_id = integrated_culprit_a(repo)
    events = ledger_lines(repo)
    probe = next(
        e
        for e in events
        if e["event_type"] == "isolation.probe" and e["payload"]["step"] == "alone"
    )
    probe["payload"]["workers"] = ["B"]
    rewrite_ledger(repo, events)
    found = json.loads(replay(repo, run_id).stdout)["divergences"]
    assert any("the probe core.isolation.step asks for" in d["what"] for d in found), found


def test_at_its_bound_isolation_says_undetermined_and_guesses_nothing(repo: Path) -> None:
    configure(repo, isolate_max_runs=1)
    run_id = run_with(
        repo,
        {
            "A": harmless(repo, "A"),
            "B": make_patch(repo, a_test_file("b", "    assert False\n")),
        },
    )
    res, doc = integrate(repo, run_id)
    assert res.returncode == 3
    assert doc["isolation_exhausted"] is True and doc["isolation_runs"] == 1
    assert doc["culprits"] == [] and doc["interactions"] == []
    assert all(v["verdict"] == "PASS" for v in doc["worker_verdicts"].values())
    assert any("culprit undetermined" in r for r in doc["reasons"])
    assert replay(repo, run_id).returncode == 0


def test_a_sandbox_left_behind_is_a_valid_cleanup_event() -> None:
    event = {
        "seq": 1,
        "ts_utc": "2026-11-21T20:15:00.000000Z",
        "event_type": "cleanup.failed",
        "run_id": "r1",
        "stage": "integrate",
        "payload": {
            "actor": "Z_integrator",
            "kind": "factory",
            "kept": ["sandbox"],
            "reason": "busy",
        },
        "prev_hash": "0" * 64,
        "hash": "0" * 64,
    }
    assert schemas.errors("ledger_event", event) == []


def test_a_run_launched_before_isolation_is_integrated_and_replayed_without_it(
    repo: Path,
) -> None:
    from tools.codex.factory.run.handle import isolation_settings

    configure(repo, isolate_max_runs=5)
    run_id = launch_dry(repo)
    manifest = read_json(run_dir(repo, run_id) / "RUN_MANIFEST.json")
    assert isolation_settings(manifest) == ("on-failure", 5, "block")
    del manifest["config"]["integrate"]  # what an earlier release recorded
    assert isolation_settings(manifest) == ("off", None, "block")


@pytest.mark.parametrize("declared", [True, False])
def test_a_dependent_is_probed_with_its_dependency(repo: Path, declared: bool) -> None:
    """Declared, B runs alone with A; undeclared, B's patch does not apply alone: it fails."""
    created = {"pkg/extra.py": "def extra():\n    return 1\n"}
    a = make_patch(repo, created)
    (repo / "pkg/extra.py").write_text(created["pkg/extra.py"])
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "tmp"], check=True)
    b = make_patch(
        repo,
        {
            "pkg/extra.py": "def extra():\n    return 2\n",
            **a_test_file("b", "    from pkg import extra\n    assert extra.extra() == 1\n"),
        },
    )
    subprocess.run(["git", "-C", str(repo), "reset", "-q", "--hard", "HEAD~1"], check=True)
    configure(repo)
    plan = write_plan(
        repo.parent / "plan.json",
        [
            {"id": "A", "task": "A", "allow": ["**"], "shared": ["pkg/extra.py"]},
            {
                "id": "B",
                "task": "B",
                "allow": ["**"],
                "shared": ["pkg/extra.py"],
                "depends_on": ["A"] if declared else [],
            },
            {"id": "C", "task": "C", "allow": ["**"]},
        ],
    )
    run_id = launch_dry(repo, "--plan", str(plan))
    for worker, patch in {"A": a, "B": b, "C": harmless(repo, "C")}.items():
        set_bundle(repo, run_id, worker, patch)
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    res, doc = integrate(repo, run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    assert [(c["worker"], c["how"]) for c in doc["culprits"]] == [("B", "alone")]
    alone = [p for p in probes(repo, run_id) if p["step"] == "alone"]
    assert [p["workers"] for p in alone] == [["A"], ["A", "B"] if declared else ["B"], ["C"]]
    expected = "" if declared else "patch of B_worker does not apply here"
    assert alone[1].get("apply_error", "") == expected
    assert doc["worker_verdicts"]["A"]["verdict"] == "PASS"
    assert replay(repo, run_id).returncode == 0


def test_replay_recomputes_the_culprits_status_json_names(repo: Path) -> None:
    """STATUS.json's culprits and per-worker verdicts are what isolation.decided decided: a
    status that blames another worker is a divergence of its own, not only a changed hash."""
    run_id = integrated_culprit_a(repo)
    assert replay(repo, run_id).returncode == 0
    path = run_dir(repo, run_id) / "Z_integrator" / "STATUS.json"
    doc = read_json(path)
    doc["culprits"] = [{"worker": "B", "check": "tests", "how": "alone"}]
    doc["worker_verdicts"]["A"] = {"verdict": "PASS", "rule": ""}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    res = replay(repo, run_id)
    assert res.returncode == 3, res.stdout
    whats = [d["what"] for d in json.loads(res.stdout)["divergences"]]
    assert "Z_integrator/STATUS.json culprits (replayed)" in whats, whats
    assert "Z_integrator/STATUS.json worker_verdicts (replayed)" in whats, whats


def test_replay_recomputes_a_probes_failing_tests_from_its_logs(repo: Path) -> None:
    """The failing tests a culprit is named with come from its probe's logs: a recorded name
    edited (and rechained) is a divergence, and so is STATUS.json naming other tests."""
    run_id = integrated_culprit_a(repo)
    assert replay(repo, run_id).returncode == 0
    events = ledger_lines(repo)
    probe = next(
        e
        for e in events
        if e["event_type"] == "isolation.probe" and e["payload"]["workers"] == ["A"]
    )
    check = probe["payload"]["checks"][0]
    assert check["failing_tests"] == ["tests/test_a.py::test_a"]
    check["failing_tests"] = ["tests/test_lib.py::test_old"]  # blame another test
    rewrite_ledger(repo, events)
    res = replay(repo, run_id)
    assert res.returncode == 3, res.stdout
    whats = [d["what"] for d in json.loads(res.stdout)["divergences"]]
    assert any("isolation.probe failing_tests of tests" in w for w in whats), whats
    assert "Z_integrator/STATUS.json culprits (replayed)" in whats, whats


def test_an_integration_killed_mid_isolation_and_run_again_replays_its_own_probes(
    repo: Path, tmp_path: Path
) -> None:
    """Integrated again after a kill in the middle of isolation (no run.finished between), the
    culprit is named with the failing tests of the second integration's probes; replay
    recomputes them from those probes, never from the killed integration's."""
    said = tmp_path / "said.txt"
    script = (
        "import os, pathlib, sys\n"
        f"said = pathlib.Path({str(said)!r}).read_text()\n"
        "a, b = pathlib.Path('notes/A.txt').exists(), pathlib.Path('notes/B.txt').exists()\n"
        "if said == 'first' and a and not b:\n"
        "    os.kill(os.getppid(), 9)  # the factory dies in its second probe\n"
        "if a:\n"
        "    print('FAILED tests/test_x.py::test_' + said + ('_with_b' if b else ''))\n"
        "    sys.exit(1)\n"
    )
    configure(repo, ["{python}", "-c", script])
    run_id = run_with(repo, {"A": harmless(repo, "A"), "B": harmless(repo, "B")})
    said.write_text("first")
    argv = ("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id)
    killed = run_cli(*argv, real=True)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert len(probes(repo, run_id)) == 1
    said.write_text("second")
    res, doc = integrate(repo, run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    assert doc["culprits"] == [
        {"worker": "A", "check": "tests", "how": "alone", "tests": ["tests/test_x.py::test_second"]}
    ]
    out = replay(repo, run_id)
    assert out.returncode == 0, out.stdout


def test_a_probes_failing_tests_without_its_logs_recorded_are_no_record(repo: Path) -> None:
    """A failed probe check's failing tests stand only on the logs the probe recorded: a probe
    whose log hashes were dropped from its record (names then vouched for by nothing) is a
    divergence, not names taken on trust."""
    run_id = integrated_culprit_a(repo)
    events = ledger_lines(repo)
    probe = next(
        e
        for e in events
        if e["event_type"] == "isolation.probe" and e["payload"]["workers"] == ["A"]
    )
    probe["payload"]["logs"] = {}
    probe["payload"]["checks"][0]["failing_tests"] = ["tests/test_lib.py::test_old"]
    rewrite_ledger(repo, events)
    (run_dir(repo, run_id).parent / "factory_ledger.index.sqlite3").unlink(missing_ok=True)
    res = replay(repo, run_id)
    assert res.returncode == 3, res.stdout
    whats = [d["what"] for d in json.loads(res.stdout)["divergences"]]
    assert any("isolation.probe failing_tests of tests" in w for w in whats), whats


# A required check that names its failing test only in the JUnit XML it writes (its output
# says no test name): it fails when notes/A.txt is in the tree.
JUNIT_CHECK = """
import pathlib, sys
if pathlib.Path("notes/A.txt").exists():
    pathlib.Path("reports").mkdir(exist_ok=True)
    pathlib.Path("reports/junit.xml").write_text(
        '<testsuite><testcase classname="tests.test_notes" name="test_no_a">'
        '<failure message="a"/></testcase></testsuite>'
    )
    print("boom")
    sys.exit(1)
"""


def test_a_culprit_is_named_with_the_tests_its_probes_junit_xml_names(repo: Path) -> None:
    """A probe's check that wrote JUnit XML names its failing tests from it, as the merged
    check does: kept beside the probe's logs, hashed, and read again by replay."""
    write_config(
        repo,
        {
            "checks": {
                "required": [
                    {
                        "name": "tests",
                        "argv": ["{python}", "-c", JUNIT_CHECK],
                        "junit_xml": "reports/junit.xml",
                    }
                ]
            }
        },
    )
    run_id = run_with(repo, {"A": harmless(repo, "A"), "B": harmless(repo, "B")})
    res, doc = integrate(repo, run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    assert doc["culprits"] == [
        {"worker": "A", "check": "tests", "how": "alone", "tests": ["tests.test_notes.test_no_a"]}
    ]
    alone = next(p for p in probes(repo, run_id) if p["workers"] == ["A"])
    stem = "Z_integrator/LOGS/isolation/probe-002-tests"
    assert f"{stem}.junit.xml" in alone["logs"]
    assert replay(repo, run_id).returncode == 0
    events = ledger_lines(repo)
    for e in events:
        if e["event_type"] == "isolation.probe" and e["payload"]["workers"] == ["A"]:
            e["payload"]["checks"][0]["failing_tests"] = ["boom"]  # as the output alone says
    rewrite_ledger(repo, events)
    whats = [d["what"] for d in json.loads(replay(repo, run_id).stdout)["divergences"]]
    assert any("isolation.probe failing_tests of tests" in w for w in whats), whats
