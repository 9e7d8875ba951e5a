"""Errors of the library (the Python API) speak of arguments in neutral words; the CLI puts its
option in their place. Inputs are checked in the library, by the rule the CLI uses; an unknown
run is one typed error with one message, whichever command looks for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.factory import launch_dry, make_patch
from tests.support.repos import PINNED, make_repo, run_cli
from tools.codex.factory import Factory
from tools.codex.factory.errors import NoRunError, UsageError


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "hi\n", "src/app.py": "print(1)\n"})


def refusal(call: Callable[[], Any]) -> str:
    """The one-line message of the UsageError ``call`` raises."""
    with pytest.raises(UsageError) as exc:
        call()
    message = str(exc.value)
    assert exc.value.exit_code == 2 and "\n" not in message, message
    return message


def neutral(message: str, *words: str) -> None:
    assert "--" not in message and "cli:" not in message, message
    for w in words:
        assert w in message, message


def test_api_errors_name_no_command_line_option(repo: Path, tmp_path: Path) -> None:
    patch = tmp_path / "change.patch"
    patch.write_bytes(make_patch(repo, {"src/app.py": "print(2)\n"}))
    neutral(refusal(lambda: Factory(repo, now="yesterday")), "pinned time", "'yesterday'")
    neutral(
        refusal(lambda: Factory(tmp_path / "nope").launch(dry_run=True)),
        f"repository {tmp_path / 'nope'}: no such directory",
    )
    with Factory(repo, now=PINNED) as factory:
        neutral(refusal(lambda: factory.launch(dry_run=True, run_id="a/b")), "run ID 'a/b'")
        neutral(refusal(lambda: factory.launch(dry_run=True, kind="bad/kind")), "kind 'bad/kind'")
        neutral(
            refusal(lambda: factory.launch(dry_run=True, base_ref="nosuch")),
            "base ref 'nosuch' (from the base_ref argument) does not resolve",
        )
        run_id = factory.launch(dry_run=True).run_id
        neutral(refusal(lambda: factory.import_patch(run_id, "a", patch)), "worker ID 'a'")
        neutral(refusal(lambda: factory.import_patch(run_id, "Q", patch)), "worker Q: not in run")
        neutral(
            refusal(lambda: factory.import_patch(run_id, "A", tmp_path / "none.patch")),
            f"patch file {tmp_path / 'none.patch'}: file not found",
        )
        neutral(refusal(lambda: factory.validate("x..y")), "run ID 'x..y' contains '..'")
    with Factory(repo, now=PINNED, config={"run.base_ref": "nosuch"}) as factory:
        neutral(
            refusal(lambda: factory.launch(dry_run=True)),
            "base ref 'nosuch' (from argument run.base_ref)",
        )
    with Factory(repo, now=PINNED, config={"run.kind": "bad/kind"}) as factory:
        neutral(refusal(lambda: factory.launch(dry_run=True)), "(source: argument run.kind)")


CLI_CASES = [
    (
        ["--now", "yesterday", "config", "show"],
        "--now: 'yesterday' is not an ISO-8601 instant (e.g. 2026-11-21T20:15:00Z)",
    ),
    (["bundle-validate", "--run-id", "x..y"], "--run-id: run ID 'x..y' contains '..'"),
    (["launch", "--dry-run", "--workers", "A,A"], "--workers: 'A,A' names a worker twice"),
    (["launch", "--dry-run", "--workers", ","], "--workers: give at least one worker ID, e.g. A,C"),
    (["launch", "--dry-run", "--workers", "a"], "--workers: worker ID 'a' must be a capital"),
    (
        ["launch", "--dry-run", "--base-ref", "nosuch"],
        "base ref 'nosuch' (from --base-ref) does not resolve",
    ),
    (["launch", "--dry-run", "--kind", "bad/kind"], "(source: cli:--kind)"),
    (["launch", "--resume"], "--resume: give the run ID of the run to continue"),
    (["watch", "--run-id", "r1", "--timeout", "0"], "--timeout: give a number of seconds"),
    (["ledger", "--since", "soon"], "--since: 'soon' is not an ISO-8601 instant"),
]


@pytest.mark.parametrize(("args", "expected"), CLI_CASES, ids=[c[1][:24] for c in CLI_CASES])
def test_the_cli_still_names_its_option(repo: Path, args: list[str], expected: str) -> None:
    res = run_cli("--repo", str(repo), *args)
    assert res.returncode == 2 and expected in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_the_cli_names_its_file_and_worker_options(repo: Path, tmp_path: Path) -> None:
    run_id = launch_dry(repo)
    missing = tmp_path / "none.patch"
    base = ("--repo", str(repo), "bundle-import", "--run-id", run_id, "--patch", str(missing))
    res = run_cli(*base, "--worker", "A")
    assert res.stderr.strip() == f"factory: error: --patch {missing}: file not found"
    res = run_cli(*base, "--worker", "Q")
    assert res.stderr.strip().startswith("factory: error: --worker Q: not in run")
    res = run_cli("--repo", str(tmp_path / "nope"), "config", "show")
    assert res.stderr.strip() == f"factory: error: --repo {tmp_path / 'nope'}: no such directory"


def test_the_api_checks_worker_selections_by_the_cli_rule(repo: Path, tmp_path: Path) -> None:
    with Factory(repo, now=PINNED) as factory:
        for bad in ([], ["A", "A"], ["a"], ["Q"]):
            neutral(refusal(lambda bad=bad: factory.launch(dry_run=True, workers=bad)))
        run_id = factory.launch(dry_run=True, workers=["C", "A"]).run_id
        assert "names a worker twice" in refusal(lambda: factory.validate(run_id, ["A", "A"]))
        assert "at least one worker" in refusal(lambda: factory.validate(run_id, []))
        assert "workers B: not in this run" in refusal(lambda: factory.integrate(run_id, ["B"]))
        assert "at least one worker" in refusal(lambda: factory.integrate(run_id, []))
        assert factory.validate(run_id, ["A"]).verdicts == {"A": "PASS"}
        # The kind becomes part of a folder name: checked in the library, never a path.
        outside = repo / "tools" / "codex" / "escaped"
        neutral(refusal(lambda: factory.launch(dry_run=True, kind="../../escaped")), "kind")
        assert not outside.exists()


UNKNOWN = "factory: error: run nope: no run folder tools/codex/runs/nope"


@pytest.mark.parametrize(
    "args",
    [
        ["bundle-validate"],
        ["integrate"],
        ["bundle-collect"],
        ["bundle-import", "--worker", "A", "--patch", "x.patch"],
        ["print-report"],
        ["open-report"],
        ["open-run"],
    ],
)
def test_an_unknown_run_is_one_message_everywhere(repo: Path, args: list[str]) -> None:
    res = run_cli("--repo", str(repo), *args, "--run-id", "nope")
    assert (res.returncode, res.stderr.strip()) == (2, UNKNOWN)


def test_an_unknown_run_is_one_typed_error(repo: Path, tmp_path: Path) -> None:
    launch_dry(repo)  # a ledger exists
    with Factory(repo, now=PINNED) as factory:
        calls: list[Callable[[], Any]] = [
            lambda: factory.validate("nope"),
            lambda: factory.integrate("nope"),
            lambda: factory.import_patch("nope", "A", tmp_path / "x.patch"),
            lambda: factory.replay("nope"),
        ]
        for call in calls:
            with pytest.raises(NoRunError) as exc:
                call()
            assert str(exc.value).startswith("run nope: no run folder tools/codex/runs/nope")
            assert exc.value.run_id == "nope"
    res = run_cli("--repo", str(repo), "ledger-replay", "--run-id", "nope")
    assert res.returncode == 2 and res.stderr.startswith(UNKNOWN + " and no events in")


def cli_options() -> set[str]:
    """Every long option of every CLI command."""
    import click

    from tools.codex.factory.cli.commands import cli

    found: set[str] = set()
    todo: list[click.Command] = [cli]
    while todo:
        cmd = todo.pop()
        found |= {o for p in cmd.params for o in p.opts if o.startswith("--")}
        if isinstance(cmd, click.Group):
            todo.extend(cmd.commands.values())
    return found - {"--help", "--version"}


def raised_text(path: Path) -> list[tuple[int, str]]:
    """The string parts of every ``raise`` statement in a module, by line."""
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            parts = [
                n.value
                for n in ast.walk(node.exc)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
            ]
            out.append((node.lineno, " ".join(parts)))
    return out


def test_no_library_error_names_a_command_line_option() -> None:
    import re

    package = Path(__file__).resolve().parents[1] / "tools" / "codex" / "factory"
    options = cli_options()
    assert {"--run-id", "--workers", "--patch", "--now", "--repo", "--base-ref"} <= options
    bad = []
    for path in sorted(package.rglob("*.py")):
        if "cli" in path.relative_to(package).parts:
            continue
        for line, text in raised_text(path):
            named = set(re.findall(r"--[a-z][a-z-]*", text)) & options
            if named:
                bad.append(f"{path.relative_to(package)}:{line}: {sorted(named)}")
    assert bad == []
