"""Gate 0 end to end: real repositories, real bundles, bundle-validate, integrate, replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.factory import (
    launch_dry,
    make_patch,
    read_json,
    run_dir,
    set_bundle,
    validate,
    write_config,
)
from tests.support.ledgers import ledger_lines, rewrite_ledger
from tests.support.repos import PINNED, make_repo, run_cli

TEST_CALC = (
    "from calc import add\n\n\n"
    "def test_add():\n    assert add(1, 2) == 3\n\n\n"
    "def test_add_zero():\n    assert add(0, 0) == 0\n"
)
FILES = {
    "README.md": "calc\n",
    "src/calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": TEST_CALC,
}
SKIPPED = "import pytest\n" + TEST_CALC.replace(
    "def test_add_zero", "@pytest.mark.skip(reason='later')\ndef test_add_zero"
)
NO_ASSERT = TEST_CALC + "\n\ndef test_smoke():\n    add(1, 1)\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def run_with(repo: Path, test_file: str, config: dict[str, Any] | None = None) -> str:
    """A launched run whose worker B (tests) changes tests/test_calc.py to ``test_file``."""
    if config is not None:
        write_config(repo, {"schema_version": 1, "review": config})
    run_id = launch_dry(repo)
    set_bundle(repo, run_id, "B", make_patch(repo, {"tests/test_calc.py": test_file}))
    return run_id


def replay(repo: Path, run_id: str) -> tuple[int, dict[str, Any]]:
    res = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id, "--json")
    return res.returncode, json.loads(res.stdout)


def test_an_added_skip_blocks_naming_worker_path_and_line(repo: Path) -> None:
    run_id = run_with(repo, SKIPPED)
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    line = "B_worker tests/test_calc.py:9: test 'test_add_zero' is skipped; it was not before"
    assert f"[skip-added] B tests/test_calc.py: {line}" in res.stdout
    code, doc = validate(repo, run_id)
    assert code == 3 and doc["verdicts"] == {"A": "PASS", "B": "BLOCKED", "C": "PASS", "D": "PASS"}
    [found] = doc["findings"]
    assert (found["rule"], found["worker"], found["path"]) == (
        "skip-added",
        "B",
        "tests/test_calc.py",
    )
    events = {
        e["payload"]["worker"]: e["payload"]
        for e in ledger_lines(repo)
        if e["event_type"] == "review.findings"
    }
    assert [f["line"] for f in events["B"]["findings"]] == [9]
    assert events["B"]["preimages"].keys() == {"tests/test_calc.py"}
    assert events["A"]["findings"] == []
    assert replay(repo, run_id)[0] == 0


def test_a_warning_leaves_pass_and_reaches_the_report(repo: Path) -> None:
    run_id = run_with(repo, NO_ASSERT)
    code, doc = validate(repo, run_id)
    assert code == 0 and doc["findings"] == []
    [warning] = doc["warnings"]
    assert (warning["rule"], warning["severity"]) == ("no-assertion", "warn")
    assert warning["message"].startswith("B_worker tests/test_calc.py:12: test 'test_smoke'")
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    report = (run_dir(repo, run_id) / "Z_integrator" / "FINAL_REPORT.txt").read_text("utf-8")
    assert "[no-assertion] B tests/test_calc.py: B_worker tests/test_calc.py:12:" in report
    assert read_json(run_dir(repo, run_id) / "VALIDATION.json")["warnings"] == doc["warnings"]
    assert replay(repo, run_id)[0] == 0


@pytest.mark.parametrize(
    ("severity", "code", "where"),
    [("off", 0, None), ("warning", 0, "warnings"), ("critical", 3, "findings")],
)
def test_configured_severity_is_respected(
    repo: Path, severity: str, code: int, where: str | None
) -> None:
    run_id = run_with(repo, SKIPPED, {"severity": {"skip-added": severity}})
    got, doc = validate(repo, run_id)
    assert got == code
    for key in ("findings", "warnings"):
        hits = [f for f in doc[key] if f["rule"] == "skip-added"]
        assert bool(hits) == (key == where), doc
    assert doc["policy"]["review"]["severity"]["skip-added"] == severity
    assert replay(repo, run_id)[0] == 0


def test_a_disabled_review_records_nothing(repo: Path) -> None:
    run_id = run_with(repo, SKIPPED, {"enabled": False})
    assert validate(repo, run_id)[0] == 0
    assert not [e for e in ledger_lines(repo) if e["event_type"] == "review.findings"]


def test_the_run_is_judged_by_the_config_it_was_launched_with(repo: Path) -> None:
    run_id = run_with(repo, SKIPPED)
    write_config(repo, {"schema_version": 1, "review": {"enabled": False}})
    assert validate(repo, run_id)[0] == 3


def test_a_bad_skip_pattern_is_one_line(repo: Path) -> None:
    write_config(repo, {"schema_version": 1, "review": {"skip_patterns": ["it\\.skip("]}})
    res = run_cli("--repo", str(repo), "config", "show")
    assert res.returncode == 2
    assert "config review.skip_patterns[0] 'it\\\\.skip(': not a regular expression" in res.stderr
    assert "Traceback" not in res.stderr


def test_replay_catches_an_edited_finding(repo: Path) -> None:
    run_id = run_with(repo, NO_ASSERT)
    assert validate(repo, run_id)[0] == 0
    events = ledger_lines(repo)
    review = next(
        e for e in events if e["event_type"] == "review.findings" and e["payload"]["worker"] == "B"
    )
    review["payload"]["findings"][0]["message"] = "nothing to see"
    rewrite_ledger(repo, events)
    code, data = replay(repo, run_id)
    assert code == 3
    whats = [d["what"] for d in data["divergences"]]
    assert any(w.startswith("review.findings for worker B: findings (recomputed") for w in whats)


def test_replay_catches_a_removed_critical_finding(repo: Path) -> None:
    """A forger drops the finding and re-chains: the recomputed verdict and the recomputed
    review both disagree."""
    run_id = run_with(repo, SKIPPED)
    assert validate(repo, run_id)[0] == 3
    events = ledger_lines(repo)
    review = next(
        e for e in events if e["event_type"] == "review.findings" and e["payload"]["worker"] == "B"
    )
    review["payload"]["findings"] = []
    rewrite_ledger(repo, events)
    code, data = replay(repo, run_id)
    whats = [d["what"] for d in data["divergences"]]
    assert code == 3
    assert "validation.decided status (recomputed by validation.evaluate)" in whats
    assert any(w.startswith("review.findings for worker B: findings") for w in whats)


def test_replay_catches_a_deleted_review_event(repo: Path) -> None:
    run_id = run_with(repo, NO_ASSERT)
    assert validate(repo, run_id)[0] == 0
    events = [
        e
        for e in ledger_lines(repo)
        if not (e["event_type"] == "review.findings" and e["payload"]["worker"] == "B")
    ]
    rewrite_ledger(repo, events)
    code, data = replay(repo, run_id)
    assert code == 3
    whats = [d["what"] for d in data["divergences"]]
    assert "review.findings for worker B (Gate 0 is enabled)" in whats


def test_warnings_are_fed_back_to_the_worker(repo: Path) -> None:
    """The crank's feedback carries Gate 0 warnings of a worker whose work entered the tree."""
    from tools.codex.factory.loop.crank import _refusals

    run_id = run_with(repo, NO_ASSERT)
    _, doc = validate(repo, run_id)
    [entry] = _refusals(doc)
    assert entry["worker"] == "B" and entry["findings"] == []
    assert entry.get("warnings", [""])[0].startswith(
        "[no-assertion] B_worker tests/test_calc.py:12"
    )


