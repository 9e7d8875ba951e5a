"""One error hierarchy: each class carries its status and exit code, which the CLI turns into
the process's exit code in one place (``cli.commands.run``)."""

from __future__ import annotations


class FactoryError(Exception):
    """An expected failure with a one-line message for the operator (FAIL, exit 1)."""

    exit_code = 1
    status = "FAIL"


class UsageError(FactoryError):
    """Bad input from the operator: option, config, run id, plan (exit 2)."""

    exit_code = 2
    status = "USAGE"


class ArgumentError(UsageError):
    """A bad argument, named in neutral words (``label`` and ``value``) so the library never
    speaks of command-line options; the CLI puts its option for ``arg`` in their place."""

    def __init__(
        self,
        arg: str,
        detail: str,
        *,
        label: str = "",
        value: str | None = None,
        sep: str = ": ",
    ) -> None:
        self.arg = arg
        self.detail = detail
        self.value = value
        self.sep = sep
        head = " ".join(part for part in (label, value) if part)
        super().__init__(f"{head}{sep}{detail}" if head else detail)

    def with_option(self, option: str) -> str:
        """The message as the CLI shows it: its option where the neutral words were."""
        head = " ".join(part for part in (option, self.value) if part)
        return f"{head}{self.sep}{self.detail}"


class NotARepoError(UsageError):
    """The folder given (or the current one) is not inside a git repository."""

    def __init__(self, path: object, advice: str = "give the repository's path") -> None:
        self.path = path
        super().__init__(f"{path} is not inside a git repository; run from a checkout or {advice}")


class NoRunError(UsageError):
    """The run ID names no run folder: one message, wherever a command looks for the run."""

    def __init__(self, run_id: str, folder: str, also: str = "") -> None:
        self.run_id = run_id
        self.folder = folder
        super().__init__(f"run {run_id}: no run folder {folder}{also}")


class BlockedError(FactoryError):
    """A policy or integrity rule refused the action (exit 3)."""

    exit_code = 3
    status = "BLOCKED"


class UnreadableError(BlockedError):
    """A record the factory wrote is there but unreadable or malformed: never taken for absent."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"{path} is unreadable or malformed ({why})")


class LedgerCorruptError(BlockedError):
    """The ledger's bytes do not form a valid chain."""


class TornTailError(BlockedError):
    """The ledger ends with an unterminated fragment; ``ledger repair`` moves it aside."""


class LockHeldError(BlockedError):
    """Another process holds a lock we refuse to wait for."""


class PolicyViolation(BlockedError):
    """The integrator tried to write outside its run folder."""


class ProcessError(FactoryError):
    """A subprocess failed; the message carries command, rc, stdout and stderr."""

    def __init__(
        self, argv: list[str], rc: int | None, stdout: str, stderr: str, why: str = ""
    ) -> None:
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        cmd = " ".join(argv)
        detail = why or f"exited with rc={rc}"
        out = _clip(stdout)
        err = _clip(stderr)
        super().__init__(f"command `{cmd}` {detail}; stdout: {out!r}; stderr: {err!r}")


class GitError(ProcessError):
    """A git command failed."""


def _clip(text: str, limit: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
