"""The one set of probes `preflight` and `doctor` ask: can this machine and repository run the
factory? Each probe is OK, WARN or FAIL with a detail and, unless OK, a concrete fix; the same
failure has the same name, words and fix in both commands. Nothing is created or changed (a
writability probe makes and removes one temporary file in an existing folder).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.codex.factory.core.text import clip, escaped_name, one_line
from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.infra import gitops
from tools.codex.factory.ledger.store import MISSING_HEAD_FIX
from tools.codex.factory.run import config as config_mod
from tools.codex.factory.run.agents import AgentSpec, program
from tools.codex.factory.run.context import Context

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MIN_PYTHON = (3, 10)
LOW_DISK = 1 << 30  # 1 GiB
INSTALL_FIX = "python -m pip install -e . --config-settings editable_mode=compat"
# Declared in pyproject.toml: (module, distribution, minimum, exclusive maximum).
DEPENDENCIES: tuple[tuple[str, str, tuple[int, ...], tuple[int, ...] | None], ...] = (
    ("click", "click", (8, 1), None),
    ("jsonschema", "jsonschema", (4, 18), None),
    ("orjson", "orjson", (3, 8), None),
    ("filelock", "filelock", (3, 12), (3, 17)),
)


@dataclass(frozen=True)
class Probe:
    name: str
    level: str  # OK, WARN, FAIL
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.level != FAIL

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "level": self.level,
            "ok": self.ok,
            "detail": self.detail,
            "fix": "" if self.level == OK else self.fix,
        }


def _fmt(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def python() -> Probe:
    v = sys.version_info[:3]
    if v[:2] >= MIN_PYTHON:
        return Probe("python", OK, f"Python {_fmt(v)}")
    return Probe(
        "python",
        FAIL,
        f"Python {_fmt(v)} is older than {_fmt(MIN_PYTHON)}",
        f"install Python >= {_fmt(MIN_PYTHON)} and reinstall: {INSTALL_FIX}",
    )


SHADOW_FIX = (
    "run the factory as the `factory` console script (it never imports from the folder it is "
    "started in), or rename your repository's {name}"
)


def dependencies(repo: Path | None = None) -> list[Probe]:
    """Each dependency: importable, in the declared range, and the file actually loaded; a
    module loaded from the repository (or one the repository's root would put first) WARNs."""
    out = []
    for module, dist, low, high in DEPENDENCIES:
        name = f"dependency-{dist}"
        try:
            loaded = importlib.import_module(module)
            version = importlib.metadata.version(dist)
        except ImportError as exc:
            out.append(
                Probe(name, FAIL, f"cannot import {module}: {exc}", f"install: {INSTALL_FIX}")
            )
            continue
        except importlib.metadata.PackageNotFoundError:
            out.append(
                Probe(name, WARN, f"{module} imports but has no package metadata", INSTALL_FIX)
            )
            continue
        where = str(getattr(loaded, "__file__", None) or "?")
        shadow = _shadowed(repo, module, where)
        if shadow is not None:
            out.append(shadow)
            continue
        have = _version_tuple(version)
        wanted = f">={_fmt(low)}" + (f",<{_fmt(high)}" if high else "")
        if have < low or (high is not None and have >= high):
            out.append(
                Probe(
                    name,
                    WARN,
                    f"{dist} {version} ({where}) is outside the declared range {wanted}",
                    f'python -m pip install "{dist}{wanted}"',
                )
            )
        else:
            out.append(Probe(name, OK, f"{dist} {version} from {where}"))
    return out


# Where pip installs packages: a module under one is installed, even in a repository's .venv.
INSTALLED_DIRS = frozenset({"site-packages", "dist-packages"})


def _shadowed(repo: Path | None, module: str, where: str) -> Probe | None:
    """A WARN when the repository hands the factory its own ``module``: it was loaded from
    the repository, or the repository's root holds a module of that name."""
    if repo is None:
        return None
    name = f"dependency-{module}"
    loaded = Path(where).resolve() if where != "?" else None
    if loaded is not None and loaded.is_relative_to(repo.resolve()):
        rel = loaded.relative_to(repo.resolve()).as_posix()
        if INSTALLED_DIRS & set(rel.split("/")):
            return None  # installed in an environment the repository holds (.venv): not its code
        return Probe(
            name,
            WARN,
            f"{module} was loaded from the repository ({rel}), not from the installed package",
            SHADOW_FIX.format(name=rel.split("/")[0]),
        )
    for candidate in (module, f"{module}.py"):
        if os.path.lexists(repo / candidate):
            shown = candidate + ("/" if (repo / candidate).is_dir() else "")
            return Probe(
                name,
                WARN,
                f"the repository's {shown} shadows the installed {module} ({where}) for "
                "Python started in its root (`python -c`, scripts there, older entry points)",
                SHADOW_FIX.format(name=shown),
            )
    return None


def entry_point(repo: Path) -> Probe:
    """Can ``python -m tools.codex.factory`` start here? Not when the repository has its own
    ``tools`` package: Python finds it first (``No module named 'tools.codex'``)."""
    own = [n for n in ("tools/__init__.py", "tools.py") if os.path.lexists(repo / n)]
    if not own:
        return Probe("entry-point", OK, "`factory` and `python -m tools.codex.factory` work here")
    return Probe(
        "entry-point",
        WARN,
        f"the repository's own {own[0]} hides the factory's tools package from "
        "`python -m tools.codex.factory` started here (No module named 'tools.codex')",
        "run the `factory` console script instead (or `python -P -m tools.codex.factory`, "
        "Python 3.11+)",
    )


def git() -> Probe:
    if shutil.which("git") is None:
        return Probe(
            "git", FAIL, "git is not on PATH", f"install git >= {_fmt(gitops.MIN_VERSION)}"
        )
    try:
        v = gitops.version()
    except FactoryError as exc:
        return Probe("git", FAIL, str(exc), f"reinstall git >= {_fmt(gitops.MIN_VERSION)}")
    if v[:2] < gitops.MIN_VERSION:
        return Probe(
            "git",
            FAIL,
            f"git {_fmt(v)} is older than {_fmt(gitops.MIN_VERSION)}",
            f"upgrade git to >= {_fmt(gitops.MIN_VERSION)}",
        )
    return Probe("git", OK, f"git {_fmt(v)}")


def git_features() -> Probe:
    missing = gitops.missing_features()
    if missing:
        return Probe(
            "git-features",
            FAIL,
            "missing: " + "; ".join(missing),
            f"upgrade git to >= {_fmt(gitops.MIN_VERSION)}",
        )
    return Probe(
        "git-features", OK, "git apply --cached, git worktree, git update-index --skip-worktree"
    )


ATTRIBUTES_FIX = (
    "upgrade git to 2.42 or newer, or set checks.attributes to candidate (the checks then read "
    "the merged tree's attributes, a patch's own .gitattributes included)"
)


def git_attributes(ctx: Context) -> Probe:
    """Can checks read git attributes from the base commit, as ``checks.attributes`` says?"""
    if ctx.config.get("checks.attributes") != "base":
        return Probe(
            "git-attributes", OK, "checks read attributes from the merged tree (candidate)"
        )
    if gitops.honours_attr_source():
        return Probe(
            "git-attributes", OK, "checks read attributes from the base commit (GIT_ATTR_SOURCE)"
        )
    return Probe(
        "git-attributes",
        WARN,
        "this git ignores GIT_ATTR_SOURCE (it needs 2.42 or newer), so checks cannot read "
        "attributes from the base commit: a patch that adds, changes or removes a "
        ".gitattributes is BLOCKED (gitattributes-unchecked)",
        ATTRIBUTES_FIX,
    )


def repository(ctx: Context) -> Probe:
    try:
        repo = ctx.repo
    except FactoryError as exc:
        return Probe(
            "repository",
            FAIL,
            str(exc),
            "cd into your repository (git init to make one), or give the repository's path",
        )
    # No absolute path: preflight records this line in the ledger (byte-identical across clones).
    del repo
    return Probe("repository", OK, "inside a git repository")


def config(ctx: Context) -> Probe:
    try:
        cfg = ctx.config
    except (FactoryError, OSError) as exc:
        return Probe(
            "config",
            FAIL,
            str(exc),
            "fix the named key in the config file (--config, FACTORY_CONFIG or "
            "tools/codex/factory/factory.config.json) or the FACTORY_* variable, then check "
            "with `factory config show`",
        )
    by_origin: dict[str, int] = {}
    for row in cfg.rows():
        by_origin[row["origin"]] = by_origin.get(row["origin"], 0) + 1
    origins = ", ".join(f"{n} from {o}" for o, n in sorted(by_origin.items()))
    return Probe("config", OK, f"config valid ({origins})")


def base_ref(ctx: Context, ref: str | None = None) -> Probe:
    ref = ref or str(ctx.config.get("run.base_ref"))
    try:
        commit = gitops.resolve_commit(ctx.repo, ref, ctx.source("run.base_ref"))
    except FactoryError as exc:
        return Probe(
            "base-ref",
            FAIL,
            str(exc),
            "commit at least once (git commit), or set the base ref (run.base_ref) to a "
            "branch, tag or commit that exists",
        )
    return Probe("base-ref", OK, f"{ref} -> {commit}")


MAX_DIRTY_SHOWN = 20
DIRTY_FIX = (
    "commit it (git add -A && git commit) or stash it (git stash -u) first; a run builds on "
    "the base ref (--base-ref, default HEAD), so only committed work is in it"
)


def working_tree(ctx: Context) -> Probe:
    """Uncommitted work is in no run: workers start from the base commit without it (WARN)."""
    try:
        dirty = gitops.uncommitted(ctx.repo)
    except FactoryError as exc:
        return Probe("working-tree", WARN, f"cannot read git status: {exc}", "run git status")
    if not dirty:
        return Probe("working-tree", OK, "no uncommitted changes")
    shown = ", ".join(clip(one_line(escaped_name(p)), 200) for p in dirty[:MAX_DIRTY_SHOWN])
    more = f" and {len(dirty) - MAX_DIRTY_SHOWN} more" if len(dirty) > MAX_DIRTY_SHOWN else ""
    return Probe(
        "working-tree",
        WARN,
        f"{len(dirty)} uncommitted path(s) will not be in the run: {shown}{more}",
        DIRTY_FIX,
    )


def _writable(runs: Path, rel: str) -> str:
    """Probe the runs folder without creating it; raise OSError when it cannot be written."""
    if runs.is_dir():
        fd, probe = tempfile.mkstemp(dir=runs, prefix=".probe-")
        os.close(fd)
        os.remove(probe)
        return f"{rel} is writable"
    ancestor = runs.parent
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".probe-")
    os.close(fd)
    os.remove(probe)
    return f"{rel} does not exist yet; it will be created (its parent folder is writable)"


