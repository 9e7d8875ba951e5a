"""RUNBOOK.md documents every command and option, and its examples do what it says."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click

from tests.support.repos import ROOT, make_repo, run_cli
from tools.codex.factory.cli.commands import cli

RUNBOOK = ROOT / "RUNBOOK.md"
PREFIX = "python -m tools.codex.factory"
RUN_ID = "runbook-run"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_COMMENT = re.compile(r"\s+#\s*(.*)$")


def commands(group: click.Group = cli, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name in sorted(group.commands):
        cmd = group.commands[name]
        path = f"{prefix}{name}"
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, path + " ")


def section(text: str, path: str) -> str:
    """The text under ``### `path` `` up to the next heading of that level or above."""
    m = re.search(rf"^### `{re.escape(path)}`\n(.*?)(?=^#{{1,3}} )", text, re.M | re.S)
    return m.group(1) if m else ""


def examples(text: str) -> list[tuple[str, str]]:
    """(command line, marker) for every factory command line in a bash or PowerShell block."""
    out: list[tuple[str, str]] = []
    for lang, body in _FENCE.findall(text):
        if lang not in ("bash", "sh", "powershell", "pwsh"):
            continue
        for line in body.splitlines():
            line = line.strip()
            if not line.startswith(PREFIX + " ") and line != PREFIX:
                continue
            m = _COMMENT.search(line)
            marker = m.group(1) if m else ""
            cmd = line[: m.start()] if m else line
            if (cmd, marker) not in out:
                out.append((cmd, marker))
    return out


def test_every_command_has_help_and_is_documented_with_its_options() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    walked = list(commands())
    assert len(walked) >= 17
    problems = []
    for path, cmd in walked:
        if not (cmd.help or "").strip():
            problems.append(f"{path}: no help text")
        body = section(text, path)
        if not body.strip():
            problems.append(f"{path}: no `### \\`{path}\\`` section in RUNBOOK.md")
            continue
        for param in cmd.params:
            if not isinstance(param, click.Option):
                continue
            longs = [o for o in param.opts if o.startswith("--") and o != "--help"]
            if longs and not any(o in body for o in longs):
                problems.append(f"{path}: option {longs[0]} is not described in its section")
    for opt in ("--repo", "--now", "--config", "--debug", "--version", "--json-out", "--json"):
        if opt not in text:
            problems.append(f"global option {opt} is not documented")
    assert not problems, "\n".join(problems)


def test_runbook_documents_exit_codes_and_every_event_type() -> None:
    from tools.codex.factory.infra import schemas

    text = RUNBOOK.read_text(encoding="utf-8")
    table = text.split("## Exit Codes", 1)[1].split("\n## ", 1)[0]
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 130 |"):
        assert code in table
    assert "schemas/ledger_event.schema.json" in text
    for key in (
        "FACTORY_NOW",
        "FACTORY_<SECTION>__<KEY>",
        "sha256sum -c",
        "ledger-replay",
        "self-test",
    ):
        assert key in text
    from tools.codex.factory.run.plans import DEFAULT_SCOPES

    scopes = text.split("## Default Plan and Scopes", 1)[1].split("\n## ", 1)[0]
    for spec in DEFAULT_SCOPES.values():
        for glob in spec["allow"]:
            assert f"`{glob}`" in scopes, glob
    assert len(schemas.load("ledger_event")["properties"]["event_type"]["enum"]) >= 16


def test_json_keys_documented_match_the_contract() -> None:
    from tests.support.contract import JSON_KEYS

    text = RUNBOOK.read_text(encoding="utf-8")
    table = text.split("## JSON Output", 1)[1].split("\n## ", 1)[0]
    for name, keys in JSON_KEYS.items():
        row = next((ln for ln in table.splitlines() if ln.startswith(f"| `{name}")), None)
        assert row is not None, f"{name}: no row in the JSON Output table"
        for key in sorted(keys or set()):
            assert f"`{key}`" in row, f"{name}: key {key} not documented"


def test_runbook_examples_exit_as_documented(tmp_path: Path) -> None:
    """Run every command example (in document order, in one scratch repository); <RUN_ID> is a
    finished dry run. Lines marked ``# manual`` need agents or files of your own."""
    repo = make_repo(tmp_path / "repo")
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": "", "CI": "1"}
    res = run_cli(
        "oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", RUN_ID, cwd=repo, env=env
    )
    assert res.returncode == 0, res.stderr
    found = examples(RUNBOOK.read_text(encoding="utf-8"))
    runnable = [(c, m) for c, m in found if not m.startswith("manual")]
    assert len(runnable) >= 30, runnable
    failures = []
    for cmd, marker in runnable:
        expected = 0
        m = re.match(r"exit (\d+)", marker)
        if m:
            expected = int(m.group(1))
        args = shlex.split(cmd.replace("<RUN_ID>", RUN_ID))[3:]
        got = run_cli(*args, cwd=repo, env=env)
        if got.returncode != expected:
            failures.append(
                f"{cmd}: expected exit {expected}, got {got.returncode}: {got.stderr.strip()[-300:]}"
            )
        if "Traceback" in got.stderr:
            failures.append(f"{cmd}: traceback on stderr")
    assert not failures, "\n".join(failures)
    # The audit recipe: sha256sum -c in the run folder, as the runbook shows.
    assert (
        "cd tools/codex/runs/<RUN_ID> && sha256sum -c attestations/*.sha256"
        in RUNBOOK.read_text(encoding="utf-8")
    )
    if shutil.which("sha256sum"):
        run_dir = repo / "tools/codex/runs" / RUN_ID
        sums = sorted(
            str(p.relative_to(run_dir)) for p in (run_dir / "attestations").glob("*.sha256")
        )
        check = subprocess.run(
            ["sha256sum", "-c", *sums], cwd=run_dir, capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
