"""A DIFF.patch is judged in bounded time and memory: over its line or file-section limit it is
a limit finding (never a hang), and below them the parser keeps only what its sections hold."""

from __future__ import annotations

import os
import shutil
import time
import tracemalloc
from pathlib import Path

import pytest

from tests.support.factory import (
    launch_dry,
    make_patch,
    read_json,
    run_dir,
    set_bundle,
    validate,
    write_config,
    write_json,
)
from tests.support.repos import PINNED, git, make_repo, run_cli
from tools.codex.factory.core import patchparse
from tools.codex.factory.run import validate as validate_stage

FILES = {"README.md": "hi\n", "src/app.py": "print('app')\n", "src/b.py": "B = 1\n"}
SECTION = (
    b"diff --git a/src/app.py b/src/app.py\n--- a/src/app.py\n+++ b/src/app.py\n"
    b"@@ -1 +1 @@\n-print('app')\n+print('v2')\n"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", FILES)
    write_config(repo, {"limits": {"max_patch_lines": 64, "max_patch_files": 2}})
    return repo


def rules_of(doc: dict[str, object], worker: str = "A") -> list[tuple[str, str]]:
    findings = doc["findings"]
    assert isinstance(findings, list)
    return [(f["path"], f["rule"]) for f in findings if f["worker"] == worker]


def test_a_patch_over_the_line_limit_is_a_limit_finding_not_a_hang(repo: Path) -> None:
    """The reported shape: one valid section and then nothing but newlines."""
    run_id = launch_dry(repo, "--workers", "A")
    set_bundle(repo, run_id, "A", SECTION + b"\n" * 2_000_000, ["src/app.py"])
    start = time.monotonic()
    code, doc = validate(repo, run_id)
    assert time.monotonic() - start < 30
    assert code == 3
    assert rules_of(doc) == [("DIFF.patch", "patch-too-many-lines")]  # nothing path by path
    (finding,) = doc["findings"]
    assert "2000006 lines: over the limit of 64 lines per patch" in finding["message"]
    assert doc["policy"]["limits"]["max_patch_lines"] == 64


def test_a_patch_within_the_limits_passes(repo: Path) -> None:
    run_id = launch_dry(repo, "--workers", "A")
    patch = make_patch(repo, {"src/app.py": "print('v2')\n", "src/b.py": "B = 2\n"})
    set_bundle(repo, run_id, "A", patch + b"\n" * (64 - patch.count(b"\n")))
    code, doc = validate(repo, run_id)
    assert code == 0, doc["findings"]


def test_too_many_file_sections_or_listed_paths_are_limit_findings(repo: Path) -> None:
    run_id = launch_dry(repo, "--workers", "A,B")
    three = make_patch(repo, {"src/app.py": "v\n", "src/b.py": "b\n", "src/c.py": "c\n"})
    set_bundle(repo, run_id, "A", three)
    set_bundle(repo, run_id, "B", b"", [f"docs/{n}.md" for n in range(5)])
    code, doc = validate(repo, run_id)
    assert code == 3
    assert rules_of(doc, "A") == [("DIFF.patch", "patch-too-many-files")]
    assert rules_of(doc, "B") == [("FILES_CHANGED.json", "patch-too-many-files")]
    messages = sorted(f["message"] for f in doc["findings"])
    assert (
        "more than 2 file sections (limits.max_patch_files; the next one starts at line"
        in (messages[0])
    )
    assert "5 paths listed: over the limit of 4" in messages[1]
    res = run_cli("--repo", str(repo), "--now", PINNED, "ledger-replay", "--run-id", run_id)
    assert res.returncode == 0, res.stdout


def git_readings_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A POSIX wrapper in front of the real git that notes each `git apply --numstat` (git's
    reading of a patch) in the file it returns."""
    real_git = shutil.which("git")
    assert real_git is not None
    bin_dir, log = tmp_path / "bin", tmp_path / "readings.log"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(
        f'#!/bin/sh\ncase " $* " in *" apply "*"--numstat "*) echo "read $*" >> "{log}";; esac\n'
        f'exec "{real_git}" "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ["PATH"])
    return log


@pytest.mark.skipif(os.name == "nt", reason="a POSIX shell wrapper stands in for git")
def test_git_never_reads_a_patch_over_the_limits(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limits bound git's work too: a hostile patch of a million tiny sections would hold
    git (twice, at once) in far more memory than the limits allow us."""
    log = git_readings_logged(tmp_path, monkeypatch)
    three = make_patch(repo, {"src/app.py": "v\n", "src/b.py": "b\n", "src/c.py": "c\n"})
    for patch, rule in ((three, "files"), (SECTION + b"\n" * 100, "lines")):
        run_id = launch_dry(repo, "--workers", "A")
        set_bundle(repo, run_id, "A", patch, ["src/app.py"] if rule == "lines" else None)
        code, doc = validate(repo, run_id)
        assert (code, rules_of(doc)) == (3, [("DIFF.patch", f"patch-too-many-{rule}")])
    assert not log.exists(), log.read_text()
    run_id = launch_dry(repo, "--workers", "A")
    set_bundle(repo, run_id, "A", make_patch(repo, {"src/app.py": "v\n", "src/b.py": "b\n"}))
    assert validate(repo, run_id)[0] == 0
    assert [r.split()[-2:] for r in log.read_text().splitlines()] == [["-z", "-"]] * 2, (
        log.read_text()
    )


def test_an_import_over_the_limits_is_a_usage_error(repo: Path, tmp_path: Path) -> None:
    run_id = launch_dry(repo, "--workers", "A")
    before = (run_dir(repo, run_id) / "A_worker" / "DIFF.patch").read_bytes()
    for content, expected in (
        (
            SECTION + b"\n" * 100,
            "106 lines: over the limit of 64 lines per patch (limits.max_patch_lines)",
        ),
        (
            make_patch(repo, {"src/app.py": "v\n", "src/b.py": "b\n", "src/c.py": "c\n"}),
            "more than 2 file sections (limits.max_patch_files; the next one starts at line 15)",
        ),
    ):
        source = tmp_path / "in.patch"
        source.write_bytes(content)
        res = run_cli("--repo", str(repo), "bundle-import", "--run-id", run_id, "--worker", "A",
                      "--patch", str(source))  # fmt: skip
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip() == f"factory: error: --patch {source}: {expected}"
    assert (run_dir(repo, run_id) / "A_worker" / "DIFF.patch").read_bytes() == before


def test_an_import_whose_diff_against_the_base_is_over_the_limit_is_a_usage_error(
    repo: Path, tmp_path: Path
) -> None:
    """Git's diff of an imported patch may be longer (a copy is written out as a new file): the
    bundle it would write is judged by the same limits, so the import refuses it rather than
    leave a bundle that blocks."""
    lines = [f"line {n}\n" for n in range(100)]
    (repo / "long.txt").write_text("".join(lines), encoding="utf-8")
    git(repo, "add", "long.txt")
    git(repo, "commit", "-qm", "long file")
    run_id = launch_dry(repo, "--workers", "A")
    before = (run_dir(repo, run_id) / "A_worker" / "DIFF.patch").read_bytes()
    source = tmp_path / "copy.patch"  # 4 lines; git writes the copy as a new file of 100 lines
    source.write_bytes(
        b"diff --git a/long.txt b/copy.txt\nsimilarity index 100%\n"
        b"copy from long.txt\ncopy to copy.txt\n"
    )
    res = run_cli("--repo", str(repo), "bundle-import", "--run-id", run_id, "--worker", "A",
                  "--patch", str(source))  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(
        f"factory: error: --patch {source}: its diff against the run's base has "
    )
    assert "over the limit of 64 lines per patch (limits.max_patch_lines)" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert (run_dir(repo, run_id) / "A_worker" / "DIFF.patch").read_bytes() == before


def test_policies_before_version_5_record_no_patch_limits(repo: Path) -> None:
    """Replay recomputes an earlier run's policy at its own version: unchanged by the limits."""
    run_id = launch_dry(repo, "--workers", "A")
    manifest = read_json(run_dir(repo, run_id) / "RUN_MANIFEST.json")
    assert "max_patch_lines" not in validate_stage.policy(manifest, 4)["limits"]
    assert "max_list_items" in validate_stage.policy(manifest, 4)["limits"]
    now = validate_stage.policy(manifest)["limits"]
    assert (now["max_patch_lines"], now["max_patch_files"]) == (64, 2)


def test_the_limits_are_checked_config_values(repo: Path) -> None:
    write_json(repo / "tools/codex/factory/factory.config.json", {"limits": {"max_patch_files": 0}})
    res = run_cli("--repo", str(repo), "launch", "--dry-run")
    assert res.returncode == 2
    assert "limits" in res.stderr and "max_patch_files" in res.stderr
    write_json(repo / "tools/codex/factory/factory.config.json", {"limits": {"max_patch_files": 1}})
    assert run_cli("--repo", str(repo), "launch", "--dry-run").returncode == 0


def peak_bytes(data: bytes) -> int:
    """Peak memory Python allocates while parsing ``data`` (the input itself excluded)."""
    tracemalloc.start()
    try:
        patchparse.parse(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_parser_memory_is_what_the_sections_keep() -> None:
    """No list of every line: many lines cost no memory beyond the section bytes kept."""
    blank = SECTION + b"\n" * 2_000_000
    assert peak_bytes(blank) < 200_000
    hunk = (
        b"diff --git a/big.txt b/big.txt\nnew file mode 100644\n--- /dev/null\n+++ b/big.txt\n"
        b"@@ -0,0 +1,300000 @@\n" + b"+\n" * 300_000
    )
    assert peak_bytes(hunk) < 2 * len(hunk)  # the section's own bytes, once


def test_many_sections_of_one_path_are_joined_in_linear_time() -> None:
    one = b"diff --git a/src/app.py b/src/app.py\nold mode 100644\nnew mode 100755\n"
    section = patchparse.FileChange("src/app.py", "src/app.py", "mode", raw=one)
    patch = patchparse.Patch([section] * 100_000)
    start = time.monotonic()
    sections = patch.sections_by_path()
    assert time.monotonic() - start < 1  # each path's sections joined once, not re-copied
    assert sections == {"src/app.py": one * 100_000}
