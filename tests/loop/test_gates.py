"""Approval gates: a crank pauses at a gate set to review, an operator approves or rejects it
(recorded with who), and the crank goes on; no settings and no terminal is a usage error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.loop.conftest import make_crank_repo, plan_of
from tests.support.ledgers import ledger_lines, rewrite_ledger
from tests.support.repos import PINNED, run_cli
from tools.codex.factory.core import gates as core_gates
from tools.codex.factory.errors import UsageError
from tools.codex.factory.loop import gates as loop_gates


def cli(repo: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    res = run_cli("--repo", str(repo), "--now", PINNED, *args, "--json")
    data = json.loads(res.stdout) if res.stdout.strip().startswith("{") else {}
    return res.returncode, data, res.stdout + res.stderr


def start(repo: Path, gates: str) -> tuple[int, dict[str, Any], str]:
    return cli(
        repo, "crank", "--plan", str(plan_of(repo)), "--threshold", "1.0", "--crank-id", "g1",
        "--gates", gates,
    )  # fmt: skip


def events_of(repo: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in ledger_lines(repo) if e["event_type"] == kind]


def test_without_settings_or_a_terminal_the_gates_are_a_usage_error(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge", crank={"gates": None})
    res = run_cli("--repo", str(repo), "crank", "--plan", str(plan_of(repo)))
    assert res.returncode == 2
    assert "no settings for the spec, plan and ship gates and no terminal to ask on" in res.stderr
    assert not (repo / "tools/codex/runs").exists()


def test_plan_review_pauses_then_an_approval_lets_it_converge(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge")
    code, data, out = start(repo, "spec=auto,plan=review,ship=auto")
    assert code == 3, out
    assert (data["decision"], data["kind"]) == ("AWAITING_REVIEW", "plan")
    assert "awaits your review at the plan gate" in data["reason"]
    assert "factory approve --crank-id g1 --gate plan" in data["advice"]
    summary = (repo / "tools/codex/runs/g1/GATE_plan.md").read_text()
    assert "| A | notes/**, src/** |" in summary  # the plan's globs, sorted
    assert data["runs"] == []  # nothing ran
    status = run_cli("--repo", str(repo), "crank", "--resume", "--crank-id", "g1")
    assert status.returncode == 2 and "awaits review at the plan gate" in status.stderr
    code, data, out = cli(repo, "approve", "--crank-id", "g1", "--by", "Alice <a@x>")
    assert code == 0, out
    assert data["decision"] == "CONVERGED" and len(data["trajectory"]) == 3
    (approved,) = events_of(repo, "gate.approved")
    assert approved["payload"]["gate"] == "plan" and approved["payload"]["by"] == "Alice <a@x>"
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", "g1", "--json")
    doc = json.loads(replay.stdout)
    assert doc["ok"], doc["divergences"]
    assert any("plan approved by Alice <a@x>" in line for line in doc["state"]["gates"])


def test_a_rejection_s_feedback_reaches_the_next_prompt(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge")
    code, _data, out = start(repo, "spec=review,plan=auto,ship=auto")
    assert code == 3, out
    code, data, out = cli(
        repo, "reject", "--crank-id", "g1", "--gate", "spec", "--by", "Bob",
        "--feedback", "Keep every function pure: no printing.",
    )  # fmt: skip
    assert code == 0, out
    prompt = (repo / "tools/codex/runs" / data["runs"][0] / "A_worker/PROMPT.md").read_text()
    assert "## The operator's feedback" in prompt
    assert "Keep every function pure: no printing." in prompt
    later = (repo / "tools/codex/runs" / data["runs"][1] / "A_worker/PROMPT.md").read_text()
    assert "Keep every function pure" not in later  # given once, to the next iteration


def test_ship_review_then_the_rest_auto(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge")
    code, data, out = start(repo, "spec=review,plan=review,ship=review")
    assert (code, data["kind"]) == (3, "spec"), out
    code, data, out = cli(repo, "approve", "--crank-id", "g1", "--rest", "auto", "--by", "Al")
    assert code == 0 and data["decision"] == "CONVERGED", out
    passed = [e["payload"]["gate"] for e in events_of(repo, "gate.passed")]
    assert passed == ["plan", "ship"]


def test_ship_review_waits_after_convergence_and_an_edited_setting_is_caught(
    tmp_path: Path,
) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge")
    code, data, out = start(repo, "spec=auto,plan=auto,ship=review")
    assert (code, data["decision"], data["kind"]) == (3, "AWAITING_REVIEW", "ship"), out
    assert not (repo / "tools/codex/runs/g1/CRANK_REPORT.md").exists()  # not published yet
    code, data, out = cli(repo, "approve", "--crank-id", "g1", "--gate", "ship", "--by", "Al")
    assert code == 0 and data["decision"] == "CONVERGED", out
    assert (repo / "tools/codex/runs/g1/CRANK_REPORT.md").exists()
    events = ledger_lines(repo)
    started = next(e for e in events if e["event_type"] == "crank.started")
    started["payload"]["gates"]["ship"] = "auto"  # as if it never had to pause
    rewrite_ledger(repo, events)
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", "g1")
    assert replay.returncode == 3
    assert "ship gate: expected passed (not review); found paused" in replay.stdout
    events = ledger_lines(repo)
    next(e for e in events if e["event_type"] == "crank.started")["payload"]["gates"]["ship"] = (
        "review"
    )
    next(e for e in events if e["event_type"] == "gate.approved")["payload"]["gate"] = "plan"
    rewrite_ledger(repo, events)  # an approval edited to name another gate
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", "g1")
    assert replay.returncode == 3
    assert "gate.approved plan: expected the awaited gate (ship); found plan" in replay.stdout


def test_gates_change_mid_run(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge")
    code, _data, out = start(repo, "spec=review,plan=review,ship=review")
    assert code == 3, out
    res = run_cli(
        "--repo", str(repo), "gates", "--crank-id", "g1", "plan=auto,ship=auto", "--by", "Al"
    )
    assert res.returncode == 0 and "spec: review, plan: auto, ship: auto" in res.stdout
    code, data, out = cli(repo, "approve", "--crank-id", "g1", "--by", "Al")
    assert code == 0 and data["decision"] == "CONVERGED", out


def test_on_a_terminal_the_crank_asks_until_an_answer_is_clear() -> None:
    answers = iter(["hmm, not sure", "let me review the plan, rest is auto"])
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return next(answers)

    found = loop_gates.resolve(None, None, ask)
    assert core_gates.describe(found) == "spec: auto, plan: review, ship: auto"
    assert len(asked) == 2 and asked[0] == core_gates.QUESTION
    with pytest.raises(UsageError, match="named no clear setting"):
        loop_gates.resolve(None, None, lambda _q: "whatever")
    assert core_gates.describe(
        loop_gates.resolve(None, "spec=skip,plan=auto,ship=review", None)
    ) == ("spec: skip, plan: auto, ship: review")


def test_required_checks_failing_three_times_pause_even_in_full_auto(tmp_path: Path) -> None:
    failing = {"name": "never", "argv": ["{python}", "-c", "raise SystemExit(1)"], "timeout_s": 60}
    repo = make_crank_repo(tmp_path / "repo", "converge", checks={"required": [failing]})
    code, data, out = start(repo, "spec=auto,plan=auto,ship=auto")
    assert (code, data["decision"], data["kind"]) == (3, "AWAITING_REVIEW", "escalation"), out
    assert (
        "the required checks failed in 3 iterations in a row (iterations 1, 2, 3)"
        in (data["reason"])
    )
    assert (repo / "tools/codex/runs/g1/GATE_escalation_3.md").exists()
    code, data, out = cli(
        repo, "reject", "--crank-id", "g1", "--gate", "escalation", "--by", "Al",
        "--feedback", "The check 'never' is broken on purpose: ignore it.",
    )  # fmt: skip
    assert data["runs"][0] == "g1.i4", out  # it went on
    prompt = (repo / "tools/codex/runs/g1.i4/A_worker/PROMPT.md").read_text()
    assert "The check 'never' is broken on purpose: ignore it." in prompt
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", "g1", "--json")
    doc = json.loads(replay.stdout)
    assert doc["ok"], doc["divergences"]
    assert any("escalation after iteration 3" in line for line in doc["state"]["gates"])


def test_a_deleted_pause_is_caught(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge")
    start(repo, "spec=auto,plan=review,ship=auto")
    code, _data, out = cli(repo, "approve", "--crank-id", "g1", "--by", "Al")
    assert code == 0, out
    events = [
        e
        for e in ledger_lines(repo)
        if not (e["event_type"] in ("gate.awaiting", "gate.approved") and e["run_id"] == "g1")
    ]
    rewrite_ledger(repo, events)  # the pause and its approval gone, the chain redone
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", "g1")
    assert replay.returncode == 3
    assert "plan gate: expected passed or decided first; found not" in replay.stdout


def test_feedback_holding_a_scenario_line_is_refused_and_nothing_recorded(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "converge")
    start(repo, "spec=review,plan=auto,ship=auto")
    before = len(ledger_lines(repo))
    leak = tmp_path / "feedback.md"
    leak.write_text("Hint: assert add(2, 3) == 5, 'wrong add result'\n")
    res = run_cli(
        "--repo", str(repo), "reject", "--crank-id", "g1", "--gate", "spec", "--by", "Al",
        "--feedback-file", str(leak),
    )  # fmt: skip
    assert res.returncode == 3
    assert "holdout-leak: the rejection's feedback, line 1" in res.stderr
    assert len(ledger_lines(repo)) == before
    res = run_cli("--repo", str(repo), "reject", "--crank-id", "g1", "--gate", "spec")
    assert res.returncode == 2 and "exactly one of --feedback TEXT or --feedback-file" in res.stderr


def test_rest_at_an_escalation_sets_the_gates_not_passed(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "stuck")
    code, data, out = start(repo, "spec=auto,plan=auto,ship=review")
    assert data["kind"] == "escalation", out
    code, data, out = cli(repo, "approve", "--crank-id", "g1", "--rest", "auto", "--by", "Al")
    assert code == 3 and data["decision"] == "STALLED", out
    (changed,) = events_of(repo, "gate.changed")
    assert changed["payload"]["gates"]["ship"] == "auto"
    res = run_cli("--repo", str(repo), "gates", "--crank-id", "g1", "spec=review")
    assert res.returncode == 2  # finished: nothing to change
