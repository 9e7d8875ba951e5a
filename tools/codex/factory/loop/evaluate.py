"""Scenario evaluation: each trial in a sandbox of its own, an export of the tree under test
with the sealed holdout written in, a clean environment, a time limit, in parallel.

Nothing of the user's repository is reachable from the sandbox by git (it sits in the system's
temporary folder, with a git ceiling above it), the scenario's code runs from a file outside
the tree, and its output goes to a log in the crank folder. What is recorded (outcomes,
classes, one-line symptoms) never holds a duration: durations are in the logs only.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tools.codex.factory.core import convergence, symptoms
from tools.codex.factory.core.scenarios import Scenario
from tools.codex.factory.core.text import clip
from tools.codex.factory.errors import FactoryError
from tools.codex.factory.infra import fsutil, gitops, proc
from tools.codex.factory.infra.clock import real_monotonic
from tools.codex.factory.loop.holdout import Holdout
from tools.codex.factory.records.crank import ScenarioResult, Trial

LOG_BYTES = 1024 * 1024  # what is kept of it in the crank folder
TAIL_CHARS = 2000  # the output tail ``feedback.detail = full`` may show
# Environment variables a scenario keeps (the rest of the factory's environment stays out).
KEEP_ENV = ("PATH", "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "PATHEXT", "LANG", "LC_ALL")
SETTING_KEYS = ("trials", "pass_trials", "timeout_s", "parallel", "python")
SUFFIX = {"bash": ".sh", "powershell": ".ps1", "python": ".py"}


@dataclass(frozen=True)
class Settings:
    trials: int
    need: int  # trials a scenario must pass (k of n)
    timeout_s: int
    parallel: int
    python: str  # the interpreter of python scenarios

    @classmethod
    def of(cls, values: dict[str, object]) -> Settings:
        trials = int(str(values["trials"]))
        need = int(str(values["pass_trials"])) or trials
        parallel = int(str(values["parallel"])) or (os.cpu_count() or 1)
        python = str(values["python"]).replace("{python}", sys.executable)
        return cls(trials, min(need, trials), int(str(values["timeout_s"])), parallel, python)


@dataclass(frozen=True)
class Evaluated:
    results: list[ScenarioResult]  # sorted by scenario ID
    trials: dict[str, list[Trial]]  # scenario ID -> its trials, in order
    tails: dict[str, str]  # scenario ID -> output tail of its last failing trial
    logs: dict[str, str]  # log path (relative to the logs folder) -> sha256
    timing: str  # one line per trial with its duration: for people, never recorded


def interpreter(language: str, python: str) -> list[str] | None:
    """The command that runs a scenario's code file, or None if it is not installed."""
    if language == "python":
        found = shutil.which(python) or (python if Path(python).is_file() else None)
        return [found] if found else None
    if language == "powershell":
        for name in ("pwsh", "powershell"):
            found = shutil.which(name)
            if found:
                return [found, "-NoProfile", "-NonInteractive", "-File"]
        return None
    found = shutil.which("bash")
    return [found] if found else None


def clean_env(root: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in KEEP_ENV}
    env.update(
        {
            "HOME": str(home),
            "USERPROFILE": str(home),
            "TMPDIR": str(home),
            "TEMP": str(home),
            "TMP": str(home),
            "PYTHONPATH": str(root),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
            "GIT_CEILING_DIRECTORIES": str(root.parent),
            "LANG": env.get("LANG", "C.UTF-8"),
        }
    )
    return env


def evaluate(
    repo: Path,
    commit: str,
    holdout: Holdout,
    settings: Settings,
    write_log: Callable[[str, bytes], str],
    extra_env: Mapping[str, str] | None = None,
) -> Evaluated:
    """Every sealed scenario against ``commit``'s tree, ``settings.trials`` times each.

    ``write_log(name, data)`` keeps a trial's log (through the caller's guarded writer) and
    returns its hash. An infrastructure failure (no interpreter, no sandbox) is retried once
    and then is an ``infra`` outcome, never a product failure.
    """
    with (
        tempfile.TemporaryDirectory(prefix="factory-scenarios-", ignore_cleanup_errors=True) as tmp,
        gitops.tree_exporter(repo, commit) as export,
    ):
        build = functools.partial(_sandbox_tree, export, holdout)
        env = dict(extra_env or {})
        jobs = [(s, t) for s in holdout.scenarios for t in range(1, settings.trials + 1)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=settings.parallel) as pool:
            done = list(
                pool.map(lambda job: _trial(Path(tmp), build, job[0], job[1], settings, env), jobs)
            )
    by_id: dict[str, list[tuple[Trial, bytes, float]]] = {}
    for (s, _), outcome in zip(jobs, done, strict=True):
        by_id.setdefault(s.id, []).append(outcome)
    results: list[ScenarioResult] = []
    recorded: dict[str, list[Trial]] = {}
    tails: dict[str, str] = {}
    logs: dict[str, str] = {}
    timing: list[str] = []
    for s in sorted(holdout.scenarios, key=lambda s: s.id):
        trials = by_id[s.id]
        for n, (trial, output, seconds) in enumerate(trials, 1):
            name = f"{s.id}.trial{n}.log"
            head = f"# {s.id} trial {n}: rc={trial['rc']} timed_out={trial['timed_out']}\n"
            logs[name] = write_log(name, head.encode() + output[-LOG_BYTES:])
            timing.append(f"{name}: {seconds:.3f}s\n")
        recorded[s.id] = [t for t, _, _ in trials]
        result = convergence.scenario_result(
            s.id, s.category, [t for t, _, _ in trials], settings.need, s.name
        )
        results.append(result)
        failed = [o for t, o, _ in trials if not (t["rc"] == 0 and not t["timed_out"])]
        if failed and not result["passed"]:
            tails[s.id] = clip(failed[-1].decode("utf-8", "replace")[-TAIL_CHARS:], TAIL_CHARS)
    return Evaluated(results, recorded, tails, dict(sorted(logs.items())), "".join(timing))


