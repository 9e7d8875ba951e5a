"""``doctor``: can this machine and this repository run the factory? One line per check.

Each check is OK, WARN or FAIL with a concrete fix. Nothing is created or changed (the
writability probe makes and removes one temporary file). Works outside a repository: the
repository check FAILs and the checks that need one say they were not checked.
Exit 0 when nothing FAILs, 3 (BLOCKED) when something does.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.codex.factory.errors import FactoryError
from tools.codex.factory.ledger.store import MISSING_HEAD_FIX
from tools.codex.factory.records.status import Outcome, Status
from tools.codex.factory.run.context import Context

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MIN_PYTHON = (3, 10)
MIN_GIT = (2, 30)
LOW_DISK = 1 << 30  # 1 GiB
# Declared in pyproject.toml: (module, distribution, minimum, exclusive maximum).
DEPENDENCIES: tuple[tuple[str, str, tuple[int, ...], tuple[int, ...] | None], ...] = (
    ("click", "click", (8, 1), None),
    ("jsonschema", "jsonschema", (4, 18), None),
    ("orjson", "orjson", (3, 8), None),
    ("filelock", "filelock", (3, 12), (3, 17)),
)
INSTALL_FIX = "python -m pip install -e . --config-settings editable_mode=compat"
NO_REPO_FIX = "run doctor inside your repository, or pass --repo PATH"


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def _fmt(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


if sys.platform == "win32":  # pragma: no cover - Windows only

    def _long_paths_enabled() -> bool | None:
        """The LongPathsEnabled registry value (None: not Windows)."""
        import winreg

        try:
            with winreg.OpenKey(
                winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Control\FileSystem"
            ) as key:
                value, _ = winreg.QueryValueEx(key, "LongPathsEnabled")
        except OSError:
            return False
        return bool(value == 1)

else:

    def _long_paths_enabled() -> bool | None:
        """The LongPathsEnabled registry value (None: not Windows)."""
        return None


class Doctor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.checks: list[dict[str, str]] = []

    def add(self, name: str, level: str, detail: str, fix: str = "") -> None:
        self.checks.append(
            {"name": name, "level": level, "detail": detail, "fix": fix if level != OK else ""}
        )

    # -- machine ---------------------------------------------------------------------------
    def python(self) -> None:
        v = sys.version_info[:3]
        if v[:2] >= MIN_PYTHON:
            self.add("python", OK, f"Python {_fmt(v)}")
        else:
            self.add(
                "python",
                FAIL,
                f"Python {_fmt(v)} is older than {_fmt(MIN_PYTHON)}",
                f"install Python >= {_fmt(MIN_PYTHON)} and reinstall: {INSTALL_FIX}",
            )

    def dependencies(self) -> None:
        for module, dist, low, high in DEPENDENCIES:
            name = f"dependency {dist}"
            try:
                importlib.import_module(module)
                version = importlib.metadata.version(dist)
            except ImportError as exc:
                self.add(
                    name,
                    FAIL,
                    f"cannot import {module}: {exc}",
                    f"install the dependencies: {INSTALL_FIX}",
                )
                continue
            except importlib.metadata.PackageNotFoundError:
                self.add(
                    name,
                    WARN,
                    f"{module} imports but has no package metadata",
                    f"reinstall: {INSTALL_FIX}",
                )
                continue
            have = _version_tuple(version)
            wanted = f">={_fmt(low)}" + (f",<{_fmt(high)}" if high else "")
            if have < low or (high is not None and have >= high):
                self.add(
                    name,
                    WARN,
                    f"{dist} {version} is outside the declared range {wanted}",
                    f'python -m pip install "{dist}{wanted}"',
                )
            else:
                self.add(name, OK, f"{dist} {version}")

    def git(self) -> bool:
        from tools.codex.factory.infra import gitops

        exe = shutil.which("git")
        if exe is None:
            self.add(
                "git",
                FAIL,
                "git is not on PATH",
                f"install git >= {_fmt(MIN_GIT)} and put it on PATH",
            )
            return False
        try:
            v = gitops.version()
        except FactoryError as exc:
            self.add("git", FAIL, str(exc), f"reinstall git >= {_fmt(MIN_GIT)}")
            return False
        if v[:2] < MIN_GIT:
            self.add(
                "git",
                FAIL,
                f"git {_fmt(v)} is older than {_fmt(MIN_GIT)}",
                f"upgrade git to >= {_fmt(MIN_GIT)}",
            )
            return False
        self.add("git", OK, f"git {_fmt(v)}")
        return True

    def git_features(self) -> None:
        """Probe the subcommands the factory relies on with ``-h`` (usage text, exit 129)."""
        from tools.codex.factory.infra import gitops

        # Only what the code runs: `git sparse-checkout` is never used (the holdout is a
        # per-worktree sparse file applied with read-tree and skip-worktree bits).
        probes = (
            ("apply", "--cached", "patches are applied to an index with `git apply --cached`"),
            (
                "worktree",
                "--porcelain",
                "real workers get linked worktrees (`git worktree add/list --porcelain`)",
            ),
            (
                "update-index",
                "--skip-worktree",
                "worker checkouts leave holdout paths out (skip-worktree)",
            ),
        )
        missing = []
        for sub, token, why in probes:
            res = gitops.git(None, sub, "-h", check=False)
            text = res.out + res.err
            if f"git {sub}" not in text or token not in text:
                missing.append(f"`git {sub}` ({why})")
        if missing:
            self.add(
                "git features",
                FAIL,
                "missing: " + "; ".join(missing),
                f"upgrade git to >= {_fmt(MIN_GIT)}",
            )
        else:
            self.add(
                "git features",
                OK,
                "git apply --cached, git worktree, git update-index --skip-worktree",
            )

    def windows_long_paths(self) -> None:
        enabled = _long_paths_enabled()
        if enabled is None:
            self.add("windows long paths", OK, "not Windows")
        elif enabled:
            self.add("windows long paths", OK, "LongPathsEnabled = 1")
        else:
            self.add(
                "windows long paths",
                WARN,
                "LongPathsEnabled is off: paths over 260 characters fail",
                "enable it from an admin PowerShell: New-ItemProperty -Path "
                '"HKLM:\\SYSTEM\\CurrentControlSet\\Control\\FileSystem" -Name LongPathsEnabled -Value 1 '
                "-PropertyType DWORD -Force; then: git config --global core.longpaths true",
            )

    # -- repository --------------------------------------------------------------------------
    def repository(self, git_ok: bool) -> bool:
        if not git_ok:
            self.add("repository", FAIL, "cannot check without git", "install git first")
            return False
        try:
            repo = self.ctx.repo
        except FactoryError as exc:
            self.add(
                "repository",
                FAIL,
                str(exc),
                "cd into your repository (git init to make one), or pass --repo PATH",
            )
            return False
        self.add("repository", OK, f"git repository at {repo}")
        return True

    def config(self) -> bool:
        try:
            cfg = self.ctx.config
        except FactoryError as exc:
            self.add(
                "config",
                FAIL,
                str(exc),
                "fix the named key in tools/codex/factory/factory.config.json or the FACTORY_* variable, "
                "then check with `factory config show`",
            )
            return False
        by_origin: dict[str, int] = {}
        for row in cfg.rows():
            by_origin[row["origin"]] = by_origin.get(row["origin"], 0) + 1
        origins = ", ".join(f"{n} from {o}" for o, n in sorted(by_origin.items()))
        self.add("config", OK, f"config valid ({origins})")
        return True

    def base_ref(self) -> None:
        from tools.codex.factory.infra import gitops

        ref = str(self.ctx.config.get("run.base_ref"))
        try:
            commit = gitops.resolve_commit(self.ctx.repo, ref)
        except FactoryError as exc:
            self.add(
                "base ref",
                FAIL,
                str(exc),
                "commit at least once (git commit), or set run.base_ref / pass --base-ref to a ref that exists",
            )
            return
        self.add("base ref", OK, f"{ref} -> {commit}")

    def runs_folder(self) -> None:
        runs = self.ctx.layout.runs_dir
        rel = self.ctx.config.runs_rel
        probe_dir = runs
        while not probe_dir.is_dir() and probe_dir != probe_dir.parent:
            probe_dir = probe_dir.parent
        try:
            fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".doctor-")
            os.close(fd)
            os.remove(probe)
            where = rel if probe_dir == runs else f"{rel} (not created yet; its parent is writable)"
            self.add("runs folder", OK, f"{where} is writable")
        except OSError as exc:
            self.add(
                "runs folder",
                FAIL,
                f"{rel}: cannot write ({exc.strerror})",
                "make the folder writable, or set paths.runs_dir to a writable folder inside the repository",
            )
        try:
            free = shutil.disk_usage(probe_dir).free
        except OSError as exc:
            self.add(
                "free disk", WARN, f"cannot measure ({exc.strerror})", "check free space by hand"
            )
            return
        gib = free / (1 << 30)
        if free < LOW_DISK:
            self.add(
                "free disk",
                WARN,
                f"{gib:.2f} GiB free where runs are written (under 1 GiB)",
                "free some disk space: each run holds a sandbox checkout while it integrates",
            )
        else:
            self.add("free disk", OK, f"{gib:.1f} GiB free")

    def ledger(self) -> None:
        try:
            ledger = self.ctx.ledger
            if not os.path.lexists(ledger.path):  # a dangling link is not "no ledger"
                self.add(
                    "ledger",
                    OK,
                    f"no ledger yet ({self.ctx.config.ledger_rel} is created by the first run)",
                )
                return
            res = ledger.verify()
        except FactoryError as exc:
            self.add("ledger", FAIL, str(exc), "run `factory ledger verify` and investigate")
            return
        if res.ok:
            self.add(
                "ledger",
                OK,
                f"{self.ctx.config.ledger_rel} verifies ({res.lines} events, head seq {res.head.seq})",
            )
        elif res.torn_tail:
            self.add(
                "ledger",
                FAIL,
                f"torn tail: {res.torn_bytes} bytes after the last newline (a crash mid-write)",
                "run `factory ledger repair` (moves the torn bytes to a side file; nothing is deleted)",
            )
        elif res.head_missing:
            self.add("ledger", FAIL, f"seq {res.first_bad_seq}: {res.reason}", MISSING_HEAD_FIX)
        else:
            self.add(
                "ledger",
                FAIL,
                f"seq {res.first_bad_seq}: {res.reason}",
                "the ledger was edited, cut or reordered: keep a copy, run `factory ledger verify`, "
                "and audit runs with `factory ledger-replay`; never edit the ledger by hand",
            )

    def agents(self) -> None:
        cfg = self.ctx.config
        agents: list[tuple[str, dict[str, Any]]] = []
        default = cfg.get("workers.agent")
        if default:
            agents.append(("workers.agent", default))
        for wid, spec in sorted((cfg.get("workers.agents") or {}).items()):
            agents.append((f"workers.agents.{wid}", spec))
        if not agents:
            self.add("agents", OK, "no agent configured (dry runs need none)")
            return
        from tools.codex.factory.run.agents import PRESETS

        for key, spec in agents:
            argv = spec.get("argv") or (PRESETS.get(str(spec.get("preset")), {}).get("argv") or [])
            program = str(argv[0]) if argv else None
            if program is None:
                self.add(
                    f"agent {key}",
                    WARN,
                    f"preset {spec.get('preset')!r} has no argv",
                    f"set {key}.argv to the command that runs the agent",
                )
                continue
            found = shutil.which(program)
            if found is None and ("/" in program or "\\" in program):
                found = program if Path(program).is_file() else None
            if found is None:
                self.add(
                    f"agent {key}",
                    WARN,
                    f"{program!r} (preset {spec.get('preset')}) is not on PATH",
                    f"install {program} or put it on PATH, or set {key}.argv to its full path",
                )
            else:
                self.add(f"agent {key}", OK, f"{program} found")

    def worktrees(self) -> None:
        """Leftover worker worktrees and branches of earlier real runs (found via the ledger)."""
        from tools.codex.factory.run import clean

        try:
            left = clean.leftover_worktrees(self.ctx)
        except FactoryError as exc:
            self.add(
                "worktrees",
                WARN,
                f"cannot list leftover worktrees: {exc}",
                "run `factory clean` to see",
            )
            return
        # Every worker of a run that has not finished may still be at work in its worktree: in
        # use, not a leftover (`clean` refuses them without --force, for the same reason).
        at_work = [e for e in left if not e.get("run_finished")]
        stale = [e for e in left if e not in at_work]
        busy_runs = sorted({str(e["run_id"]) for e in at_work})
        busy = (
            (
                f"; {len(at_work)} in use by run(s) still in progress ({', '.join(busy_runs)}; an abandoned run: "
                f"`factory clean --run-id {busy_runs[0]} --force`)"
            )
            if at_work
            else ""
        )
        if not stale:
            self.add("worktrees", OK, f"no leftover worker worktrees or branches{busy}")
            return
        mib = sum(int(e["bytes"]) for e in stale) / (1 << 20)
        runs = sorted({str(e["run_id"]) for e in stale})
        self.add(
            "worktrees",
            WARN,
            f"{len(stale)} leftover worker worktree(s)/branch(es) using {mib:.1f} MiB, from run(s) {', '.join(runs)}{busy}",
            "run `factory clean` (or `factory clean --run-id ID`; --force also drops work never collected)",
        )

    def not_checked(self, names: list[str], why: str, fix: str) -> None:
        self.add("not checked", WARN, f"{', '.join(names)} ({why})", fix)

    def run(self) -> list[dict[str, str]]:
        self.python()
        self.dependencies()
        git_ok = self.git()
        if git_ok:
            self.git_features()
        self.windows_long_paths()
        repo_dependent = [
            "config",
            "base ref",
            "runs folder",
            "free disk",
            "ledger",
            "worktrees",
            "agents",
        ]
        if not self.repository(git_ok):
            self.not_checked(repo_dependent, "no git repository", NO_REPO_FIX)
            return self.checks
        if not self.config():
            self.not_checked(repo_dependent[1:], "the config is invalid", "fix the config first")
            return self.checks
        self.base_ref()
        self.runs_folder()
        self.ledger()
        if self.checks[-1]["level"] != FAIL:
            self.worktrees()
        self.agents()
        return self.checks


def doctor(ctx: Context) -> Outcome:
    checks = Doctor(ctx).run()
    counts = {level: sum(1 for c in checks if c["level"] == level) for level in (OK, WARN, FAIL)}
    status = Status.BLOCKED if counts[FAIL] else Status.PASS
    lines = []
    for c in checks:
        line = f"{c['level']:<4} {c['name']}: {c['detail']}"
        if c["fix"]:
            line += f" -> fix: {c['fix']}"
        lines.append(line)
    verdict = (
        f"doctor: {counts[FAIL]} FAIL, {counts[WARN]} WARN: this machine cannot run the factory yet"
        if counts[FAIL]
        else f"doctor: no FAIL ({counts[WARN]} WARN)"
    )
    lines.append(verdict)
    lines.append(
        "next: `python -m tools.codex.factory self-test` runs a complete smoke run in a scratch repository"
    )
    data = {
        "status": str(status),
        "counts": counts,
        "checks": checks,
        "self_test": "python -m tools.codex.factory self-test",
    }
    return Outcome(status, data, "\n".join(lines))
