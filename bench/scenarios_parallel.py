"""Holdout scenarios evaluated in parallel: ``loop.evaluate.evaluate`` with parallel=2 against
parallel=1, for N scenarios of fixed cost, in two variants:

- sleep: each scenario sleeps 0.5 s (waiting dominates: parallelism should halve the wall);
- cpu: each scenario burns 0.3 s of its own CPU time (on 2 cores the ceiling is 2x too, less
  whatever else the machine runs).

Goal: wall(parallel=2) <= 0.6 x wall(parallel=1), in each variant. The figures include all that
``evaluate`` does per trial (the tree export, a sandbox copy per trial, a clean environment,
the log), on a scratch repository of 200 files.

The raw floor (same rounds, alternating with ours so noise hits both): the same N scenario
scripts run bare (``python scenario.py``, no sandbox), 1 and 2 at a time.

    python bench/scenarios_parallel.py [--rounds 3] [--scenarios 4]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

PY = sys.executable
CODE = {
    "sleep": "import time\ntime.sleep(0.5)\n",
    "cpu": (
        "import time\nt = time.process_time()\n"
        "while time.process_time() - t < 0.3:\n    sum(range(1000))\n"
    ),
}
SCENARIO = (
    "# Scenario: fixed cost {i}\n\n## Category\nbench\n\n"
    "## Behavioral Expectation\nIt takes its time.\n\n"
    "## Evaluation Method\n```python\n{code}```\n\n"
    "## Pass Criteria\nThe evaluation script exits with status zero.\n"
)
FILES = 200


def build(root: Path, variant: str, n: int) -> tuple[Path, str]:
    import subprocess

    repo = root / f"repo-{variant}"
    _common.make_repo(repo)
    src = repo / "src"
    src.mkdir()
    for i in range(FILES):
        (src / f"m{i:03d}.py").write_text(f"VALUE = {i}\n")
    (repo / "scenarios").mkdir()
    for i in range(n):
        (repo / "scenarios" / f"s{i}.md").write_text(SCENARIO.format(i=i, code=CODE[variant]))
    env = _common.git_env()
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "base"], check=True, env=env)
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, env=env, capture_output=True
    )
    return repo, head.stdout.decode().strip()


def ours(repo: Path, commit: str, parallel: int, n: int) -> float:
    from tools.codex.factory.loop import evaluate, holdout

    sealed = holdout.seal(repo, commit, "scenarios", 1 << 20)
    cfg = evaluate.Settings(trials=1, need=1, timeout_s=60, parallel=parallel, python=PY)
    t = time.perf_counter()
    res = evaluate.evaluate(repo, commit, sealed, cfg, lambda name, data: "")
    wall = time.perf_counter() - t
    passed = sum(1 for r in res.results if r["passed"])
    if passed != n:
        raise SystemExit(f"only {passed} of {n} scenarios passed: {res.tails}")
    return wall


def raw(root: Path, variant: str, parallel: int, n: int) -> float:
    script = root / f"bare-{variant}.py"
    script.write_text(CODE[variant])

    def one(_: int) -> None:
        subprocess.run([PY, str(script)], cwd=root, check=True)

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - t


def variant_figures(root: Path, variant: str, n: int, rounds: int) -> dict[str, float]:
    repo, commit = build(root, variant, n)
    ours(repo, commit, 2, n)  # warm-up
    runs: dict[str, list[float]] = {"ours1": [], "ours2": [], "raw1": [], "raw2": []}
    for _ in range(rounds):
        runs["raw1"].append(raw(root, variant, 1, n))
        runs["ours1"].append(ours(repo, commit, 1, n))
        runs["raw2"].append(raw(root, variant, 2, n))
        runs["ours2"].append(ours(repo, commit, 2, n))
    return {k: _common.median(v) for k, v in runs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenarios", type=int, default=4)
    args = ap.parse_args()
    print(_common.env_line())
    print(_common.load_line())
    with tempfile.TemporaryDirectory(prefix="bench-scenarios-") as tmp:
        for variant in ("sleep", "cpu"):
            f = variant_figures(Path(tmp), variant, args.scenarios, args.rounds)
            print(
                f"{variant}: {args.scenarios} scenarios, medians of {args.rounds}: "
                f"evaluate parallel=1 {f['ours1']:.3f}s, parallel=2 {f['ours2']:.3f}s; "
                f"raw floor 1 at a time {f['raw1']:.3f}s, 2 at a time {f['raw2']:.3f}s "
                f"(raw ratio {f['raw2'] / f['raw1']:.2f})"
            )
            print(
                _common.verdict(
                    f"{variant}: wall parallel=2 / parallel=1", f["ours2"] / f["ours1"], 0.6, False
                )
            )
    print(_common.load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