def _sandbox_tree(export: Callable[[Path], None], holdout: Holdout, root: Path) -> None:
    """A trial's tree: the commit's files written straight into it by git (each trial gets its
    own export, in parallel, rather than a copy of a shared one), with the sealed holdout in
    place of the candidate's copy of the scenarios folder."""
    export(root)
    _make_room(root, holdout.folder)
    for path, data in holdout.files:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        # Created new (never through something already there), in folders made just now.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def _make_room(root: Path, folder: str) -> None:
    """Remove the candidate's copy of the holdout folder, or whatever on the way to it is not a
    plain folder: a link there (``qa`` -> elsewhere) would carry the removal and the sealed
    files out of the sandbox, so the link itself goes, never what it points to."""
    here = root
    for part in folder.split("/"):
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return
        if fsutil.is_link(st) or not stat.S_ISDIR(st.st_mode):
            # a directory link or junction (Windows) goes with rmdir, anything else with unlink
            (os.rmdir if stat.S_ISDIR(st.st_mode) else os.unlink)(here)
            return
    fsutil.remove_tree(here)


def _trial(
    tmp: Path,
    build: Callable[[Path], None],
    s: Scenario,
    n: int,
    settings: Settings,
    env: Mapping[str, str],
) -> tuple[Trial, bytes, float]:
    trial, output, seconds = _attempt(tmp, build, s, n, settings, env, 1)
    if trial["infra"]:
        trial, output, seconds = _attempt(tmp, build, s, n, settings, env, 2)
    return trial, output, seconds


def _attempt(
    tmp: Path,
    build: Callable[[Path], None],
    s: Scenario,
    n: int,
    settings: Settings,
    env: Mapping[str, str],
    attempt: int,
) -> tuple[Trial, bytes, float]:
    slot = tmp / f"{s.id}.t{n}.a{attempt}"
    argv = interpreter(s.language, settings.python)
    if argv is None:
        what = {"bash": "bash", "powershell": "pwsh or powershell", "python": settings.python}
        return _infra(f"{what[s.language]} not found on PATH"), b"", 0.0
    try:
        root = slot / "tree"
        build(root)
        home = slot / "home"
        home.mkdir()
        script = slot / f"scenario{SUFFIX[s.language]}"
        script.write_bytes(s.code.encode("utf-8"))
        log = slot / "output.log"
    except OSError as exc:
        return _infra(f"the sandbox could not be built: {exc.strerror or exc}"), b"", 0.0
    except FactoryError as exc:
        return _infra(f"the sandbox could not be built: {exc}"), b"", 0.0
    start = real_monotonic()
    try:
        with log.open("wb") as out:
            fin = proc.run_logged(
                [*argv, str(script)], root, {**clean_env(root, home), **env}, out, out,
                float(settings.timeout_s), stdin_data=b"",
            )  # fmt: skip
    except (OSError, FactoryError) as exc:
        return _infra(f"the interpreter could not start: {exc}"), b"", 0.0
    seconds = real_monotonic() - start
    output = _tail(log)
    # Where the sandbox happened to be is no part of the result: its path reads as "." (the
    # tree) or "<sandbox>", so the same code gives the same symptom, signature and log bytes.
    for path, shown in ((root, b"."), (slot, b"<sandbox>")):
        for spelling in {str(path), str(path.resolve())}:
            output = output.replace(spelling.encode("utf-8", "surrogateescape"), shown)
    with contextlib.suppress(OSError, FactoryError):  # the temporary folder goes at the end too
        fsutil.remove_tree(slot)
    if fin.rc == 0 and not fin.timed_out:
        trial = Trial(rc=0, timed_out=False, infra="", symptom="", symptom_class="")
        return trial, output, seconds
    cls, symptom = symptoms.classify(output.decode("utf-8", "replace"), fin.rc, fin.timed_out)
    trial = Trial(rc=fin.rc, timed_out=fin.timed_out, infra="", symptom=symptom, symptom_class=cls)
    return trial, output, seconds


def _infra(why: str) -> Trial:
    return Trial(rc=None, timed_out=False, infra=why, symptom=why, symptom_class="infrastructure")


def _tail(path: Path) -> bytes:
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - LOG_BYTES))
        return fh.read()


def unavailable(holdout: Holdout, settings: Settings, why: str) -> Evaluated:
    """Every scenario an infrastructure failure for ``why`` (the service is down): nothing ran,
    so nothing is a product failure."""
    trial = _infra(why)
    results = [
        convergence.scenario_result(s.id, s.category, [trial], settings.need, s.name)
        for s in sorted(holdout.scenarios, key=lambda s: s.id)
    ]
    trials = {s.id: [trial] for s in holdout.scenarios}
    return Evaluated(results, dict(sorted(trials.items())), {}, {}, "")
