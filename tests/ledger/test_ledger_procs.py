"""The ledger under real OS processes: concurrent appenders and SIGKILL mid-append."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.support.repos import ROOT, make_repo, run_cli
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.ledger.store import Ledger, line_hash_ok

LEDGER_REL = "tools/codex/runs/factory_ledger.jsonl"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


APPENDER = r"""
import sys, time
from pathlib import Path
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.ledger.store import Ledger

path, wid, n, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
led = Ledger(path, Clock(), fsync=True)
print("ready", flush=True)
while not go.exists():  # start together, so the appends really contend
    time.sleep(0.001)
for i in range(n):
    led.append("test.append", "w" + wid, "concurrency", {"worker": wid, "i": i})
led.close()
"""


def test_eight_processes_append_without_loss_or_interleaving(tmp_path: Path) -> None:
    path = tmp_path / "factory_ledger.jsonl"
    go = tmp_path / "go"
    workers, per = 8, 500
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(path), str(w), str(per), str(go)],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(workers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline() == b"ready\n"
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == workers * per
    seen: dict[str, list[int]] = {str(w): [] for w in range(workers)}
    for n, line in enumerate(lines, 1):
        obj = orjson.loads(line)  # a whole object per line: nothing interleaved
        assert line_hash_ok(line)
        assert obj["seq"] == n
        seen[obj["payload"]["worker"]].append(obj["payload"]["i"])
    # Every process's events are all there, in the order that process wrote them.
    assert seen == {str(w): list(range(per)) for w in range(workers)}
    res = Ledger(path, Clock()).verify()
    assert res.ok, res.reason
    assert res.lines == workers * per and res.head_file == "ok"


CRASHER = r"""
import os, sys, time
from pathlib import Path
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.ledger.store import Ledger, encode

path, torn_at, cut_seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
led = Ledger(path, Clock(), fsync=True)
i = 0
while True:
    if i == torn_at:
        # Simulate a crash in the middle of the line's write: part of the next line's bytes.
        head = led.read_head()
        line, _ = encode({
            "event_type": "crash.append", "payload": {"i": i, "pad": "x" * (i % 50)},
            "prev_hash": head.hash, "run_id": "crash", "seq": head.seq + 1,
            "stage": "loop", "ts_utc": Clock().now_ts(),
        })
        part = line[: 1 + cut_seed % (len(line) - 1)]
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.write(fd, part)
        os.fsync(fd)
        os.write(1, b"TORN " + part.hex().encode() + b"\n")
        time.sleep(120)
    ev = led.append("crash.append", "crash", "loop", {"i": i, "pad": "x" * (i % 50)})
    os.write(1, f"{ev.seq} {ev.hash}\n".encode())  # one write: a report is never half-sent
    i += 1
"""


@pytest.mark.skipif(
    sys.platform == "win32",
    reason="SIGKILL does not exist on Windows (TerminateProcess is not a signal)",
)
def test_sigkill_mid_append_loses_nothing_that_was_reported(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    path = repo / LEDGER_REL
    rng = random.Random(20261121)
    reported: dict[int, str] = {}
    real_trials, torn_trials = 30, 10
    plan = ["kill"] * real_trials + ["torn"] * torn_trials
    rng.shuffle(plan)
    torn_seen = 0
    deadline = time.monotonic() + 60
    for trial, kind in enumerate(plan):
        assert time.monotonic() < deadline, f"crash trials too slow (trial {trial})"
        torn_at = rng.randint(0, 25) if kind == "torn" else -1
        child = subprocess.Popen(
            [sys.executable, "-c", CRASHER, str(path), str(torn_at), str(rng.randint(0, 10**6))],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None
        torn_hex = None
        try:
            first = child.stdout.readline()  # the loop is running
            assert first, child.stderr.read().decode() if child.stderr else ""
            if kind == "kill":
                time.sleep(rng.uniform(0.0, 0.06))  # then a random moment
            else:
                while not first.split(b"\n")[-2].startswith(b"TORN"):  # until the fragment is out
                    more = child.stdout.readline()
                    assert more, "the child stopped before writing its fragment"
                    first += more
            os.kill(child.pid, signal.SIGKILL)
            rest, _ = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL
        for report in (first + rest).decode().splitlines():
            assert report.count(" ") == 1, (first + rest)[-300:]
            word, value = report.split(" ")
            if word == "TORN":
                torn_hex = value
            else:
                reported[int(word)] = value
        if kind == "torn":
            assert torn_hex is not None, "the child was killed before writing its fragment"

        with Ledger(path, Clock()) as led:
            res = led.verify()
            if res.ok:
                assert torn_hex is None
            else:
                # Only a torn tail is acceptable after a crash, right after the last good line.
                assert res.torn_tail, res.reason
                assert res.first_bad_seq == res.lines + 1
                assert res.head_file in ("ok", "behind"), res.reason
                torn_seen += 1
                sides_before = set(path.parent.glob(path.name + ".torn-*"))
                if torn_seen % 3 == 0:  # some repairs through the real CLI
                    cli = run_cli("--repo", str(repo), "ledger", "repair", "--json")
                    assert cli.returncode == 0, cli.stderr
                    out = orjson.loads(cli.stdout)
                else:
                    out = led.repair()
                assert out["repaired"] is True
                [side] = set(path.parent.glob(path.name + ".torn-*")) - sides_before
                assert side.name == out["side_file"]
                if torn_hex is not None:
                    assert side.read_bytes() == bytes.fromhex(torn_hex)
                assert out["torn_bytes"] == res.torn_bytes
                after = led.verify()
                assert after.ok, after.reason
        # Every event a child reported as written is present, byte for byte the same hash.
        stored = {}
        for line in path.read_bytes().splitlines():
            obj = orjson.loads(line)
            stored[obj["seq"]] = obj["hash"]
        missing = {s: h for s, h in reported.items() if stored.get(s) != h}
        assert missing == {}, f"trial {trial}: reported events missing or changed: {missing}"
    assert torn_seen >= torn_trials
    assert len(reported) > real_trials  # the loops did append between kills
    cli = run_cli("--repo", str(repo), "ledger", "verify")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "VERIFY OK" in cli.stdout
