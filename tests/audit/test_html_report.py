"""REPORT.html: a real run (two workers sharing a file, a failing check printing a script tag)
rendered to one self-contained page, deterministic, escaped, recorded in the ledger and checked
by ledger-replay, and loaded in a real headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.support.factory import (
    launch_dry,
    make_patch,
    run_dir,
    set_bundle,
    write_config,
    write_plan,
)
from tests.support.repos import PINNED, make_repo, run_cli

HOSTILE = "<script>alert(1)</script>"
FILES = {
    "README.md": "hello\n",
    "src/app.py": "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\nf = 6\ng = 7\nh = 8\n",
}


def hostile_run(tmp_path: Path) -> tuple[Path, str]:
    """A PASS run of workers A and B that both change src/app.py (shared), whose advisory check
    prints a script tag and fails (its output tail recorded in the ledger)."""
    repo = make_repo(tmp_path / "repo", FILES)
    shout = f"print({HOSTILE!r}); raise SystemExit(1)"
    write_config(
        repo,
        {
            "checks": {"advisory": [{"name": "shout", "argv": ["{python}", "-c", shout]}]},
            "feature_flags": {"record_check_output_in_ledger": True},
        },
    )
    plan = write_plan(
        tmp_path / "plan.json",
        [
            {"id": "A", "task": "top", "allow": ["src/**"], "shared": ["src/app.py"]},
            {"id": "B", "task": "bottom", "allow": ["src/**"], "shared": ["src/app.py"]},
        ],
    )
    run_id = launch_dry(repo, "--plan", str(plan))
    lines = FILES["src/app.py"].splitlines(keepends=True)
    set_bundle(
        repo, run_id, "A", make_patch(repo, {"src/app.py": "".join(["A = 0\n", *lines[1:]])})
    )
    set_bundle(
        repo, run_id, "B", make_patch(repo, {"src/app.py": "".join([*lines[:-1], "H = 80\n"])})
    )
    for verb in ("bundle-validate", "integrate"):
        res = run_cli("--repo", str(repo), "--now", PINNED, verb, "--run-id", run_id)
        assert res.returncode == 0, res.stdout + res.stderr
    return repo, run_id


def write_html(repo: Path, *args: str) -> dict[str, object]:
    res = run_cli("--repo", str(repo), "--now", PINNED, "report", *args, "--html", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert isinstance(data, dict)
    return data


class _Collect(HTMLParser):
    """Every element and the text of the page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return hostile_run(tmp_path_factory.mktemp("html"))


def test_page_is_deterministic_escaped_and_recorded(hostile: tuple[Path, str]) -> None:
    repo, run_id = hostile
    first = write_html(repo, "--run-id", run_id)
    page = run_dir(repo, run_id) / "REPORT.html"
    once = page.read_bytes()
    assert first["sha256"] == hashlib.sha256(once).hexdigest()
    # Written again (a report.html.written now in the ledger): the same bytes.
    write_html(repo, "--run-id", run_id)
    assert page.read_bytes() == once
    text = once.decode("utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    parsed = _Collect()
    parsed.feed(text)
    assert "script" not in parsed.tags  # the check's output is text, never an element
    assert HOSTILE in "".join(parsed.text)
    assert not [a for a, _ in parsed.attrs if a.startswith("on")]
    assert {"svg", "rect", "table"} <= set(parsed.tags)
    assert not [v for a, v in parsed.attrs if a in ("src", "href") and v]  # loads nothing
    assert 'class="overlap-matrix"' in text and "src/app.py" in text
    assert "check: shout" in text and "stage: integrate" in text
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id, "--json")
    assert replay.returncode == 0, replay.stdout
    events = run_cli(
        "--repo", str(repo), "ledger", "--run-id", run_id, "--event-type", "check.*", "--json"
    )
    kinds = [e["event_type"] for e in json.loads(events.stdout)]
    assert kinds.count("check.started") == kinds.count("check.finished") == 2


