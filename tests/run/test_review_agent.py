"""Gate 0's reviewer agent end to end: a real scripted agent process per worker, real runs,
bundle-validate, replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.factory import (
    launch_dry,
    make_patch,
    run_dir,
    set_bundle,
    validate,
    write_config,
)
from tests.support.ledgers import ledger_lines, rewrite_ledger
from tests.support.repos import PINNED, git, make_repo, run_cli
from tools.codex.factory.run import reviewagent

SCENARIO = (
    "# Scenario: add two numbers\n\n## Category\nadd\n\n"
    "## Behavioral Expectation\nadd(2, 3) gives 5 for the caller.\n\n"
    "## Evaluation Method\n```python\nfrom src.calc import add\n"
    "assert add(2, 3) == 5, 'wrong add result'\n```\n\n"
    "## Pass Criteria\nThe evaluation script exits with status zero.\n"
)
FILES = {
    "README.md": "calc\n",
    "src/calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
    "scenarios/add.md": SCENARIO,
}
# The agent: counts its attempts per worker, keeps each prompt and its folder, and prints the
# answer the spec gives for that attempt ("SLEEP" sleeps past any time limit).
AGENT = """\
import json, os, pathlib, sys, time
spec_path, prompt_file, worker = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
spec = json.loads(spec_path.read_text())
box = spec_path.parent
count = box / f"count-{worker}"
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
(box / f"prompt-{worker}-{n}.md").write_text(pathlib.Path(prompt_file).read_text())
(box / f"cwd-{worker}").write_text(os.getcwd())
answers = spec.get(worker, ['{"findings": []}'])
answer = answers[min(n, len(answers)) - 1]
if answer == "SLEEP":
    time.sleep(60)
if answer == "FIFO":  # swap the log the factory reads its answer from for a FIFO
    out = pathlib.Path("..", "logs", "stdout")
    out.unlink()
    os.mkfifo(out)
    answer = '{"findings": []}'
if answer == "LINK":  # swap the log for a link to a file holding a clean verdict
    out = pathlib.Path("..", "logs", "stdout")
    out.unlink()
    (box / "clean.json").write_text('{"findings": []}')
    out.symlink_to(box / "clean.json")
    answer = ""