def runs_folder(ctx: Context) -> Probe:
    try:
        config_mod.check_runs_dir(ctx.repo, ctx.config)
    except FactoryError as exc:
        return Probe(
            "runs-folder",
            FAIL,
            str(exc),
            "set paths.runs_dir to a folder of the factory's own (default tools/codex/runs)",
        )
    try:
        return Probe("runs-folder", OK, _writable(ctx.layout.runs_dir, ctx.config.runs_rel))
    except OSError as exc:
        return Probe(
            "runs-folder",
            FAIL,
            f"{ctx.config.runs_rel}: cannot write ({exc.strerror or type(exc).__name__})",
            "make the runs folder writable, or set paths.runs_dir to a writable folder",
        )


def free_disk(ctx: Context) -> Probe:
    probe_dir = ctx.layout.runs_dir
    while not probe_dir.is_dir() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    try:
        free = shutil.disk_usage(probe_dir).free
    except OSError as exc:
        return Probe("free-disk", WARN, f"cannot measure ({exc.strerror})", "check free space")
    gib = free / (1 << 30)
    if free < LOW_DISK:
        return Probe(
            "free-disk",
            WARN,
            f"{gib:.2f} GiB free where runs are written (under 1 GiB)",
            "free some disk space: each run holds a sandbox checkout while it integrates",
        )
    return Probe("free-disk", OK, f"{gib:.1f} GiB free")


