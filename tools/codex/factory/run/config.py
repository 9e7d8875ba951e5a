"""Layered configuration: defaults < factory.config.json < FACTORY_* env < CLI options.

Every leaf value (``section.key``) remembers where it came from, for ``config show``
and for error messages that name the file, key and source.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tools.codex.factory.core import placeholders, review
from tools.codex.factory.core.globs import validate_glob
from tools.codex.factory.core.ids import validate_kind, validate_worker_id
from tools.codex.factory.core.paths import PathRuleError, at, normalise_repo_path
from tools.codex.factory.errors import UsageError
from tools.codex.factory.infra import gitops, jsonio, schemas
from tools.codex.factory.run import agents

CONFIG_REL = "tools/codex/factory/factory.config.json"
ENV_PREFIX = "FACTORY_"
# Not config: the clock's, and the trace the factory gives its agents (a config-like name).
ENV_RESERVED = frozenset({"FACTORY_NOW", "FACTORY_RUN_ID", "FACTORY_CRANK_ID", "FACTORY_CONFIG"})
# The config file to read instead of the repository's CONFIG_REL (as --config does).
CONFIG_ENV = "FACTORY_CONFIG"
# Files the factory itself may find tracked in its runs folder (the repository's own
# placeholder and ignore file); anything else tracked there belongs to the user.
RUNS_DIR_OWN_FILES = frozenset({".gitkeep", ".gitignore"})

DEFAULTS: dict[str, dict[str, Any]] = {
    "run": {
        "kind": "factory",
        "base_ref": "HEAD",
        "allow_identical_patch_overlap": False,
        "case_collisions": "block",
        "portable_names": "block",
        "branch_prefix": "factory",
        "keep_sandbox": False,
    },
    "paths": {
        "runs_dir": "tools/codex/runs",
        "worktrees_dir": None,
        "sandbox_dir": None,
    },
    "workers": {
        "ids": ["A", "B", "C", "D"],
        "max_parallel": 4,
        "timeout_s": 1800,
        "agent": None,
        "agents": {},
    },
    "checks": {
        "required": [
            {
                "name": "diff-whitespace",
                "argv": ["git", "diff", "--check", "{base_commit}"],
                "timeout_s": 120,
            }
        ],
        "advisory": [],
        "attributes": "base",
    },
    "ledger": {
        "path": None,
        "fsync": True,
        "lock_timeout_s": 30,
    },
    "security": {
        # The holdout and every file Python may load for a module of the factory's import
        # chain (`python -m tools.codex.factory` imports tools, then tools.codex): a package's
        # __init__ in any spelling (extension modules .so/.pyd come before .py), its bytecode
        # cache (an unchecked-hash .pyc runs without its source being read) and a module file
        # of the same name. The runs folder is always protected on top of these (see
        # run.validate.policy).
        "protected_paths": [
            "scenarios/**",
            "tools.*",
            "tools/__init__.*",
            "tools/__pycache__/**",
            "tools/codex.*",
            "tools/codex/__init__.*",
            "tools/codex/__pycache__/**",
            "tools/codex/factory.*",
            "tools/codex/factory/**",
        ],
        "holdout_paths": ["scenarios/"],
    },
    "limits": {
        # Generous bounds on what a worker hands back: nothing hostile can make the factory
        # hash a sparse 1 TiB file, read a 6 GiB log into memory or echo a 20 MB string.
        "max_file_bytes": 64 * 1024 * 1024,
        "max_bundle_bytes": 512 * 1024 * 1024,
        "max_bundle_files": 100_000,
        "max_path_chars": 4096,
        "max_text_chars": 2000,
        # Every list a worker supplies (FILES_CHANGED, the paths DIFF.patch touches, scopes,
        # schema errors, ...): items and characters, before it reaches the ledger or output.
        "max_list_items": 2000,
        "max_list_chars": 250_000,
        "max_patch_lines": 1_000_000,
        "max_patch_files": 10_000,
    },
    # The convergence loop (``crank``) and its holdout scenarios.
    "scenarios": {
        "dir": "scenarios",  # inside security.holdout_paths; read from the base commit only
        "trials": 1,
        "pass_trials": 0,  # trials a scenario must pass to count (0: all of them)
        "timeout_s": 300,
        "parallel": 0,  # scenarios evaluated at once (0: the machine's CPU count)
        "python": "{python}",  # the interpreter of ```python scenarios
    },
    # The program under test, for scenarios that talk to it (loop.service).
    "service": {"start": None, "health": None, "port": 0, "restart_on": []},
    # Culprit isolation after a required check failed on the merged result (run.integrate).
    "integrate": {
        "isolate": "on-failure",  # off | on-failure
        "isolate_max_runs": None,  # null: n + 2*ceil(log2 n) (core.isolation.default_max_runs)
        "flaky": "block",  # block | warn: a check passing on its rerun
    },
    "feedback": {"detail": "summary"},
    # Gate 0: the test-honesty review of each bundle (core.review); severity: {rule: level}.
    "review": {
        "enabled": True,
        "severity": {},
        "test_globs": list(review.DEFAULT_TEST_GLOBS),
        "skip_patterns": list(review.DEFAULT_SKIP_PATTERNS),
        "agent": None,  # the reviewer agent (an agent spec, as workers.agent); null: none
    },
    "crank": {
        "threshold": "0.80",
        "max_iterations": 5,
        "block_on_regression": False,
        "gates": None,  # spec=..,plan=..,ship=.. (auto | review | skip); none: asked
    },
    "feature_flags": {
        "record_check_output_in_ledger": False,
        "strict_handoff_dependencies": False,
    },
}


@dataclass
class Config:
    values: dict[str, dict[str, Any]]
    origins: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    # The file as the operator knows it (repository-relative when inside it) and how it was
    # chosen: "--config", "FACTORY_CONFIG" or "default"; ``file`` is None when none was read.
    file_shown: str = CONFIG_REL
    file_source: str = "default"

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self.values[section][key]

    def origin(self, dotted: str) -> str:
        return self.origins.get(dotted, "default")

    @property
    def runs_rel(self) -> str:
        return str(self.get("paths.runs_dir")).rstrip("/")

    @property
    def ledger_rel(self) -> str:
        configured = self.get("ledger.path")
        return str(configured) if configured else f"{self.runs_rel}/factory_ledger.jsonl"

    def rows(self) -> list[dict[str, Any]]:
        """Flat, sorted (key, value, origin) rows for ``config show``."""
        out = []
        for section in sorted(self.values):
            for key in sorted(self.values[section]):
                dotted = f"{section}.{key}"
                out.append(
                    {
                        "key": dotted,
                        "value": self.values[section][key],
                        "origin": self.origin(dotted),
                    }
                )
        return out

    def effective(self) -> dict[str, Any]:
        return copy.deepcopy(self.values)


def _parse_env_value(raw: str, default: Any) -> Any:
    """JSON if it parses (numbers, booleans, lists...), else the raw text; a key whose
    default is a string always takes the text verbatim (a base ref ``1234567`` or a kind
    ``2026`` is not a number)."""
    if isinstance(default, str):
        return raw
    try:
        return jsonio.loads(raw)
    except ValueError:  # orjson.JSONDecodeError: not JSON, so the text itself
        return raw


def _misspelt_section(rest: str) -> str | None:
    """The config section a ``FACTORY_<rest>`` name without ``__`` starts with, if any
    (``RUN_KIND`` -> ``run``, ``FEATURE_FLAGS_X`` -> ``feature_flags``)."""
    low = rest.lower()
    for section in sorted(DEFAULTS, key=len, reverse=True):
        if low == section or low.startswith(section + "_"):
            return section
    return None


def _env_layer(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """``FACTORY_<SECTION>__<KEY>`` variables, validated strictly. A name without ``__`` that
    starts with a section (``FACTORY_RUN_KIND``) is a misspelt config variable: an error
    naming the ``__`` form. Other ``FACTORY_*`` names (``FACTORY_TOKEN``) are not config and
    are left alone; ``FACTORY_NOW`` is the clock's."""
    found: dict[str, tuple[Any, str]] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_RESERVED:
            continue
        rest = name[len(ENV_PREFIX) :]
        if "__" not in rest:
            section = _misspelt_section(rest)
            if section is None:
                continue
            key = rest[len(section) + 1 :].lower()
            meant = (
                f"FACTORY_{section.upper()}__{key.upper()}"
                if key in DEFAULTS[section]
                else f"FACTORY_{section.upper()}__<KEY>"
            )
            raise UsageError(
                f"env {name}: looks like config section {section!r} but config variables use a double "
                f"underscore: {meant} (FACTORY_<SECTION>__<KEY>)"
            )
        section, key = rest.split("__", 1)
        section, key = section.lower(), key.lower()
        if section not in DEFAULTS:
            raise UsageError(f"env {name}: unknown config section {section!r}")
        if key not in DEFAULTS[section]:
            raise UsageError(f"env {name}: unknown config key {section}.{key}")
        found[f"{section}.{key}"] = (
            _parse_env_value(environ[name], DEFAULTS[section][key]),
            f"env:{name}",
        )
    return found


