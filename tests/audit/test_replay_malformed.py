"""ledger-replay on malformed artifacts and events: a one-line divergence naming the file, exit 3.

Every file replay reads for its content (or hashes) is replaced, in turn, by invalid JSON, a
JSON value of the wrong shape, an empty file, binary junk, a directory, or nothing at all; every
ledger event of the run gets arbitrary JSON in one payload member (hypothesis). Replay must
report a divergence (exit 3), each one a single line, one of them naming the file, and never
raise (the CLI's ``internal error``, exit 1).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.audit.test_replay import CONFIG_REL, _split_run, ok
from tests.support.ledgers import HEAD, LEDGER, ledger_lines, rewrite_ledger
from tests.support.scratch import (
    BASE_FILES,
    RUNS_REL,
    factory,
    make_repo,
    remove_tree,
    scratch_env,
)
from tools.codex.factory.audit.replay import replay
from tools.codex.factory.cli import render
from tools.codex.factory.infra import jsonio
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.run.context import Context

RUN = "run-malformed"
FAILING_CHECK = {  # a required check that fails and says so on stderr (so its log is not empty)
    "schema_version": 1,
    "checks": {
        "required": [
            {
                "name": "always-fails",
                "timeout_s": 60,
                "argv": [
                    "{python}",
                    "-c",
                    "import sys; sys.stderr.write('boom\\n'); raise SystemExit(1)",
                ],
            }
        ]
    },
}

# Files replay reads for their content (JSON docs, the report, the attestation sums), the
# bundle files it re-reads for their facts, and files it only hashes.
READ = [
    "RUN_MANIFEST.json",
    "VALIDATION.json",
    "Z_integrator/STATUS.json",
    "Z_integrator/FINAL_REPORT.txt",
    "A_worker/STATUS.json",
    "A_worker/SCOPE_LOCK.json",
    "A_worker/FILES_CHANGED.json",
    "A_worker/DIFF.patch",
    "A_worker/LOGS/INDEX.json",
    "attestations/bundles.sha256",
    "attestations/report.sha256",
    "attestations/ledger_excerpt.jsonl",
    "Z_integrator/LOGS/check-always-fails.stderr.log",
]
VARIANTS = ["invalid-json", "a-list", "wrong-types", "empty", "binary", "directory", "missing"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A run with every artifact kind: two bundles, a report, a failing required check (BLOCKED)."""
    root = tmp_path_factory.mktemp("replay-malformed")
    env = scratch_env(root / "home")
    repo = make_repo(root / "repo", env)
    (repo / CONFIG_REL).parent.mkdir(parents=True, exist_ok=True)
    (repo / CONFIG_REL).write_bytes(jsonio.pretty(FAILING_CHECK))
    _split_run(
        repo,
        env,
        RUN,
        {
            "A": {"src/app.py": BASE_FILES["src/app.py"] + "# A\n"},
            "B": {"tests/test_app.py": BASE_FILES["tests/test_app.py"] + "# B\n"},
        },
        "--workers",
        "A,B",
        expect_integrate=3,
    )
    return repo, env


