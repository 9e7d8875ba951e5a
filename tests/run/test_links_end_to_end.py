"""Links planted where the run's guarded writer writes, end to end through the commands: at the
final names (VALIDATION.json, a snapshot, the files `bundle-import` writes into a bundle) and at
the writer's temporary names (``.<name>.<16 hex>.tmp``, the draw pinned so the link sits at the
very name drawn first, and the older ``.<name>.tmp<pid>``). The files the links point at, outside
the run, stay as they were, and the written files are regular files."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from tests.support.factory import launch_dry, make_patch, read_json, run_dir, set_bundle
from tests.support.repos import PINNED, make_repo, run_cli

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")

FILES = {"README.md": "hello\n", "src/app.py": "print('app')\n"}
DRAWN = "feedfacefeedface"
PRECIOUS = b"precious, outside the run\n"
LEDGER = "tools/codex/runs/factory_ledger.jsonl"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


@pytest.fixture
def pinned_draw(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every write's first temporary name is drawn as ``DRAWN`` (the next draws of the same
    write, and every other use of the random source, stay random): a link planted at
    ``.<name>.DRAWN.tmp`` sits at the very name the writer tries first. Returns the names of
    the draws, to show the planted ones were hit."""
    import secrets

    real = secrets.token_hex
    seen: list[object] = []  # the writers' frames that drew already (kept: ids never reused)
    hits: list[str] = []

    def draw(n: int | None = None) -> str:
        caller = sys._getframe(1)
        if caller.f_code.co_name != "_create_temp" or caller in seen:
            return real(n)
        seen.append(caller)
        hits.append(str(caller.f_locals.get("name")))
        return DRAWN

    monkeypatch.setattr("tools.codex.factory.infra.writer.secrets.token_hex", draw)
    return hits


def plant(folder: Path, name: str, outside: Path, *, final: bool) -> list[Path]:
    """Links at ``name``'s temporary names (or, ``final``, at ``name`` itself), each to a file
    of its own outside; returns those files."""
    folder.mkdir(parents=True, exist_ok=True)
    links = [name] if final else [f".{name}.{DRAWN}.tmp", f".{name}.tmp{os.getpid()}"]
    targets = []
    for i, link in enumerate(links):
        target = outside / f"{name}.{i}"
        target.write_bytes(PRECIOUS)
        (folder / link).unlink(missing_ok=True)
        (folder / link).symlink_to(target)
        targets.append(target)
    return targets


def assert_untouched(targets: list[Path]) -> None:
    for target in targets:
        assert target.read_bytes() == PRECIOUS, target


def cli(repo: Path, *args: str) -> tuple[int, str]:
    res = run_cli("--repo", str(repo), "--now", PINNED, *args)
    return res.returncode, res.stdout + res.stderr


def violations(repo: Path, run_id: str) -> list[dict[str, object]]:
    return [
        e["payload"]
        for e in (json.loads(x) for x in (repo / LEDGER).read_text().splitlines())
        if e["event_type"] == "policy.violation" and e["run_id"] == run_id
    ]


def assert_refused(out: str, rel: str) -> None:
    """One line naming the file and the rule, no traceback."""
    assert out.count("\n") == 1 and "Traceback" not in out, out
    assert f"write to {rel!r} refused: resolves outside the run folder" in out, out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def validation_run(repo: Path) -> tuple[str, bytes]:
    run_id = launch_dry(repo, "--workers", "A")
    patch = make_patch(repo, {"src/app.py": "print('v2')\n"})
    set_bundle(repo, run_id, "A", patch)
    return run_id, patch


