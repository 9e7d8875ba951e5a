"""A failed check's failing tests and output tail: in STATUS.json, check.finished, the report,
the terminal and --json; from JUnit XML when configured (never a planted or linked one); and
recomputed by replay from the logs whose hashes were recorded."""

from __future__ import annotations

import json
import os
import subprocess
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
)
from tests.support.ledgers import ledger_lines, rewrite_ledger
from tests.support.repos import PINNED, make_repo, run_cli
from tools.codex.factory.audit.replay import replay
from tools.codex.factory.infra import jsonio, schemas
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.run.context import Context

FILES = {"README.md": "hello\n", "src/app.py": "x = 1\n"}
PYTEST_LIKE = (
    "import sys\n"
    "print('tests/test_x.py::test_ok PASSED')\n"
    "print('tests/test_x.py::test_y FAILED')\n"
    "print('FAILED tests/test_x.py::test_y - assert 1 == 2')\n"
    "print('\\x1b[2Jwiped', file=sys.stderr)\n"
    "sys.exit(1)\n"
)
JUNIT_WRITER = (
    "import os, sys\n"
    "os.makedirs('reports', exist_ok=True)\n"
    "open('reports/junit.xml', 'w').write('<testsuite><testcase classname=\"t.m\" name=\"a\">"
    '<failure/></testcase><testcase classname="t.m" name="b"/></testsuite>\')\n'
    "print('FAILED tests/ignored.py::x - the XML wins')\n"
    "sys.exit(1)\n"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def checks(*specs: dict[str, Any]) -> dict[str, Any]:
    return {"checks": {"required": list(specs)}}


def run_once(repo: Path, patch: bytes = b"") -> tuple[str, subprocess.CompletedProcess[str]]:
    """A run of the default four workers, A with ``patch``, validated and integrated (--json)."""
    run_id = launch_dry(repo)
    if patch:
        set_bundle(repo, run_id, "A", patch)
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id, "--json")
    return run_id, res


def finished(repo: Path, run_id: str) -> dict[str, Any]:
    (event,) = [
        e
        for e in ledger_lines(repo)
        if e["event_type"] == "check.finished" and e["run_id"] == run_id
    ]
    return dict(event["payload"])


def replay_whats(repo: Path, run_id: str) -> list[str]:
    ctx = Context(repo_opt=repo, clock=Clock(None))
    try:
        outcome = replay(ctx, run_id)
    finally:
        ctx.close()
    data = json.loads(jsonio.canonical(outcome.data))
    return [f"{d['what']}: {d['found']}" for d in data["divergences"]]


def test_failed_check_names_its_tests_everywhere(repo: Path) -> None:
    write_config(repo, checks({"name": "tests", "argv": ["{python}", "-c", PYTEST_LIKE]}))
    run_id, res = run_once(repo)
    assert res.returncode == 3, res.stderr
    said = {
        "failing_tests": ["tests/test_x.py::test_y"],
        "output_tail": {
            "stdout": [
                "tests/test_x.py::test_ok PASSED",
                "tests/test_x.py::test_y FAILED",
                "FAILED tests/test_x.py::test_y - assert 1 == 2",
            ],
            "stderr": ["\\x1b[2Jwiped"],
        },
    }
    payload = finished(repo, run_id)
    assert {k: payload[k] for k in said} == said
    z = run_dir(repo, run_id) / "Z_integrator"
    status = read_json(z / "STATUS.json")
    assert schemas.errors("integrator_status", status) == []
    assert {k: status["checks"][0][k] for k in said} == said
    (check,) = json.loads(res.stdout)["checks"]
    assert {k: check[k] for k in said} == said
    report = (z / "FINAL_REPORT.txt").read_text(encoding="utf-8")
    block = report.split("checks: 1\n", 1)[1].split("\n\n", 1)[0]
    assert "      tests/test_x.py::test_y\n" in block
    assert "      | FAILED tests/test_x.py::test_y - assert 1 == 2\n" in block
    assert "      | \\x1b[2Jwiped" in block and "\x1b" not in report
    text = run_cli("--repo", str(repo), "print-report", "--run-id", run_id)
    assert "\x1b" not in text.stdout
    assert replay_whats(repo, run_id) == []


def test_passing_check_records_no_summary(repo: Path) -> None:
    write_config(repo, checks({"name": "ok", "argv": ["{python}", "-c", "print('fine')"]}))
    run_id, res = run_once(repo)
    assert res.returncode == 0, res.stdout + res.stderr
    payload = finished(repo, run_id)
    assert "failing_tests" not in payload and "output_tail" not in payload
    status = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
    assert "failing_tests" not in status["checks"][0]


