"""Validation asks git: patches git reads otherwise, forged binary postimages, symlinks,
gitlinks and special files are findings with their own rules (real repositories, real git)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.factory import launch_dry, read_json, run_dir, write_json
from tests.support.repos import PINNED, git, make_repo, run_cli

SECRET = b"the holdout's expected output: 42\n"
FILES = {
    "README.md": "hello\n",
    "src/secret.py": "x\n",
    "docs/guide.md": "g\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = make_repo(tmp_path / "repo", FILES)
    (r / "scenarios").mkdir()
    (r / "scenarios" / "answer.md").write_bytes(SECRET)
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "holdout")
    return r


def plan(tmp_path: Path, special: list[str] | None = None) -> Path:
    worker: dict[str, object] = {"id": "A", "task": "all", "allow": ["**"]}
    if special:
        worker["special"] = special
    path = tmp_path / "plan.json"
    write_json(path, {"schema_version": 1, "workers": [worker]})
    return path


def staged_diff(repo: Path) -> bytes:
    out = subprocess.run(
        ["git", "-C", str(repo), "diff", "--cached", "--binary", "--full-index", "-M", "HEAD"],
        capture_output=True,
        check=True,
    ).stdout
    git(repo, "reset", "-q", "--hard", "HEAD")
    return out


def judge(
    repo: Path, tmp_path: Path, patch: bytes, special: list[str] | None = None
) -> tuple[int, dict[str, object]]:
    """Validate ``patch`` as worker A's bundle, FILES_CHANGED as the validator reads the patch
    (so only the rule under test can block)."""
    run_id = launch_dry(repo, "--plan", str(plan(tmp_path, special)))
    folder = run_dir(repo, run_id) / "A_worker"
    (folder / "DIFF.patch").write_bytes(patch)
    run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    doc = read_json(run_dir(repo, run_id) / "VALIDATION.json")
    touched = doc["touched"]["A"]
    write_json(folder / "FILES_CHANGED.json", {"schema_version": 1, "files": touched})
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    return res.returncode, read_json(run_dir(repo, run_id) / "VALIDATION.json")


def rules(doc: dict[str, object]) -> set[str]:
    return {f["rule"] for f in doc["findings"]}  # type: ignore[index, union-attr]


def test_a_plain_diff_git_reads_differently_is_ambiguous(repo: Path, tmp_path: Path) -> None:
    """A timestamp after a space: git strips it from the name, a naive reader keeps it."""
    patch = (
        b"--- a/src/secret.py 2024-01-01 00:00:00.000000000 +0000\n"
        b"+++ b/src/secret.py 2024-01-01 00:00:00.000000000 +0000\n"
        b"@@ -1 +1 @@\n-x\n+y\n"
    )
    code, doc = judge(repo, tmp_path, patch)
    assert code == 3
    assert "patch-ambiguous" in rules(doc) or "patch-unparseable" in rules(doc)


def test_an_honest_binary_patch_passes(repo: Path, tmp_path: Path) -> None:
    (repo / "docs" / "logo.bin").write_bytes(bytes(range(256)) * 4)
    git(repo, "add", "-A")
    code, doc = judge(repo, tmp_path, staged_diff(repo))
    assert code == 0, doc["findings"]


def test_a_forged_binary_postimage_is_blocked_and_never_imported(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "docs" / "copy.bin").write_bytes(b"\x00innocent bytes\x01" * 8)
    git(repo, "add", "-A")
    honest = staged_diff(repo)
    secret_oid = git(repo, "rev-parse", "HEAD:scenarios/answer.md").strip()
    new_oid = next(
        line.split(b"..")[1].split()[0]
        for line in honest.splitlines()
        if line.startswith(b"index ")
    )
    forged = honest.replace(new_oid, secret_oid.encode())
    code, doc = judge(repo, tmp_path, forged)
    assert code == 3 and "binary-postimage-mismatch" in rules(doc)
    (tmp_path / "forged.patch").write_bytes(forged)
    run_id = launch_dry(repo, "--run-id", "import-forged")
    res = run_cli(
        "--repo",
        str(repo),
        "--now",
        PINNED,
        "bundle-import",
        "--run-id",
        run_id,
        "--worker",
        "D",
        "--patch",
        str(tmp_path / "forged.patch"),
    )
    assert res.returncode == 2 and "cannot be trusted" in res.stderr
    assert SECRET not in (run_dir(repo, run_id) / "D_worker" / "DIFF.patch").read_bytes()


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("/etc/passwd", "symlink-escape"),
        ("../../../outside", "symlink-escape"),
        ("../.git/config", "symlink-escape"),
        ("../scenarios", "symlink-into-protected"),
        ("../scenarios/answer.md", "symlink-into-protected"),
        ("guide.md", "special-symlink"),
    ],
)
def test_symlinks_are_findings(repo: Path, tmp_path: Path, target: str, rule: str) -> None:
    os.symlink(target, repo / "docs" / "link")
    git(repo, "add", "-A")
    code, doc = judge(repo, tmp_path, staged_diff(repo))
    assert code == 3 and rule in rules(doc), doc["findings"]


def test_a_symlink_inside_the_repository_is_allowed_by_special(repo: Path, tmp_path: Path) -> None:
    os.symlink("guide.md", repo / "docs" / "link")
    git(repo, "add", "-A")
    code, doc = judge(repo, tmp_path, staged_diff(repo), special=["docs/link"])
    assert code == 0, doc["findings"]
    os.symlink("../scenarios", repo / "docs" / "sneaky")
    git(repo, "add", "-A")
    code, doc = judge(repo, tmp_path, staged_diff(repo), special=["docs/**"])
    assert code == 3 and "symlink-into-protected" in rules(doc)  # special never allows this


def test_a_gitlink_is_a_finding(repo: Path, tmp_path: Path) -> None:
    oid = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{oid},vendor/lib")
    code, doc = judge(repo, tmp_path, staged_diff(repo))
    assert code == 3 and "special-gitlink" in rules(doc)


# -- links resolved through the post-patch tree ------------------------------------------------
def add_links(repo: Path, links: dict[str, str]) -> bytes:
    """A real `git diff` adding ``links`` (path -> target)."""
    for rel, target in links.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, repo / rel)
    git(repo, "add", "--", *links)
    return staged_diff(repo)


def findings_by_path(doc: dict[str, object]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in doc["findings"]:  # type: ignore[attr-defined]
        out.setdefault(f["path"], set()).add(f["rule"])
    return out


def test_a_link_chain_out_of_the_repository_is_blocked(repo: Path, tmp_path: Path) -> None:
    """`src/up -> ..` is harmless; `src/esc -> up/..` reads `src/src`... as text, but the
    filesystem follows `up` first and leaves the repository; `src/holdout -> up/scenarios`
    lands in the holdout."""
    code, doc = judge(repo, tmp_path, add_links(repo, {"src/up": ".."}), special=["src/**"])
    assert code == 0, doc["findings"]
    patch = add_links(repo, {"src/up": "..", "src/esc": "up/..", "src/holdout": "up/scenarios"})
    code, doc = judge(repo, tmp_path, patch, special=["src/**"])
    assert code == 3
    assert findings_by_path(doc) == {
        "src/esc": {"symlink-escape"},
        "src/holdout": {"symlink-into-protected"},
    }, doc["findings"]
    message = next(f["message"] for f in doc["findings"] if f["path"] == "src/esc")  # type: ignore[attr-defined]
    assert "leaves the repository" in message and "'src/up'" in message
    run_id = str(doc["run_id"])
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id)
    assert replay.returncode == 0 and "REPLAY OK" in replay.stdout, replay.stdout


def test_a_link_chain_through_a_base_link_is_blocked(repo: Path, tmp_path: Path) -> None:
    os.symlink("..", repo / "docs" / "up")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a link in the base")
    patch = add_links(repo, {"src/esc": "../docs/up/..", "src/holdout": "../docs/up/scenarios"})
    code, doc = judge(repo, tmp_path, patch, special=["src/**"])
    assert code == 3
    assert findings_by_path(doc) == {
        "src/esc": {"symlink-escape"},
        "src/holdout": {"symlink-into-protected"},
    }, doc["findings"]
    assert any("in the base" in f["message"] for f in doc["findings"])  # type: ignore[attr-defined]
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", str(doc["run_id"]))
    assert replay.returncode == 0 and "REPLAY OK" in replay.stdout, replay.stdout


def test_a_link_chain_split_across_two_workers_is_blocked(repo: Path, tmp_path: Path) -> None:
    """A adds `src/up -> ..` (fine alone), B adds `lib/esc -> ../src/up/..`: B's link leaves
    the repository only through A's, so it is judged against every worker's links."""
    workers = [
        {"id": "A", "task": "src", "allow": ["src/**"], "special": ["src/**"]},
        {"id": "B", "task": "lib", "allow": ["lib/**"], "special": ["lib/**"]},
    ]
    path = tmp_path / "plan2.json"
    write_json(path, {"schema_version": 1, "workers": workers})
    run_id = launch_dry(repo, "--plan", str(path))
    for w, links in (
        ("A", {"src/up": ".."}),
        ("B", {"lib/esc": "../src/up/..", "lib/holdout": "../src/up/scenarios"}),
    ):
        folder = run_dir(repo, run_id) / f"{w}_worker"
        (folder / "DIFF.patch").write_bytes(add_links(repo, links))
        write_json(folder / "FILES_CHANGED.json", {"schema_version": 1, "files": sorted(links)})
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    doc = read_json(run_dir(repo, run_id) / "VALIDATION.json")
    assert res.returncode == 3
    assert doc["verdicts"] == {"A": "PASS", "B": "BLOCKED"}
    assert findings_by_path(doc) == {
        "lib/esc": {"symlink-escape"},
        "lib/holdout": {"symlink-into-protected"},
    }, doc["findings"]
    assert "by A" in doc["findings"][0]["message"]
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id)
    assert replay.returncode == 0 and "REPLAY OK" in replay.stdout, replay.stdout


def test_a_new_link_that_turns_a_base_link_outwards_is_blocked(repo: Path, tmp_path: Path) -> None:
    """The base's `docs/a/cur -> s/../../..` stays inside while `s` is a folder; a worker's
    `docs/a/s -> .` (inside, alone) makes it leave the repository."""
    (repo / "docs" / "a").mkdir()
    os.symlink("s/../../..", repo / "docs" / "a" / "cur")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a base link")
    code, doc = judge(repo, tmp_path, add_links(repo, {"docs/a/s": "."}), special=["docs/**"])
    assert code == 3
    assert findings_by_path(doc) == {"docs/a/s": {"symlink-escape"}}, doc["findings"]
    assert "'docs/a/cur'" in doc["findings"][0]["message"]  # type: ignore[index]


def test_a_link_loop_is_blocked(repo: Path, tmp_path: Path) -> None:
    patch = add_links(repo, {"src/a": "b/x", "src/b": "a/y"})
    code, doc = judge(repo, tmp_path, patch, special=["src/**"])
    assert code == 3 and rules(doc) == {"symlink-escape"}, doc["findings"]
    assert "40 links" in doc["findings"][0]["message"]  # type: ignore[index]
