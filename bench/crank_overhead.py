"""The crank's own overhead per iteration, against the raw floor of the same processes run bare.

Set-up: a scratch repository, a plan of 4 workers (``wA/**`` .. ``wD/**``), a headless
``script`` agent that writes its 100 files (new content each time) and exits, the default
required check (``git diff --check``) and 3 trivial python scenarios (``pass``), one trial each.
The crank runs in-process (``loop.crank.crank``) with ``--max-iterations 1`` and a threshold
every scenario meets, so each measured crank is exactly one iteration (converged).

Definitions (wall-clock is ``time.perf_counter`` in this process):

- *iteration wall*: the whole ``crank()`` call, set-up (seal, claim, branch) and finish
  (report) included, so the figure errs on the side of more overhead.
- *process time*: the union of the intervals during which an agent, check or scenario process
  ran, each from just before its ``Popen`` (``infra.proc._popen``) to the return of its
  ``infra.proc.wait`` (agents and checks/scenarios all go through those two). The bench wraps
  them with timers (monkeypatching in this script only); intervals of parallel processes are
  merged, so time when at least one such process runs counts once. git and everything else the
  factory runs count as overhead.
- *overhead* = iteration wall - process time: worktree creation, prompts, bundle collection,
  validation, integration (``git apply``, the sandbox the check runs in), the worktrees'
  removal, the commit to the crank branch, each trial's sandbox tree, the ledger, logs,
  decisions.
- *overhead CPU*: CPU seconds (user + system) of this process and its reaped children during
  the crank, minus those of the raw floor below (the same processes run bare); less sensitive
  than wall time to other work on the machine.
- *steps*: the wall time of each step of the iteration (processes included), to show where
  the overhead goes.

Goals: overhead <= 10% of the iteration wall, and <= 1 s, at 4 workers x 100 files.

The raw floor (alternating rounds with ours, so noise hits both): the same 4 agents run bare in
parallel in 4 plain folders, then the check, then the 3 scenarios in parallel (2 at a time, as
the crank's ``scenarios.parallel`` is set here) in one exported folder; that is the wall time an
iteration cannot go below.

    python bench/crank_overhead.py [--rounds 5] [--workers 4] [--files 100] [--profile]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common

PY = sys.executable
AGENT = """\
import os, pathlib, sys
wid, n = sys.argv[1], sys.argv[2]
d = pathlib.Path("w" + wid)
d.mkdir(exist_ok=True)
for i in range(int(n)):
    (d / f"f{i:03d}.txt").write_text(f"worker {wid} file {i} run {os.environ.get('FACTORY_RUN_ID')}\\n")