def _file_layer(path: Path, shown: str) -> dict[str, tuple[Any, str]]:
    label = f"config file {path}"
    doc = jsonio.read_json(path, label, unique_keys=True)
    problems = schemas.errors("factory_config", doc)
    if problems:
        where, msg = problems[0]
        raise UsageError(f"{label}: key {where}: {msg} (source: file)")
    found: dict[str, tuple[Any, str]] = {}
    for section, body in doc.items():
        if section == "schema_version":
            continue
        for key, value in body.items():
            found[f"{section}.{key}"] = (value, f"file:{shown}")
    return found


def load(
    repo: Path,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    named: Mapping[str, str] | None = None,
    file: Path | None = None,
) -> Config:
    """Build the effective config for ``repo``; raise UsageError naming file, key and source.

    ``cli`` holds the caller's overrides; each one's origin is ``named[key]`` when the caller
    names it (the CLI: its option), else ``argument <key>``. ``file``: the config file to read
    (``--config``); else ``FACTORY_CONFIG``, else the repository's CONFIG_REL if it exists."""
    values = copy.deepcopy(DEFAULTS)
    origins: dict[str, str] = {}
    env = os.environ if environ is None else environ
    path, source = config_path(repo, file, env)
    shown = _shown(repo, path)
    layers: list[dict[str, tuple[Any, str]]] = []
    file_used: Path | None = None
    if path.is_file():
        layers.append(_file_layer(path, shown))
        file_used = path
    elif path.exists() or path.is_symlink():
        raise UsageError(
            f"config file {path}: not a regular file (remove it, or make it a JSON file)"
        )
    elif source != "default":
        raise UsageError(f"config file {path} (from {source}): no such file")
    layers.append(_env_layer(env))
    layers.append(
        {
            k: (v, (named or {}).get(k) or f"argument {k}")
            for k, v in (cli or {}).items()
            if v is not None
        }
    )
    for layer in layers:
        for dotted, (value, origin) in layer.items():
            section, key = dotted.split(".", 1)
            values[section][key] = value
            origins[dotted] = origin
    cfg = Config(values, origins, file_used, shown, source)
    _validate(cfg)
    _protect_config_file(cfg, repo)
    return cfg