sys.stderr.write("x" * 3000 + f"reviewed {worker}")
sys.stdout.write(answer)
"""
CRITICAL = {
    "severity": "critical",
    "path": "src/calc.py",
    "line": 2,
    "rule": "hardcoded-output",
    "text": "add returns the literal its test expects",
}
WARNING = {**CRITICAL, "severity": "warning", "rule": "naming", "text": "odd name"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def agent_run(repo: Path, answers: dict[str, list[str]], timeout: float = 60) -> str:
    """A launched run whose reviewer agent answers per worker and attempt; worker A changes
    src/calc.py."""
    box = repo.parent / "agent"
    box.mkdir(exist_ok=True)
    (box / "agent.py").write_text(AGENT, encoding="utf-8")
    (box / "spec.json").write_text(json.dumps(answers), encoding="utf-8")
    argv = ["{python}", str(box / "agent.py"), str(box / "spec.json"), "{prompt_file}"]
    agent = {"preset": "script", "argv": [*argv, "{worker_id}"], "timeout_s": timeout}
    write_config(repo, {"schema_version": 1, "review": {"agent": agent}})
    run_id = launch_dry(repo)
    changed = "def add(a, b):\n    return a + b  # checked\n"
    set_bundle(repo, run_id, "A", make_patch(repo, {"src/calc.py": changed}))
    return run_id


def replay(repo: Path, run_id: str) -> tuple[int, dict[str, Any]]:
    res = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id, "--json")
    return res.returncode, json.loads(res.stdout)


def attempts(repo: Path, worker: str) -> list[dict[str, Any]]:
    return [
        e["payload"]
        for e in ledger_lines(repo)
        if e["event_type"] == "review.agent" and e["payload"]["worker"] == worker
    ]


def verdict(*found: dict[str, Any]) -> str:
    return json.dumps({"findings": list(found)})


def test_a_critical_finding_blocks_naming_path_line_and_text(repo: Path) -> None:
    run_id = agent_run(repo, {"A": [verdict(CRITICAL)]})
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    line = "A_worker src/calc.py:2: (hardcoded-output) add returns the literal its test expects"
    assert f"[review-agent] A src/calc.py: {line}" in res.stdout
    code, doc = validate(repo, run_id)
    assert code == 3 and doc["verdicts"] == {"A": "BLOCKED", "B": "PASS", "C": "PASS", "D": "PASS"}
    assert {(f["worker"], f["rule"]) for f in doc["findings"]} == {("A", "review-agent")}
    assert doc["policy"]["review_agent"]["preset"] == "script"
    [first, *_] = attempts(repo, "A")
    assert first["findings"] == [CRITICAL] and first["error"] is None
    assert replay(repo, run_id)[0] == 0


def test_warnings_only_pass_and_are_reported(repo: Path) -> None:
    run_id = agent_run(repo, {"A": [verdict(WARNING)]})
    code, doc = validate(repo, run_id)
    assert code == 0 and doc["findings"] == []
    [warning] = doc["warnings"]
    assert (warning["rule"], warning["severity"], warning["worker"]) == (
        "review-agent",
        "warn",
        "A",
    )
    assert warning["message"] == "A_worker src/calc.py:2: (naming) odd name"
    assert replay(repo, run_id)[0] == 0
    from tools.codex.factory.loop.crank import _refusals

    [entry] = _refusals(doc)  # the crank feeds the warning back to the worker
    assert entry["worker"] == "A" and entry.get("warnings") == [
        "[review-agent] A_worker src/calc.py:2: (naming) odd name"
    ]


def test_a_garbled_answer_is_retried_once(repo: Path) -> None:
    run_id = agent_run(repo, {"A": ["I think it is fine!", verdict()]})
    code, doc = validate(repo, run_id)
    assert code == 0, doc["findings"]
    first, second = attempts(repo, "A")
    assert first["attempt"] == 1 and first["error"].startswith("its answer is not JSON")
    assert first["findings"] is None and first["stderr_tail"].endswith("xxreviewed A")
    assert len(first["stderr_tail"]) == reviewagent.STDERR_TAIL
    assert second["attempt"] == 2 and (second["findings"], second["error"]) == ([], None)
    assert len(attempts(repo, "C")) == 1  # a valid first answer is not asked again
    assert replay(repo, run_id)[0] == 0


def test_replay_catches_a_removed_failed_attempt(repo: Path) -> None:
    run_id = agent_run(repo, {"A": ["no", verdict()]})
    assert validate(repo, run_id)[0] == 0
    events = [
        e
        for e in ledger_lines(repo)
        if not (e["event_type"] == "review.agent" and e["payload"]["error"] is not None)
    ]
    rewrite_ledger(repo, events)
    code, data = replay(repo, run_id)
    assert code == 3
    whats = [d["what"] for d in data["divergences"]]
    assert "review.agent attempt for worker A (numbered from 1 since its bundle.facts)" in whats


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("garbage", "its answer is not JSON"),
        (verdict({**CRITICAL, "severity": "fatal"}), "does not match the verdict schema"),
        (verdict(*[WARNING] * 201), "does not match the verdict schema"),
        (verdict({**WARNING, "text": "x" * 2001}), "does not match the verdict schema"),
    ],
)
def test_a_malformed_answer_twice_blocks_review_agent_failed(
    repo: Path, answer: str, why: str
) -> None:
    run_id = agent_run(repo, {"A": [answer]})
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    [line] = [ln for ln in res.stdout.splitlines() if "[review-agent-failed]" in ln]
    assert "A_worker: the reviewer agent gave no valid answer (2 attempt(s)); last: " in line
    assert why in line and "Traceback" not in res.stdout + res.stderr
    assert [a["attempt"] for a in attempts(repo, "A")] == [1, 2]
    assert replay(repo, run_id)[0] == 0


def test_an_answer_log_swapped_for_a_fifo_is_no_answer_and_never_hangs(repo: Path) -> None:
    """The agent's answer is read from its log as a regular file, through no link: a log the
    agent swapped for a FIFO is refused at once (a plain open would wait forever)."""
    run_id = agent_run(repo, {"A": ["FIFO"]})
    code, doc = validate(repo, run_id)
    assert code == 3
    [found] = doc["findings"]
    assert found["rule"] == "review-agent-failed"
    assert [a["attempt"] for a in attempts(repo, "A")] == [1, 2]


def test_an_answer_log_swapped_for_a_link_is_no_answer(repo: Path) -> None:
    """The answer is the log the factory created, never a file a link there points to."""
    run_id = agent_run(repo, {"A": ["LINK"]})
    code, doc = validate(repo, run_id)
    assert code == 3
    [found] = doc["findings"]
    assert found["rule"] == "review-agent-failed" and "no answer" in found["message"]
    assert [a["answer_sha256"] for a in attempts(repo, "A")] == [None, None]


def test_an_agent_past_its_time_limit_is_stopped_and_blocks(repo: Path) -> None:
    run_id = agent_run(repo, {"A": ["SLEEP"]}, timeout=1)
    code, doc = validate(repo, run_id)
    assert code == 3
    [found] = doc["findings"]
    assert found["rule"] == "review-agent-failed" and "timed out" in found["message"]
    assert [a["timed_out"] for a in attempts(repo, "A")] == [True, True]


def test_an_agent_that_cannot_start_blocks(repo: Path) -> None:
    agent = {"preset": "script", "argv": ["no-such-reviewer-binary-3b7e", "{prompt_file}"]}
    write_config(repo, {"schema_version": 1, "review": {"agent": agent}})
    run_id = launch_dry(repo)
    code, doc = validate(repo, run_id)
    assert code == 3 and set(doc["verdicts"].values()) == {"BLOCKED"}
    assert {f["rule"] for f in doc["findings"]} == {"review-agent-failed"}
    assert "no-such-reviewer-binary-3b7e" in doc["findings"][0]["message"]
    assert [a["rc"] for a in attempts(repo, "A")] == [None, None]
    assert replay(repo, run_id)[0] == 0


def test_the_prompt_holds_the_diff_and_no_holdout_content(repo: Path) -> None:
    run_id = agent_run(repo, {})
    hostile = SCENARIO.replace("add(2, 3) gives 5", "add(2, 3) gives 6")
    patch = make_patch(
        repo, {"src/calc.py": "def add(a, b):\n    return a + b + 0\n", "scenarios/add.md": hostile}
    )
    set_bundle(repo, run_id, "A", patch)
    code, doc = validate(repo, run_id)
    assert code == 3 and "protected-path" in {f["rule"] for f in doc["findings"]}
    box = repo.parent / "agent"
    prompt = (box / "prompt-A-1.md").read_text(encoding="utf-8")
    assert "+    return a + b + 0" in prompt and "diff --git a/src/calc.py" in prompt
    assert "scenarios/add.md" not in prompt and "Behavioral Expectation" not in prompt
    assert "1 file section(s) under held-out paths are not shown" in prompt
    cwd = Path((box / "cwd-A").read_text(encoding="utf-8"))
    assert not cwd.exists()  # a scratch folder, removed after
    assert repo.resolve() not in cwd.resolve().parents
    assert replay(repo, run_id)[0] == 0


def test_a_prompt_holding_a_scenario_line_is_never_sent(repo: Path) -> None:
    run_id = agent_run(repo, {})
    leaky = "def add(a, b):\n    # assert add(2, 3) == 5, 'wrong add result'\n    return a + b\n"
    set_bundle(repo, run_id, "A", make_patch(repo, {"src/calc.py": leaky}))
    code, doc = validate(repo, run_id)
    assert code == 3
    [found] = doc["findings"]
    assert found["rule"] == "review-agent-failed" and "holdout-leak" in found["message"]
    assert not (repo.parent / "agent" / "count-A").exists()
    assert replay(repo, run_id)[0] == 0


@pytest.mark.parametrize(
    "planted",
    [
        {"scenarios/data": None},  # a link: the scenarios cannot be read from the base commit
        {"scenarios/broken.md": "no scenario heading here\n"},  # a scenario that does not parse
    ],
)
def test_an_unreadable_holdout_never_lets_the_prompt_through(
    tmp_path: Path, planted: dict[str, str | None]
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    for rel, text in planted.items():
        if text is None:
            (repo / rel).symlink_to("add.md")
        else:
            (repo / rel).write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "planted")
    run_id = agent_run(repo, {})  # a harmless diff: the guard cannot tell, so nothing is sent
    code, doc = validate(repo, run_id)
    assert code == 3
    found = [f for f in doc["findings"] if f["worker"] == "A"]
    assert [f["rule"] for f in found] == ["review-agent-failed"]
    assert "holdout-leak" in found[0]["message"]
    assert next(iter(planted)) in found[0]["message"]
    assert not (repo.parent / "agent" / "count-A").exists()
    assert replay(repo, run_id)[0] == 0


def test_replay_catches_an_edited_answer(repo: Path) -> None:
    run_id = agent_run(repo, {"A": [verdict(CRITICAL)]})
    assert validate(repo, run_id)[0] == 3
    events = ledger_lines(repo)
    for e in events:
        if e["event_type"] == "review.agent" and e["payload"]["worker"] == "A":
            e["payload"]["findings"] = []
    rewrite_ledger(repo, events)
    code, data = replay(repo, run_id)
    assert code == 3
    whats = [d["what"] for d in data["divergences"]]
    assert (
        "review.agent for worker A (attempt 1): its judgement (recomputed from the recorded answer)"
        in whats
    )
    assert "validation.decided status (recomputed by validation.evaluate)" in whats


def test_replay_catches_an_edited_answer_snapshot(repo: Path) -> None:
    run_id = agent_run(repo, {"A": [verdict(WARNING)]})
    assert validate(repo, run_id)[0] == 0
    [attempt] = attempts(repo, "A")
    (run_dir(repo, run_id) / "snapshots" / attempt["answer_sha256"]).write_text(verdict())
    code, data = replay(repo, run_id)
    assert code == 3
    assert any("snapshot-changed" in str(d["found"]) for d in data["divergences"]), data


def test_replay_catches_a_deleted_agent_event(repo: Path) -> None:
    run_id = agent_run(repo, {})
    assert validate(repo, run_id)[0] == 0
    events = [
        e
        for e in ledger_lines(repo)
        if not (e["event_type"] == "review.agent" and e["payload"]["worker"] == "C")
    ]
    rewrite_ledger(repo, events)
    code, data = replay(repo, run_id)
    assert code == 3
    whats = [d["what"] for d in data["divergences"]]
    assert "review.agent for worker C (the reviewer agent is configured)" in whats


def test_a_bad_agent_preset_is_one_line(repo: Path) -> None:
    write_config(repo, {"schema_version": 1, "review": {"agent": {"preset": "script"}}})
    res = run_cli("--repo", str(repo), "config", "show")
    assert res.returncode == 2
    assert "config review.agent.argv: preset 'script' needs an argv list" in res.stderr
    assert "Traceback" not in res.stderr


def test_no_agent_by_default_records_nothing(repo: Path) -> None:
    run_id = launch_dry(repo)
    assert validate(repo, run_id)[0] == 0
    assert not [e for e in ledger_lines(repo) if e["event_type"] == "review.agent"]


@pytest.mark.parametrize(
    ("answer", "ok"),
    [
        (b'```json\n{"findings": []}\n```\n', True),
        (b'\xef\xbb\xbf{"findings": []}', True),
        (b'{"findings": [], "note": 1}', False),
        (b"\xff\xfe{}", False),
        (b" " * (1024 * 1024 + 1), False),
    ],
)
def test_judge_reads_only_a_bounded_verdict(answer: bytes, ok: bool) -> None:
    findings, error = reviewagent.judge(0, False, "", answer)
    assert (findings is not None) == ok and (error is None) == ok
