"""Quick start: four real workers in parallel -> PASS, then two that collide -> BLOCKED.

    python examples/quickstart/run.py [--keep]

Creates a scratch git repository in a temporary folder (your repositories are not touched),
then runs, with the factory from this checkout:

1. ``oneshot --plan examples/quickstart/plan.json``: four headless workers (a small scripted
   agent, ``agent.py``, run through the ``script`` preset) each change their own files in
   their own git worktree at the same time; the bundles are collected, validated and
   integrated; the required checks (a whitespace check and ``scripts/check.py``, which
   imports and tests the merged result) pass: PASS, exit 0.
2. ``oneshot --plan examples/quickstart/plan-overlap.json``: workers A and C both append to
   README.md without declaring it shared: BLOCKED, exit 3, with the overlap named.

Exits 0 when both outcomes are as expected. ``--keep`` keeps the scratch folder to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

CHECK = """\
import sys

sys.path.insert(0, "src")
sys.path.insert(0, "tests")
from greet import greet
import test_greet

test_greet.test_greet()
print("greet('factory') ->", greet("factory"))
"""

CONFIG = """\
{
  "schema_version": 1,
  "checks": {
    "required": [
      {"name": "diff-whitespace", "argv": ["git", "diff", "--check", "{base_commit}"], "timeout_s": 60},
      {"name": "greet-works", "argv": ["{python}", "scripts/check.py"], "timeout_s": 60}
    ]
  }
}
"""


def git(repo: Path, *args: str, env: dict[str, str]) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, stdout=subprocess.DEVNULL)


def make_repo(repo: Path, env: dict[str, str]) -> None:
    files = {
        "README.md": "# greet demo\n\nA tiny project for the factory quick start.\n",
        "scripts/quickstart_agent.py": (HERE / "agent.py").read_text(encoding="utf-8"),
        "scripts/check.py": CHECK,
        "tools/codex/factory/factory.config.json": CONFIG,
        "scenarios/holdout.md": "Held-out evaluation notes: no worker ever sees this file.\n",
    }
    repo.mkdir(parents=True)
    git(repo, "init", "-q", env=env)
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-q", "-m", "base", env=env)


def factory(repo: Path, env: dict[str, str], *args: str) -> int:
    cmd = [sys.executable, "-m", "tools.codex.factory", "--repo", str(repo), *args]
    print(f"\n$ factory {' '.join(args)}", flush=True)
    return subprocess.run(cmd, env=env, check=False).returncode


def main(argv: list[str]) -> int:
    keep = "--keep" in argv
    tmp = Path(tempfile.mkdtemp(prefix="factory-quickstart-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["FACTORY_PATHS__WORKTREES_DIR"] = str(
        tmp / "wt"
    )  # keep the demo's worktrees in the scratch folder
    for key in ("NAME", "EMAIL"):
        env.setdefault(
            f"GIT_AUTHOR_{key}",
            "Factory Quickstart" if key == "NAME" else "quickstart@example.invalid",
        )
        env.setdefault(f"GIT_COMMITTER_{key}", env[f"GIT_AUTHOR_{key}"])
    repo = tmp / "repo"
    try:
        make_repo(repo, env)
        print(f"scratch repository: {repo}")
        rc_pass = factory(repo, env, "oneshot", "--plan", str(HERE / "plan.json"))
        rc_blocked = factory(repo, env, "oneshot", "--plan", str(HERE / "plan-overlap.json"))
        if rc_blocked == 3:
            runs = sorted(p for p in (repo / "tools/codex/runs").iterdir() if p.is_dir())
            report = (runs[-1] / "Z_integrator" / "FINAL_REPORT.txt").read_text(encoding="utf-8")
            overlaps = report.split("\noverlaps:", 1)[1].split("\n\n", 1)[0].split("\n", 1)[-1]
            print(f"\noverlaps in {runs[-1].name}/Z_integrator/FINAL_REPORT.txt:\n{overlaps}")
            factory(repo, env, "clean", "--force")  # the BLOCKED run kept its worktrees for fixing
        ok = rc_pass == 0 and rc_blocked == 3
        print(
            f"\nquick start: first run exit {rc_pass} (PASS expected), second run exit {rc_blocked} "
            f"(BLOCKED expected): {'OK' if ok else 'UNEXPECTED'}"
        )
        return 0 if ok else 1
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
