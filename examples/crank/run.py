"""The dark factory in one command: a crank that converges in three iterations.

    python examples/crank/run.py [--keep]

Creates a scratch git repository in a temporary folder (your repositories are not touched) with
a calculator to build (``src/calc.py``) and three holdout scenarios (``scenarios/*.md``: add,
mul, sub) that the agent never sees. Then runs ``factory crank --threshold 1.0`` with a small
scripted agent (``agent.py``, through the ``script`` preset) that reads its feedback each
iteration. The trajectory is 33.3% -> 66.7% -> 100.0%: CONVERGED, exit 0; then
``crank-status`` and ``ledger-replay`` of the crank (REPLAY OK).

Exits 0 when all of that happens. ``--keep`` keeps the scratch folder to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def scenario(op: str, a: int, b: int, want: int) -> str:
    return (
        f"# Scenario: {op} two numbers\n\n## Category\n{op}\n\n"
        f"## Behavioral Expectation\n{op}({a}, {b}) gives {want} for the caller.\n\n"
        f"## Evaluation Method\n```python\nfrom src.calc import {op}\n"
        f"assert {op}({a}, {b}) == {want}, 'wrong {op} result'\n```\n\n"
        "## Pass Criteria\nThe evaluation script exits with status zero.\n"
    )


def config() -> str:
    agent = {"preset": "script", "argv": ["{python}", "scripts/crank_agent.py"], "timeout_s": 60}
    crank = {"gates": "spec=auto,plan=auto,ship=auto"}  # full autonomy: no pause for review
    doc = {"schema_version": 1, "workers": {"agent": agent}, "crank": crank}
    return json.dumps(doc, indent=2) + "\n"


def make_repo(repo: Path, env: dict[str, str]) -> None:
    files = {
        "README.md": "# calc\n",
        "src/calc.py": "",
        "scripts/crank_agent.py": (HERE / "agent.py").read_text(encoding="utf-8"),
        "tools/codex/factory/factory.config.json": config(),
        "scenarios/add.md": scenario("add", 2, 3, 5),
        "scenarios/mul.md": scenario("mul", 4, 5, 20),
        "scenarios/sub.md": scenario("sub", 9, 4, 5),
    }
    repo.mkdir(parents=True)
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True, env=env)
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "base"], check=True, env=env)


def factory(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tools.codex.factory", "--repo", str(repo), *args]
    print(f"\n$ factory {' '.join(args)}", flush=True)
    res = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
    print(res.stdout, end="", flush=True)
    print(res.stderr, end="", file=sys.stderr, flush=True)
    return res


def main(argv: list[str]) -> int:
    keep = "--keep" in argv
    tmp = Path(tempfile.mkdtemp(prefix="factory-crank-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["FACTORY_PATHS__WORKTREES_DIR"] = str(tmp / "wt")
    for key, value in (("NAME", "Factory Crank"), ("EMAIL", "crank@example.invalid")):
        env.setdefault(f"GIT_AUTHOR_{key}", value)
        env.setdefault(f"GIT_COMMITTER_{key}", value)
    repo = tmp / "repo"
    try:
        make_repo(repo, env)
        print(f"scratch repository: {repo}")
        ran = factory(repo, env, "crank", "--plan", str(HERE / "plan.json"), "--threshold", "1.0")
        crank_id = next(
            (
                ln.split()[1].rstrip(":")
                for ln in ran.stdout.splitlines()
                if ln.startswith("crank ")
            ),
            "",
        )
        status = factory(repo, env, "crank-status")
        replay = factory(repo, env, "ledger-replay", "--run-id", crank_id)
        ok = (
            ran.returncode == 0
            and "CONVERGED" in ran.stdout
            and status.returncode == 0
            and replay.returncode == 0
        )
        print(f"\ncrank example: {'OK' if ok else 'UNEXPECTED'}")
        return 0 if ok else 1
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
