"""bundle-validate + integrate (no checks) vs the raw floor of `git apply --check` + `git apply`.

Scenario 1: 4 workers x 250 changed files; ratio ours/raw, target <= 2x.
Scenario 2: 8 vs 16 workers x 1,000 files; time ratio 16/8 <= 2.2x (linear growth), and peak
memory of the factory processes <= 256 MiB at 16 x 1,000.

The factory runs as real processes (`python -m tools.codex.factory ...`), as an operator runs it;
peak memory is the largest ru_maxrss among those processes (git children included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

PY = sys.executable
ENV = {
    **os.environ,
    "PYTHONPATH": str(_common.ROOT),
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "b@b",
}


def sh(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    return subprocess.run(
        args, cwd=cwd, env=ENV, input=input, capture_output=True, check=True
    ).stdout


def build(root: Path, workers: int, files: int) -> tuple[Path, list[bytes]]:
    repo = root / "repo"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    ids = [chr(ord("A") + i) for i in range(workers)]
    for w in ids:
        d = repo / f"w{w}"
        d.mkdir()
        for i in range(files):
            (d / f"f{i:04d}.txt").write_text("".join(f"line {j} of {w}{i}\n" for j in range(20)))
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "base", cwd=repo)
    patches = []
    for w in ids:
        d = repo / f"w{w}"
        for i in range(files):
            p = d / f"f{i:04d}.txt"
            p.write_text(p.read_text().replace("line 10 ", "LINE 10 (changed) "))
        sh("git", "add", "-A", cwd=repo)
        patches.append(sh("git", "diff", "--cached", "--binary", "--full-index", "HEAD", cwd=repo))
        sh("git", "reset", "-q", "--hard", "HEAD", cwd=repo)
    plan = {
        "schema_version": 1,
        "workers": [{"id": w, "task": "bench", "allow": [f"w{w}/**"]} for w in ids],
    }
    (root / "plan.json").write_text(json.dumps(plan))
    (repo / "tools/codex/factory").mkdir(parents=True)
    (repo / "tools/codex/factory/factory.config.json").write_text(
        json.dumps({"checks": {"required": [], "advisory": []}, "ledger": {"fsync": False}})
    )
    return repo, patches


def factory(repo: Path, *args: str) -> None:
    res = subprocess.run(
        [PY, "-m", "tools.codex.factory", "--repo", str(repo), *args], env=ENV, capture_output=True
    )
    if res.returncode != 0:
        raise SystemExit(
            f"factory {' '.join(args)} failed rc={res.returncode}: {res.stdout.decode()[-500:]} {res.stderr.decode()[-500:]}"
        )


CHILD = """
import json, resource, sys, time
from pathlib import Path
from tools.codex.factory.run import pipeline
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.run.context import Context
repo, run_id = Path(sys.argv[1]), sys.argv[2]
ctx = Context(repo, Clock())
t = time.perf_counter()
v = pipeline.cmd_validate(ctx, run_id, None)
i = pipeline.cmd_integrate(ctx, run_id, None)
dt = time.perf_counter() - t
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"seconds": dt, "rss_kib": rss, "status": [str(v.status), str(i.status)]}))
"""


def ours(root: Path, repo: Path, patches: list[bytes]) -> tuple[float, float]:
    """Launch (untimed) and fill the bundles; time bundle-validate + integrate in one process.

    The timing is of our code (in-process, as `factory` runs it), without interpreter start-up,
    which bench/startup.py measures; peak memory is that process's (and its git children's).
    """
    run_id = f"bench{len(patches)}"
    factory(repo, "launch", "--dry-run", "--run-id", run_id, "--plan", str(root / "plan.json"))
    run = repo / "tools/codex/runs" / run_id
    for i, patch in enumerate(patches):
        w = chr(ord("A") + i)
        folder = run / f"{w}_worker"
        (folder / "DIFF.patch").write_bytes(patch)
        listed = sorted(
            line[6:].decode() for line in patch.splitlines() if line.startswith(b"+++ b/")
        )
        (folder / "FILES_CHANGED.json").write_text(
            json.dumps({"schema_version": 1, "files": listed})
        )
    out = subprocess.run(
        [PY, "-c", CHILD, str(repo), run_id], env=ENV, capture_output=True, check=True
    ).stdout
    res = json.loads(out)
    if res["status"] != ["PASS", "PASS"]:
        raise SystemExit(f"bench run did not PASS: {res['status']}")
    return float(res["seconds"]), res["rss_kib"] / 1024


def raw(root: Path, repo: Path, patches: list[bytes]) -> float:
    scratch = root / f"scratch{len(patches)}"
    sh("git", "clone", "-q", str(repo), str(scratch))
    t = time.perf_counter()
    for patch in patches:
        sh("git", "apply", "--check", "-", cwd=scratch, input=patch)
        sh("git", "apply", "-", cwd=scratch, input=patch)
    return time.perf_counter() - t


def scenario(workers: int, files: int, rounds: int) -> tuple[float, float, float]:
    ours_t, raw_t, rss = [], [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            repo, patches = build(root, workers, files)
            raw_t.append(raw(root, repo, patches))
            seconds, peak = ours(root, repo, patches)
            ours_t.append(seconds)
            rss.append(peak)
    return _common.median(ours_t), _common.median(raw_t), max(rss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-scaling", action="store_true")
    args = ap.parse_args()
    print(_common.env_line())
    o, r, _ = scenario(4, 250, args.rounds)
    print(
        f"4 x 250: validate+integrate {o:.3f}s, raw git apply --check + apply {r:.3f}s (medians of {args.rounds})"
    )
    print(_common.verdict("ratio ours/raw", o / r, 2.0, higher_is_better=False))
    if not args.skip_scaling:
        o8, r8, _ = scenario(8, 1000, args.rounds)
        o16, r16, peak = scenario(16, 1000, args.rounds)
        print(f"8 x 1000: {o8:.2f}s (raw {r8:.2f}s); 16 x 1000: {o16:.2f}s (raw {r16:.2f}s)")
        print(_common.verdict("time ratio 16/8", o16 / o8, 2.2, higher_is_better=False))
        print(_common.verdict("peak memory MiB at 16 x 1000", peak, 256, higher_is_better=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
