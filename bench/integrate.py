"""bundle-validate + integrate (no checks) vs the floor: `git apply --cached` of the same patches.

Scenario 1: 4 workers x 250 changed files, target <= 5x the floor.
Scenario 2: 16 workers x 1,000 changed files, target <= 4x the floor; and the peak memory of
the factory process (and its git children) <= 256 MiB.

Two floors, each into the index of a fresh clone of the same repository: one `git apply
--cached` per worker's patch, in order (as integrate applies them: each worker's bytes read by
git alone, and the first that does not fit found), and one `git apply --cached` given every
patch file at once (git's own floor for the same patches: the index read and written once).
The targets are printed against both. Ours is the public API (`Factory.validate`
then `Factory.integrate`) in a child process, timed inside it (interpreter start-up is
bench/startup.py's); each round builds a fresh repository and times both, the floor first in
even rounds and ours first in odd ones, so machine noise hits both; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
    plan_and_config(root, repo, {w: f"w{w}/**" for w in ids})
    return repo, patches


def plan_and_config(root: Path, repo: Path, allow: dict[str, str], **config: object) -> None:
    """plan.json (each worker allowed its glob) and a factory config with no checks and no
    fsync, plus ``config``."""
    plan = {
        "schema_version": 1,
        "workers": [{"id": w, "task": "bench", "allow": [g]} for w, g in allow.items()],
    }
    (root / "plan.json").write_text(json.dumps(plan))
    (repo / "tools/codex/factory").mkdir(parents=True)
    settings = {"checks": {"required": [], "advisory": []}, "ledger": {"fsync": False}, **config}
    (repo / "tools/codex/factory/factory.config.json").write_text(json.dumps(settings))


def fill_bundles(run: Path, patches: list[bytes]) -> None:
    """Worker A, B, ... hand back the patches in order, each with its FILES_CHANGED.json."""
    for i, patch in enumerate(patches):
        folder = run / f"{chr(ord('A') + i)}_worker"
        (folder / "DIFF.patch").write_bytes(patch)
        listed = sorted(
            line[6:].decode() for line in patch.splitlines() if line.startswith(b"+++ b/")
        )
        (folder / "FILES_CHANGED.json").write_text(
            json.dumps({"schema_version": 1, "files": listed})
        )


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
from tools.codex.factory.api import Factory
repo, run_id = sys.argv[1], sys.argv[2]
def cpu():
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
with Factory(repo) as factory:
    c, t = cpu(), time.perf_counter()
    v = factory.validate(run_id)
    i = factory.integrate(run_id)
    dt, dc = time.perf_counter() - t, cpu() - c
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"seconds": dt, "cpu": dc, "rss_kib": rss, "status": [v.status, i.status]}))
"""


def ours(root: Path, repo: Path, patches: list[bytes]) -> tuple[float, float, float]:
    """Launch (untimed) and fill the bundles; time bundle-validate + integrate in one process.

    The timing is of our code (in-process, as `factory` runs it), without interpreter start-up,
    which bench/startup.py measures: (wall seconds, CPU seconds of it and its git children,
    peak memory in MiB of that process or its largest git child).
    """
    run_id = f"bench{len(patches)}"
    factory(repo, "launch", "--dry-run", "--run-id", run_id, "--plan", str(root / "plan.json"))
    fill_bundles(repo / "tools/codex/runs" / run_id, patches)
    out = subprocess.run(
        [PY, "-c", CHILD, str(repo), run_id], env=ENV, capture_output=True, check=True
    ).stdout
    res = json.loads(out)
    if res["status"] != ["PASS", "PASS"]:
        raise SystemExit(f"bench run did not PASS: {res['status']}")
    return float(res["seconds"]), float(res["cpu"]), res["rss_kib"] / 1024


def children_cpu() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def floor(root: Path, repo: Path, patches: list[bytes]) -> tuple[float, float]:
    """`git apply --cached` of each worker's patch, in order, into a clone's index: (wall
    seconds, CPU seconds of the git processes)."""
    scratch = root / f"scratch{len(patches)}"
    sh("git", "clone", "-q", str(repo), str(scratch))
    c, t = children_cpu(), time.perf_counter()
    for patch in patches:
        sh("git", "apply", "--cached", "-", cwd=scratch, input=patch)
    return time.perf_counter() - t, children_cpu() - c


def floor_one(root: Path, repo: Path, patches: list[bytes]) -> tuple[float, float]:
    """One `git apply --cached` of every patch file (written untimed), into a clone's index."""
    scratch = root / f"one{len(patches)}"
    sh("git", "clone", "-q", str(repo), str(scratch))
    files = []
    for i, patch in enumerate(patches):
        files.append(root / f"patch{i}.diff")
        files[-1].write_bytes(patch)
    c, t = children_cpu(), time.perf_counter()
    sh("git", "apply", "--cached", *map(str, files), cwd=scratch)
    return time.perf_counter() - t, children_cpu() - c


def scenario(workers: int, files: int, rounds: int) -> dict[str, float]:
    """Medians over ``rounds`` of wall and CPU seconds, ours and the floor; peak memory."""
    got: dict[str, list[float]] = {"ours": [], "ours_cpu": []}
    rss = []
    floors = (("floor", floor), ("one", floor_one))
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            repo, patches = build(root, workers, files)
            if r % 2 == 0:
                for name, fn in floors:
                    wall, spent = fn(root, repo, patches)
                    got.setdefault(name, []).append(wall)
                    got.setdefault(f"{name}_cpu", []).append(spent)
            seconds, spent, peak = ours(root, repo, patches)
            got["ours"].append(seconds)
            got["ours_cpu"].append(spent)
            rss.append(peak)
            if r % 2 == 1:
                for name, fn in reversed(floors):
                    wall, spent = fn(root, repo, patches)
                    got.setdefault(name, []).append(wall)
                    got.setdefault(f"{name}_cpu", []).append(spent)
    out = {k: _common.median(v) for k, v in got.items()}
    out["peak"] = max(rss)
    return out


SCENARIOS = ((4, 250, 5.0), (16, 1000, 4.0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=["small", "large"], default=None)
    args = ap.parse_args()
    print(_common.env_line())
    for i, (workers, files, target) in enumerate(SCENARIOS):
        if args.only and args.only != ("small", "large")[i]:
            continue
        m = scenario(workers, files, args.rounds)
        print(
            f"{workers} x {files}: validate+integrate {m['ours']:.3f}s (CPU {m['ours_cpu']:.3f}s), "
            f"git apply --cached per patch {m['floor']:.3f}s (CPU {m['floor_cpu']:.3f}s), "
            f"of all patches at once {m['one']:.3f}s (CPU {m['one_cpu']:.3f}s), "
            f"medians of {args.rounds}; peak {m['peak']:.0f} MiB"
        )
        for name, what in (("floor", "one apply per patch"), ("one", "one apply of all")):
            cpu = m["ours_cpu"] / m[f"{name}_cpu"]
            print(f"CPU ratio ours/floor ({what}; less sensitive to load): {cpu:.2f}x")
            ratio = m["ours"] / m[name]
            size = f"{workers} x {files}"
            print(_common.verdict(f"ratio ours/floor ({what}) at {size}", ratio, target, False))
        if workers == 16:
            print(_common.verdict("peak memory MiB at 16 x 1000", m["peak"], 256, False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