"""
SCENARIO = (
    "# Scenario: trivial {i}\n\n## Category\ntrivial\n\n"
    "## Behavioral Expectation\nNothing at all.\n\n"
    "## Evaluation Method\n```python\npass\n```\n\n"
    "## Pass Criteria\nThe evaluation script exits with status zero.\n"
)
SCENARIOS = 3
PARALLEL = 2


# -- timing the processes (this script only) --------------------------------------------------
class Spans:
    """Start/end of every agent, check and scenario process, keyed by pid."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[int, float] = {}
        self.done: list[tuple[float, float]] = []

    def install(self) -> None:
        from tools.codex.factory.infra import proc

        popen, wait = proc._popen, proc.wait

        def timed_popen(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            p = popen(*a, **k)
            with self.lock:
                self.open[p.pid] = t
            return p

        def timed_wait(p: Any, *a: Any, **k: Any) -> Any:
            try:
                return wait(p, *a, **k)
            finally:
                t = time.perf_counter()
                with self.lock:
                    start = self.open.pop(p.pid, None)
                    if start is not None:
                        self.done.append((start, t))

        proc._popen = timed_popen  # type: ignore[assignment]
        proc.wait = timed_wait  # type: ignore[assignment]

    def take(self) -> list[tuple[float, float]]:
        with self.lock:
            spans, self.done = self.done, []
        return spans


class Phases:
    """Wall time of the iteration's steps (wrapped in this script only), to show where the
    overhead goes; each step's figure includes the processes it ran."""

    STEPS = (
        ("worktrees", "tools.codex.factory.run.workers", "prepare"),
        ("agents+collect", "tools.codex.factory.run.workers", "execute"),
        ("validate", "tools.codex.factory.run.pipeline", "cmd_validate"),
        ("remove worktrees", "tools.codex.factory.run.pipeline", "_remove_worktrees"),
        ("integrate+check", "tools.codex.factory.run.pipeline", "cmd_integrate"),
        ("commit", "tools.codex.factory.loop.crank", "_Loop._commit"),
        ("scenarios", "tools.codex.factory.loop.evaluate", "evaluate"),
    )

    def __init__(self) -> None:
        self.now: dict[str, float] = {}
        self.rounds: list[dict[str, float]] = []

    def install(self) -> None:
        import importlib

        for label, module, name in self.STEPS:
            owner: Any = importlib.import_module(module)
            if "." in name:
                cls, name = name.split(".")
                owner = getattr(owner, cls)
            setattr(owner, name, self._timed(label, getattr(owner, name)))

    def _timed(self, label: str, fn: Any) -> Any:
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.now[label] = self.now.get(label, 0.0) + time.perf_counter() - t

        return timed

    def take(self, wall: float) -> None:
        steps = dict(self.now)
        # integrate's figure holds the worktree removal: shown on its own
        if "integrate+check" in steps:
            steps["integrate+check"] -= steps.get("remove worktrees", 0.0)
        steps["rest"] = wall - sum(steps.values())
        self.rounds.append(steps)
        self.now = {}

    def medians(self) -> str:
        labels = [s[0] for s in self.STEPS] + ["rest"]
        return ", ".join(
            f"{k} {_common.median([r.get(k, 0.0) for r in self.rounds]):.3f}s" for k in labels
        )


def union(spans: list[tuple[float, float]]) -> float:
    """Total length of the union of intervals (parallel processes count once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


# -- the scratch repository -----------------------------------------------------------------------
def build(root: Path, workers: int, files: int) -> tuple[Path, Path, list[str]]:
    ids = [chr(ord("A") + i) for i in range(workers)]
    agent = root / "agent.py"
    agent.write_text(AGENT)
    repo = root / "repo"
    _common.make_repo(repo)
    for w in ids:
        (repo / f"w{w}").mkdir()
        (repo / f"w{w}" / "README.md").write_text(f"worker {w}\n")
    (repo / "scenarios").mkdir()
    for i in range(SCENARIOS):
        (repo / "scenarios" / f"s{i}.md").write_text(SCENARIO.format(i=i))
    cfg = {
        "workers": {
            "agent": {
                "preset": "script",
                "argv": ["{python}", str(agent), "{worker_id}", str(files)],
            },
            "max_parallel": workers,
            "ids": ids,
        },
        "ledger": {"fsync": False},
        "paths": {"worktrees_dir": str(root / "wt")},
        "scenarios": {"parallel": PARALLEL},
    }
    conf = repo / "tools/codex/factory/factory.config.json"
    conf.parent.mkdir(parents=True)
    conf.write_text(json.dumps(cfg))
    env = _common.git_env()
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "base"], check=True, env=env)
    plan = root / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "workers": [{"id": w, "task": "write files", "allow": [f"w{w}/**"]} for w in ids],
            }
        )
    )
    return repo, plan, ids


def cpu() -> float:
    """CPU seconds (user + system) of this process and of its children reaped so far."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def ours(
    repo: Path, plan: Path, spans: Spans, n: int, phases: Phases
) -> tuple[float, float, float]:
    """One crank of one iteration in this process: (iteration wall, process time, CPU)."""
    from tools.codex.factory.infra.clock import Clock
    from tools.codex.factory.loop import crank
    from tools.codex.factory.run.context import Context

    ctx = Context(repo, Clock())
    req = crank.CrankRequest(
        plan_file=plan,
        threshold="1.0",
        max_iterations=1,
        crank_id=f"crank_bench_{n}",
        gates="spec=auto,plan=auto,ship=auto",
    )
    spans.take()
    phases.now = {}
    c, t = cpu(), time.perf_counter()
    res = crank.crank(ctx, req)
    wall, used = time.perf_counter() - t, cpu() - c
    phases.take(wall)
    if res.decision["decision"] != "CONVERGED":
        raise SystemExit(f"bench crank did not converge: {res.decision}")
    return wall, union(spans.take()), used


