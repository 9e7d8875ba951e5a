"""Names that are the same file somewhere: one equivalence for collisions, overlaps and
protected paths, each refusal naming its rule (real runs, real patches)."""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from pathlib import Path

import pytest

from tests.support.factory import launch_dry, read_json, run_dir, set_bundle, write_json
from tests.support.repos import PINNED, make_repo, run_cli
from tools.codex.factory.infra import gitops

FILES = {"README.md": "hello\n", "src/app.py": "print('app')\n", "docs/guide.md": "g\n"}


def add(path: str, text: str = "x\n") -> bytes:
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
        f"@@ -0,0 +1 @@\n+{text}"
    ).encode()


def quoted_add(path: str) -> bytes:
    """A git-quoted new file (git quotes names with non-ASCII bytes)."""
    raw = path.encode("utf-8")
    q = (
        '"'
        + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03o}" for b in raw)
        + '"'
    )
    a, b = q.replace('"', '"a/', 1), q.replace('"', '"b/', 1)
    return (
        f"diff --git {a} {b}\nnew file mode 100644\n--- /dev/null\n+++ {b}\n@@ -0,0 +1 @@\n+x\n"
    ).encode()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def plan(tmp_path: Path, **special: list[str]) -> Path:
    workers = []
    for wid in ("A", "B"):
        w: dict[str, object] = {"id": wid, "task": wid, "allow": ["**"]}
        if wid in special:
            w["special"] = special[wid]
        workers.append(w)
    path = tmp_path / "plan.json"
    write_json(path, {"schema_version": 1, "workers": workers})
    return path


def validate(repo: Path, run_id: str, **env: str) -> tuple[int, dict[str, object]]:
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id, env=env or None
    )
    return res.returncode, read_json(run_dir(repo, run_id) / "VALIDATION.json")


def rules(doc: dict[str, object], key: str = "findings") -> set[tuple[str, str, str]]:
    return {(f["worker"], f["path"], f["rule"]) for f in doc[key]}  # type: ignore[index, union-attr]


def test_nfc_and_nfd_spellings_by_two_workers_are_one_file(repo: Path, tmp_path: Path) -> None:
    nfc = unicodedata.normalize("NFC", "docs/café.md")
    nfd = unicodedata.normalize("NFD", "docs/café.md")
    run_id = launch_dry(repo, "--plan", str(plan(tmp_path)))
    set_bundle(repo, run_id, "A", quoted_add(nfc))
    set_bundle(repo, run_id, "B", quoted_add(nfd))
    code, doc = validate(repo, run_id)
    assert code == 3
    assert {("A", nfc, "name-alias"), ("B", nfd, "name-alias")} <= rules(doc)


def test_case_variants_use_full_case_folding(repo: Path, tmp_path: Path) -> None:
    run_id = launch_dry(repo, "--plan", str(plan(tmp_path)))
    set_bundle(repo, run_id, "A", quoted_add("docs/STRASSE.md"))
    set_bundle(repo, run_id, "B", quoted_add("docs/straße.md"))
    code, doc = validate(repo, run_id)
    assert code == 3
    assert ("B", "docs/straße.md", "case-collision") in rules(doc) or (
        "B",
        "docs/straße.md",
        "name-alias",
    ) in rules(doc)


def test_a_file_and_a_folder_of_one_name_clash(repo: Path, tmp_path: Path) -> None:
    run_id = launch_dry(repo, "--plan", str(plan(tmp_path)))
    set_bundle(repo, run_id, "A", add("notes"))
    set_bundle(repo, run_id, "B", add("Notes/today.md"))
    code, doc = validate(repo, run_id)
    assert code == 3
    assert {
        ("A", "notes", "file-directory-clash"),
        ("B", "Notes/today.md", "file-directory-clash"),
    } <= rules(doc)


def test_an_alias_of_a_base_file_or_folder_clashes(repo: Path, tmp_path: Path) -> None:
    run_id = launch_dry(repo, "--plan", str(plan(tmp_path)))
    set_bundle(repo, run_id, "A", add("readme.md"))
    set_bundle(repo, run_id, "B", add("DOCS"))
    code, doc = validate(repo, run_id)
    assert code == 3
    assert ("A", "readme.md", "case-collision") in rules(doc)
    assert ("B", "DOCS", "file-directory-clash") in rules(doc)


@pytest.mark.parametrize("path", ["scenarios./x.md", "SCENARIOS/x.md", "scenarios /x.md"])
def test_a_protected_folder_under_another_spelling_is_protected(
    repo: Path, tmp_path: Path, path: str
) -> None:
    run_id = launch_dry(repo, "--plan", str(plan(tmp_path)))
    set_bundle(repo, run_id, "A", add(path))
    code, doc = validate(repo, run_id)
    assert code == 3
    assert ("A", path, "protected-path") in rules(doc)


