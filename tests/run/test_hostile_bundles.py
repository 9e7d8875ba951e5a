"""Generated hostile bundles: validation never passes a patch git reads differently, and never
writes outside the run folder, whatever the paths, headers, names and planted links."""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.factory import read_json, run_dir, write_json
from tests.support.repos import PINNED, git, make_repo, run_cli
from tools.codex.factory.infra import gitops

NAMES = [
    "src/app.py", "src/new file.py", "src/caf\u00e9.py", unicodedata.normalize("NFD", "src/caf\u00e9.py"),
    "src/-dash.py", "src/q\"uote.py", "src/back\\slash.py", "src/tab\there.py", "src/trail.",
    "src/trail ", "src/CON.txt", "src/.gitattributes", "src/.git/config", "src/GIT~1/x",
    "scenarios/secret.md", "tools/codex/runs/fake.json", "../escape.py", "src/" + "a" * 300,
    "src/dir/deep.py", "SRC/app.py", "src/.gitmodules", "docs/readme.md",
]  # fmt: skip
STAMPS = ["", "\t2024-01-01 00:00:00.000000000 +0000", " 2024-01-01 00:00:00.000000000 +0000"]


def quote(path: str) -> str:
    raw = path.encode("utf-8")
    if all(32 <= b < 127 and b not in (34, 92) for b in raw):
        return path
    body = "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03o}" for b in raw)
    return f'"{body}"'


def prefixed(side: str, path: str) -> str:
    q = quote(path)
    return f'"{side}/{q[1:]}' if q.startswith('"') else f"{side}/{q}"


@st.composite
def sections(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(NAMES))
    form = draw(st.sampled_from(["git-new", "git-modify", "plain", "rename"]))
    stamp = draw(st.sampled_from(STAMPS))
    text = draw(st.sampled_from(["x", "hello world", "\u00e9"]))
    if form == "git-new":
        return (
            f"diff --git {prefixed('a', path)} {prefixed('b', path)}\nnew file mode 100644\n"
            f"--- /dev/null\n+++ {prefixed('b', path)}\n@@ -0,0 +1 @@\n+{text}\n"
        )
    if form == "git-modify":
        return (
            f"diff --git a/src/app.py b/src/app.py\n--- a/src/app.py\n+++ a/src/app.py\n"
            f"@@ -1 +1 @@\n-print('app')\n+{text}\n"
        )
    if form == "plain":
        return (
            f"--- a/src/app.py{stamp}\n+++ b/{path}{stamp}\n@@ -1 +1 @@\n-print('app')\n+{text}\n"
        )
    return (
        f"diff --git a/src/app.py {prefixed('b', path)}\nsimilarity index 100%\n"
        f"rename from src/app.py\nrename to {quote(path)}\n"
    )


@st.composite
def bundles(draw: st.DrawFn) -> tuple[bytes, str, str | None]:
    patch = "".join(draw(st.lists(sections(), min_size=1, max_size=3)))
    if draw(st.booleans()):
        patch = patch.replace("\n", "\r\n")
    listing = draw(st.sampled_from(["parser", "empty", "names"]))
    plant = draw(st.sampled_from([None, "VALIDATION.json", "snapshots", "A_worker/LOGS/planted"]))
    return patch.encode("utf-8"), listing, plant


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    repo = make_repo(
        root / "repo",
        {"README.md": "hi\n", "src/app.py": "print('app')\n", "scenarios/secret.md": "s\n"},
    )
    outside = root / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"do not touch\n")
    plan = root / "plan.json"
    write_json(plan, {"schema_version": 1, "workers": [{"id": "A", "task": "t", "allow": ["**"]}]})
    return {"repo": repo, "outside": outside, "plan": plan}


def _state(world: dict[str, Path]) -> str:
    """Everything outside the runs folder that a stray write could change."""
    h = hashlib.sha256()
    for base in (world["outside"], world["repo"]):
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base).as_posix()
            if rel.startswith((".git/", "tools/codex/runs")) or path.is_dir():
                continue
            h.update(rel.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"?"))
    h.update(git(world["repo"], "status", "--porcelain").encode())
    return h.hexdigest()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bundle=bundles())
def test_validation_never_disagrees_with_git_and_never_writes_outside(
    world: dict[str, Path], bundle: tuple[bytes, str, str | None]
) -> None:
    patch, listing, plant = bundle
    repo = world["repo"]
    res = run_cli("--repo", str(repo), "--now", PINNED, "launch", "--dry-run", "--json",
                  "--plan", str(world["plan"]))  # fmt: skip
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    folder = run_dir(repo, run_id)
    (folder / "A_worker" / "DIFF.patch").write_bytes(patch)
    files: list[str] = []
    if listing == "names":
        files = sorted(NAMES[:3])
    write_json(folder / "A_worker" / "FILES_CHANGED.json", {"schema_version": 1, "files": files})
    if plant is not None:
        os.symlink(world["outside"] / "victim.txt", folder / plant)
    before = _state(world)
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode in (0, 3), res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert _state(world) == before  # nothing outside the run folder changed
    validation = folder / "VALIDATION.json"
    if listing == "parser" and validation.is_file() and not validation.is_symlink():
        # FILES_CHANGED as the validator read the patch: only the other rules may block now
        touched = read_json(folder / "VALIDATION.json")["touched"]["A"]
        write_json(
            folder / "A_worker" / "FILES_CHANGED.json", {"schema_version": 1, "files": touched}
        )
        res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
        assert res.returncode in (0, 3), res.stderr
        assert _state(world) == before
    if res.returncode == 0:
        doc = read_json(folder / "VALIDATION.json")
        view = gitops.apply_view(patch.replace(b"\r\n", b"\n") if b"\r\n" in patch[:200] else patch)
        assert view.error is None
        names = set(view.paths())
        assert names == set(doc["touched"]["A"]), (patch, doc["touched"])
