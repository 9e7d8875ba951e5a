"""A crank's REPORT.html: its satisfaction trajectory, scenario outcomes and a timeline of its
iterations' workers, checks and scenarios; recorded and checked by ledger-replay."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from tests.loop.conftest import crank
from tests.support.repos import PINNED, run_cli


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def test_crank_page_shows_trajectory_and_scenarios(converging: Path) -> None:
    code, data, out = crank(converging, "--threshold", "1.0")
    assert code == 0, out
    crank_id = data["crank_id"]
    args = ("--repo", str(converging), "--now", PINNED, "report", "--crank-id", crank_id)
    res = run_cli(*args, "--html", "--json")
    assert res.returncode == 0, res.stderr
    written = json.loads(res.stdout)
    assert written["status"] == "CONVERGED"
    page = converging / written["path"]
    text = page.read_text(encoding="utf-8")
    parsed = _Tags()
    parsed.feed(text)
    assert "script" not in parsed.tags and "polyline" in parsed.tags
    assert 'class="trajectory"' in text and "iteration 3: 100.0%" in text
    for lane in ("it1 worker: A", "it3 stage: integrate", "scenarios: iteration 2"):
        assert lane in text, lane
    events = run_cli(
        "--repo", str(converging), "ledger", "--run-id", crank_id, "--event-type", "scenarios.*",
        "--json",
    )  # fmt: skip
    kinds = [e["event_type"] for e in json.loads(events.stdout)]
    assert kinds.count("scenarios.started") == kinds.count("scenarios.finished") == 3
    again = run_cli(*args, "--html", "--json")
    assert again.returncode == 0 and page.read_text(encoding="utf-8") == text
    replay = run_cli("--repo", str(converging), "ledger-replay", "--run-id", crank_id)
    assert replay.returncode == 0, replay.stdout
    page.write_text(text.replace("CONVERGED", "STALLED"), encoding="utf-8")
    replay = run_cli("--repo", str(converging), "ledger-replay", "--run-id", crank_id)
    assert (
        replay.returncode == 3 and "REPORT.html (recorded by report.html.written)" in replay.stdout
    )
    no_html = run_cli("--repo", str(converging), "report", "--crank-id", crank_id)
    assert no_html.returncode == 2 and "--crank-id needs --html" in no_html.stderr


def test_report_html_takes_latest_for_the_newest_crank(converging: Path) -> None:
    code, data, out = crank(converging, "--threshold", "1.0")
    assert code == 0, out
    args = ("--repo", str(converging), "--now", PINNED, "report", "--crank-id", "latest")
    res = run_cli(*args, "--html", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["run_id"] == data["crank_id"]
    assert f"factory: latest is {data['crank_id']}" in res.stderr
