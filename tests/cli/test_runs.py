"""Finding runs: `factory runs` from the run index, `latest` wherever a run ID is taken, and
the nearest run IDs suggested for a mistyped one."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import click
import pytest

from tests.support.contract import check_keys
from tests.support.factory import launch_dry, run_dir
from tests.support.repos import make_repo, run_cli
from tools.codex.factory import Factory
from tools.codex.factory.errors import UsageError

EARLY = "2026-11-21T20:15:00Z"
LATER = "2026-11-21T20:16:00Z"


def _passed(repo: Path) -> str:
    res = run_cli("--repo", str(repo), "--now", EARLY, "oneshot", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    return str(json.loads(res.stdout)["run_id"])


def _runs(repo: Path, *args: str) -> list[dict[str, object]]:
    res = run_cli("--repo", str(repo), "runs", "--json", *args)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    check_keys("runs", data)
    return list(data)


def test_runs_lists_newest_first_from_the_ledger_not_the_folders(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert _runs(repo) == []
    done = _passed(repo)
    going = launch_dry(repo, now=LATER)
    rows = _runs(repo)
    assert [r["run_id"] for r in rows] == [going, done]
    assert [r["status"] for r in rows] == ["RUNNING", "PASS"]
    assert rows[1]["kind"] == "factory" and rows[1]["workers"] == ["A", "B", "C", "D"]
    head = rows[1]["head"]
    assert isinstance(head, dict) and len(str(head["hash"])) == 64
    assert [r["run_id"] for r in _runs(repo, "--status", "pass")] == [done]
    assert [r["run_id"] for r in _runs(repo, "--status", "RUNNING")] == [going]
    assert [r["run_id"] for r in _runs(repo, "--limit", "1")] == [going]
    # The ledger is the list: a run whose folder is gone is still a run it recorded.
    shutil.rmtree(run_dir(repo, done))
    assert [r["run_id"] for r in _runs(repo)] == [going, done]
    text = run_cli("--repo", str(repo), "runs")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["RUN", "KIND", "STATUS", "STARTED", "WORKERS", "HEAD"]
    assert lines[1].startswith(f"{going}  factory  RUNNING") and done in lines[2]
    bad = run_cli("--repo", str(repo), "runs", "--status", "DONE")
    assert bad.returncode == 2 and "--status" in bad.stderr


def test_latest_is_the_newest_run_and_what_is_recorded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    nothing = run_cli("--repo", str(repo), "bundle-validate", "--run-id", "latest")
    assert nothing.returncode == 2
    assert nothing.stderr.strip() == "factory: error: latest: no run in the ledger yet"
    done = _passed(repo)
    report = run_cli("--repo", str(repo), "print-report", "--run-id", "latest", "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["run_id"] == done
    assert f"latest is {done}" in report.stderr
    going = launch_dry(repo, now=LATER)
    res = run_cli("--repo", str(repo), "bundle-validate", "--run-id", "latest", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["run_id"] == going
    events = run_cli("--repo", str(repo), "ledger", "--run-id", "latest", "--json")
    types = [e["event_type"] for e in json.loads(events.stdout)]
    assert "validation.written" in types or "stage.finished" in types
    ledger = json.loads(run_cli("--repo", str(repo), "ledger", "--json").stdout)
    assert all(e["run_id"] != "latest" for e in ledger)
    assert not run_dir(repo, "latest").exists()
    # The API takes it too.
    with Factory(repo) as factory:
        assert factory.validate("latest").run_id == going
    # A command that takes a crank ID looks for the newest crank, not a run.
    crank = run_cli("--repo", str(repo), "crank-status", "--crank-id", "latest")
    assert crank.returncode == 2
    assert crank.stderr.strip() == "factory: error: latest: no crank in the ledger yet"


def test_unknown_run_ids_suggest_the_nearest(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    done = _passed(repo)
    typo = done[:-3] + "002"
    res = run_cli("--repo", str(repo), "print-report", "--run-id", typo)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().endswith(f"; did you mean {done}?"), res.stderr
    cut = run_cli("--repo", str(repo), "bundle-validate", "--run-id", done[:12])
    assert cut.returncode == 2 and f"did you mean {done}?" in cut.stderr
    far = run_cli("--repo", str(repo), "open-run", "--run-id", "nope")
    assert far.returncode == 2 and "did you mean" not in far.stderr
    crank = run_cli("--repo", str(repo), "approve", "--crank-id", typo)
    assert crank.returncode == 2 and f"did you mean {done}?" in crank.stderr


def test_ledger_columns_fit_their_content(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    launch_dry(repo, "--run-id", "r1")
    res = run_cli("--repo", str(repo), "ledger", "--run-id", "r1")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert all(" r1  " in ln and " r1   " not in ln for ln in lines), lines
    assert max(len(ln) for ln in lines) < 120
    # Columns line up: the run ID starts at the same place on every line.
    assert len({ln.index(" r1 ") for ln in lines}) == 1


def test_open_report_and_open_run_print_json(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    done = _passed(repo)
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": "", "CI": "1"}
    for command in ("open-report", "open-run"):
        res = run_cli("--repo", str(repo), command, "--run-id", done, "--json", env=env)
        assert res.returncode == 0, res.stderr
        data = json.loads(res.stdout)
        check_keys(command, data)
        assert data["run_id"] == done and data["opened"] is False


def _walk(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in sorted(group.commands.items()):
        out.append((f"{prefix}{name}", cmd))
        if isinstance(cmd, click.Group):
            out += _walk(cmd, f"{prefix}{name} ")
    return out


def test_user_facing_text_names_no_internal_document_or_missing_schema_file() -> None:
    from tools.codex.factory.cli.commands import cli
    from tools.codex.factory.run.runboard import render_prompt

    texts = [(name, cmd.help or "") for name, cmd in _walk(cli)]
    for name, cmd in _walk(cli):
        texts += [(f"{name} {p.name}", getattr(p, "help", "") or "") for p in cmd.params]
    prompt = render_prompt(
        run_id="r1", worker={"id": "A", "allow": ["src/**"], "deny": [], "shared": []},
        branch="factory/r1/A", base_ref="HEAD", base_commit="0" * 40, holdout=["scenarios/"],
        protected=["scenarios/**"], headless=False,
    )  # fmt: skip
    texts.append(("PROMPT.md", prompt))
    bad = [(w, t) for w, t in texts if "DESIGN" in t or "§" in t or "schemas/" in t]
    assert not bad, bad
    assert "factory schema handoff_note" in prompt
    validate = dict(_walk(cli))["bundle-validate"].help or ""
    assert validate.startswith("Check every bundle against the rules")


def test_schema_prints_the_installed_schemas() -> None:
    res = run_cli("schema", "plan", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["$id"].endswith("plan.schema.json")
    assert json.loads(run_cli("schema", "handoff_note").stdout)["type"] == "object"
    bad = run_cli("schema", "nope")
    assert bad.returncode == 2
    assert bad.stderr.startswith("factory: error: no schema 'nope'; the schemas are: ")


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_a_run_folder_or_report_that_is_a_link_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    done = _passed(repo)
    evil = tmp_path / "evil"
    (evil / "Z_integrator").mkdir(parents=True)
    (evil / "Z_integrator" / "FINAL_REPORT.txt").write_text("not the factory's\n", encoding="utf-8")
    os.symlink(evil, run_dir(repo, "factory_x"))
    res = run_cli("--repo", str(repo), "print-report", "--run-id", "factory_x")
    assert res.returncode == 3 and "not the factory's" not in res.stdout
    assert "the run folder tools/codex/runs/factory_x is a symbolic link" in res.stderr
    report = run_dir(repo, done) / "Z_integrator" / "FINAL_REPORT.txt"
    report.unlink()
    os.symlink(evil / "Z_integrator" / "FINAL_REPORT.txt", report)
    res = run_cli("--repo", str(repo), "print-report", "--run-id", done)
    assert res.returncode == 3 and "not the factory's" not in res.stdout
    assert "FINAL_REPORT.txt: is a symbolic link" in res.stderr


def test_latest_is_never_a_new_runs_id(tmp_path: Path) -> None:
    """`latest` names the newest run: launch and oneshot refuse it as the ID of a new run
    (with or without runs, from the CLI and the API), and launch --resume resolves it."""
    repo = make_repo(tmp_path / "repo")
    want = (
        "factory: error: --run-id latest: that name refers to the newest run, so it cannot be a "
        "new run's ID; leave the run ID out for a fresh one, or resume the newest run"
    )
    for _ in range(2):
        for command in ("launch", "oneshot"):
            res = run_cli("--repo", str(repo), command, "--dry-run", "--run-id", "latest")
            assert (res.returncode, res.stderr.strip()) == (2, want), res.stderr
        assert not run_dir(repo, "latest").exists()
        done = _passed(repo)
    with Factory(repo) as factory, pytest.raises(UsageError, match="cannot be a new run's ID"):
        factory.launch(dry_run=True, run_id="latest")
    resumed = run_cli("--repo", str(repo), "launch", "--resume", "--run-id", "latest")
    assert f"factory: latest is {done}" in resumed.stderr, resumed.stderr
    assert "cannot be a new run's ID" not in resumed.stderr
