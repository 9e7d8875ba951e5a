"""Config layering: defaults < factory.config.json < FACTORY_* env < CLI, with origins."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.repos import run_cli
from tools.codex.factory.errors import UsageError
from tools.codex.factory.infra import jsonio
from tools.codex.factory.run import config as config_mod
from tools.codex.factory.run.config import CONFIG_REL, DEFAULTS

FILE_ORIGIN = f"file:{CONFIG_REL}"


def write_config(repo: Path, doc: Any) -> Path:
    path = repo / CONFIG_REL
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def test_defaults_when_nothing_is_set(repo: Path) -> None:
    cfg = config_mod.load(repo, environ={})
    assert cfg.values == DEFAULTS
    assert cfg.file is None
    assert {r["origin"] for r in cfg.rows()} == {"default"}
    assert set(cfg.values) == {
        "run",
        "paths",
        "workers",
        "checks",
        "ledger",
        "security",
        "limits",
        "scenarios",
        "service",
        "integrate",
        "feedback",
        "review",
        "crank",
        "feature_flags",
    }
    assert cfg.values["feature_flags"] and not any(cfg.values["feature_flags"].values())
    assert cfg.ledger_rel == "tools/codex/runs/factory_ledger.jsonl"


# (key, file value, env text, env value, cli value)
LAYERED = [
    ("run.kind", "filekind", "envkind", "envkind", "clikind"),
    ("run.base_ref", "main", "1234567", "1234567", "HEAD~1"),  # digits stay a string
    ("ledger.fsync", False, "true", True, False),
    ("workers.max_parallel", 2, "3", 3, 5),
    ("workers.ids", ["A"], '["A","B"]', ["A", "B"], ["C"]),
    ("feature_flags.strict_handoff_dependencies", True, "false", False, True),
]


@pytest.mark.parametrize(("key", "file_v", "env_text", "env_v", "cli_v"), LAYERED)
def test_each_layer_overrides_the_one_below(
    repo: Path, key: str, file_v: Any, env_text: str, env_v: Any, cli_v: Any
) -> None:
    section, name = key.split(".")
    var = f"FACTORY_{section.upper()}__{name.upper()}"
    assert config_mod.load(repo, environ={}).get(key) == DEFAULTS[section][name]

    write_config(repo, {"schema_version": 1, section: {name: file_v}})
    cfg = config_mod.load(repo, environ={})
    assert (cfg.get(key), cfg.origin(key)) == (file_v, FILE_ORIGIN)
    assert cfg.origin("run.case_collisions") == "default"  # untouched keys keep defaults

    cfg = config_mod.load(repo, environ={var: env_text})
    assert (cfg.get(key), cfg.origin(key)) == (env_v, f"env:{var}")

    cfg = config_mod.load(repo, cli={key: cli_v}, environ={var: env_text})
    assert (cfg.get(key), cfg.origin(key)) == (cli_v, f"argument {key}")
    # The CLI names its own option as the origin; the library never invents one.
    cfg = config_mod.load(repo, cli={key: cli_v}, environ={}, named={key: "cli:--opt"})
    assert cfg.origin(key) == "cli:--opt"

    # An unset CLI option (None) does not hide the layers below.
    cfg = config_mod.load(repo, cli={key: None}, environ={var: env_text})
    assert cfg.origin(key) == f"env:{var}"


def test_config_show_json_gives_values_and_origins(repo: Path) -> None:
    write_config(
        repo, {"run": {"kind": "filekind", "base_ref": "main"}, "ledger": {"lock_timeout_s": 5}}
    )
    res = run_cli(
        "--repo", str(repo), "config", "show", "--json", env={"FACTORY_RUN__KIND": "envkind"}
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) == {"config", "origins", "file", "file_source"}
    assert doc["file"] == CONFIG_REL
    assert doc["config"]["run"]["kind"] == "envkind"
    assert doc["origins"]["run.kind"] == "env:FACTORY_RUN__KIND"
    assert doc["config"]["run"]["base_ref"] == "main"
    assert doc["origins"]["run.base_ref"] == FILE_ORIGIN
    assert doc["config"]["ledger"]["lock_timeout_s"] == 5
    assert doc["origins"]["ledger.lock_timeout_s"] == FILE_ORIGIN
    assert doc["origins"]["workers.ids"] == "default"
    assert doc["config"]["workers"]["ids"] == ["A", "B", "C", "D"]
    # Every leaf has an origin, and only leaves do.
    leaves = {f"{s}.{k}" for s, body in doc["config"].items() for k in body}
    assert set(doc["origins"]) == leaves

    text = run_cli("--repo", str(repo), "config", "show", env={"FACTORY_RUN__KIND": "envkind"})
    assert text.returncode == 0
    row = next(line for line in text.stdout.splitlines() if line.startswith("run.kind "))
    assert '"envkind"' in row and "(env:FACTORY_RUN__KIND)" in row


def test_config_file_with_a_utf8_bom_is_read(repo: Path) -> None:
    path = repo / CONFIG_REL
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"run": {"kind": "bom"}}).encode())
    assert config_mod.load(repo, environ={}).get("run.kind") == "bom"


def assert_usage_error(res: Any, *needles: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


FILE_CASES = [
    ("bad-json", '{"run": {"kind": "x",}}', ["invalid JSON"]),
    ("not-an-object", "[1, 2]", ["not of type 'object'"]),
    ("unknown-section", {"bogus": {}}, ["'bogus'"]),
    ("unknown-key", {"run": {"nope": 1}}, ["key run", "'nope'"]),
    ("wrong-type", {"run": {"kind": 5}}, ["key run.kind", "not of type 'string'"]),
    ("wrong-type-nested", {"workers": {"max_parallel": "4"}}, ["key workers.max_parallel"]),
    ("bad-enum", {"run": {"case_collisions": "ignore"}}, ["key run.case_collisions"]),
    ("bad-check", {"checks": {"required": [{"name": "x"}]}}, ["key checks.required[0]", "'argv'"]),
    ("bad-kind", {"run": {"kind": "a/b"}}, ["run.kind", "a/b"]),
    ("dup-workers", {"workers": {"ids": ["A", "A"]}}, ["workers.ids", "duplicate"]),
    ("escaping-path", {"paths": {"runs_dir": "../elsewhere"}}, ["paths.runs_dir", ".."]),
]


@pytest.mark.parametrize(("case", "doc", "needles"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_config_file_is_a_usage_error_naming_file_and_key(
    repo: Path, case: str, doc: Any, needles: list[str]
) -> None:
    write_config(repo, doc)
    res = run_cli("--repo", str(repo), "config", "show")
    assert_usage_error(res, "factory.config.json", *needles)


ENV_CASES = [
    ("FACTORY_RUN_KIND", "x", ["FACTORY_RUN_KIND", "FACTORY_RUN__KIND"]),
    ("FACTORY_LEDGER_FSYNC", "true", ["FACTORY_LEDGER_FSYNC", "FACTORY_LEDGER__FSYNC"]),
    (
        "FACTORY_FEATURE_FLAGS_NOPE",
        "true",
        ["FACTORY_FEATURE_FLAGS_NOPE", "FACTORY_FEATURE_FLAGS__<KEY>"],
    ),
    ("FACTORY_checks", "[]", ["FACTORY_checks", "FACTORY_CHECKS__<KEY>"]),
    ("FACTORY_NOPE__X", "1", ["FACTORY_NOPE__X", "'nope'"]),
    ("FACTORY_RUN__NOPE", "1", ["FACTORY_RUN__NOPE", "run.nope"]),
    ("FACTORY_FEATURE_FLAGS__NOPE", "true", ["FACTORY_FEATURE_FLAGS__NOPE", "feature_flags.nope"]),
    (
        "FACTORY_WORKERS__MAX_PARALLEL",
        "abc",
        ["FACTORY_WORKERS__MAX_PARALLEL", "workers.max_parallel"],
    ),
    ("FACTORY_LEDGER__FSYNC", "maybe", ["FACTORY_LEDGER__FSYNC", "ledger.fsync"]),
    ("FACTORY_RUN__KIND", "bad/kind", ["FACTORY_RUN__KIND", "run.kind"]),
    ("FACTORY_LEDGER__PATH", "/abs/ledger.jsonl", ["FACTORY_LEDGER__PATH", "ledger.path"]),
]


@pytest.mark.parametrize(("var", "value", "needles"), ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_bad_env_is_a_usage_error_naming_the_variable(
    repo: Path, var: str, value: str, needles: list[str]
) -> None:
    res = run_cli("--repo", str(repo), "config", "show", env={var: value})
    assert_usage_error(res, *needles)


def test_bad_override_names_its_source(repo: Path) -> None:
    with pytest.raises(UsageError, match=r"run\.kind.*source: argument run\.kind\)"):
        config_mod.load(repo, cli={"run.kind": "bad/kind"}, environ={})
    with pytest.raises(UsageError, match=r"workers\.max_parallel.*argument workers\.max_parallel"):
        config_mod.load(repo, cli={"workers.max_parallel": 0}, environ={})
    with pytest.raises(UsageError, match=r"run\.kind.*cli:--kind"):
        config_mod.load(
            repo, cli={"run.kind": "bad/kind"}, environ={}, named={"run.kind": "cli:--kind"}
        )
    res = run_cli("--repo", str(repo), "launch", "--dry-run", "--kind", "bad/kind")
    assert res.returncode == 2 and "(source: cli:--kind)" in res.stderr, res.stderr


def test_file_errors_beat_env_and_name_the_file(repo: Path) -> None:
    path = write_config(repo, {"run": {"kind": 7}})
    with pytest.raises(UsageError) as exc:
        config_mod.load(repo, environ={"FACTORY_RUN__KIND": "fine"})
    assert str(path) in str(exc.value) and "run.kind" in str(exc.value)


# -- unrelated FACTORY_* variables ----------------------------------------------------------


@pytest.mark.parametrize(
    "var", ["FACTORY_TOKEN", "FACTORY_HOME", "FACTORY_RUNNER_ID", "FACTORY_PATHSEP", "FACTORY_"]
)
def test_unrelated_factory_variables_are_ignored(repo: Path, var: str) -> None:
    cfg = config_mod.load(repo, environ={var: "secret", "FACTORY_RUN__KIND": "envkind"})
    assert cfg.get("run.kind") == "envkind"
    assert all(not o.startswith(f"env:{var}") or var == "FACTORY_" for o in cfg.origins.values())
    res = run_cli("--repo", str(repo), "config", "show", env={var: "secret"})
    assert res.returncode == 0, res.stderr


# -- the ledger lives in the runs folder; the runs folder is the factory's own ---------------


@pytest.mark.parametrize(
    ("layer", "path"),
    [
        ("env", "VERSION"),
        ("file", "audit/ledger.jsonl"),
        ("env", "tools/codex/runs"),
        ("file", "tools/codex/runsX/l.jsonl"),
        ("env", "tools/codex/l.jsonl"),
    ],
)
def test_ledger_path_outside_the_runs_folder_is_refused(repo: Path, layer: str, path: str) -> None:
    (repo / "VERSION").write_text("1.0\n")
    if layer == "file":
        write_config(repo, {"ledger": {"path": path}})
        env = {}
        source = "factory.config.json"
    else:
        env = {"FACTORY_LEDGER__PATH": path}
        source = "env:FACTORY_LEDGER__PATH"
    with pytest.raises(UsageError, match=r"ledger\.path.*not inside paths\.runs_dir") as exc:
        config_mod.load(repo, environ=env)
    assert source in str(exc.value)
    res = run_cli("--repo", str(repo), "ledger", "repair", env=env)
    assert_usage_error(res, "ledger.path", source)
    assert (repo / "VERSION").read_text() == "1.0\n"
    assert not (repo / "audit").exists()


def test_ledger_path_inside_the_runs_folder_is_accepted(repo: Path) -> None:
    cfg = config_mod.load(repo, environ={"FACTORY_LEDGER__PATH": "tools/codex/runs/audit/l.jsonl"})
    assert cfg.ledger_rel == "tools/codex/runs/audit/l.jsonl"
    cfg = config_mod.load(
        repo,
        environ={"FACTORY_PATHS__RUNS_DIR": "out/runs", "FACTORY_LEDGER__PATH": "out/runs/l.jsonl"},
    )
    assert cfg.ledger_rel == "out/runs/l.jsonl"
    cfg = config_mod.load(repo, environ={"FACTORY_PATHS__RUNS_DIR": "out/runs"})
    assert cfg.ledger_rel == "out/runs/factory_ledger.jsonl"


def test_check_runs_dir_refuses_a_folder_with_tracked_user_files(repo: Path) -> None:
    from tests.support.repos import git

    cfg = config_mod.load(repo, environ={"FACTORY_PATHS__RUNS_DIR": "src"})
    with pytest.raises(
        UsageError,
        match=r"paths\.runs_dir: 'src' holds files tracked by git \(src/app\.py\).*env:FACTORY_PATHS__RUNS_DIR",
    ):
        config_mod.check_runs_dir(repo, cfg)
    # The factory's own placeholder and ignore file are fine; a missing folder is fine.
    (repo / "tools/codex/runs").mkdir(parents=True)
    (repo / "tools/codex/runs/.gitkeep").write_text("")
    (repo / "tools/codex/runs/.gitignore").write_text("*\n!.gitkeep\n")
    git(repo, "add", "-f", "tools/codex/runs/.gitkeep", "tools/codex/runs/.gitignore")
    git(repo, "commit", "-q", "-m", "runs")
    config_mod.check_runs_dir(repo, config_mod.load(repo, environ={}))
    config_mod.check_runs_dir(
        repo, config_mod.load(repo, environ={"FACTORY_PATHS__RUNS_DIR": "new/runs"})
    )
    # ...but a nested .gitkeep is a user file like any other.
    (repo / "tools/codex/runs/keep").mkdir()
    (repo / "tools/codex/runs/keep/.gitkeep").write_text("")
    git(repo, "add", "-f", "tools/codex/runs/keep/.gitkeep")
    with pytest.raises(UsageError, match=re.escape("tools/codex/runs/keep/.gitkeep")):
        config_mod.check_runs_dir(repo, config_mod.load(repo, environ={}))


@pytest.mark.parametrize("runs_dir", ["README.md", "README.md/runs"])
def test_check_runs_dir_refuses_a_file_in_the_way(repo: Path, runs_dir: str) -> None:
    cfg = config_mod.load(repo, environ={"FACTORY_PATHS__RUNS_DIR": runs_dir})
    with pytest.raises(UsageError, match=r"README\.md exists and is not a folder"):
        config_mod.check_runs_dir(repo, cfg)


# -- check names -----------------------------------------------------------------------------

CHECK = {"argv": ["git", "status"]}


@pytest.mark.parametrize(
    ("checks", "where"),
    [
        ({"required": [{"name": "x", **CHECK}, {"name": "x", **CHECK}]}, "checks.required[1].name"),
        (
            {"required": [{"name": "tests", **CHECK}], "advisory": [{"name": "Tests", **CHECK}]},
            "checks.advisory[0].name",
        ),
        (
            {"advisory": [{"name": "lint", **CHECK}, {"name": "LINT", **CHECK}]},
            "checks.advisory[1].name",
        ),
    ],
)
def test_duplicate_check_names_are_refused_ignoring_case(
    repo: Path, checks: dict[str, Any], where: str
) -> None:
    write_config(repo, {"checks": checks})
    res = run_cli("--repo", str(repo), "config", "show")
    assert_usage_error(res, where, "already used", "factory.config.json")
    env = {f"FACTORY_CHECKS__{k.upper()}": json.dumps(v) for k, v in checks.items()}
    with pytest.raises(UsageError, match=rf"{re.escape(where)}.*env:FACTORY_CHECKS__"):
        config_mod.load(repo, environ=env)


def test_distinct_check_names_are_accepted(repo: Path) -> None:
    cfg = config_mod.load(
        repo, environ={"FACTORY_CHECKS__ADVISORY": json.dumps([{"name": "lint", **CHECK}])}
    )
    assert [c["name"] for c in cfg.get("checks.advisory")] == ["lint"]


# -- operator files: only regular files, no duplicate keys -----------------------------------


def test_a_config_path_that_is_a_directory_is_an_error(repo: Path) -> None:
    (repo / CONFIG_REL).mkdir(parents=True)
    res = run_cli("--repo", str(repo), "config", "show")
    assert_usage_error(res, "factory.config.json", "not a regular file")


@pytest.mark.parametrize(
    "text",
    ['{"run": {"kind": "a", "kind": "b"}}', '{"run": {"kind": "a"}, "run": {"base_ref": "main"}}'],
)
def test_duplicate_keys_in_the_config_file_are_refused(repo: Path, text: str) -> None:
    write_config(repo, text)
    res = run_cli("--repo", str(repo), "config", "show")
    assert_usage_error(res, "factory.config.json", "duplicate key")


def test_duplicate_keys_in_a_plan_file_are_refused(repo: Path, tmp_path: Path) -> None:
    from tools.codex.factory.run import plans as plan_mod

    plan = tmp_path / "plan.json"
    plan.write_text('{"schema_version": 1, "workers": [], "workers": []}', encoding="utf-8")
    with pytest.raises(UsageError, match=r"plan .*plan\.json.*duplicate key 'workers'"):
        plan_mod.load_plan(plan)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_not_read(repo: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "plan.fifo"
    os.mkfifo(fifo)
    # In child processes with a time limit first: reading a FIFO would wait for a writer forever.
    res = run_cli(
        "--repo",
        str(repo),
        "launch",
        "--base-ref",
        "HEAD",
        "--dry-run",
        "--plan",
        str(fifo),
        timeout=60,
    )
    assert_usage_error(res, "not a regular file")
    (repo / CONFIG_REL).parent.mkdir(parents=True)
    os.mkfifo(repo / CONFIG_REL)
    res = run_cli("--repo", str(repo), "config", "show", timeout=60)
    assert_usage_error(res, "factory.config.json", "not a regular file")
    with pytest.raises(UsageError, match="not a regular file"):
        jsonio.read_json(fifo, "--plan")


def test_loads_document_strips_a_bom_and_can_refuse_duplicate_keys() -> None:
    assert jsonio.loads_document(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    assert jsonio.loads_document(b'{"a": 1, "a": 2}') == {"a": 2}  # orjson's reading by default
    with pytest.raises(ValueError, match="duplicate key 'b'"):
        jsonio.loads_document(b'{"a": [{"b": 1, "b": 1}]}', unique_keys=True)
    with pytest.raises(ValueError):
        jsonio.loads_document(b'{"a": NaN}', unique_keys=True)  # one dialect: orjson's


def test_a_run_fsyncs_each_append_unless_the_operator_turns_it_off(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite turns fsync off through the environment; the product's default keeps it on."""
    from tools.codex.factory.infra.clock import Clock
    from tools.codex.factory.run.context import Context

    monkeypatch.delenv("FACTORY_LEDGER__FSYNC", raising=False)
    ctx = Context(repo_opt=repo, clock=Clock(None))
    try:
        assert ctx.ledger.fsync is True
    finally:
        ctx.close()
    monkeypatch.setenv("FACTORY_LEDGER__FSYNC", "false")
    ctx = Context(repo_opt=repo, clock=Clock(None))
    try:
        assert ctx.ledger.fsync is False
    finally:
        ctx.close()
