"""Helpers for the real-worker tests: a repository, the scripted agent, ledger and tree reads."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.repos import PINNED, ROOT, git, make_repo, run_cli

AGENT = Path(__file__).resolve().parent / "scripted_agent.py"
RUNS = "tools/codex/runs"

FILES = {
    "README.md": "hello\n",
    "src/app.py": "print('app')\n",
    "tests/test_app.py": "def test_ok():\n    assert True\n",
    "docs/guide.md": "guide\n",
    "setup.cfg": "[metadata]\nname = demo\n",
    "scenarios/holdout.md": "the evaluation criteria\n",
    "scenarios/deep/case.txt": "hidden case\n",
}


def work_repo(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    return make_repo(tmp_path / "repo", files or FILES)


def agent_env(
    spec_file: Path,
    spec: dict[str, Any],
    *,
    per_worker: dict[str, dict[str, Any]] | None = None,
    **config: Any,
) -> dict[str, str]:
    """FACTORY_* variables running the scripted agent for every worker (env, not a config file,
    so the user's tree stays exactly as committed)."""
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    agent = {"preset": "script", "argv": ["{python}", str(AGENT), str(spec_file), "{worker_id}"]}
    env = {"FACTORY_WORKERS__AGENT": json.dumps(agent)}
    if per_worker:
        env["FACTORY_WORKERS__AGENTS"] = json.dumps(
            {w: {**agent, **extra} for w, extra in per_worker.items()}
        )
    for key, value in config.items():
        env[f"FACTORY_{key.upper()}"] = json.dumps(value)
    return env


def cli(
    repo: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return run_cli("--repo", str(repo), "--now", PINNED, *args, env=env, timeout=timeout)


def events(repo: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    path = repo / RUNS / "factory_ledger.jsonl"
    out = [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [e for e in out if run_id is None or e["run_id"] == run_id]


def run_dir(repo: Path, run_id: str) -> Path:
    return repo / RUNS / run_id


def status_doc(repo: Path, run_id: str, worker: str) -> dict[str, Any]:
    return dict(
        json.loads(
            (run_dir(repo, run_id) / f"{worker}_worker" / "STATUS.json").read_text(encoding="utf-8")
        )
    )


def worktrees(repo: Path) -> dict[str, Path]:
    """Registered linked worktrees by branch (without refs/heads/)."""
    out = git(repo, "worktree", "list", "--porcelain")
    found: dict[str, Path] = {}
    path: Path | None = None
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :])
        elif line.startswith("branch ") and path is not None:
            found[line[len("branch refs/heads/") :]] = path
    return {b: p for b, p in found.items() if b.startswith("factory/")}


def factory_branches(repo: Path) -> list[str]:
    return [
        b
        for b in git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()
        if b.startswith("factory/")
    ]


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` except .git and .factory, by '/'-path."""
    out: dict[str, bytes] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] in (".git", ".factory") or not p.is_file():
            continue
        out[rel] = p.read_bytes()
    return out


def apply_to_fresh_clone(repo: Path, commit: str, patch: bytes, dest: Path) -> Path:
    """A fresh clone of the base with ``patch`` applied by plain ``git apply``."""
    subprocess.run(
        ["git", "clone", "-q", "--no-checkout", str(repo), str(dest)],
        check=True,
        capture_output=True,
    )
    git(dest, "checkout", "-q", "--detach", commit)
    if patch:
        git(dest, "apply", "--index", "-", input=patch)
    return dest


def base_commit(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def project_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def assert_events_valid(repo: Path) -> None:
    """Every ledger line matches schemas/ledger_event.schema.json."""
    from tools.codex.factory.infra import schemas

    for e in events(repo):
        problems = schemas.errors("ledger_event", e)
        assert not problems, (e["event_type"], problems)