def test_replay_refuses_a_changed_or_unrecorded_page(tmp_path: Path) -> None:
    repo, run_id = hostile_run(tmp_path)
    page = run_dir(repo, run_id) / "REPORT.html"
    page.write_text("<p>not written by the factory</p>", encoding="utf-8")
    res = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id)
    assert res.returncode == 3 and "REPORT.html (no report.html.written event" in res.stdout
    write_html(repo, "--run-id", run_id)
    assert run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id).returncode == 0
    page.write_bytes(page.read_bytes().replace(b"PASS", b"FAIL"))
    res = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id)
    assert res.returncode == 3 and "REPORT.html (recorded by report.html.written)" in res.stdout


def test_open_report_html_prints_the_path_headless(hostile: tuple[Path, str]) -> None:
    repo, run_id = hostile
    write_html(repo, "--run-id", run_id)
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    res = run_cli("--repo", str(repo), "open-report", "--run-id", run_id, "--html", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("REPORT.html")


def test_report_needs_one_id(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    res = run_cli("--repo", str(repo), "report", "--html")
    assert res.returncode == 2 and "exactly one of --run-id" in res.stderr
    res = run_cli("--repo", str(repo), "open-report", "--run-id", "nosuch", "--html")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found is None and os.environ.get("FACTORY_REQUIRE_BROWSER"):
        pytest.fail("FACTORY_REQUIRE_BROWSER is set but chromium is not on PATH")
    return found


def _browse(chromium: str, tmp: Path, page: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *mode,
        "--window-size=1280,2000",
        page.as_uri(),
    ]
    env = {**os.environ, "HOME": str(tmp)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=tmp)


def test_page_in_headless_chromium(hostile: tuple[Path, str], tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not installed (set FACTORY_REQUIRE_BROWSER=1 to fail instead)")
    repo, run_id = hostile
    write_html(repo, "--run-id", run_id)
    page = run_dir(repo, run_id) / "REPORT.html"
    shot = tmp_path / "shot.png"
    res = _browse(chromium, tmp_path, page, f"--screenshot={shot}")
    assert shot.is_file(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    dom = _browse(chromium, tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for out in (res.stderr, dom.stderr):
        bad = [ln for ln in out.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
        assert not bad, bad
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout
    assert "<script>alert(1)" not in dom.stdout
    assert '<svg class="timeline"' in dom.stdout
    assert '<table class="overlap-matrix">' in dom.stdout


def test_watch_shows_each_check_as_it_starts(hostile: tuple[Path, str]) -> None:
    repo, run_id = hostile
    res = run_cli("--repo", str(repo), "watch", "--run-id", run_id, "--timeout", "5")
    started = [ln for ln in res.stdout.splitlines() if "check.started" in ln]
    assert res.returncode == 0 and len(started) == 2, res.stdout
    assert "name=shout advisory running" in started[1]


@pytest.mark.skipif(os.name == "nt", reason="kills a process group")
def test_the_page_of_an_interrupted_run_is_the_same_whenever_it_is_written(tmp_path: Path) -> None:
    """A run killed while its agent ran leaves a bar open (worker.started, no end): the bar
    ends at the run's last event, never at an earlier page write, so writing the page again
    later gives the same bytes."""
    from tests.support.repos import ROOT
    from tests.support.workers import agent_env, events, work_repo

    repo = work_repo(tmp_path)
    env = {
        **os.environ,
        **agent_env(tmp_path / "spec.json", {"A": {"sleep": 60}}),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    argv = ["--repo", str(repo), "--now", PINNED, "oneshot", "--workers", "A"]
    child = subprocess.Popen(
        [sys.executable, "-m", "tools.codex.factory", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(e["event_type"] == "worker.started" for e in _events_or_none(repo)):
            assert time.monotonic() < deadline, "the agent never started"
            time.sleep(0.1)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    run_id = next(e["run_id"] for e in events(repo) if e["event_type"] == "worker.started")
    pages = []
    for now in ("2026-11-21T20:30:00Z", "2026-11-21T21:45:00Z"):
        res = run_cli("--repo", str(repo), "--now", now, "report", "--run-id", run_id, "--html")
        assert res.returncode == 0, res.stderr
        pages.append((run_dir(repo, run_id) / "REPORT.html").read_bytes())
    assert b"worker: A" in pages[0]
    assert pages[0] == pages[1]


def _events_or_none(repo: Path) -> list[dict[str, object]]:
    from tests.support.workers import events

    try:
        return events(repo)
    except (FileNotFoundError, json.JSONDecodeError):
        return []
