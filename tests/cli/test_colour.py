"""Status words in colour on a terminal only: a real process on a pseudo-terminal gets them,
a pipe never does, and NO_COLOR turns them off."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.factory import launch_dry
from tests.support.repos import PINNED, make_repo, run_cli, run_on_terminal

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
GREEN_PASS = "\x1b[32mPASS\x1b[0m"


@pytest.fixture(scope="module")
def passed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    repo = make_repo(tmp_path_factory.mktemp("colour") / "repo")
    run_id = launch_dry(repo)
    for verb in ("bundle-validate", "integrate"):
        res = run_cli("--repo", str(repo), "--now", PINNED, verb, "--run-id", run_id)
        assert res.returncode == 0, res.stderr
    return repo, run_id


def on_terminal(repo: Path, run_id: str, **env: str) -> str:
    """``print-report`` with its stdout on a pseudo-terminal: what the terminal received."""
    term, _stdout, rc = run_on_terminal(
        repo, "print-report", "--run-id", run_id, env=env, stdout=True, timeout=60
    )
    assert rc == 0
    return term


def test_status_words_are_coloured_on_a_terminal(passed: tuple[Path, str]) -> None:
    out = on_terminal(*passed)
    assert f"STATUS:      {GREEN_PASS}" in out


def test_no_colour_when_piped_or_no_color(passed: tuple[Path, str]) -> None:
    assert "\x1b[" not in on_terminal(*passed, NO_COLOR="1")
    repo, run_id = passed
    res = run_cli("--repo", str(repo), "print-report", "--run-id", run_id, real=True)
    assert res.returncode == 0 and "STATUS:      PASS" in res.stdout and "\x1b[" not in res.stdout