def ledger(ctx: Context) -> Probe:
    rel = ctx.config.ledger_rel
    try:
        led = ctx.ledger
        if not os.path.lexists(led.path):  # a dangling link is not "no ledger"
            above = led.path.parent
            while not (above.exists() or above.is_symlink()) and above.parent != above:
                above = above.parent
            if not above.is_dir():
                return Probe(
                    "ledger",
                    FAIL,
                    f"{rel} cannot be created: {above.name} is in the way (not a folder)",
                    "fix ledger.path or paths.runs_dir, or move what is in the way",
                )
            return Probe("ledger", OK, f"no ledger yet ({rel} is created by the first run)")
        res = led.check_end()
    except UsageError as exc:
        return Probe(
            "ledger",
            FAIL,
            str(exc),
            "fix ledger.path or paths.runs_dir, or move what is in the way",
        )
    except FactoryError as exc:
        return Probe("ledger", FAIL, str(exc), "run `factory ledger verify` and investigate")
    except OSError as exc:
        return Probe(
            "ledger",
            FAIL,
            f"{rel}: {exc.strerror or exc}",
            "make the ledger a readable file or set ledger.path",
        )
    if res.ok:
        return Probe(
            "ledger",
            OK,
            f"{rel} ends soundly at seq {res.head.seq} (last line, head file and index agree; "
            "`factory ledger verify` checks every line)",
        )
    if res.torn_tail:
        return Probe(
            "ledger",
            FAIL,
            f"torn tail: {res.torn_bytes} bytes after the last newline (a crash mid-write)",
            "run `factory ledger repair` (moves the torn bytes to a side file; nothing is deleted)",
        )
    if res.head_missing:
        return Probe("ledger", FAIL, f"seq {res.first_bad_seq}: {res.reason}", MISSING_HEAD_FIX)
    return Probe(
        "ledger",
        FAIL,
        f"seq {res.first_bad_seq}: {res.reason}" if res.first_bad_seq else res.reason,
        "the ledger was edited, cut or reordered: keep a copy, run `factory ledger verify`, and "
        "audit runs with `factory ledger-replay`; never edit the ledger by hand",
    )