def _protect_config_file(cfg: Config, repo: Path) -> None:
    """A config file of the repository's named by --config or FACTORY_CONFIG is protected
    like the default one (under tools/codex/factory/**): no worker may change the checks or
    rules of the runs after theirs, nor re-point a link of the repository the path is read
    through (that would name another file)."""
    if cfg.file is None or cfg.file_source == "default":
        return
    protected = list(cfg.values["security"]["protected_paths"])
    wanted = [p for p in _config_protections(cfg.file, repo) if p not in protected]
    if wanted:
        cfg.values["security"]["protected_paths"] = [*protected, *wanted]


MAX_LINK_HOPS = 40  # as the kernel's own bound on links followed in one path


def _config_protections(file: Path, repo: Path) -> list[str]:
    """The repository paths reading ``file`` depends on, as literal globs: every link of the
    repository followed on the way (one at a time, as the filesystem follows them) and the
    file finally read, when it lies in the repository."""
    root = repo.resolve()
    todo = list(file.parts[1:])
    here = Path(file.anchor)
    found: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        step = here.parent if part == ".." else here / part
        if not step.is_symlink():
            here = step
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            break
        found += _repo_rel(step, root)
        target = Path(os.readlink(step))
        if target.is_absolute():
            here = Path(target.anchor)
        todo = [*target.parts[1:], *todo] if target.is_absolute() else [*target.parts, *todo]
    found += _repo_rel(here, root)
    return sorted({_literal_glob(p) for p in found})


def _repo_rel(path: Path, root: Path) -> list[str]:
    """``[path relative to root]`` when ``path`` (no links in it) lies inside it, else []."""
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        return []
    return [rel] if rel != "." else []


