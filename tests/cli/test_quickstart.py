"""The quick start a new user runs: one command, four parallel workers PASS, an overlap BLOCKED."""

from __future__ import annotations

import subprocess
import sys

from tests.support.repos import ROOT


def test_quickstart_runs_pass_then_blocked_with_the_overlap_named() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart" / "run.py")],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=180,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    first, second = out.split("$ factory oneshot", 2)[1:]
    assert ": PASS" in first.splitlines()[1]
    assert "  integrate        PASS" in first
    assert ": BLOCKED" in second.splitlines()[1]
    assert "[overlap] 'README.md' is touched by A, C" in second
    assert "  README.md: A, C -> blocked" in out
    assert out.rstrip().endswith("(BLOCKED expected): OK")
    started = [ln for ln in res.stderr.splitlines() if ln.endswith("started (script, timeout 60s)")]
    assert len(started) == 6  # four workers in the first run, two in the second
    # The README shows the run IDs the quick start prints (the second run: a new second, _001).
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for part, status in ((first, "PASS"), (second, "BLOCKED")):
        run_id = part.splitlines()[1].split()[1].rstrip(":")
        assert f"run factory_..._{run_id[-3:]}: {status}" in readme, run_id
