"""The only module that runs git. Typed errors, argv lists, never a shell."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from tools.codex.factory import proc
from tools.codex.factory.errors import GitError, UsageError

MIN_VERSION = (2, 30)


def git(
    repo: Path | None,
    *args: str,
    input: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> proc.Result:
    argv = ["git", *args]
    if repo is not None:
        argv = ["git", "-C", str(repo), *args]
    return proc.run(argv, env=env if env is not None else proc.base_env(), input=input, check=check, error=GitError, timeout=timeout)


def version() -> tuple[int, int, int]:
    out = git(None, "--version").out
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    if not m:
        raise GitError(["git", "--version"], 0, out, "", why="printed no version")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def toplevel(path: Path) -> Path:
    res = git(path, "rev-parse", "--show-toplevel", check=False)
    if res.rc != 0:
        raise UsageError(f"{path} is not inside a git repository; run from a checkout or pass --repo PATH")
    return Path(res.out.strip())


def resolve_commit(repo: Path, ref: str) -> str:
    if ref.startswith("-"):
        raise UsageError(f"--base-ref {ref!r} may not start with '-'")
    res = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
    if res.rc != 0 or not res.out.strip():
        raise UsageError(f"--base-ref {ref!r} does not resolve to a commit in {repo}")
    return res.out.strip()


def is_inside_repo(path: Path) -> bool:
    return git(path, "rev-parse", "--git-dir", check=False).rc == 0


def status_porcelain(repo: Path) -> bytes:
    return git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all").stdout


def snapshot(repo: Path) -> dict[str, bytes]:
    """What an operator would notice changing: HEAD, index, branches, stash, worktree status."""
    def out(*args: str) -> bytes:
        return git(repo, *args, check=False).stdout

    return {
        "head": out("rev-parse", "HEAD"),
        "symbolic": out("symbolic-ref", "-q", "HEAD"),
        "branches": out("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"),
        "stash": out("stash", "list"),
        "status": status_porcelain(repo),
        "index": out("ls-files", "-s", "--debug"),
        "worktrees": out("worktree", "list", "--porcelain"),
    }


def run_args(repo: Path, args: Sequence[str]) -> proc.Result:
    return git(repo, *args)


# Fixed diff options: the integrator's DIFF.patch must not depend on anyone's git config.
DIFF_ARGS = (
    "-c", "diff.noprefix=false",
    "-c", "diff.mnemonicPrefix=false",
    "-c", "diff.algorithm=myers",
    "-c", "core.quotePath=true",
)


def sandbox_env(sandbox: Path) -> dict[str, str]:
    """No inherited GIT_* and a ceiling above the sandbox: git cannot reach the user's repo."""
    return proc.base_env({"GIT_CEILING_DIRECTORIES": str(sandbox.parent)}, drop_git=True)


def objects_dir(repo: Path) -> Path:
    common = git(repo, "rev-parse", "--git-common-dir").out.strip()
    path = Path(common)
    if not path.is_absolute():
        path = repo / path
    return (path / "objects").resolve()


def create_sandbox(sandbox: Path, repo: Path, commit: str) -> None:
    """A repository of its own at ``commit``, borrowing the user's objects read-only."""
    env = sandbox_env(sandbox)
    git(None, "init", "-q", str(sandbox), env=env)
    for key, value in (("core.autocrlf", "false"), ("core.safecrlf", "false"), ("gc.auto", "0"),
                       ("user.name", "factory"), ("user.email", "factory@localhost")):
        git(sandbox, "config", key, value, env=env)
    alternates = sandbox / ".git" / "objects" / "info" / "alternates"
    alternates.parent.mkdir(parents=True, exist_ok=True)
    alternates.write_text(str(objects_dir(repo)) + "\n", encoding="utf-8")
    git(sandbox, "checkout", "-q", "--detach", commit, env=env)


def apply_patch(sandbox: Path, patch: bytes, check_only: bool) -> proc.Result:
    args = ["apply", "--index", "--whitespace=nowarn"]
    if check_only:
        args.append("--check")
    return git(sandbox, *args, "-", input=patch, check=False, env=sandbox_env(sandbox))


def diff_cached(sandbox: Path, commit: str) -> bytes:
    return git(
        sandbox, *DIFF_ARGS, "diff", "--cached", "--binary", "--full-index", "-M",
        "--no-color", "--no-ext-diff", "--no-textconv", commit, "--",
        env=sandbox_env(sandbox),
    ).stdout
