"""Gate 0 (the test-honesty review) vs `bundle-validate` on the same run.

4 workers x 250 changed files each: half Python test files (a test added to each, so the
review rebuilds each from its base copy and reads it as Python), half source files. Target:
Gate 0 <= 0.5x the time of `bundle-validate` without it.

Each round builds a fresh repository, launches one run with the review off (untimed), fills
the bundles, then in one child process times `Factory.validate` (bundle-validate without
Gate 0) and then Gate 0 alone over the same judged bytes: the base content it needs
(`run.validate.review_inputs`, as bundle-validate calls it: from the checked-out copies that
hash to the base's blobs; with --from-git every copy is edited first, so all of it comes
from git's object store) and `core.review.review` of each worker's patch snapshot, parsed
untimed (bundle-validate hands Gate 0 the patch it parsed). Interpreter start-up is
bench/startup.py's. Medians are reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _common
from integrate import ENV, PY, factory, fill_bundles, plan_and_config, sh

TEST = "from pkg{w}.m{i:04d} import f{i}\n\n\ndef test_f{i}():\n    assert f{i}(2) == {sq}\n"
SOURCE = "def f{i}(x):\n    return x * x\n\n\ndef g{i}(x):\n    return x + {i}\n"


def build(root: Path, workers: int, files: int) -> tuple[Path, list[bytes]]:
    """A repository where each worker changes ``files`` files: tests and sources, half each."""
    repo = root / "repo"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    ids = [chr(ord("A") + i) for i in range(workers)]
    half = files // 2
    for w in ids:
        for i in range(half):
            src = repo / f"pkg{w}" / f"m{i:04d}.py"
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(SOURCE.format(i=i))
            test = repo / f"pkg{w}" / "tests" / f"test_m{i:04d}.py"
            test.parent.mkdir(parents=True, exist_ok=True)
            test.write_text(TEST.format(w=w, i=i, sq=4))
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "base", cwd=repo)
    patches = []
    for w in ids:
        for i in range(half):
            src = repo / f"pkg{w}" / f"m{i:04d}.py"
            src.write_text(src.read_text().replace(f"x + {i}", f"x + {i} + 1"))
            test = repo / f"pkg{w}" / "tests" / f"test_m{i:04d}.py"
            more = f"\n\ndef test_g{i}():\n    assert g{i}(0) == {i + 1}\n"
            test.write_text(test.read_text() + more)
        sh("git", "add", "-A", cwd=repo)
        patches.append(sh("git", "diff", "--cached", "--binary", "--full-index", "HEAD", cwd=repo))
        sh("git", "reset", "-q", "--hard", "HEAD", cwd=repo)
    plan_and_config(root, repo, {w: f"pkg{w}/**" for w in ids}, review={"enabled": False})
    return repo, patches


CHILD = """
import json, resource, sys, time
from pathlib import Path
from tools.codex.factory.api import Factory
from tools.codex.factory.core import review
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.run import snapshots
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.validate import limits, parse_patches, review_inputs, review_settings
repo, run_id = Path(sys.argv[1]), sys.argv[2]
def cpu():
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
with Factory(repo) as factory:
    c, t = cpu(), time.perf_counter()
    v = factory.validate(run_id)
    validate_s, validate_c = time.perf_counter() - t, cpu() - c
run = repo / "tools/codex/runs" / run_id
manifest = json.loads((run / "RUN_MANIFEST.json").read_text())
doc = json.loads((run / "VALIDATION.json").read_text())
settings, bounds = {**review_settings(manifest), "enabled": True}, limits(manifest)
ctx = Context(repo_opt=repo, clock=Clock(None))
found = 0
patches = {
    w: snapshots.get(run, doc["apply_sha256"][w], bounds.max_file_bytes) for w in doc["workers"]
}
parsed = parse_patches(patches, bounds)  # bundle-validate's own reading, shared with Gate 0
c, t = cpu(), time.perf_counter()
inputs = review_inputs(ctx, manifest["base_commit"], parsed, settings, bounds)
for w, (patch, pre) in sorted(inputs.items()):
    found += len(review.review(w, patch, pre, settings))
gate0_s, gate0_c = time.perf_counter() - t, cpu() - c
ctx.close()
print(json.dumps({"validate": validate_s, "gate0": gate0_s, "validate_cpu": validate_c,
                  "gate0_cpu": gate0_c, "status": v.status, "found": found}))
"""


def one_round(root: Path, workers: int, files: int, from_git: bool) -> dict[str, float]:
    """Gate 0's and bundle-validate's wall and CPU seconds (with their git children) on one
    fresh run."""
    repo, patches = build(root, workers, files)
    run_id = "bench-gate0"
    factory(repo, "launch", "--dry-run", "--run-id", run_id, "--plan", str(root / "plan.json"))
    fill_bundles(repo / "tools/codex/runs" / run_id, patches)
    if from_git:
        for test in repo.glob("pkg*/tests/test_*.py"):
            test.write_text(test.read_text() + "# edited\n")
    out = subprocess.run(
        [PY, "-c", CHILD, str(repo), run_id], env=ENV, capture_output=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"bench child failed: {out.stderr.decode()[-800:]}")
    res = json.loads(out.stdout)
    if res["status"] != "PASS":
        raise SystemExit(f"bench run did not PASS: {res['status']}")
    return {k: float(res[k]) for k in ("gate0", "validate", "gate0_cpu", "validate_cpu", "found")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--files", type=int, default=250)
    ap.add_argument("--from-git", action="store_true", help="no checked-out copy is the base's")
    args = ap.parse_args()
    print(_common.env_line())
    print(_common.load_line())
    got: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            rnd = one_round(Path(tmp), args.workers, args.files, args.from_git)
            for key, value in rnd.items():
                got.setdefault(key, []).append(value)
    m = {k: _common.median(v) for k, v in got.items()}
    size = f"{args.workers} x {args.files}" + (" (base from git)" if args.from_git else "")
    print(
        f"{size}: Gate 0 {m['gate0']:.3f}s (CPU {m['gate0_cpu']:.3f}s), bundle-validate "
        f"{m['validate']:.3f}s (CPU {m['validate_cpu']:.3f}s), medians of {args.rounds}; "
        f"findings {m['found']:.0f}"
    )
    print(
        f"wall ratio Gate 0/bundle-validate (sensitive to load): {m['gate0'] / m['validate']:.2f}x"
    )
    cpu = m["gate0_cpu"] / m["validate_cpu"]
    print(_common.verdict(f"CPU ratio Gate 0/bundle-validate at {size}", cpu, 0.5, False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
