"""``self-test``: a deterministic end-to-end smoke run in a scratch repository.

It proves an install works without touching the user's repository: everything happens in a
fresh git repository in a temporary folder, driven through the real CLI
(``python -m tools.codex.factory --repo <scratch> --now <pinned> ...``) in child processes with a
clean environment (no ``FACTORY_*``, no user or system git config). Two workers hand back
bundles with real patches made by git; one run integrates to PASS, one is BLOCKED by an
overlap; both replay consistently, and a one-byte edit is caught by the replay.

It depends on nothing outside the package: the scratch environment, repository and bundles
made from real edits are built here.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.codex.factory.errors import FactoryError
from tools.codex.factory.infra import gitops, jsonio, proc, schemas
from tools.codex.factory.infra.fsutil import remove_tree
from tools.codex.factory.records.status import Status
from tools.codex.factory.run.outcome import Outcome

PINNED = "2026-11-21T20:15:00Z"
PACKAGE_ROOT = Path(__file__).resolve().parents[4]
RUNS_REL = "tools/codex/runs"
BASE_FILES: dict[str, str] = {
    "README.md": "# scratch project\n",
    "src/app.py": "def greet(name):\n    return 'hello ' + name\n",
    "tests/test_app.py": "from src.app import greet\n\n\ndef test_greet():\n    assert greet('x') == 'hello x'\n",
}
# A plan whose scopes overlap on src/**: two workers editing src/app.py is an unplanned overlap.
OVERLAP_PLAN: dict[str, Any] = {
    "schema_version": 1,
    "workers": [
        {"id": "A", "task": "Source code.", "allow": ["src/**"]},
        {"id": "B", "task": "Tests, and a fix in the source.", "allow": ["src/**", "tests/**"]},
    ],
}
PASS_RUN = "selftest-pass"
OVERLAP_RUN = "selftest-overlap"


# -- the scratch world ------------------------------------------------------------------------------
def _scratch_env(home: Path) -> dict[str, str]:
    """A child environment independent of the user's: no FACTORY_*, no GIT_*, own git config."""
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / "gitconfig"
    gitconfig.write_bytes(
        b"[init]\n\tdefaultBranch = main\n[core]\n\tautocrlf = false\n\tsafecrlf = false\n[commit]\n\tgpgsign = false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "GIT_"))}
    env.update(
        {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(gitconfig),
            "GIT_AUTHOR_NAME": "Factory Self-Test",
            "GIT_AUTHOR_EMAIL": "self-test@example.invalid",
            "GIT_COMMITTER_NAME": "Factory Self-Test",
            "GIT_COMMITTER_EMAIL": "self-test@example.invalid",
            "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
            "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
            "PYTHONPATH": str(PACKAGE_ROOT)
            + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
            "PYTHONIOENCODING": "utf-8",
        }
    )
    return env


def _make_repo(path: Path, env: Mapping[str, str], files: Mapping[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)

    for rel, text in (files or BASE_FILES).items():
        f = path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(text.encode("utf-8"))
    gitops.init_commit(path, env, "base")
    return path


@dataclass(frozen=True)
class _CliResult:
    """What a factory child process did (the names of ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


def _factory(repo: Path, env: Mapping[str, str], *args: str, timeout: float = 300) -> _CliResult:
    """The real CLI in a child process, on ``repo``, with the pinned clock."""
    res = proc.run(
        [sys.executable, "-m", "tools.codex.factory", "--repo", str(repo), "--now", PINNED, *args],
        repo,
        env=env,
        timeout=timeout,
        check=False,
    )
    return _CliResult(res.rc, _text(res.stdout), _text(res.stderr))


def _real_patch(repo: Path, env: Mapping[str, str], changes: Mapping[str, str | None]) -> bytes:
    """Make ``changes`` (path -> new text, None = delete) in the work tree, diff with git, undo."""
    paths = sorted(changes)
    existed = {p: (repo / p).is_file() for p in paths}
    try:
        for p, text in changes.items():
            target = repo / p
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(text.encode("utf-8"))
        return gitops.worktree_patch(repo, env, paths, [p for p in paths if not existed[p]])
    finally:
        for p in paths:
            if not existed[p]:
                (repo / p).unlink(missing_ok=True)
        gitops.restore_from_head(repo, env, [p for p in paths if existed[p]])


def _write_bundle(repo: Path, run_id: str, worker: str, patch: bytes, files: list[str]) -> Path:
    """Put a real patch into a launched worker bundle (what a worker hands back)."""
    folder = repo / RUNS_REL / run_id / f"{worker}_worker"
    (folder / "DIFF.patch").write_bytes(patch)
    (folder / "FILES_CHANGED.json").write_bytes(
        jsonio.pretty({"schema_version": schemas.SCHEMA_VERSION, "files": sorted(set(files))})
    )
    (folder / "SUMMARY.md").write_bytes(
        f"# {worker}_worker\n\nChanged: {', '.join(sorted(files))}\n".encode()
    )
    return folder


def _bundle_from_changes(
    repo: Path, env: Mapping[str, str], run_id: str, worker: str, changes: Mapping[str, str | None]
) -> Path:
    return _write_bundle(repo, run_id, worker, _real_patch(repo, env, changes), sorted(changes))


# -- the self-test --------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    ok: bool
    detail: str

    def as_dict(self, n: int) -> dict[str, Any]:
        return {"n": n, "name": self.name, "ok": self.ok, "detail": self.detail}


class _Stop(Exception):
    pass


class SelfTest:
    def __init__(self, root: Path, echo: Callable[[dict[str, Any]], None]) -> None:
        self.root = root
        self.repo = root / "repo"
        self.env = _scratch_env(root / "home")
        self.echo = echo
        self.steps: list[Step] = []

    def step(self, name: str, ok: bool, detail: str) -> None:
        self.steps.append(Step(name, ok, detail))
        self.echo(self.steps[-1].as_dict(len(self.steps)))
        if not ok:
            raise _Stop(name)

    def cli(self, name: str, expect: int, *args: str, contains: str = "") -> _CliResult:
        res = _factory(self.repo, self.env, *args)
        out = res.stdout + res.stderr
        ok = res.returncode == expect and contains in out
        if ok:
            detail = f"`{' '.join(args[:1])}` exit {res.returncode} as expected" + (
                f", says {contains!r}" if contains else ""
            )
        else:
            first = next((ln for ln in reversed(out.splitlines()) if ln.strip()), "(no output)")
            want = f"exit {expect}" + (f" and {contains!r}" if contains else "")
            detail = f"`{' '.join(args)}`: expected {want}, got exit {res.returncode}: {first}"
        self.step(name, ok, detail)
        return res

    def run_dir(self, run_id: str) -> Path:
        return self.repo / RUNS_REL / run_id

    def run(self) -> None:
        _make_repo(self.repo, self.env)
        head = gitops.head_commit(self.repo, self.env)
        self.step(
            "scratch repository", True, f"{len(BASE_FILES)} files committed at base {head[:12]}"
        )
        # A PASS integration of two disjoint real changes.
        self.cli(
            "launch (PASS run)",
            0,
            "launch",
            "--base-ref",
            "HEAD",
            "--dry-run",
            "--run-id",
            PASS_RUN,
            "--workers",
            "A,B",
        )
        _bundle_from_changes(
            self.repo,
            self.env,
            PASS_RUN,
            "A",
            {"src/app.py": BASE_FILES["src/app.py"].replace("hello ", "hello, ")},
        )
        _bundle_from_changes(
            self.repo,
            self.env,
            PASS_RUN,
            "B",
            {
                "tests/test_app.py": BASE_FILES["tests/test_app.py"].replace(
                    "'hello x'", "'hello, x'"
                ),
                "tests/test_more.py": 'def test_more():\n    assert len("ok") == 2\n',
            },
        )
        self.step(
            "worker bundles (PASS run)",
            True,
            "A edits src/app.py; B edits tests/test_app.py, adds tests/test_more.py",
        )
        self.cli(
            "bundle-validate (PASS run)",
            0,
            "bundle-validate",
            "--run-id",
            PASS_RUN,
            contains="PASS",
        )
        self.cli("integrate (PASS run)", 0, "integrate", "--run-id", PASS_RUN, contains="PASS")
        merged = self.run_dir(PASS_RUN) / "Z_integrator" / "DIFF.patch"
        applies = gitops.applies(self.repo, merged, self.env)
        touched = sorted(
            jsonio.read_json(self.run_dir(PASS_RUN) / "Z_integrator" / "FILES_CHANGED.json")[
                "files"
            ]
        )
        want = ["src/app.py", "tests/test_app.py", "tests/test_more.py"]
        self.step(
            "merged DIFF.patch applies to the base",
            applies and touched == want,
            f"git apply --check {'accepts' if applies else 'refuses'} it; files {', '.join(touched)}",
        )
        # A BLOCKED run: both workers edit src/app.py without a shared scope entry.
        plan = self.root / "overlap-plan.json"
        plan.write_bytes(jsonio.pretty(OVERLAP_PLAN))
        self.cli(
            "launch (overlap run)",
            0,
            "launch",
            "--base-ref",
            "HEAD",
            "--dry-run",
            "--run-id",
            OVERLAP_RUN,
            "--workers",
            "A,B",
            "--plan",
            str(plan),
        )
        _bundle_from_changes(
            self.repo,
            self.env,
            OVERLAP_RUN,
            "A",
            {"src/app.py": BASE_FILES["src/app.py"] + "\n\nVERSION = 1\n"},
        )
        _bundle_from_changes(
            self.repo,
            self.env,
            OVERLAP_RUN,
            "B",
            {"src/app.py": "# fixed by B\n" + BASE_FILES["src/app.py"]},
        )
        self.step("worker bundles (overlap run)", True, "A and B both edit src/app.py")
        self.cli(
            "bundle-validate (overlap run)",
            3,
            "bundle-validate",
            "--run-id",
            OVERLAP_RUN,
            contains="[overlap]",
        )
        self.cli(
            "integrate (overlap run)", 3, "integrate", "--run-id", OVERLAP_RUN, contains="BLOCKED"
        )
        status = jsonio.read_json(self.run_dir(OVERLAP_RUN) / "Z_integrator" / "STATUS.json")[
            "status"
        ]
        self.step(
            "overlap run reports BLOCKED",
            status == "BLOCKED",
            f"Z_integrator/STATUS.json status {status}",
        )
        # Audit both runs, then prove the audit notices a one-byte edit.
        self.cli("ledger verify", 0, "ledger", "verify", contains="VERIFY OK")
        self.cli(
            "ledger-replay (PASS run)",
            0,
            "ledger-replay",
            "--run-id",
            PASS_RUN,
            contains="REPLAY OK",
        )
        self.cli(
            "ledger-replay (overlap run)",
            0,
            "ledger-replay",
            "--run-id",
            OVERLAP_RUN,
            contains="REPLAY OK",
        )
        target = self.run_dir(PASS_RUN) / "A_worker" / "SUMMARY.md"
        original = target.read_bytes()
        target.write_bytes(original[:-1] + (b"?" if original[-1:] != b"?" else b"!"))
        try:
            self.cli(
                "ledger-replay notices a one-byte edit",
                3,
                "ledger-replay",
                "--run-id",
                PASS_RUN,
                contains="A_worker/SUMMARY.md",
            )
        finally:
            target.write_bytes(original)


def run_selftest(
    echo: Callable[[dict[str, Any]], None], note: Callable[[str], None], keep: bool = False
) -> Outcome:
    """The smoke run; each step goes to ``echo`` as data when it is done (the caller words it)."""
    root = Path(tempfile.mkdtemp(prefix="factory-selftest-"))
    note(
        f"factory: self-test in a scratch repository under {root}"
        + ("" if keep else " (removed afterwards)")
    )
    st = SelfTest(root, echo)
    error = ""
    try:
        st.run()
    except _Stop:
        pass
    except (OSError, FactoryError, ValueError, KeyError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        st.steps.append(Step("internal", False, error))
        echo(st.steps[-1].as_dict(len(st.steps)))
    finally:
        if not keep:
            remove_tree(root)
    ok = bool(st.steps) and all(s.ok for s in st.steps) and not error
    data = {
        "status": "PASS" if ok else "FAIL",
        "steps": [s.as_dict(i) for i, s in enumerate(st.steps, 1)],
        "scratch": str(root) if keep else None,
    }
    return Outcome(Status.PASS if ok else Status.FAIL, data, view="self-test")