def test_bundle_validate_writes_past_links_at_its_temporary_names(
    repo: Path, outside: Path, pinned_draw: list[str]
) -> None:
    run_id, patch = validation_run(repo)
    run = run_dir(repo, run_id)
    targets = plant(run, "VALIDATION.json", outside, final=False)
    targets += plant(run / "snapshots", hashlib.sha256(patch).hexdigest(), outside, final=False)
    code, out = cli(repo, "bundle-validate", "--run-id", run_id)
    assert_untouched(targets)
    assert code == 0, out
    assert {"VALIDATION.json", hashlib.sha256(patch).hexdigest()} <= set(pinned_draw)
    final = run / "VALIDATION.json"
    assert not final.is_symlink() and final.is_file()
    snap = run / "snapshots" / read_json(final)["apply_sha256"]["A"]
    assert not snap.is_symlink() and snap.read_bytes() == patch
    code, out = cli(repo, "integrate", "--run-id", run_id)
    assert code == 0, out
    assert b"print('v2')" in (run / "Z_integrator" / "DIFF.patch").read_bytes()
    assert_untouched(targets)


@pytest.mark.parametrize("at", ["VALIDATION.json", "snapshot"])
def test_bundle_validate_refuses_a_link_at_a_final_name(repo: Path, outside: Path, at: str) -> None:
    run_id, patch = validation_run(repo)
    run = run_dir(repo, run_id)
    if at == "snapshot":
        rel = f"snapshots/{hashlib.sha256(patch).hexdigest()}"
        targets = plant(run / "snapshots", rel.split("/")[1], outside, final=True)
    else:
        rel = "VALIDATION.json"
        targets = plant(run, rel, outside, final=True)
    code, out = cli(repo, "bundle-validate", "--run-id", run_id)
    assert_untouched(targets)
    assert code == 3, out
    assert_refused(out, rel)
    (violation,) = violations(repo, run_id)  # on record
    assert violation["path"] == rel and "resolves outside the run folder" in str(
        violation["reason"]
    )
    code, out = cli(repo, "integrate", "--run-id", run_id)
    assert code == 3, out  # nothing validated: nothing integrated
    assert_untouched(targets)


IMPORTED = ("DIFF.patch", "FILES_CHANGED.json", "STATUS.json", "SUMMARY.md")


def import_into_a(repo: Path, tmp_path: Path) -> tuple[str, Path, Path]:
    run_id = launch_dry(repo, "--workers", "A")
    source = tmp_path / "fix.patch"
    source.write_bytes(make_patch(repo, {"src/app.py": "print('imported')\n"}))
    return run_id, run_dir(repo, run_id) / "A_worker", source


def test_bundle_import_writes_past_links_at_its_temporary_names(
    repo: Path, tmp_path: Path, outside: Path, pinned_draw: list[str]
) -> None:
    run_id, bundle, source = import_into_a(repo, tmp_path)
    targets: list[Path] = []
    for name in IMPORTED:
        targets += plant(bundle, name, outside, final=False)
    targets += plant(bundle / "LOGS", "import.source.patch", outside, final=False)
    code, out = cli(
        repo, "bundle-import", "--run-id", run_id, "--worker", "A", "--patch", str(source)
    )
    assert_untouched(targets)
    assert code == 0, out
    assert {*IMPORTED, "import.source.patch"} <= set(pinned_draw)
    for name in IMPORTED:
        assert not (bundle / name).is_symlink() and (bundle / name).is_file(), name
    assert b"print('imported')" in (bundle / "DIFF.patch").read_bytes()
    log = bundle / "LOGS" / "import.source.patch"
    assert not log.is_symlink() and log.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("name", [*IMPORTED, "LOGS/import.source.patch"])
def test_bundle_import_refuses_a_link_at_a_final_name(
    repo: Path, tmp_path: Path, outside: Path, name: str
) -> None:
    run_id, bundle, source = import_into_a(repo, tmp_path)
    targets = plant((bundle / name).parent, Path(name).name, outside, final=True)
    code, out = cli(
        repo, "bundle-import", "--run-id", run_id, "--worker", "A", "--patch", str(source)
    )
    assert_untouched(targets)
    assert code == 3, out
    assert_refused(out, f"A_worker/{name}")