def test_windows_reserved_names_block_or_warn(repo: Path, tmp_path: Path) -> None:
    run_id = launch_dry(repo, "--plan", str(plan(tmp_path)))
    set_bundle(repo, run_id, "A", add("src/aux.c"))
    code, doc = validate(repo, run_id)
    assert code == 3 and ("A", "src/aux.c", "name-windows-reserved") in rules(doc)
    res = run_cli(
        "--repo",
        str(repo),
        "--now",
        PINNED,
        "launch",
        "--dry-run",
        "--run-id",
        "names-warn",
        "--plan",
        str(plan(tmp_path)),
        env={"FACTORY_RUN__PORTABLE_NAMES": "warn"},
    )
    assert res.returncode == 0, res.stderr
    set_bundle(repo, "names-warn", "A", add("src/aux.c"))
    code, doc = validate(repo, "names-warn")
    assert code == 0
    assert ("A", "src/aux.c", "name-windows-reserved") in rules(doc, "warnings")


def test_a_git_alias_always_blocks_even_with_portable_names_warn(
    repo: Path, tmp_path: Path
) -> None:
    res = run_cli(
        "--repo",
        str(repo),
        "--now",
        PINNED,
        "launch",
        "--dry-run",
        "--run-id",
        "git-alias",
        "--plan",
        str(plan(tmp_path)),
        env={"FACTORY_RUN__PORTABLE_NAMES": "warn"},
    )
    assert res.returncode == 0, res.stderr
    set_bundle(repo, "git-alias", "A", add("src/GIT~1/config"))
    code, doc = validate(repo, "git-alias")
    assert code == 3
    assert any(r[2] in ("path-git-dir", "name-git-alias") for r in rules(doc))


@pytest.mark.parametrize("name", [".gitattributes", "src/.gitattributes", ".gitmodules"])
def test_special_files_block_unless_the_plan_allows_them(
    repo: Path, tmp_path: Path, name: str
) -> None:
    run_id = launch_dry(repo, "--plan", str(plan(tmp_path)))
    set_bundle(repo, run_id, "A", add(name, "* -whitespace\n"))
    code, doc = validate(repo, run_id)
    kind = name.rsplit("/", 1)[-1].lstrip(".")
    assert code == 3 and ("A", name, f"special-{kind}") in rules(doc)
    allowed = launch_dry(repo, "--plan", str(plan(tmp_path, A=[name])), "--run-id", f"ok-{kind}")
    set_bundle(repo, allowed, "A", add(name, "* -whitespace\n"))
    code, doc = validate(repo, allowed)
    if kind == "gitattributes" and not gitops.honours_attr_source():
        # Allowed by the plan, but checks could not read attributes from the base commit.
        assert {r[2] for r in rules(doc)} == {"gitattributes-unchecked"}
    else:
        assert code == 0, doc["findings"]


# -- names on disk that are not UTF-8 ----------------------------------------------------------
needs_byte_names = pytest.mark.skipif(
    sys.platform in ("win32", "darwin"), reason="the filesystem takes only Unicode names"
)


def plant_byte_name(folder: Path) -> None:
    """A folder and a file in it whose names are bytes that are not UTF-8 (any Linux name)."""
    base = os.fsencode(folder)
    os.makedirs(os.path.join(base, b"d\xff"))
    with open(os.path.join(base, b"d\xff", b"bad\xfe.log"), "wb") as fh:
        fh.write(b"x\n")


@needs_byte_names
def test_a_name_that_is_not_utf8_is_a_finding_shown_escaped(repo: Path) -> None:
    run_id = launch_dry(repo)
    plant_byte_name(run_dir(repo, run_id) / "A_worker" / "LOGS")
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "internal error" not in res.stdout + res.stderr
    lines = [line for line in res.stdout.splitlines() if "[name-not-utf8]" in line]
    assert len(lines) == 2, res.stdout
    assert "A LOGS/d\\xff:" in lines[0] and "A LOGS/d\\xff/bad\\xfe.log:" in lines[1]
    doc = read_json(run_dir(repo, run_id) / "VALIDATION.json")
    assert {f["path"] for f in doc["findings"] if f["rule"] == "name-not-utf8"} == {
        "LOGS/d\\xff",
        "LOGS/d\\xff/bad\\xfe.log",
    }
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id)
    assert replay.returncode == 0, replay.stdout + replay.stderr  # the facts re-derive alike


@needs_byte_names
def test_a_name_that_is_not_utf8_planted_after_validation_blocks_integrate(repo: Path) -> None:
    run_id = launch_dry(repo)
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    plant_byte_name(run_dir(repo, run_id) / "A_worker")
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "internal error" not in res.stdout + res.stderr
    assert "bundle A_worker changed since it was validated" in res.stdout
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id)
    assert replay.returncode == 3 and "internal error" not in replay.stdout + replay.stderr
    assert "A_worker/d\\xff/bad\\xfe.log" in replay.stdout


@needs_byte_names
def test_collect_leaves_a_log_name_that_is_not_utf8_to_validation(repo: Path) -> None:
    res = run_cli("--repo", str(repo), "--now", PINNED, "launch", "--json")  # real worktrees
    assert res.returncode == 0, res.stdout + res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    plant_byte_name(run_dir(repo, run_id) / "A_worker" / "LOGS")
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-collect", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 3 and "[name-not-utf8] A LOGS/d\\xff/bad\\xfe.log" in res.stdout