def _literal_glob(path: str) -> str:
    """``path`` as a glob matching only itself (``*``, ``?`` and ``[`` in brackets)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


def config_path(repo: Path, file: Path | None, environ: Mapping[str, str]) -> tuple[Path, str]:
    """The config file to read and what chose it: ``--config FILE``, else ``FACTORY_CONFIG``,
    else the repository's CONFIG_REL (a relative path is the operator's: from the current
    folder)."""
    if file is not None:
        return Path(os.path.abspath(file)), "--config"
    named = environ.get(CONFIG_ENV, "")
    if named:
        return Path(os.path.abspath(named)), CONFIG_ENV
    return repo / CONFIG_REL, "default"


def _shown(repo: Path, path: Path) -> str:
    """A path as messages show it: repository-relative inside it, else absolute."""
    try:
        return path.resolve().relative_to(repo.resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)


def _validate(cfg: Config) -> None:
    doc: dict[str, Any] = {"schema_version": schemas.SCHEMA_VERSION, **cfg.values}
    problems = schemas.errors("factory_config", doc)
    if problems:
        where, msg = problems[0]
        dotted = ".".join(where.replace("[", ".").split(".")[:2])
        raise UsageError(f"config key {where}: {msg} (source: {_describe(cfg, dotted)})")
    kind = cfg.get("run.kind")
    validate_kind(kind, f"config run.kind (source: {_describe(cfg, 'run.kind')})")
    ids = cfg.get("workers.ids")
    for wid in ids:
        validate_worker_id(wid, f"config workers.ids (source: {_describe(cfg, 'workers.ids')})")
    if len(set(ids)) != len(ids):
        raise UsageError(
            f"config workers.ids: duplicate worker IDs in {ids} (source: {_describe(cfg, 'workers.ids')})"
        )
    normal: dict[str, str] = {}
    for key in ("paths.runs_dir", "ledger.path"):
        value = cfg.get(key)
        if value is None:
            continue
        try:
            normal[key] = _absolute(value) if os.path.isabs(value) else normalise_repo_path(value)
        except PathRuleError as exc:
            raise UsageError(f"config {key}: {exc} (source: {_describe(cfg, key)})") from None
    if "ledger.path" in normal:
        runs = PurePosixPath(normal["paths.runs_dir"])
        ledger = PurePosixPath(normal["ledger.path"])
        if ledger == runs or runs not in ledger.parents:
            raise UsageError(
                f"config ledger.path: {cfg.get('ledger.path')!r} is not inside paths.runs_dir "
                f"{cfg.get('paths.runs_dir')!r} (the ledger lives with the run artifacts, never among "
                f"your files) (source: {_describe(cfg, 'ledger.path')})"
            )
    _check_names_unique(cfg)
    _check_argvs(cfg)
    _check_review(cfg)


def _check_review(cfg: Config) -> None:
    """Gate 0's globs and patterns must be usable: a typo is a usage error, never a rule that
    silently matches nothing."""
    for i, glob in enumerate(cfg.get("review.test_globs")):
        try:
            validate_glob(glob)
        except ValueError as exc:
            raise UsageError(
                f"config review.test_globs[{i}] {glob!r}: {exc} "
                f"(source: {_describe(cfg, 'review.test_globs')})"
            ) from None
    for i, pattern in enumerate(cfg.get("review.skip_patterns")):
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            raise UsageError(
                f"config review.skip_patterns[{i}] {pattern!r}: not a regular expression ({exc}) "
                f"(source: {_describe(cfg, 'review.skip_patterns')})"
            ) from None
    raw = cfg.get("review.agent")
    if raw is not None:
        agents.spec_of(raw, "config review.agent", cfg.values["workers"])


def _absolute(value: str) -> str:
    """An absolute runs folder or ledger path (outside the repository), '/'-separated for the
    comparisons: written in its normal form (no '..', '.' or '//')."""
    trimmed = value.rstrip("/\\") or value
    parts = re.split(r"[/\\]", trimmed)
    if any(p in ("..", ".") for p in parts) or "" in parts[1:]:
        raise PathRuleError("path-not-normalised", f"path {value!r} is not normalised")
    return Path(trimmed).as_posix()


# What a check's argv and env values may name (expanded when it runs in the sandbox).
CHECK_PLACEHOLDERS = ("python", "project_python", "base_commit", "run_id", "sandbox")


def _check_argvs(cfg: Config) -> None:
    """Each check's argv and env values use known placeholders; its env sets no GIT_* (the
    sandbox's git settings are the factory's); its cwd and ``junit_xml`` are plain
    repository-relative paths (used in the sandbox, never outside it)."""
    for section in ("required", "advisory"):
        for i, check in enumerate(cfg.get(f"checks.{section}")):
            where = f"config checks.{section}[{i}]"
            source = f"(source: {_describe(cfg, f'checks.{section}')})"
            placeholders.check(list(check["argv"]), CHECK_PLACEHOLDERS, f"{where} {source}")
            if "junit_xml" in check:
                try:
                    normalise_repo_path(str(check["junit_xml"]))
                except PathRuleError as exc:
                    raise UsageError(f"{where}.junit_xml: [{exc.rule}] {exc} {source}") from None
            for name, value in sorted(check.get("env", {}).items()):
                if name.upper().startswith("GIT_"):
                    raise UsageError(
                        f"{where}.env.{name}: a check may not set GIT_* variables (the sandbox's "
                        f"git settings are the factory's) {source}"
                    )
                placeholders.check([value], CHECK_PLACEHOLDERS, f"{where}.env.{name}", field="")
            if "cwd" in check:
                try:
                    normalise_repo_path(check["cwd"])
                except PathRuleError as exc:
                    raise UsageError(
                        f"{where}.cwd: {exc} (a folder of the repository, e.g. 'src') {source}"
                    ) from None


def _check_names_unique(cfg: Config) -> None:
    """Check names key their logs and results: unique across required + advisory, ignoring
    case (two names differing only in case are one file on Windows and macOS)."""
    seen: dict[str, str] = {}
    for section in ("required", "advisory"):
        for i, check in enumerate(cfg.get(f"checks.{section}")):
            name = str(check["name"])
            where = f"checks.{section}[{i}].name"
            first = seen.setdefault(name.casefold(), where)
            if first != where:
                raise UsageError(
                    f"config {where}: check name {name!r} is already used by {first} (names must be "
                    f"unique across checks.required and checks.advisory, ignoring case) "
                    f"(source: {_describe(cfg, f'checks.{section}')})"
                )


def check_runs_dir(repo: Path, cfg: Config) -> None:
    """Refuse a runs folder that is not the factory's own, before anything is written there.

    The factory writes ``.gitignore`` (``*``) into its runs folder and run artifacts and the
    ledger under it; pointed at a folder of the user's (``paths.runs_dir=app``) that would hide
    and litter their files. So: it must be a folder (or not exist yet, with a folder as its
    nearest existing ancestor), and git may track nothing in it except ``.gitkeep`` and
    ``.gitignore`` at its top. Raises UsageError (one line, naming key and source).
    """

    rel = cfg.runs_rel
    source = _describe(cfg, "paths.runs_dir")
    runs = at(repo, rel)
    outside = os.path.isabs(rel)
    if outside and _inside(runs, repo):
        raise UsageError(
            f"config paths.runs_dir: {rel!r} is inside the repository: write it relative to the "
            f"repository (e.g. tools/codex/runs), or choose a folder outside it (source: {source})"
        )
    probe = runs
    while not (probe.exists() or probe.is_symlink()) and probe != repo and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        shown = probe.relative_to(repo).as_posix() if probe.is_relative_to(repo) else str(probe)
        raise UsageError(
            f"config paths.runs_dir: {rel!r} cannot be a folder: {shown} exists and is not a folder "
            f"(source: {source})"
        )
    if probe != runs or outside:
        return  # does not exist yet (it will be the factory's own), or holds no tracked file
    own = {f"{rel}/{name}" for name in RUNS_DIR_OWN_FILES}
    tracked = sorted(p for p in gitops.tracked_under(repo, rel) if p not in own)
    if tracked:
        more = f" and {len(tracked) - 3} more" if len(tracked) > 3 else ""
        raise UsageError(
            f"config paths.runs_dir: {rel!r} holds files tracked by git ({', '.join(tracked[:3])}{more}): "
            f"the runs folder must be the factory's own (it git-ignores everything in it); "
            f"choose another folder, e.g. the default tools/codex/runs (source: {source})"
        )


def _inside(path: Path, repo: Path) -> bool:
    """Is ``path`` (resolved as far as it exists) the repository or inside it?"""
    try:
        return path.resolve().is_relative_to(repo.resolve())
    except OSError:
        return False


def _describe(cfg: Config, dotted: str) -> str:
    origin = cfg.origin(dotted)
    if origin.startswith("file:"):
        return f"file {cfg.file}"
    return origin
