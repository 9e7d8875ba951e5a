"""Helpers for pipeline tests: real runs, real patches made by git, hand-edited bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.repos import PINNED, git, run_cli

RUNS = "tools/codex/runs"


def launch_dry(repo: Path, *extra: str, now: str = PINNED) -> str:
    res = run_cli(
        "--repo",
        str(repo),
        "--now",
        now,
        "launch",
        "--base-ref",
        "HEAD",
        "--dry-run",
        "--json",
        *extra,
    )
    assert res.returncode == 0, res.stderr
    return str(json.loads(res.stdout)["run_id"])


def run_dir(repo: Path, run_id: str) -> Path:
    return repo / RUNS / run_id


def make_patch(
    repo: Path,
    changes: dict[str, str | bytes | None],
    renames: dict[str, str] | None = None,
    chmod: list[str] | None = None,
) -> bytes:
    """Make the changes in the working tree, capture `git diff` against HEAD, then undo them."""
    for old, new in (renames or {}).items():
        (repo / new).parent.mkdir(parents=True, exist_ok=True)
        git(repo, "mv", old, new)
    for rel, content in changes.items():
        path = repo / rel
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    named = list(changes)  # renames are already staged by `git mv`
    if named:
        git(repo, "add", "-A", "--", *named)
    for rel in chmod or []:
        git(repo, "update-index", "--chmod=+x", rel)
    import subprocess

    patch = subprocess.run(
        ["git", "-C", str(repo), "diff", "--cached", "--binary", "--full-index", "-M", "HEAD"],
        capture_output=True,
        check=True,
    ).stdout
    git(repo, "reset", "-q", "--hard", "HEAD")  # untracked files outside `named` are kept
    return patch


def touched_by_git(patch: bytes) -> list[str]:
    from tools.codex.factory.core import patchparse

    return patchparse.parse(patch).touched()


def set_bundle(
    repo: Path, run_id: str, worker: str, patch: bytes, files: list[str] | None = None
) -> None:
    """Replace a worker's DIFF.patch and FILES_CHANGED.json (files default: what the patch touches)."""
    folder = run_dir(repo, run_id) / f"{worker}_worker"
    (folder / "DIFF.patch").write_bytes(patch)
    listed = touched_by_git(patch) if files is None else files
    write_json(folder / "FILES_CHANGED.json", {"schema_version": 1, "files": listed})


def write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def edit_scope(repo: Path, run_id: str, worker: str, **lists: list[str]) -> None:
    path = run_dir(repo, run_id) / f"{worker}_worker" / "SCOPE_LOCK.json"
    doc = read_json(path)
    doc.update(lists)
    write_json(path, doc)


def write_plan(path: Path, workers: list[dict[str, Any]]) -> Path:
    write_json(path, {"schema_version": 1, "workers": workers})
    return path


def write_config(repo: Path, doc: dict[str, Any]) -> None:
    path = repo / "tools/codex/factory/factory.config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, doc)


def validate(repo: Path, run_id: str, *extra: str) -> tuple[int, dict[str, Any]]:
    res = run_cli(
        "--repo",
        str(repo),
        "--now",
        PINNED,
        "bundle-validate",
        "--run-id",
        run_id,
        "--json",
        *extra,
    )
    assert res.returncode in (0, 3), res.stderr
    return res.returncode, json.loads(res.stdout)


def rules(doc: dict[str, Any]) -> set[str]:
    return {f["rule"] for f in doc["findings"]}