# A test line whose first 4,000 characters read as a harmless string, and whose tail skips
# the whole module: Gate 0 reads no further than those characters.
HIDDEN_SKIP = (
    "import pytest\n" + f'NOTE = "{"x" * 4000}"; pytestmark = pytest.mark.skip\n' + TEST_CALC
)


def test_a_line_too_long_to_read_blocks_and_replays(repo: Path) -> None:
    run_id = run_with(repo, HIDDEN_SKIP)
    code, doc = validate(repo, run_id)
    assert code == 3 and doc["verdicts"]["B"] == "BLOCKED"
    assert [(f["rule"], f["path"]) for f in doc["findings"]] == [
        ("line-too-long", "tests/test_calc.py")
    ]
    assert replay(repo, run_id)[0] == 0


def test_a_run_recorded_before_the_line_rule_replays_by_its_own_policy(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run judged by policy version 8 (no line-too-long rule) passed the long line; replay
    today judges it by version 8 too, and finds nothing to add."""
    from tools.codex.factory.run import validate as stage

    run_id = run_with(repo, HIDDEN_SKIP.replace("pytestmark = pytest.mark.skip", "N = 1"))
    latest = stage.policy
    with monkeypatch.context() as mp:
        mp.setattr(stage, "policy", lambda manifest: latest(manifest, 8))
        code, doc = validate(repo, run_id)
    assert code == 0 and doc["findings"] == [], doc
    (decided,) = [e for e in ledger_lines(repo) if e["event_type"] == "validation.decided"]
    assert decided["payload"]["policy"]["version"] == 8
    assert "line-too-long" not in decided["payload"]["policy"]["review"]["severity"]
    code, report = replay(repo, run_id)
    assert code == 0, report


def _judged_by_policy_8(monkeypatch: pytest.MonkeyPatch) -> None:
    """bundle-validate as the release before the line rule ran it."""
    from tools.codex.factory.run import validate as stage

    latest = stage.policy
    monkeypatch.setattr(stage, "policy", lambda manifest: latest(manifest, 8))


def test_each_validation_of_a_run_replays_by_its_own_policy(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run validated by policy 8 and again by today's: each review.findings is recomputed
    by the policy of the validation.decided after it, not by the last one."""
    run_id = run_with(repo, HIDDEN_SKIP.replace("pytestmark = pytest.mark.skip", "N = 1"))
    with monkeypatch.context() as mp:
        _judged_by_policy_8(mp)
        assert validate(repo, run_id)[0] == 0
    code, doc = validate(repo, run_id)
    assert code == 3 and [f["rule"] for f in doc["findings"]] == ["line-too-long"]
    code, report = replay(repo, run_id)
    assert code == 0, report


def test_a_run_stopped_before_its_verdict_replays_by_the_policy_it_reviewed_by(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bundle-validate stopped after Gate 0 recorded its findings and before the verdict (the
    operator interrupts the reviewer agent): no validation.decided names the policy, so each
    review.findings is recomputed by the version it records (none: before the line rule)."""
    from tools.codex.factory.run import validate as stage

    run_id = run_with(repo, HIDDEN_SKIP.replace("pytestmark = pytest.mark.skip", "N = 1"))
    with monkeypatch.context() as mp:
        _judged_by_policy_8(mp)

        def stop(*_: object) -> None:
            raise KeyboardInterrupt

        mp.setattr(stage.gitdir, "check_and_restore", stop)
        res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode != 0
    events = [e["event_type"] for e in ledger_lines(repo)]
    assert "review.findings" in events and "validation.decided" not in events
    code, report = replay(repo, run_id)
    assert code == 0, report


def test_a_review_policy_version_the_verdict_contradicts_is_a_divergence(repo: Path) -> None:
    """review.findings records the policy version it reviewed by; the validation.decided after
    it names the one replay judges it by. A forger's other version (re-chained) is reported,
    not passed over."""
    run_id = run_with(repo, SKIPPED)
    assert validate(repo, run_id)[0] == 3
    events = ledger_lines(repo)
    for ev in events:
        if ev["event_type"] == "review.findings" and ev["payload"]["worker"] == "B":
            assert ev["payload"]["policy_version"] > 9
            ev["payload"]["policy_version"] = 8
    rewrite_ledger(repo, events)
    (repo / "tools/codex/runs/factory_ledger.index.sqlite3").unlink()  # a cache: a forger's too
    code, report = replay(repo, run_id)
    assert code != 0
    whats = [d["what"] for d in report["divergences"]]
    assert any("review.findings policy_version for worker B" in w for w in whats), whats


def test_a_hunk_header_git_ignores_blocks_end_to_end(repo: Path) -> None:
    """A patch whose hunk names a new line git ignores applies in the sandbox as written: Gate
    0 blocks it rather than read its `assert True` as an unchanged line."""
    import re

    changed = TEST_CALC.replace("assert add(0, 0) == 0", "assert True")
    run_id = launch_dry(repo)
    data = make_patch(repo, {"tests/test_calc.py": changed})
    forged = re.sub(rb"\+(\d+),(\d+) @@", lambda m: b"+%d,%s @@" % (int(m[1]) + 50, m[2]), data)
    assert forged != data
    set_bundle(repo, run_id, "B", forged)
    code, doc = validate(repo, run_id)
    assert code == 3 and doc["verdicts"]["B"] == "BLOCKED", doc
    assert [f["rule"] for f in doc["findings"]] == ["hunk-misplaced"]
    assert replay(repo, run_id)[0] == 0
