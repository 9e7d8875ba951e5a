"""The crank example a new user runs: one command, a crank that converges in three iterations."""

from __future__ import annotations

import subprocess
import sys

from tests.support.repos import ROOT


def test_the_crank_example_converges_and_replays() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "crank" / "run.py")],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "satisfaction 100.0% meets the threshold 1/1" in out
    assert [
        ln.split()[2]
        for ln in out.splitlines()
        if ln.strip().startswith(("1  PASS", "2  PASS", "3  PASS")) and "." in ln.split()[-1]
    ][:3] == ["33.3%", "66.7%", "100.0%"]
    assert "REPLAY OK" in out
    assert out.rstrip().endswith("crank example: OK")