@pytest.fixture(scope="module")
def pristine(built: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folders and ledger as the run left them (tests damage the built repository's)."""
    dest = tmp_path_factory.mktemp("pristine") / "runs"
    shutil.copytree(built[0] / RUNS_REL, dest, symlinks=True)
    return dest


@pytest.fixture
def repo(built: tuple[Path, dict[str, str]], pristine: Path) -> Iterator[Path]:
    """The built repository; its runs folder is put back afterwards (copying .git per test
    would cost more than the replay under test)."""
    yield built[0]
    runs = built[0] / RUNS_REL
    remove_tree(runs)
    shutil.copytree(pristine, runs, symlinks=True)


def run_replay(repo: Path) -> tuple[int, dict[str, Any]]:
    """The replay in-process: any exception it raised would fail the test (the CLI's exit 1)."""
    ctx = Context(repo_opt=repo, clock=Clock(None))
    try:
        outcome = replay(ctx, RUN)
    finally:
        ctx.close()
    assert isinstance(outcome.data, dict)
    text = render.text(outcome)
    assert text.count("\n") + 1 == len(text.splitlines())
    return outcome.exit_code, json.loads(jsonio.canonical(outcome.data))


def wrong_types(original: bytes) -> bytes:
    """The same members, every value replaced by ["x"] (the reviewer's ``"checks":["x"]``)."""
    try:
        doc = json.loads(original)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        return jsonio.pretty({k: ["x"] for k in doc})
    return b'{"checks":["x"],"workers":[1,2]}\n'


def damage(path: Path, variant: str) -> None:
    original = path.read_bytes() if path.is_file() else b""
    if variant in ("directory", "missing"):
        path.unlink()
        if variant == "directory":
            path.mkdir()
            (path / "inside.txt").write_bytes(b"a folder where a file was\n")
        return
    path.write_bytes(
        {
            "invalid-json": b'{"schema_version": 1, "status": ',
            "a-list": b"[1,2]\n",
            "wrong-types": wrong_types(original),
            "empty": b"",
            "binary": b"\xff\xfe\x00\x01 not text \xc3\x28\n",
        }[variant]
    )


def assert_diverges_naming(code: int, data: dict[str, Any], *names: str) -> None:
    assert code == 3, data["divergences"]
    assert data["ok"] is False and data["divergences"]
    for d in data["divergences"]:
        for key in ("what", "expected", "found"):
            assert "\n" not in d[key] and "\r" not in d[key], d
    assert any(n in d["what"] or n in d["found"] for d in data["divergences"] for n in names), data[
        "divergences"
    ]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rel", READ)
def test_a_malformed_artifact_is_a_divergence_naming_it(repo: Path, rel: str, variant: str) -> None:
    damage(repo / RUNS_REL / RUN / rel, variant)
    code, data = run_replay(repo)
    assert_diverges_naming(code, data, rel)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rel", [LEDGER, HEAD])
def test_a_malformed_ledger_or_head_file_is_a_divergence(
    repo: Path, rel: str, variant: str
) -> None:
    damage(repo / rel, variant)
    code, data = run_replay(repo)
    # A missing head file too: without it a cut-off end would go unseen.
    assert_diverges_naming(code, data, Path(rel).name, "ledger chain", "run events")


@pytest.mark.parametrize("variant", ["a-file", "missing", "empty"])
@pytest.mark.parametrize(
    "rel", ["A_worker", "A_worker/LOGS", "Z_integrator", "Z_integrator/LOGS", "attestations"]
)
def test_a_replaced_or_removed_folder_is_a_divergence_naming_it(
    repo: Path, rel: str, variant: str
) -> None:
    path = repo / RUNS_REL / RUN / rel
    shutil.rmtree(path)
    if variant == "a-file":
        path.write_bytes(b"a file where a folder was\n")
    elif variant == "empty":
        path.mkdir()
    code, data = run_replay(repo)
    assert_diverges_naming(code, data, rel)


@pytest.mark.parametrize(
    ("rel", "content"),
    [
        ("Z_integrator/STATUS.json", None),  # the reviewer's: "checks": ["x"]
        ("VALIDATION.json", b"[1,2]\n"),
        (LEDGER, "directory"),
    ],
)
def test_the_cli_reports_them_without_an_internal_error(
    repo: Path, rel: str, content: bytes | str | None
) -> None:
    path = repo / rel if rel == LEDGER else repo / RUNS_REL / RUN / rel
    if content is None:
        doc = json.loads(path.read_bytes())
        doc["checks"] = ["x"]
        path.write_bytes(jsonio.pretty(doc))
    elif content == "directory":
        damage(path, "directory")
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    env = scratch_env(repo.parent / "home")
    res = ok(factory(repo, env, "ledger-replay", "--run-id", RUN), 3)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    assert res.stdout.rstrip().splitlines()[-1].startswith("REPLAY DIVERGED")
    assert any(ln.startswith("DIVERGENCE ") and rel in ln for ln in res.stdout.splitlines()), (
        res.stdout
    )
    data = json.loads(ok(factory(repo, env, "ledger-replay", "--run-id", RUN, "--json"), 3).stdout)
    assert data["ok"] is False


# -- arbitrary JSON in a member (hypothesis) ------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
JSON_DOCS = [
    "RUN_MANIFEST.json",
    "VALIDATION.json",
    "Z_integrator/STATUS.json",
    "A_worker/STATUS.json",
    "A_worker/SCOPE_LOCK.json",
    "A_worker/LOGS/INDEX.json",
]
FUZZ = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
    max_examples=int(__import__("os").environ.get("FUZZ_N", "60")),
)


@FUZZ
@given(data=st.data())
def test_any_member_of_any_json_artifact_may_be_anything(repo: Path, data: st.DataObject) -> None:
    rel = data.draw(st.sampled_from(JSON_DOCS), label="file")
    path = repo / RUNS_REL / RUN / rel
    original = path.read_bytes()
    doc = json.loads(original)
    key = data.draw(st.sampled_from(sorted(doc)), label="member")
    value = data.draw(JSON_VALUES, label="value")
    changed = jsonio.pretty({**doc, key: value})
    if changed == original:
        return
    try:
        path.write_bytes(changed)
        code, out = run_replay(repo)
        assert_diverges_naming(code, out, rel)
    finally:
        path.write_bytes(original)


@FUZZ
@given(data=st.data())
def test_any_payload_member_of_any_event_may_be_anything(repo: Path, data: st.DataObject) -> None:
    """A forger's edit (re-chained, head file rewritten) in an event the report's head anchors."""
    ledger, head = (repo / LEDGER).read_bytes(), (repo / HEAD).read_bytes()
    events = ledger_lines(repo)
    anchored = json.loads((repo / RUNS_REL / RUN / "Z_integrator" / "STATUS.json").read_bytes())[
        "ledger_head"
    ]["seq"]
    i = data.draw(
        st.sampled_from(
            [n for n, e in enumerate(events) if e["run_id"] == RUN and e["seq"] <= anchored]
        ),
        label="event",
    )
    key = data.draw(st.sampled_from(sorted(events[i]["payload"])), label="member")
    value = data.draw(JSON_VALUES, label="value")
    if jsonio.canonical(value) == jsonio.canonical(events[i]["payload"][key]):
        return
    events[i]["payload"][key] = value
    try:
        rewrite_ledger(repo, events)
        code, out = run_replay(repo)
        assert code == 3 and out["divergences"], out["divergences"]
        for d in out["divergences"]:
            assert all("\n" not in d[k] for k in ("what", "expected", "found")), d
    finally:
        (repo / LEDGER).write_bytes(ledger)
        (repo / HEAD).write_bytes(head)


@FUZZ
@given(data=st.data())
def test_events_beyond_the_anchor_may_hold_anything_without_a_crash(
    repo: Path, data: st.DataObject
) -> None:
    """report.written and run.finished (not covered by the head they print): never a crash."""
    ledger, head = (repo / LEDGER).read_bytes(), (repo / HEAD).read_bytes()
    events = ledger_lines(repo)
    anchored = json.loads((repo / RUNS_REL / RUN / "Z_integrator" / "STATUS.json").read_bytes())[
        "ledger_head"
    ]["seq"]
    i = data.draw(
        st.sampled_from([n for n, e in enumerate(events) if e["seq"] > anchored]), label="event"
    )
    key = data.draw(st.sampled_from(sorted(events[i]["payload"])), label="member")
    events[i]["payload"][key] = data.draw(JSON_VALUES, label="value")
    try:
        rewrite_ledger(repo, events)
        code, _out = run_replay(repo)
        assert code in (0, 3)
    finally:
        (repo / LEDGER).write_bytes(ledger)
        (repo / HEAD).write_bytes(head)


def test_a_malformed_event_is_named_by_the_schema_and_not_folded(repo: Path) -> None:
    events = ledger_lines(repo)
    finished = next(e for e in events if e["event_type"] == "check.finished")
    finished["payload"]["required"] = "yes"
    rewrite_ledger(repo, events)
    code, out = run_replay(repo)
    assert code == 3
    bad = [d for d in out["divergences"] if d["what"].startswith("ledger event check.finished")]
    assert bad and bad[0]["seq"] == finished["seq"] and "required" in bad[0]["found"], out[
        "divergences"
    ]
