"""Worker-supplied lists are bounded (``limits.max_list_items``, ``limits.max_list_chars``)
before they reach the facts, the ledger, VALIDATION.json or the terminal; what is cut is a
``list-too-long`` finding. Worker-supplied strings are clipped with their hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.factory import (
    launch_dry,
    make_patch,
    read_json,
    run_dir,
    set_bundle,
    write_config,
    write_json,
)
from tests.support.repos import PINNED, git, make_repo, run_cli
from tests.support.workers import worktrees

LEDGER = "tools/codex/runs/factory_ledger.jsonl"
MB = 1_000_000


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def cli(repo: Path, *args: str) -> tuple[int, str, str]:
    res = run_cli("--repo", str(repo), "--now", PINNED, *args)
    return res.returncode, res.stdout, res.stderr


def facts_line(repo: Path, worker: str) -> bytes:
    lines = [
        line
        for line in (repo / LEDGER).read_bytes().splitlines()
        if b'"event_type":"bundle.facts"' in line and f'"worker":"{worker}"'.encode() in line
    ]
    return lines[-1]


def test_a_20_mb_files_changed_stays_small_everywhere(repo: Path) -> None:
    """7,000 paths of 2,800 characters: once a 19.8 MB ledger line, 40 MB of output and a
    41 MB VALIDATION.json."""
    run_id = launch_dry(repo)
    files = [f"src/{i}/" + "a" * 2800 for i in range(7000)]
    write_json(
        run_dir(repo, run_id) / "A_worker" / "FILES_CHANGED.json",
        {"schema_version": 1, "files": files},
    )
    code, out, err = cli(repo, "bundle-validate", "--run-id", run_id)
    assert code == 3, err
    assert "[list-too-long] A FILES_CHANGED.json files:" in out
    assert "7000 items" in out and "over the limit of 2000 items or 250000 characters" in out
    assert len(facts_line(repo, "A")) < 400_000
    assert len(out) + len(err) < 400_000
    assert (run_dir(repo, run_id) / "VALIDATION.json").stat().st_size < 2 * MB
    assert "more finding(s): see VALIDATION.json" in out
    code, out, _err = cli(repo, "ledger-replay", "--run-id", run_id)
    assert code == 0, out  # the bounded facts re-derive alike


def worker_file(repo: Path, run_id: str, rel: str) -> Path:
    return run_dir(repo, run_id) / "A_worker" / rel


def big_list(repo: Path, run_id: str, which: str) -> str:
    """Plant a list of 6,000 items in one bundle file; return the finding's location."""
    n = 6000
    if which == "schema errors":
        write_json(
            worker_file(repo, run_id, "FILES_CHANGED.json"),
            {"schema_version": 1, "files": list(range(n))},
        )
        return "FILES_CHANGED.json (schema errors)"
    if which == "scope":
        path = worker_file(repo, run_id, "SCOPE_LOCK.json")
        doc = read_json(path)
        doc["allow"] = [f"src/{i}/**" for i in range(n)]
        write_json(path, doc)
        return "SCOPE_LOCK.json allow"
    if which == "depends_on":
        path = worker_file(repo, run_id, "HANDOFF_NOTE.json")
        doc = read_json(path)
        doc["depends_on"] = ["B"] * n
        write_json(path, doc)
        return "HANDOFF_NOTE.json depends_on"
    if which == "logs":
        write_json(
            worker_file(repo, run_id, "LOGS/INDEX.json"),
            {
                "schema_version": 1,
                "logs": [{"path": f"l{i}.log", "sha256": "0" * 64, "bytes": 0} for i in range(n)],
            },
        )
        return "LOGS/INDEX.json logs"
    assert which == "patch"
    patch = make_patch(repo, {f"src/new/{i}.py": "x\n" for i in range(n)})
    set_bundle(repo, run_id, "A", patch)
    return "DIFF.patch (touched paths)"


@pytest.mark.parametrize("which", ["schema errors", "scope", "depends_on", "logs", "patch"])
def test_every_worker_supplied_list_is_bounded(repo: Path, which: str) -> None:
    run_id = launch_dry(repo)
    where = big_list(repo, run_id, which)
    code, out, err = cli(repo, "bundle-validate", "--run-id", run_id)
    assert code == 3, err
    assert len(facts_line(repo, "A")) < MB
    assert len(out) + len(err) < 400_000
    doc = read_json(run_dir(repo, run_id) / "VALIDATION.json")
    found = {f["path"]: f for f in doc["findings"] if f["rule"] == "list-too-long"}
    expected = {where, "FILES_CHANGED.json files"} if which == "patch" else {where}
    assert set(found) == expected, found
    assert "6000 items" in found[where]["message"]
    assert len(doc["findings"]) <= 2 * 2000 + 10


def test_the_list_caps_are_settings(repo: Path) -> None:
    write_config(repo, {"schema_version": 1, "limits": {"max_list_items": 16}})
    run_id = launch_dry(repo)
    files = [f"src/f{i}.py" for i in range(17)]
    write_json(
        worker_file(repo, run_id, "FILES_CHANGED.json"), {"schema_version": 1, "files": files}
    )
    code, out, _err = cli(repo, "bundle-validate", "--run-id", run_id, "--json")
    assert code == 3
    doc = json.loads(out)
    assert doc["policy"]["limits"]["max_list_items"] == 16
    found = [f for f in doc["findings"] if f["rule"] == "list-too-long"]
    assert len(found) == 1 and "17 items" in found[0]["message"]
    assert "only the first 16 were judged" in found[0]["message"]
    code, out, _err = cli(repo, "config", "show")
    assert code == 0 and "limits.max_list_chars" in out


def test_a_huge_status_reason_is_clipped_in_the_facts(repo: Path) -> None:
    run_id = launch_dry(repo)
    path = worker_file(repo, run_id, "STATUS.json")
    doc = read_json(path)
    doc["reason"] = "R" * 5_000_000
    write_json(path, doc)
    code, out, err = cli(repo, "bundle-validate", "--run-id", run_id)
    assert code == 0, out + err  # a reason is no finding: only its size is bounded
    line = facts_line(repo, "A")
    assert len(line) < 20_000
    facts: dict[str, Any] = json.loads(line)["payload"]["facts"]
    assert len(facts["status_reason"]) <= 2000
    assert "[5000000 characters, sha256" in facts["status_reason"]


def test_collect_records_a_bounded_list_of_changed_files(repo: Path) -> None:
    """An agent that creates more files than the caps: the ledger and the output carry the
    first ones and how many there are (the bundle itself lists them all, for validation)."""
    write_config(repo, {"schema_version": 1, "limits": {"max_list_items": 16}})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "config")
    code, out, err = cli(repo, "launch", "--json", "--workers", "A")
    assert code == 0, out + err
    run_id = json.loads(out)["run_id"]
    (worktree,) = [path for branch, path in worktrees(repo).items() if run_id in branch]
    for i in range(20):
        (worktree / "src" / f"new{i}.py").write_text("x\n", encoding="utf-8")
    code, out, err = cli(repo, "bundle-collect", "--run-id", run_id, "--json")
    assert code == 0, out + err
    shown = json.loads(out)["workers"]["A"]
    assert len(shown["files"]) == 16 and shown["files_count"] == 20
    events = [json.loads(line) for line in (repo / LEDGER).read_bytes().splitlines()]
    collected = [e for e in events if e["event_type"] == "bundle.collected"][-1]["payload"]
    assert len(collected["files"]) == 16 and collected["files_count"] == 20
    listed = read_json(worker_file(repo, run_id, "FILES_CHANGED.json"))["files"]
    assert len(listed) == 20