def test_junit_xml_names_the_tests(repo: Path) -> None:
    write_config(
        repo,
        checks(
            {
                "name": "tests",
                "argv": ["{python}", "-c", JUNIT_WRITER],
                "junit_xml": "reports/junit.xml",
            }
        ),
    )
    run_id, res = run_once(repo)
    assert res.returncode == 3
    payload = finished(repo, run_id)
    assert payload["failing_tests"] == ["t.m.a"]
    assert "Z_integrator/LOGS/check-tests.junit.xml" in payload["logs"]
    assert replay_whats(repo, run_id) == []


def test_junit_planted_by_a_patch_is_not_read(repo: Path) -> None:
    """A worker cannot name the failing tests by committing the results file itself."""
    write_config(
        repo,
        checks(
            {
                "name": "tests",
                "argv": ["{python}", "-c", "import sys; print('FAILED t.py::real'); sys.exit(1)"],
                "junit_xml": "src/reports/junit.xml",
            }
        ),
    )
    planted = '<testsuite><testcase name="blame_someone"><failure/></testcase></testsuite>'
    run_id, res = run_once(repo, make_patch(repo, {"src/reports/junit.xml": planted}))
    assert res.returncode == 3
    payload = finished(repo, run_id)
    assert payload["failing_tests"] == ["t.py::real"]
    assert any(
        "was in the tree before the check ran" in x for x in payload["output_tail"]["stderr"]
    )


def test_junit_through_a_link_is_not_followed(repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_text('<testsuite><testcase name="secret"><failure/></testcase></testsuite>')
    script = (
        "import os, sys\n"
        f"os.symlink({str(tmp_path)!r}, 'reports')\n"
        "print('FAILED t.py::real')\n"
        "sys.exit(1)\n"
    )
    write_config(
        repo,
        checks(
            {"name": "tests", "argv": ["{python}", "-c", script], "junit_xml": "reports/secret.xml"}
        ),
    )
    run_id, res = run_once(repo)
    assert res.returncode == 3
    payload = finished(repo, run_id)
    assert payload["failing_tests"] == ["t.py::real"]
    assert any("a link; never followed" in x for x in payload["output_tail"]["stderr"]), payload
    assert os.path.exists(secret)


def test_junit_in_an_encoding_python_cannot_read_falls_back_to_the_text(repo: Path) -> None:
    """The check (a worker's code) writes the XML: a declared encoding with no codec is one
    refused document, never an integrate that crashes."""
    script = (
        "import os, sys\n"
        "os.makedirs('reports', exist_ok=True)\n"
        "open('reports/junit.xml', 'w').write('<?xml version=\"1.0\" encoding=\"bogus\"?>"
        '<testsuite><testcase name="planted"><failure/></testcase></testsuite>\')\n'
        "print('FAILED t.py::real')\n"
        "sys.exit(1)\n"
    )
    write_config(
        repo,
        checks(
            {"name": "tests", "argv": ["{python}", "-c", script], "junit_xml": "reports/junit.xml"}
        ),
    )
    run_id, res = run_once(repo)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert finished(repo, run_id)["failing_tests"] == ["t.py::real"]
    assert replay_whats(repo, run_id) == []


def test_junit_xml_path_is_checked_in_config(repo: Path) -> None:
    write_config(repo, checks({"name": "t", "argv": ["true"], "junit_xml": "../out.xml"}))
    res = run_cli("--repo", str(repo), "launch", "--base-ref", "HEAD", "--dry-run")
    assert res.returncode == 2
    assert "checks.required[0].junit_xml: [path-traversal]" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("key", ["failing_tests", "output_tail"])
def test_replay_recomputes_what_a_failed_check_said(repo: Path, key: str) -> None:
    write_config(repo, checks({"name": "tests", "argv": ["{python}", "-c", PYTEST_LIKE]}))
    run_id, res = run_once(repo)
    assert res.returncode == 3
    events = ledger_lines(repo)
    for e in events:
        if e["event_type"] == "check.finished" and e["run_id"] == run_id:
            if key == "failing_tests":
                e["payload"][key] = ["tests/test_other.py::test_blamed"]
            else:
                e["payload"][key]["stdout"] = ["all good"]
    rewrite_ledger(repo, events)
    found = replay_whats(repo, run_id)
    want = f"check.finished {key} of tests (recomputed from its logs by testfailures.summarize)"
    assert any(x.startswith(want) for x in found), found
