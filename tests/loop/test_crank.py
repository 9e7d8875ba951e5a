"""The convergence loop end to end: real worktrees, real agents (scripted), real scenarios."""

from __future__ import annotations

from pathlib import Path

from tests.loop.conftest import crank


def test_an_agent_that_reads_its_feedback_converges_in_three_iterations(converging: Path) -> None:
    code, data, out = crank(converging, "--threshold", "1.0")
    assert code == 0, out
    assert data["decision"] == "CONVERGED"
    assert [r["satisfaction"] for r in data["trajectory"]] == ["1/3", "2/3", "3/3"]