def ledger_kept(ctx: Context) -> Probe:
    """Would ``git clean -x`` delete the ledger (the audit trail)? It does when the ledger lies
    in a git-ignored folder of the repository (the default runs folder ignores itself)."""
    rel = ctx.config.ledger_rel
    if os.path.isabs(rel):
        return Probe("ledger-clean", OK, f"{rel} is outside the repository")
    try:
        ignored = gitops.is_ignored(ctx.repo, rel)
    except FactoryError as exc:
        return Probe("ledger-clean", WARN, f"cannot ask git check-ignore: {exc}", "run git status")
    if not ignored:
        return Probe("ledger-clean", OK, f"{rel} is not git-ignored")
    return Probe(
        "ledger-clean",
        WARN,
        f"{rel} (the ledger, the runs' audit trail) is git-ignored: `git clean -x` (e.g. "
        "git clean -xfd) deletes it and every run folder without asking",
        "set paths.runs_dir to a folder outside the repository (an absolute path, e.g. "
        "~/factory-runs/<project>) with --config or FACTORY_PATHS__RUNS_DIR, or never run "
        "git clean -x here (git clean -fd, without -x, keeps ignored files)",
    )


def agent(spec: AgentSpec, name: str = "agent") -> Probe:
    """Can the agent's program start? ``doctor`` shows this probe (a WARN: dry runs need no
    agent) and ``launch`` refuses a run on it before anything is created (:func:`require`)."""
    prog = program(spec)
    where = f"{spec.source}.argv[0]"
    if os.sep in prog or (os.altsep and os.altsep in prog):
        if Path(prog).exists():
            return Probe(name, OK, f"{prog} found")
        return Probe(
            name, WARN, f"{where}: {prog!r} does not exist", f"set {where} to the agent's path"
        )
    if shutil.which(prog) is None:
        return Probe(
            name,
            WARN,
            f"{where}: {prog!r} not found on PATH",
            f"install {prog} or put it on PATH, or set {where} to its full path",
        )
    return Probe(name, OK, f"{prog} found")


def require(probe: Probe) -> None:
    """A probe that is not OK as a usage error: its detail and fix, on one line."""
    if probe.level != OK:
        raise UsageError(f"{probe.detail}; fix: {probe.fix}")


def run_id(ctx: Context, wanted: str) -> Probe:
    taken = ctx.layout.run_dir(wanted).exists()
    return Probe(
        "run-id",
        FAIL if taken else OK,
        f"run ID {wanted} is {'taken' if taken else 'free'}",
        "choose another run ID, or let the factory choose one",
    )


def windows_long_paths() -> Probe:
    enabled = _long_paths_enabled()
    if enabled is None:
        return Probe("windows-long-paths", OK, "not Windows")
    if enabled:
        return Probe("windows-long-paths", OK, "LongPathsEnabled = 1")
    return Probe(
        "windows-long-paths",
        WARN,
        "LongPathsEnabled is off: paths over 260 characters fail",
        "enable it from an admin PowerShell: New-ItemProperty -Path "
        '"HKLM:\\SYSTEM\\CurrentControlSet\\Control\\FileSystem" -Name LongPathsEnabled -Value 1 '
        "-PropertyType DWORD -Force; then: git config --global core.longpaths true",
    )


if sys.platform == "win32":  # pragma: no cover - Windows only

    def _long_paths_enabled() -> bool | None:
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
        return None
