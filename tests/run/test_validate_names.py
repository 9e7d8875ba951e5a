"""Names that are the same file somewhere: one equivalence for collisions, overlaps and
protected paths, each refusal naming its rule (real runs, real patches)."""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from tests.support.factory import (
    launch_dry,
    read_json,
    run_dir,
    set_bundle,
    write_config,
    write_json,
)
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


# -- Windows 8.3 short names -------------------------------------------------------------------
SHORT_FILES = {
    **FILES,
    "scenarios/answer.md": "# hidden\n",
    "tools/__init__.py": "",
    "docs/long-file-name.md": "long\n",
}


@pytest.fixture
def short_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "short", SHORT_FILES)


def only_a(tmp_path: Path, **fields: list[str]) -> Path:
    path = tmp_path / "plan-a.json"
    write_json(
        path,
        {"schema_version": 1, "workers": [{"id": "A", "task": "a", "allow": ["**"], **fields}]},
    )
    return path


def messages(doc: dict[str, object], rule: str) -> list[str]:
    found: list[dict[str, str]] = doc["findings"]  # type: ignore[assignment]
    return [f["message"] for f in found if f["rule"] == rule]


def ledger_events(repo: Path, event_type: str) -> list[dict[str, Any]]:
    lines = (repo / "tools/codex/runs/factory_ledger.jsonl").read_text("utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e["event_type"] == event_type]


def replay_ok(repo: Path, run_id: str) -> None:
    res = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id)
    assert res.returncode == 0 and "REPLAY OK" in res.stdout, res.stdout[-3000:] + res.stderr


@pytest.mark.parametrize(
    "path",
    [
        "SCENAR~1/holdout.md",
        "scenar~2/holdout.md",
        "SCEN~1/answer.md",  # conservative: any start of the name
        "SC3F1A~5/holdout.md",  # the hashed form NTFS uses after four collisions
        "SCENAR~1./holdout.md",  # Win32 strips the dot
        "tools/__INIT~1.PY",
        "TOOLS~1/__init__.py",
        "TOOLS~1.PYD",  # tools.* at the root: a module Python would import
    ],
)
def test_a_short_name_of_a_protected_name_is_refused(
    short_repo: Path, tmp_path: Path, path: str
) -> None:
    """On NTFS with short names, 'SCENAR~1/holdout.md' is written into scenarios/; the finding
    blocks even where name collisions only warn."""
    write_config(short_repo, {"run": {"case_collisions": "warn"}})
    run_id = launch_dry(short_repo, "--plan", str(only_a(tmp_path)))
    set_bundle(short_repo, run_id, "A", add(path))
    code, doc = validate(short_repo, run_id)
    assert code == 3
    assert ("A", path, "name-short-alias") in rules(doc), doc["findings"]
    assert "8.3 short name" in messages(doc, "name-short-alias")[0]
    replay_ok(short_repo, run_id)


@pytest.mark.parametrize("path", ["GIT~2/config", "sub/gi~1/hooks/post-checkout", "GITMOD~5"])
def test_a_short_name_of_git_s_own_names_is_refused(repo: Path, tmp_path: Path, path: str) -> None:
    """git refuses 'git~1' only; 'GIT~2' is '.git' in a folder where 'GIT~1' was taken."""
    write_config(repo, {"run": {"case_collisions": "warn"}})
    run_id = launch_dry(repo, "--plan", str(only_a(tmp_path)))
    set_bundle(repo, run_id, "A", add(path))
    code, doc = validate(repo, run_id)
    assert code == 3 and ("A", path, "name-short-alias") in rules(doc), doc["findings"]
    assert "which git keeps for itself" in messages(doc, "name-short-alias")[0]


def test_a_short_name_of_a_base_name_is_an_alias(short_repo: Path, tmp_path: Path) -> None:
    run_id = launch_dry(short_repo, "--plan", str(only_a(tmp_path)))
    set_bundle(short_repo, run_id, "A", add("docs/LONG-F~1.MD"))
    code, doc = validate(short_repo, run_id)
    assert code == 3
    assert rules(doc) == {("A", "docs/LONG-F~1.MD", "name-short-alias")}, doc["findings"]
    assert "'docs/long-file-name.md' of the base" in messages(doc, "name-short-alias")[0]
    (facts,) = [e["payload"]["facts"] for e in ledger_events(short_repo, "bundle.facts")]
    assert facts["version"] == 4
    assert facts["base_short_aliases"] == {"docs/LONG-F~1.MD": "docs/long-file-name.md"}
    replay_ok(short_repo, run_id)


def test_a_short_name_of_another_worker_s_name_is_an_alias(repo: Path, tmp_path: Path) -> None:
    run_id = launch_dry(repo, "--plan", str(plan(tmp_path)))
    set_bundle(repo, run_id, "A", add("docs/another-long-name.md"))
    set_bundle(repo, run_id, "B", add("docs/ANOTHE~1.MD"))
    code, doc = validate(repo, run_id)
    assert code == 3
    assert rules(doc) == {
        ("A", "docs/another-long-name.md", "name-short-alias"),
        ("B", "docs/ANOTHE~1.MD", "name-short-alias"),
    }, doc["findings"]
    assert messages(doc, "name-short-alias")[0] == (
        "worker A: 'docs/ANOTHE~1.MD' (B) may be the Windows (NTFS) 8.3 short name of "
        "'docs/another-long-name.md' (A)"
    )
    replay_ok(repo, run_id)


