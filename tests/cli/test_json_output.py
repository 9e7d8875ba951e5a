"""--json and --json-out: stdout carries only the data, the file holds the same UTF-8 bytes.

JSON_KEYS is the contract RUNBOOK.md documents: the top-level keys of each command's JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.contract import check_keys
from tests.support.scratch import BASE_FILES, factory, make_repo, real_patch, scratch_env

RUN = "run-json"
READ_COMMANDS: list[tuple[str, tuple[str, ...]]] = [
    ("ledger", ("ledger",)),
    ("ledger", ("ledger", "--limit", "5", "--run-id", RUN)),
    ("ledger verify", ("ledger", "verify")),
    ("ledger-replay", ("ledger-replay", "--run-id", RUN)),
    ("print-report", ("print-report", "--run-id", RUN)),
    ("config show", ("config", "show")),
    ("watch", ("watch", "--run-id", RUN, "--timeout", "30")),
    ("report", ("report", "--run-id", RUN)),
    ("report --html", ("report", "--run-id", RUN, "--html")),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("json")
    env = scratch_env(root / "home")
    env["DISPLAY"] = ""
    env["WAYLAND_DISPLAY"] = ""
    repo = make_repo(root / "repo", env)
    res = factory(repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", RUN)
    assert res.returncode == 0, res.stderr
    # A failed preflight records a non-ASCII base ref in the ledger: the JSON must stay UTF-8.
    res = factory(repo, env, "oneshot", "--base-ref", "brünhilde-ß", "--dry-run")
    assert res.returncode == 3, res.stderr
    return repo, env


@pytest.mark.parametrize(
    ("name", "args"), READ_COMMANDS, ids=[" ".join(a) for _, a in READ_COMMANDS]
)
def test_read_command_json_equals_json_out(
    world: tuple[Path, dict[str, str]], tmp_path: Path, name: str, args: tuple[str, ...]
) -> None:
    repo, env = world
    out_file = tmp_path / "nested" / "out.json"
    res = factory(repo, env, *args, "--json", "--json-out", str(out_file))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)  # the whole of stdout is the JSON document
    raw = out_file.read_bytes()
    assert raw.decode("utf-8") == res.stdout  # same bytes, UTF-8
    assert json.loads(raw) == data
    check_keys(name, data)
    # Text mode with --json-out: people get text on stdout, the file the same JSON.
    again = tmp_path / "again.json"
    text = factory(repo, env, *args, "--json-out", str(again))
    assert text.returncode == 0
    assert json.loads(again.read_bytes()) == data
    assert text.stdout != res.stdout  # text for people on stdout


def test_doctor_json_equals_json_out(world: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = world
    out_file = tmp_path / "doctor.json"
    res = factory(repo, env, "doctor", "--json", "--json-out", str(out_file))
    assert res.returncode == 0, res.stdout
    assert json.loads(res.stdout) == json.loads(out_file.read_bytes())
    assert out_file.read_bytes().decode("utf-8") == res.stdout
    check_keys("doctor", json.loads(res.stdout))


def test_non_ascii_survives_as_utf8(world: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = world
    out_file = tmp_path / "ledger.json"
    res = factory(
        repo,
        env,
        "ledger",
        "--event-type",
        "preflight.check",
        "--json",
        "--json-out",
        str(out_file),
    )
    assert res.returncode == 0
    raw = out_file.read_bytes()
    assert "brünhilde-ß".encode() in raw and not raw.startswith(b"\xff\xfe")
    assert any("brünhilde-ß" in e["payload"]["detail"] for e in json.loads(raw))


def test_every_command_writes_json_out(world: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """Commands that change things: --json-out too, and --json where they take it."""
    repo, env = world
    cases: list[tuple[str, tuple[str, ...], int]] = [
        ("preflight", ("preflight",), 0),
        (
            "launch",
            ("launch", "--base-ref", "HEAD", "--dry-run", "--run-id", "run-two", "--json"),
            0,
        ),
        ("bundle-validate", ("bundle-validate", "--run-id", "run-two", "--json"), 0),
        ("integrate", ("integrate", "--run-id", "run-two", "--json"), 0),
        (
            "oneshot",
            ("oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", "run-three", "--json"),
            0,
        ),
        ("ledger repair", ("ledger", "repair", "--json"), 0),
        ("open-report", ("open-report", "--run-id", RUN), 0),
        ("open-run", ("open-run", "--run-id", RUN), 0),
    ]
    for name, args, code in cases:
        out_file = tmp_path / f"{name.replace(' ', '_')}.json"
        res = factory(repo, env, *args, "--json-out", str(out_file))
        assert res.returncode == code, (name, res.stderr)
        data = json.loads(out_file.read_bytes())
        if name != "bundle-validate":
            check_keys(name, data)
        if "--json" in args:
            assert json.loads(res.stdout) == data
    assert json.loads((tmp_path / "open-report.json").read_bytes())["opened"] is False


def test_replay_json_shape(world: tuple[Path, dict[str, str]]) -> None:
    repo, env = world
    data = json.loads(factory(repo, env, "ledger-replay", "--run-id", RUN, "--json").stdout)
    assert data["ok"] is True and data["divergences"] == []
    state = data["state"]
    for key in (
        "run_id",
        "kind",
        "base_ref",
        "base_commit",
        "dry_run",
        "workers",
        "plan_hash",
        "events",
        "stages",
        "preflight",
        "validation",
        "merge",
        "patches",
        "checks",
        "check_status",
        "final",
        "ledger_head",
        "refusals",
        "policy_violations",
        "finished",
        "artifacts_checked",
    ):
        assert key in state
    assert len(data["timeline"]) == state["events"]


def test_watch_json_keeps_stdout_for_data(world: tuple[Path, dict[str, str]]) -> None:
    repo, env = world
    res = factory(repo, env, "watch", "--run-id", RUN, "--json")
    assert res.returncode == 0
    data = json.loads(res.stdout)
    assert data["finished"] is True and data["status"] == "PASS"
    assert "run.finished" in res.stderr  # the progress lines went to stderr


def test_real_worker_commands_json(tmp_path: Path) -> None:
    """bundle-collect, bundle-import and clean: --json on stdout equals --json-out, with the documented keys."""
    env = scratch_env(tmp_path / "home")
    repo = make_repo(tmp_path / "repo", env)
    res = factory(
        repo, env, "launch", "--base-ref", "HEAD", "--run-id", "run-real", "--workers", "A,B"
    )
    assert res.returncode == 0, res.stderr
    patch = tmp_path / "fix.patch"
    patch.write_bytes(real_patch(repo, env, {"src/app.py": BASE_FILES["src/app.py"] + "X = 1\n"}))
    cases = [
        ("bundle-collect", ("bundle-collect", "--run-id", "run-real", "--workers", "A"), 0),
        (
            "bundle-import",
            ("bundle-import", "--run-id", "run-real", "--worker", "B", "--patch", str(patch)),
            0,
        ),
        ("clean", ("clean",), 3),  # the run has not finished: its worktrees are refused
    ]
    for name, args, code in cases:
        out_file = tmp_path / f"{name}.json"
        res = factory(repo, env, *args, "--json", "--json-out", str(out_file))
        assert res.returncode == code, (name, res.stderr)
        data = json.loads(res.stdout)
        assert json.loads(out_file.read_bytes()) == data
        check_keys(name, data)
    assert factory(repo, env, "clean", "--force").returncode == 0
