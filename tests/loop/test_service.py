"""A service for the scenarios: started from the tree under test, health-checked, restarted only
when the iteration touched its restart globs, and never left running (real processes, HTTP)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.loop.conftest import crank, make_crank_repo, plan_of
from tests.support.repos import PINNED, ROOT, pid_alive, run_cli

SERVICE = """\
import http.server, json, os, sys, urllib.parse
port, record = int(sys.argv[1]), sys.argv[2]
with open(record, "a") as fh:
    fh.write(f"{os.getpid()}\\n")
sys.path.insert(0, os.getcwd())
import src.calc as calc

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/health":
            return self.send(200, "ok")
        fn = getattr(calc, url.path.strip("/"), None)
        if fn is None:
            return self.send(404, "no such operation")
        query = dict(urllib.parse.parse_qsl(url.query))
        return self.send(200, json.dumps(fn(int(query["a"]), int(query["b"]))))

    def send(self, code, body):
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def http_scenario(op: str, a: int, b: int, want: int) -> str:
    return (
        f"# Scenario: {op} over HTTP\n\n## Category\n{op}\n\n"
        f"## Behavioral Expectation\nGET /{op}?a={a}&b={b} answers {want}.\n\n"
        "## Evaluation Method\n```python\nimport json, os, urllib.request\n"
        "base = os.environ['FACTORY_SERVICE_URL']\n"
        f"got = json.load(urllib.request.urlopen(base + '/{op}?a={a}&b={b}'))\n"
        f"assert got == {want}, 'the service answered something else'\n```\n\n"
        "## Pass Criteria\nThe evaluation script exits with status zero.\n"
    )


SCENARIOS = {
    "scenarios/add.md": http_scenario("add", 2, 3, 5),
    "scenarios/mul.md": http_scenario("mul", 4, 5, 20),
    "scenarios/sub.md": http_scenario("sub", 9, 4, 5),
    "svc/service.py": SERVICE,
}


def service_repo(tmp_path: Path, restart_on: list[str]) -> tuple[Path, Path]:
    record = tmp_path / "starts.log"
    service = {
        "start": ["{python}", "svc/service.py", "{port}", str(record)],
        "health": "http://127.0.0.1:{port}/health",
        "restart_on": restart_on,
    }
    return make_crank_repo(tmp_path / "repo", "converge", SCENARIOS, service=service), record


def test_a_service_restarted_when_its_code_changes_lets_the_crank_converge(
    tmp_path: Path,
) -> None:
    repo, record = service_repo(tmp_path, ["src/**"])
    code, data, out = crank(repo, "--threshold", "1.0")
    assert code == 0, out
    assert [r["satisfaction"] for r in data["trajectory"]] == ["1/3", "2/3", "3/3"]
    pids = [int(p) for p in record.read_text().split()]
    assert len(pids) == 3  # each iteration changed src/calc.py: a restart each time
    assert not any(pid_alive(p) for p in pids)  # nothing left running


def test_a_service_is_not_restarted_for_paths_outside_its_globs(tmp_path: Path) -> None:
    repo, record = service_repo(tmp_path, ["docs/**"])
    code, data, out = crank(repo, "--threshold", "1.0", "--max-iterations", "3")
    assert code == 3, out
    pids = [int(p) for p in record.read_text().split()]
    assert len(pids) == 1  # started once, kept running: it still serves iteration 1's code
    assert [r["satisfaction"] for r in data["trajectory"]] == ["1/3", "1/3", "1/3"]
    assert not pid_alive(pids[0])


def test_a_service_that_never_gets_healthy_halts_as_infrastructure(tmp_path: Path) -> None:
    service = {
        "start": ["{python}", "-c", "import sys; print('port in use'); sys.exit(4)"],
        "health": "http://127.0.0.1:{port}/health",
    }
    repo = make_crank_repo(tmp_path / "repo", "converge", SCENARIOS, service=service)
    code, data, out = crank(repo)
    assert code == 3, out
    assert (data["decision"], data["kind"]) == ("HALTED", "infrastructure")
    (row,) = data["trajectory"]
    assert row["failing"] == [] and row["satisfaction"] == "0/3"  # never a product failure
    log = repo / "tools/codex/runs" / data["crank_id"] / "LOGS/iter_1/service.log"
    assert log.read_text() == "port in use\n"
    replay = crank_replay(repo, data["crank_id"])
    assert replay.endswith("REPLAY OK"), replay


def crank_replay(repo: Path, crank_id: str) -> str:
    res = run_cli("--repo", str(repo), "ledger-replay", "--run-id", crank_id)
    return res.stdout.strip()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a process group is POSIX")
def test_ctrl_c_stops_the_service_and_the_agents(tmp_path: Path) -> None:
    record = tmp_path / "starts.log"
    service = {
        "start": ["{python}", "svc/service.py", "{port}", str(record)],
        "health": "http://127.0.0.1:{port}/health",
        "restart_on": ["src/**"],
    }
    repo = make_crank_repo(tmp_path / "repo", "slow", SCENARIOS, service=service)
    marker = tmp_path / "agent.pid"
    env = {**os.environ, "CRANK_TEST_SLOW_MARKER": str(marker)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    factory = subprocess.Popen(
        [sys.executable, "-m", "tools.codex.factory", "--repo", str(repo), "--now", PINNED,
         "crank", "--plan", str(plan_of(repo))],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), factory.communicate(timeout=5)
    time.sleep(0.3)
    factory.send_signal(signal.SIGINT)
    factory.communicate(timeout=60)
    pids = [int(p) for p in record.read_text().split()] + [int(marker.read_text())]
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in pids)  # the service and the agent are gone


def test_a_slow_starting_service_is_retried_until_healthy(tmp_path: Path) -> None:
    """The first health check comes before the service listens; the next one, after the
    backoff, finds it: the scenarios run against it."""
    record = tmp_path / "starts.log"
    slow = SERVICE.replace(
        "import src.calc as calc\n", "import src.calc as calc\nimport time\ntime.sleep(1.5)\n"
    )
    scenarios = {**SCENARIOS, "svc/service.py": slow}
    service = {
        "start": ["{python}", "svc/service.py", "{port}", str(record)],
        "health": "http://127.0.0.1:{port}/health",
        "restart_on": ["src/**"],
    }
    repo = make_crank_repo(tmp_path / "repo", "converge", scenarios, service=service)
    _code, data, out = crank(repo, "--threshold", "1.0", "--max-iterations", "1")
    assert data["trajectory"][0]["satisfaction"] == "1/3", out  # add served: it was retried
    assert len(record.read_text().split()) == 1
