"""The trust boundary: what is validated is what is applied; the manifest, the run lock, the
protected paths, bounded inputs and the shared git folder hold against a hostile worker."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from tests.support.factory import launch_dry, make_patch, read_json, run_dir, set_bundle, write_json
from tests.support.repos import PINNED, git, make_repo, run_cli
from tools.codex.factory.infra.locks import ProcessLock

FILES = {
    "README.md": "hello\n",
    "src/app.py": "print('app')\n",
    "scenarios/secret.md": "# Scenario: hidden\n",
    "tools/__init__.py": "",
    "tools/codex/__init__.py": "",
}
EVERYTHING = {"schema_version": 1, "workers": [{"id": "A", "task": "all", "allow": ["**"]}]}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def cli(repo: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    res = run_cli("--repo", str(repo), "--now", PINNED, *args, env=env)
    return res.returncode, res.stdout, res.stderr


def validate(repo: Path, run_id: str) -> tuple[int, str, str]:
    return cli(repo, "bundle-validate", "--run-id", run_id)


def integrate(repo: Path, run_id: str) -> tuple[int, str, str]:
    return cli(repo, "integrate", "--run-id", run_id)


def plan_file(tmp_path: Path, doc: dict[str, object] = EVERYTHING) -> Path:
    path = tmp_path / "plan.json"
    write_json(path, doc)
    return path


def everything_run(repo: Path, tmp_path: Path) -> str:
    return launch_dry(repo, "--plan", str(plan_file(tmp_path)))


# -- 1. validated bytes are applied bytes ------------------------------------------------------
def test_a_bundle_swapped_during_integration_is_not_what_gets_applied(
    repo: Path, tmp_path: Path
) -> None:
    """A `git` wrapper swaps the worker's DIFF.patch for one touching the holdout as soon as
    integrate builds its sandbox (after every check of the bundle): the sandbox still gets the
    validated bytes."""
    run_id = everything_run(repo, tmp_path)
    good = make_patch(repo, {"src/app.py": "print('v2')\n"})
    evil = make_patch(repo, {"scenarios/secret.md": "leaked\n", "src/app.py": "print('v2')\n"})
    set_bundle(repo, run_id, "A", good)
    assert validate(repo, run_id)[0] == 0
    bundle = run_dir(repo, run_id) / "A_worker"
    real_git = next(
        Path(d) / "git" for d in os.environ["PATH"].split(os.pathsep) if (Path(d) / "git").is_file()
    )
    shim = tmp_path / "bin"
    shim.mkdir()
    (tmp_path / "evil.patch").write_bytes(evil)
    script = shim / "git"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *init*) '
        f"cp {tmp_path / 'evil.patch'} {bundle / 'DIFF.patch'};; esac\n"
        f'exec {real_git} "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    if sys.platform == "win32":  # pragma: no cover - a shell script cannot stand in for git
        pytest.skip("needs a POSIX shell wrapper")
    code, out, err = cli(
        repo,
        "integrate",
        "--run-id",
        run_id,
        env={"PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"},
    )
    assert (bundle / "DIFF.patch").read_bytes() == evil  # the swap happened
    merged = (run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch").read_bytes()
    assert b"scenarios/secret.md" not in merged and b"leaked" not in merged
    assert b"src/app.py" in merged
    assert code == 0, out + err
    replay = cli(repo, "ledger-replay", "--run-id", run_id)
    assert replay[0] == 3 and "A_worker/DIFF.patch" in replay[1]  # replay sees the swap


def test_a_changed_snapshot_is_refused(repo: Path, tmp_path: Path) -> None:
    run_id = everything_run(repo, tmp_path)
    set_bundle(repo, run_id, "A", make_patch(repo, {"src/app.py": "print('v2')\n"}))
    assert validate(repo, run_id)[0] == 0
    doc = read_json(run_dir(repo, run_id) / "VALIDATION.json")
    snap = run_dir(repo, run_id) / "snapshots" / doc["apply_sha256"]["A"]
    snap.write_bytes(make_patch(repo, {"scenarios/secret.md": "leaked\n"}))
    code, _out, _err = integrate(repo, run_id)
    assert code == 3
    status = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
    assert status["status"] == "BLOCKED" and "[snapshot-changed]" in " ".join(status["reasons"])


def test_bundle_validate_takes_the_run_lock(repo: Path) -> None:
    run_id = launch_dry(repo)
    lock = ProcessLock(run_dir(repo, run_id) / "locks" / "run.lock", 0, "test")
    with lock:
        code, _out, err = validate(repo, run_id)
    lock.close()
    assert code == 3 and "run lock" in err and "held by another" in err
    assert not (run_dir(repo, run_id) / "VALIDATION.json").exists()


@pytest.mark.parametrize("stage", ["bundle-validate", "integrate", "bundle-collect"])
def test_an_edited_manifest_is_refused_by_every_stage(
    repo: Path, tmp_path: Path, stage: str
) -> None:
    """Widening the protected paths and scopes in RUN_MANIFEST.json (and SCOPE_LOCK.json to
    match) no longer gets a holdout change through."""
    run_id = everything_run(repo, tmp_path)
    folder = run_dir(repo, run_id)
    manifest = read_json(folder / "RUN_MANIFEST.json")
    manifest["config"]["security"]["protected_paths"] = []
    manifest["config"]["security"]["holdout_paths"] = []
    write_json(folder / "RUN_MANIFEST.json", manifest)
    set_bundle(repo, run_id, "A", make_patch(repo, {"scenarios/secret.md": "leaked\n"}))
    code, _out, err = cli(repo, stage, "--run-id", run_id)
    assert code == 3, err
    assert "[manifest-changed]" in err and "RUN_MANIFEST.json" in err


# -- 5. the factory and its records are protected ----------------------------------------------
@pytest.mark.parametrize(
    "path", ["tools/__init__.py", "tools/codex/__init__.py", "tools/codex/runs/fake/STATUS.json"]
)
def test_the_import_chain_and_the_runs_folder_are_protected(
    repo: Path, tmp_path: Path, path: str
) -> None:
    run_id = everything_run(repo, tmp_path)
    patch = (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
        "@@ -0,0 +1 @@\n+import os\n"
    )
    if path in FILES:  # an existing (empty) file: a modification
        patch = (
            f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -0,0 +1 @@\n+import os\n"
        )
    set_bundle(repo, run_id, "A", patch.encode())
    code, out, _err = validate(repo, run_id)
    assert code == 3
    assert f"[protected-path] A {path}" in out.replace("BLOCK ", "")


# Every file Python's import system may load for the packages `python -m tools.codex.factory`
# imports on its way to the factory: for each package, its __init__ and a module file of the
# same name, in every suffix this Python knows (extension modules first), and the bytecode
# caches (an unchecked-hash .pyc runs without its source being read).
CHAIN = ("tools", "tools/codex", "tools/codex/factory")


def _loadable_spellings() -> list[str]:
    import importlib.machinery
    import importlib.util

    out: set[str] = set()
    for module in CHAIN:
        for suffix in importlib.machinery.all_suffixes():
            out.add(f"{module}/__init__{suffix}")
            out.add(f"{module}{suffix}")
        for level in ("", 1, 2):
            out.add(importlib.util.cache_from_source(f"{module}/__init__.py", optimization=level))
    return sorted(out)


def test_every_file_python_may_load_for_the_import_chain_is_protected_by_default() -> None:
    from tools.codex.factory.core.validation import protected_match
    from tools.codex.factory.run.config import DEFAULTS

    protected = DEFAULTS["security"]["protected_paths"]
    extra = [
        "tools/__init__.pyd",
        "tools/codex/__init__.cp311-win_amd64.pyd",
        "TOOLS/__INIT__.ABI3.SO",
    ]
    missed = [p for p in [*_loadable_spellings(), *extra] if protected_match(p, protected) is None]
    assert missed == []


@pytest.mark.parametrize(
    ("path", "plan"),
    [
        ("tools/__init__.abi3.so", None),
        ("tools/__init__.cpython-311-x86_64-linux-gnu.so", None),
        ("tools/__pycache__/__init__.cpython-311.pyc", None),
        ("tools/codex/__init__.abi3.so", None),
        ("tools/codex/__pycache__/__init__.cpython-311.pyc", None),
        ("tools/codex.py", None),
        ("tools.py", EVERYTHING),
        ("tools.abi3.so", EVERYTHING),
    ],
)
def test_a_bundle_adding_another_spelling_of_the_import_chain_is_blocked(
    repo: Path, tmp_path: Path, path: str, plan: dict[str, object] | None
) -> None:
    """Default worker A may change tools/**; an extension module or an unchecked-hash .pyc
    for tools/__init__ would run before the factory on the operator's next command."""
    run_id = (
        launch_dry(repo, "--plan", str(plan_file(tmp_path, plan))) if plan else launch_dry(repo)
    )
    body = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256))  # binary, like the real thing
    set_bundle(repo, run_id, "A", make_patch(repo, {path: body}))
    code, out, _err = validate(repo, run_id)
    assert code == 3, out
    assert f"[protected-path] A {path}" in out.replace("BLOCK ", "")


# -- 7. bounded work on hostile input ----------------------------------------------------------
def test_a_sparse_terabyte_file_is_listed_not_read(repo: Path) -> None:
    run_id = launch_dry(repo)
    huge = run_dir(repo, run_id) / "A_worker" / "LOGS" / "huge.log"
    with open(huge, "wb") as fh:
        fh.truncate(1 << 40)
    code, out, _err = validate(repo, run_id)
    assert code == 3
    assert "bundle-file-too-large" in out and str(1 << 40) in out


def test_a_very_deep_bundle_folder_is_walked_without_recursion(repo: Path) -> None:
    run_id = launch_dry(repo)
    deep = run_dir(repo, run_id) / "A_worker" / "LOGS"
    here = os.getcwd()
    try:
        os.chdir(deep)
        for _ in range(1100):  # relative creation: the absolute path would exceed PATH_MAX
            os.mkdir("d")
            os.chdir("d")
    finally:
        os.chdir(here)
    try:
        code, out, err = validate(repo, run_id)
        assert code == 0, out + err  # an empty folder tree is harmless; it just must not crash
    finally:
        _remove_deep(deep, "d")


def _remove_deep(top: Path, name: str) -> None:
    """Remove a chain of nested folders ``name/name/...`` below ``top`` without recursion and
    without long paths (so pytest's recursive clean-up of its temporary folders never meets it)."""
    here = os.getcwd()
    try:
        os.chdir(top)
        depth = 0
        while os.path.isdir(name):
            os.chdir(name)
            depth += 1
        for _ in range(depth):
            os.chdir("..")
            os.rmdir(name)
    finally:
        os.chdir(here)


def test_a_huge_worker_string_is_clipped_everywhere(repo: Path) -> None:
    run_id = launch_dry(repo)
    status = run_dir(repo, run_id) / "A_worker" / "STATUS.json"
    doc = read_json(status)
    doc["status"] = "X" * 20_000_000
    write_json(status, doc)
    code, out, err = validate(repo, run_id)
    assert code == 3
    assert max(len(line) for line in (out + err).splitlines()) < 20_000
    ledger = repo / "tools/codex/runs/factory_ledger.jsonl"
    assert max(len(line) for line in ledger.read_bytes().splitlines()) < 100_000
    assert "characters, sha256" in out


def test_duplicate_keys_in_bundle_json_are_refused(repo: Path) -> None:
    run_id = launch_dry(repo)
    files = run_dir(repo, run_id) / "A_worker" / "FILES_CHANGED.json"
    files.write_bytes(b'{"schema_version": 1, "files": ["src/app.py"], "files": []}\n')
    code, out, _err = validate(repo, run_id)
    assert code == 3 and "[json-invalid]" in out and "duplicate key 'files'" in out


@pytest.mark.parametrize("depth", [65, 1000, 1023])
def test_deeply_nested_json_is_a_finding_or_a_usage_error_not_a_crash(
    repo: Path, tmp_path: Path, depth: int
) -> None:
    """orjson reads 1023 levels; the duplicate-key pass and the schema validator recurse and
    would run out of stack: a document deeper than any the factory reads is refused first."""
    deep = b"[" * depth + b"]" * depth
    run_id = launch_dry(repo)
    files = run_dir(repo, run_id) / "A_worker" / "FILES_CHANGED.json"
    files.write_bytes(b'{"schema_version": 1, "files": ' + deep + b"}\n")
    code, out, err = validate(repo, run_id)
    assert code == 3 and "[json-invalid]" in out and "nested deeper than 64 levels" in out, err
    assert "internal error" not in out + err
    plan = tmp_path / "deep.json"
    plan.write_bytes(b'{"schema_version": 1, "workers": ' + deep + b"}")
    code, _out, err = cli(repo, "launch", "--dry-run", "--plan", str(plan))
    assert code == 2 and "nested deeper than 64 levels" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("which", ["plan", "config"])
def test_utf16_plan_or_config_is_named(repo: Path, tmp_path: Path, which: str) -> None:
    doc = json.dumps(EVERYTHING if which == "plan" else {"schema_version": 1})
    if which == "plan":
        target = tmp_path / "plan.json"
        args = ["launch", "--dry-run", "--plan", str(target)]
    else:
        target = repo / "tools/codex/factory/factory.config.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        args = ["config", "show"]
    target.write_bytes(doc.encode("utf-16"))
    code, _out, err = cli(repo, *args)
    assert code == 2
    assert "UTF-16 LE, not UTF-8" in err and "Out-File -Encoding utf8" in err
    assert len(err.strip().splitlines()) == 1


def test_numeric_config_values_are_bounded(repo: Path) -> None:
    code, _out, err = cli(repo, "config", "show", env={"FACTORY_LEDGER__LOCK_TIMEOUT_S": "1e10"})
    assert code == 2 and "ledger.lock_timeout_s" in err and "Traceback" not in err


# -- 10. Windows-first details -----------------------------------------------------------------
def test_editing_a_file_committed_with_crlf_passes_the_default_check(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "one\r\ntwo\r\n"})
    run_id = launch_dry(repo)
    set_bundle(repo, run_id, "C", make_patch(repo, {"README.md": "one\r\ntwo\r\nthree\r\n"}))
    assert validate(repo, run_id)[0] == 0
    code, out, err = integrate(repo, run_id)
    assert code == 0, out + err


def test_user_hooks_and_fsmonitor_never_run(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n", encoding="utf-8")
    hook.chmod(0o755)
    monitor = tmp_path / "fsmonitor.sh"
    monitor.write_text(f"#!/bin/sh\ntouch {marker}.fsmonitor\n", encoding="utf-8")
    monitor.chmod(0o755)
    git(repo, "config", "core.fsmonitor", str(monitor))
    git(repo, "checkout", "-q", "-b", "probe")  # the hook does run for the user's own git
    git(repo, "status", "--porcelain")  # and so does the fsmonitor
    assert marker.exists() and Path(f"{marker}.fsmonitor").exists()
    marker.unlink()
    Path(f"{marker}.fsmonitor").unlink()
    code, out, err = cli(repo, "launch")  # interactive workers: real `git worktree add`s
    assert code == 0, out + err
    assert not marker.exists() and not Path(f"{marker}.fsmonitor").exists()


def test_a_hook_planted_during_the_run_is_restored_and_blocks(repo: Path) -> None:
    code, out, err = cli(repo, "launch", "--json")
    assert code == 0, out + err
    run_id = json.loads(out)["run_id"]
    hooks = repo / ".git" / "hooks"
    planted = hooks / "pre-commit"
    planted.write_text("#!/bin/sh\necho pwned\n", encoding="utf-8")
    planted.chmod(0o755)
    git(repo, "config", "alias.st", "!echo pwned")
    code, out, err = cli(repo, "bundle-collect", "--run-id", run_id)
    assert code == 0, out + err
    code, out, _err = validate(repo, run_id)
    assert code == 3
    assert "[git-dir-changed]" in out and ".git/hooks/pre-commit" in out and ".git/config" in out
    assert not planted.exists()
    assert "pwned" not in (repo / ".git" / "config").read_text(encoding="utf-8")
    assert not (stat.S_IMODE(os.stat(repo / ".git" / "config").st_mode) & 0o111)