def test_a_short_name_of_a_folder_one_worker_adds_is_an_alias(repo: Path, tmp_path: Path) -> None:
    """Also within one bundle, and for folders: both spellings write one folder."""
    run_id = launch_dry(repo, "--plan", str(plan(tmp_path)))
    set_bundle(repo, run_id, "A", add("generated/a.py") + add("GENERA~1/b.py"))
    code, doc = validate(repo, run_id)
    assert code == 3
    assert rules(doc) == {
        ("A", "generated", "name-short-alias"),
        ("A", "GENERA~1", "name-short-alias"),
    }, doc["findings"]


def test_short_name_collisions_warn_where_name_collisions_warn(
    short_repo: Path, tmp_path: Path
) -> None:
    write_config(short_repo, {"run": {"case_collisions": "warn"}})
    run_id = launch_dry(short_repo, "--plan", str(only_a(tmp_path)))
    set_bundle(short_repo, run_id, "A", add("docs/LONG-F~1.MD"))
    code, doc = validate(short_repo, run_id)
    assert code == 0, doc["findings"]
    assert rules(doc, "warnings") == {("A", "docs/LONG-F~1.MD", "name-short-alias")}


def test_a_short_name_in_a_deny_glob_is_denied(short_repo: Path, tmp_path: Path) -> None:
    run_id = launch_dry(short_repo, "--plan", str(only_a(tmp_path, deny=["private/**"])))
    set_bundle(short_repo, run_id, "A", add("PRIVAT~1/key.txt"))
    code, doc = validate(short_repo, run_id)
    assert code == 3 and ("A", "PRIVAT~1/key.txt", "scope-denied") in rules(doc)


@pytest.mark.parametrize(
    ("target", "rule"),
    [("../SCENAR~1/answer.md", "symlink-into-protected"), ("../GIT~2/config", "symlink-escape")],
)
def test_a_link_to_a_short_name_of_the_holdout_or_git_is_refused(
    short_repo: Path, tmp_path: Path, target: str, rule: str
) -> None:
    run_id = launch_dry(short_repo, "--plan", str(only_a(tmp_path, special=["docs/**"])))
    link = (
        "diff --git a/docs/l b/docs/l\nnew file mode 120000\n--- /dev/null\n+++ b/docs/l\n"
        f"@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n"
    )
    set_bundle(short_repo, run_id, "A", link.encode())
    code, doc = validate(short_repo, run_id)
    assert code == 3 and ("A", "docs/l", rule) in rules(doc), doc["findings"]
    assert "8.3 short name" in messages(doc, rule)[0]


@pytest.mark.parametrize(
    "path", ["docs/NOTES~1.MD", "src/v~2.py", "SCENAR~1.MD", "docs/a~1", "docs/GUIDE~1.TXT"]
)
def test_a_short_form_name_that_aliases_nothing_passes(
    short_repo: Path, tmp_path: Path, path: str
) -> None:
    run_id = launch_dry(short_repo, "--plan", str(only_a(tmp_path)))
    set_bundle(short_repo, run_id, "A", add(path))
    code, doc = validate(short_repo, run_id)
    assert code == 0, doc["findings"]
    (facts,) = [e["payload"]["facts"] for e in ledger_events(short_repo, "bundle.facts")]
    assert "base_short_aliases" not in facts  # recorded only when there are any


def test_runs_judged_by_the_previous_policy_keep_their_verdict(
    short_repo: Path, tmp_path: Path
) -> None:
    """Replay recomputes a run by the policy it recorded: version 5 knew no short names."""
    from tools.codex.factory.core import validation

    run_id = launch_dry(short_repo, "--plan", str(only_a(tmp_path)))
    set_bundle(short_repo, run_id, "A", add("SCENAR~1/x.md") + add("docs/LONG-F~1.MD"))
    code, _ = validate(short_repo, run_id)
    assert code == 3
    facts = {
        e["payload"]["worker"]: e["payload"]["facts"]
        for e in ledger_events(short_repo, "bundle.facts")
    }
    (decided,) = [e["payload"] for e in ledger_events(short_repo, "validation.decided")]
    assert decided["policy"]["version"] == 10
    assert validation.evaluate(facts, decided["policy"])["status"] == "BLOCKED"
    previous: Any = {**decided["policy"], "version": 5}
    assert validation.evaluate(facts, previous)["status"] == "PASS"


@pytest.mark.skipif(
    os.environ.get("FACTORY_TEST_REAL") == "1", reason="patches the validator in this process"
)
def test_facts_recorded_before_short_names_replay(
    short_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Facts of version 3 (recorded by the previous release, without base_short_aliases) are
    compared on the keys version 3 had: their replay is not a divergence."""
    from tools.codex.factory.run import validate as validate_mod

    run_id = launch_dry(short_repo, "--plan", str(only_a(tmp_path)))
    set_bundle(short_repo, run_id, "A", add("docs/LONG-F~1.MD"))
    gather = validate_mod.gather_facts  # type: ignore[attr-defined]

    def previous_release(*args: Any, **kwargs: Any) -> Any:
        facts = gather(*args, **kwargs)
        assert facts.pop("base_short_aliases")
        facts["version"] = 3
        return facts

    monkeypatch.setattr(validate_mod, "gather_facts", previous_release)
    res = run_cli("--repo", str(short_repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr  # judged without the key, as then
    monkeypatch.undo()
    recorded = [
        e["payload"]["facts"]
        for e in ledger_events(short_repo, "bundle.facts")
        if e["run_id"] == run_id
    ]
    assert recorded and all(
        f["version"] == 3 and "base_short_aliases" not in f for f in recorded
    )  # the previous release's facts really were recorded
    replay_ok(short_repo, run_id)