def raw(root: Path, repo: Path, ids: list[str], files: int, n: int) -> tuple[float, float]:
    """The same processes, bare: agents in parallel, the check, scenarios 2 at a time:
    (wall, CPU)."""
    env = {**_common.git_env(), "FACTORY_RUN_ID": f"raw{n}"}
    base = root / f"raw{n}"
    dirs = [base / w for w in ids]
    for d in dirs:
        d.mkdir(parents=True)
    tree = base / "tree"
    tree.mkdir()
    script = base / "scenario.py"
    script.write_text("pass\n")

    def agent(i: int) -> None:
        subprocess.run(
            [PY, str(root / "agent.py"), ids[i], str(files)], cwd=dirs[i], env=env, check=True
        )

    def scenario(_: int) -> None:
        subprocess.run([PY, str(script)], cwd=tree, env=env, check=True)

    c, t = cpu(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
        list(pool.map(agent, range(len(ids))))
    subprocess.run(["git", "diff", "--check", "HEAD"], cwd=repo, env=env, check=True)
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(scenario, range(SCENARIOS)))
    return time.perf_counter() - t, cpu() - c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--profile", action="store_true", help="cProfile one extra crank")
    args = ap.parse_args()
    print(_common.env_line())
    print(_common.load_line())
    spans, phases = Spans(), Phases()
    spans.install()
    phases.install()
    walls, procs, overheads, floors, cpus, floor_cpus = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-crank-") as tmp:
        root = Path(tmp)
        repo, plan, ids = build(root, args.workers, args.files)
        print(_common.disk_line(root))
        os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")
        for k, v in _common.git_env().items():
            if k.startswith("GIT_"):
                os.environ[k] = v
        ours(repo, plan, spans, 0, phases)  # warm-up: imports, the watchdog, page cache
        phases.rounds.clear()
        for n in range(1, args.rounds + 1):
            floor_wall, floor_cpu = raw(root, repo, ids, args.files, n)
            floors.append(floor_wall)
            floor_cpus.append(floor_cpu)
            wall, busy, used = ours(repo, plan, spans, n, phases)
            cpus.append(used)
            walls.append(wall)
            procs.append(busy)
            overheads.append(wall - busy)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            ours(repo, plan, spans, 99, phases)
            prof.disable()
            phases.rounds.pop()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(45)
            print(out.getvalue())
    wall, busy, over, floor = (_common.median(v) for v in (walls, procs, overheads, floors))
    print(
        f"{args.workers} workers x {args.files} files, {SCENARIOS} scenarios: medians of "
        f"{args.rounds}: iteration wall {wall:.3f}s, agent+check+scenario processes {busy:.3f}s, "
        f"overhead {over:.3f}s; raw floor (same processes bare) {floor:.3f}s; "
        f"wall/floor {wall / floor:.2f}x"
    )
    print(f"steps (medians, processes included): {phases.medians()}")
    used, floor_used = _common.median(cpus), _common.median(floor_cpus)
    print(
        f"CPU (user+sys, this process and its children; steadier than wall on a busy machine): "
        f"crank {used:.3f}s, raw floor {floor_used:.3f}s, overhead {used - floor_used:.3f}s"
    )
    print(_common.verdict("overhead share of iteration wall", over / wall, 0.10, False))
    print(_common.verdict("overhead seconds", over, 1.0, False))
    print(_common.load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
