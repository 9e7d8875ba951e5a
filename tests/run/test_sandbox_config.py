"""The integration sandbox's own git config, through real integrates: long paths on, a short
sandbox folder outside the run folder (``paths.sandbox_dir``, removed afterwards), and the
user's ``core.whitespace`` honoured by the default whitespace check (CR at end of line
otherwise)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.factory import (
    launch_dry,
    make_patch,
    read_json,
    run_dir,
    set_bundle,
    write_config,
)
from tests.support.repos import PINNED, git, make_repo, run_cli

FILES = {"README.md": "hello\n", "src/app.py": "print('app')\n"}
# A check that writes where it runs and what git config says there, then fails unless the
# sandbox's config turns long paths on.
PROBE = (
    "import os, subprocess, sys\n"
    "out = subprocess.run(['git', 'config', '--bool', '--get', 'core.longpaths'],\n"
    "                     capture_output=True, text=True).stdout.strip()\n"
    "print('cwd=' + os.getcwd())\n"
    "print('longpaths=' + out)\n"
    "sys.exit(0 if out == 'true' else 5)\n"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--repo", str(repo), "--now", PINNED, *args)


def run_with(repo: Path, patch: bytes) -> tuple[str, subprocess.CompletedProcess[str]]:
    """A dry run whose worker A hands back ``patch``, validated, then integrated."""
    run_id = launch_dry(repo)
    set_bundle(repo, run_id, "A", patch)
    res = cli(repo, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    return run_id, cli(repo, "integrate", "--run-id", run_id)


def z_status(repo: Path, run_id: str) -> dict[str, object]:
    doc: dict[str, object] = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
    return doc


# -- 1. long paths and the sandbox folder ------------------------------------------------------
def test_the_sandbox_turns_long_paths_on(repo: Path) -> None:
    write_config(
        repo, {"checks": {"required": [{"name": "probe", "argv": ["{python}", "-c", PROBE]}]}}
    )
    run_id, res = run_with(repo, make_patch(repo, {"src/app.py": "print('v2')\n"}))
    log = run_dir(repo, run_id) / "Z_integrator" / "LOGS" / "check-probe.stdout.log"
    assert "longpaths=true" in log.read_text(encoding="utf-8")
    assert res.returncode == 0, res.stdout + res.stderr


def test_sandbox_dir_puts_the_sandbox_outside_the_run_folder_and_removes_it(
    repo: Path, tmp_path: Path
) -> None:
    short = tmp_path / "sb"
    write_config(
        repo,
        {
            "paths": {"sandbox_dir": str(short)},
            "checks": {"required": [{"name": "probe", "argv": ["{python}", "-c", PROBE]}]},
        },
    )
    run_id, res = run_with(repo, make_patch(repo, {"src/app.py": "print('v2')\n"}))
    assert res.returncode == 0, res.stdout + res.stderr
    log = run_dir(repo, run_id) / "Z_integrator" / "LOGS" / "check-probe.stdout.log"
    cwd = Path(log.read_text(encoding="utf-8").split("cwd=", 1)[1].splitlines()[0])
    assert cwd.parent == short.resolve() or cwd.parent == short  # a slot of its own in it
    assert len(cwd.name) == 10
    assert not cwd.exists() and list(short.iterdir()) == []  # removed afterwards
    assert not (run_dir(repo, run_id) / "sandbox").exists()  # never in the run folder
    merged = (run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch").read_bytes()
    assert b"print('v2')" in merged


# -- 2. the user's whitespace rules ------------------------------------------------------------
def test_the_user_s_core_whitespace_lets_trailing_spaces_pass(repo: Path) -> None:
    git(repo, "config", "core.whitespace", "-trailing-space")
    run_id, res = run_with(repo, make_patch(repo, {"src/app.py": "print('v2')   \n"}))
    assert res.returncode == 0, res.stdout + res.stderr
    assert z_status(repo, run_id)["status"] == "PASS"


def test_without_the_user_s_rule_trailing_spaces_are_blocked(repo: Path) -> None:
    run_id, res = run_with(repo, make_patch(repo, {"src/app.py": "print('v2')   \n"}))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "diff-whitespace" in " ".join(z_status(repo, run_id)["reasons"])  # type: ignore[arg-type]


def crlf_repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "crlf", {"README.md": "hello\n", "src/win.txt": "one\r\ntwo\r\n"})
    assert (
        b"\r\n"
        in subprocess.run(
            ["git", "-C", str(repo), "show", "HEAD:src/win.txt"], capture_output=True, check=True
        ).stdout
    )
    return repo


def test_an_edit_of_a_crlf_file_passes_the_default_check(tmp_path: Path) -> None:
    repo = crlf_repo(tmp_path)
    run_id, res = run_with(repo, make_patch(repo, {"src/win.txt": "one\r\ntwo, edited\r\n"}))
    assert res.returncode == 0, res.stdout + res.stderr
    assert z_status(repo, run_id)["status"] == "PASS"


def test_a_user_rule_without_cr_at_eol_is_honoured_for_crlf_too(tmp_path: Path) -> None:
    """The user's own rule replaces the default: `trailing-space` alone takes the CR for
    trailing whitespace, as `git diff --check` does in their repository."""
    repo = crlf_repo(tmp_path)
    git(repo, "config", "core.whitespace", "trailing-space")
    run_id, res = run_with(repo, make_patch(repo, {"src/win.txt": "one\r\ntwo, edited\r\n"}))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "diff-whitespace" in " ".join(z_status(repo, run_id)["reasons"])  # type: ignore[arg-type]
