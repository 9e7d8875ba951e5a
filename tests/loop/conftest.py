"""A scratch repository with a calculator to build and a holdout of three scenarios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.factory import write_config, write_plan
from tests.support.repos import PINNED, make_repo, run_cli

AGENT = Path(__file__).resolve().parents[1] / "support" / "crank_agent.py"


def scenario(op: str, a: int, b: int, want: int, extra: str = "", module: str = "calc") -> str:
    return (
        f"# Scenario: {op} two numbers\n\n"
        f"## Category\n{op}\n\n"
        f"## Behavioral Expectation\n{op}({a}, {b}) gives {want} for the caller.\n\n"
        "## Evaluation Method\n```python\n"
        f"from src.{module} import {op}\n"
        f"assert {op}({a}, {b}) == {want}, 'wrong {op} result'\n"
        f"{extra}```\n\n"
        "## Pass Criteria\nThe evaluation script exits with status zero.\n"
    )


SCENARIOS = {
    "scenarios/add.md": scenario("add", 2, 3, 5),
    "scenarios/mul.md": scenario("mul", 4, 5, 20),
    "scenarios/sub.md": scenario("sub", 9, 4, 5),
}


def make_crank_repo(
    path: Path, mode: str, scenarios: dict[str, str] | None = None, **config: Any
) -> Path:
    files = {"README.md": "calc\n", "src/calc.py": "# nothing yet\n"}
    files.update(SCENARIOS if scenarios is None else scenarios)
    repo = make_repo(path, files)
    doc: dict[str, Any] = {
        "workers": {
            "agent": {"preset": "script", "argv": ["{python}", str(AGENT), mode, "{worker_id}"]}
        },
        "checks": {"required": []},
        "ledger": {"fsync": False},
        "crank": {"gates": "spec=auto,plan=auto,ship=auto"},
    }
    for section, values in config.items():
        doc.setdefault(section, {}).update(values)
    write_config(repo, doc)
    write_plan(
        path.parent / f"{path.name}-plan.json",
        [
            {
                "id": "A",
                "task": "Build the calculator in src/calc.py.",
                "allow": ["src/**", "notes/**"],
            }
        ],
    )
    return repo


def plan_of(repo: Path) -> Path:
    return repo.parent / f"{repo.name}-plan.json"


def culprit_crank_repo(path: Path) -> Path:
    """A crank whose worker B (notes) breaks a required check that A (the calculator) keeps:
    the ``culprit`` agent writes notes/broken in iteration 1 and removes it once blamed."""
    gate = "import pathlib, sys; sys.exit(1 if pathlib.Path('notes/broken').exists() else 0)"
    check = {"name": "no-broken", "argv": ["{python}", "-c", gate], "timeout_s": 60}
    repo = make_crank_repo(path, "culprit", checks={"required": [check]})
    write_plan(
        plan_of(repo),
        [
            {"id": "A", "task": "Build the calculator in src/calc.py.", "allow": ["src/**"]},
            {"id": "B", "task": "Keep notes.", "allow": ["notes/**"]},
        ],
    )
    return repo


def crank(repo: Path, *args: str, now: str = PINNED) -> tuple[int, dict[str, Any], str]:
    res = run_cli(
        "--repo", str(repo), "--now", now, "crank", "--plan", str(plan_of(repo)), "--json", *args
    )
    data = json.loads(res.stdout) if res.stdout.strip().startswith("{") else {}
    return res.returncode, data, res.stdout + res.stderr


def crashed_crank(tmp_path: Path, crank_id: str = "c1") -> tuple[Path, dict[str, str]]:
    """A crank (the ``crash`` agent, real processes) whose factory was killed in iteration 2;
    returns the repository and the environment a resume needs."""
    repo = make_crank_repo(tmp_path / "repo", "crash")
    marker = tmp_path / "crashed"
    env = {"CRANK_TEST_CRASH_MARKER": str(marker)}
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "crank", "--plan", str(plan_of(repo)),
        "--threshold", "1.0", "--crank-id", crank_id, env=env, real=True,
    )  # fmt: skip
    assert res.returncode != 0 and marker.exists(), res.stdout + res.stderr
    return repo, env


def resume(repo: Path, env: dict[str, str], crank_id: str = "c1") -> dict[str, Any]:
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "crank", "--resume", "--crank-id", crank_id,
        "--json", env=env, real=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return dict(json.loads(res.stdout))


@pytest.fixture
def converging(tmp_path: Path) -> Path:
    return make_crank_repo(tmp_path / "repo", "converge")


MANIFEST = """\
---
title: Calculator
status: pending
threshold: 1.0
max_iterations: 3
---
## Units
- [ ] add: Addition — no dependencies
- [ ] mul: Multiplication — no dependencies
- [ ] sub: Subtraction — after: add
- [ ] div: Division — no dependencies

## Execution Order
Group 1 (parallel): add, mul, div
Group 2 (sequential): sub
"""


def unit_scenarios() -> dict[str, str]:
    return {
        "scenarios/add/add.md": scenario("add", 2, 3, 5, module="add"),
        "scenarios/mul/mul.md": scenario("mul", 4, 5, 20, module="mul"),
        "scenarios/sub/sub.md": scenario("sub", 9, 4, 5, module="sub"),
        "scenarios/div/div.md": scenario("div", 9, 3, 3, module="div"),
    }


def write_manifest(root: Path, text: str = MANIFEST) -> Path:
    """The manifest and one spec per unit (its scope: its own file only)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "units").mkdir(exist_ok=True)
    for unit in ("add", "mul", "sub", "div"):
        (root / "units" / f"{unit}.md").write_text(
            f"---\nallow: [src/{unit}.py, notes/**]\n---\n# {unit}\nWrite src/{unit}.py.\n"
        )
    path = root / "manifest.md"
    path.write_text(text)
    return path


def settle(
    repo: Path, code: int, data: dict[str, Any], out: str
) -> tuple[int, dict[str, Any], str]:
    """Approve every escalation a crank pauses at (the operator accepts its stop or lets it go
    on) until it finishes; the crank's last outcome and every output on the way."""
    for _ in range(10):
        if (data.get("decision"), data.get("kind")) != ("AWAITING_REVIEW", "escalation"):
            break
        res = run_cli(
            "--repo", str(repo), "--now", PINNED, "approve", "--crank-id", data["crank_id"],
            "--by", "tester", "--json",
        )  # fmt: skip
        code = res.returncode
        data = json.loads(res.stdout) if res.stdout.strip().startswith("{") else {}
        out += res.stdout + res.stderr
    return code, data, out
