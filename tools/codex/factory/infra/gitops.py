"""The only module that runs git. Typed errors, argv lists, never a shell.

:mod:`proc` refuses to start git for anyone else: this module claims proc's one git permit
when it is imported and passes it with every git it starts (through :func:`git` alone).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from tools.codex.factory.core import gitbinary
from tools.codex.factory.core.gitview import GitView, read_apply_output
from tools.codex.factory.core.names import fold as names_fold
from tools.codex.factory.errors import GitError, NotARepoError, UsageError
from tools.codex.factory.infra import fsutil, proc
from tools.codex.factory.infra.fsutil import remove_tree

MIN_VERSION = (2, 30)
_GIT_PERMIT = proc.claim_git_permit()


# Config every git the factory runs carries (as GIT_CONFIG_* entries, the environment form of
# `-c`): never the user's hooks (a post-checkout hook would run on `worktree add`), never their
# fsmonitor daemon.
GUARD_CONFIG = (("core.hooksPath", os.devnull), ("core.fsmonitor", "false"))


def with_config(env: Mapping[str, str], pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """``env`` plus ``pairs`` as GIT_CONFIG_KEY_n/VALUE_n entries after any already there."""
    out = dict(env)
    try:
        n = int(out.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        n = 0
    for key, value in pairs:
        out[f"GIT_CONFIG_KEY_{n}"] = key
        out[f"GIT_CONFIG_VALUE_{n}"] = value
        n += 1
    out["GIT_CONFIG_COUNT"] = str(n)
    return out


# The config keys that make git run a program on a file's content: filter drivers and diff
# drivers, each looked up by the name a .gitattributes line gives (``* filter=x``).
DRIVER_PROGRAMS = {"filter": ("clean", "smudge", "process"), "diff": ("textconv", "command")}
MAX_DRIVERS = 1000


def driver_free_env(cwd: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus GIT_CONFIG_* entries that empty the program of every filter and diff driver
    the config git reads in ``cwd`` defines (any scope, includes too), so no driver runs there
    whatever a .gitattributes names: file bytes go into blobs as they are on disk (and out the
    same way), not through a program an agent configured (``filter.x.clean`` plus ``* filter=x``).
    Git's own line-end conversion (``core.autocrlf``, ``text``, ``eol``) still applies."""
    argv = ("config", "-z", "--name-only", "--get-regexp", r"^(filter|diff)\.")
    res = git(cwd, *argv, check=False, env=env)
    if res.rc not in (0, 1):  # 1: no such keys
        raise GitError(["git", *argv], res.rc, res.out, res.err, why="could not read the config")
    names: set[tuple[str, str]] = set()
    for key in res.stdout.split(b"\0"):
        section, _, rest = key.decode("utf-8", "surrogateescape").partition(".")
        name, dot, _var = rest.rpartition(".")
        if dot and section in DRIVER_PROGRAMS:
            names.add((section, name))
    if len(names) > MAX_DRIVERS:
        raise GitError(
            ["git", *argv], res.rc, "", "", why=f"defines over {MAX_DRIVERS} filter or diff drivers"
        )
    pairs: list[tuple[str, str]] = []
    for section, name in sorted(names):
        pairs += [(f"{section}.{name}.{var}", "") for var in DRIVER_PROGRAMS[section]]
        if section == "filter":
            pairs.append((f"filter.{name}.required", "false"))  # an emptied required one fails
    return with_config(env, pairs)


def guarded_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a git child: no hooks, no fsmonitor (see GUARD_CONFIG)."""
    return with_config(env if env is not None else proc.base_env(), GUARD_CONFIG)


def git(
    repo: Path | None,
    *args: str,
    input: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> proc.Result:
    # The repository is the working directory, not a `-C /abs/path` argument: error messages
    # (which quote argv) then carry no absolute path into reports and ledger events.
    return proc.run(
        ["git", *args],
        cwd=repo,
        env=guarded_env(env),
        input=input,
        check=check,
        error=GitError,
        timeout=timeout,
        git_permit=_GIT_PERMIT,
    )


def version() -> tuple[int, int, int]:
    out = git(None, "--version").out
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    if not m:
        raise GitError(["git", "--version"], 0, out, "", why="printed no version")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


# The subcommands the factory relies on, probed with `-h` (usage text, exit 129): only what the
# code runs (the holdout is a per-worktree sparse file applied with read-tree and skip-worktree).
FEATURES = (
    ("apply", "--cached", "patches are applied to an index with `git apply --cached`"),
    (
        "worktree",
        "--porcelain",
        "real workers get linked worktrees (`git worktree add/list --porcelain`)",
    ),
    ("update-index", "--skip-worktree", "worker checkouts leave holdout paths out (skip-worktree)"),
)


def missing_features() -> list[str]:
    """The git features the factory needs that this git lacks, one phrase each."""
    missing = []
    for sub, token, why in FEATURES:
        res = git(None, sub, "-h", check=False)
        text = res.out + res.err
        if f"git {sub}" not in text or token not in text:
            missing.append(f"`git {sub}` ({why})")
    return missing


def toplevel(path: Path) -> Path:
    res = git(path, "rev-parse", "--show-toplevel", check=False)
    if res.rc != 0:
        raise NotARepoError(path)
    return Path(res.out.strip())


def resolve_commit(repo: Path, ref: str, origin: str = "") -> str:
    """The commit ``ref`` names; ``origin`` says where the ref came from (for the message)."""
    source = f"base ref {ref!r}" + (f" (from {origin})" if origin else "")
    if ref.startswith("-"):
        raise UsageError(f"{source} may not start with '-'")
    res = git(
        repo,
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{ref}^{{commit}}",
        check=False,
    )
    if res.rc != 0 or not res.out.strip():
        raise UsageError(f"{source} does not resolve to a commit in this repository")
    return res.out.strip()


# Fixed diff options: the integrator's DIFF.patch must not depend on anyone's git config.
DIFF_ARGS = (
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "diff.algorithm=myers",
    "-c",
    "core.quotePath=true",
)


def sandbox_env(sandbox: Path, repo: Path | None = None) -> dict[str, str]:
    """For checks: no inherited GIT_*, and git ceilings at the sandbox's parent and at the
    repository root, so git started in or above the sandbox (``git -C ..``) cannot discover
    the user's repository. Checks are not an OS sandbox: a command that names the
    repository's own path can still reach it.
    """
    # Git checks each folder below a ceiling, never the ceiling itself: with the repository
    # root as one, discovery from anywhere under it stops before reaching its .git.
    ceilings = {str(sandbox.parent.resolve())}
    if repo is not None:
        ceilings.add(str(repo.resolve()))
    unique = sorted(ceilings)
    return proc.base_env({"GIT_CEILING_DIRECTORIES": os.pathsep.join(unique)}, drop_git=True)


OWN_HOME = ".git/factory-home"


def _own_env(sandbox: Path) -> dict[str, str]:
    """For the integrator's own git calls in the sandbox: no user or system git config either,
    so Z's DIFF.patch is the same bytes whatever ~/.gitconfig says (diff.context, ...). The
    empty global config it names is written by :func:`create_sandbox`."""
    home = sandbox / OWN_HOME
    env = sandbox_env(sandbox)
    env.update(
        {
            "HOME": str(home),
            "USERPROFILE": str(home),
            "XDG_CONFIG_HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
        }
    )
    return env


def common_dir(repo: Path) -> Path:
    """The repository's common git folder (``.git`` of the main worktree), absolute."""
    common = git(repo, "rev-parse", "--git-common-dir").out.strip()
    path = Path(common)
    if not path.is_absolute():
        path = repo / path
    return path.resolve()


def objects_dir(repo: Path) -> Path:
    return (common_dir(repo) / "objects").resolve()


def _sandbox_config(repo: Path) -> bytes:
    """The sandbox's own config: no CRLF conversion, no gc, no hooks, no fsmonitor, long paths
    (Windows), and the user's whitespace rules when they set some, else CR at end of line is not
    trailing whitespace (files committed with CRLF pass `git diff --check`)."""
    res = git(repo, "config", "--get", "core.whitespace", check=False)
    whitespace = res.out.strip() if res.rc == 0 and res.out.strip() else "cr-at-eol"
    whitespace = whitespace.replace("\\", "").replace('"', "").replace("\n", "")
    lines = [
        "[core]",
        "\tautocrlf = false",
        "\tsafecrlf = false",
        "\tlongpaths = true",
        "\tfsmonitor = false",
        f'\twhitespace = "{whitespace}"',
        "[gc]",
        "\tauto = 0",
        "[user]",
        "\tname = factory",
        "\temail = factory@localhost",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


Write = Callable[[str, bytes], object]


def create_sandbox(sandbox: Path, repo: Path, commit: str, write: Write) -> None:
    """A repository of its own whose index is ``commit``, borrowing the user's objects read-only.

    ``write(rel, data)`` writes a file under the sandbox (the caller's guarded writer: never
    through a link). No work-tree file is written yet: patches are applied to the index, and
    the working tree is materialised only when checks need it (:func:`materialise`). Binary
    patches cannot take a postimage from the borrowed objects unchecked: validation verified
    each one's data.
    """
    git(sandbox.parent, "init", "-q", "--template=", sandbox.name, env=sandbox_env(sandbox))
    config = (sandbox / ".git" / "config").read_bytes()
    write(".git/config", config + _sandbox_config(repo))
    # Bytes with "\n": git reads the path up to the newline and would keep a "\r" (text mode
    # on Windows).
    write(".git/objects/info/alternates", str(objects_dir(repo)).encode("utf-8") + b"\n")
    write(f"{OWN_HOME}/gitconfig", b"")
    env = _own_env(sandbox)
    git(sandbox, "read-tree", commit, env=env)
    git(sandbox, "update-ref", "--no-deref", "HEAD", commit, env=env)


def apply_to_index(sandbox: Path, patch: bytes) -> proc.Result:
    """Apply one patch (the bytes validation judged, from memory: no file in between that a
    racing process could swap) to the sandbox index, all or nothing (one index write)."""
    return git(
        sandbox,
        "apply",
        "--cached",
        "--whitespace=nowarn",
        "-",
        input=patch,
        check=False,
        env=_own_env(sandbox),
    )


def materialise(sandbox: Path, leave_out: Callable[[str], bool] | None = None) -> None:
    """Write the (patched) index out as the sandbox's working tree, for checks to run in;
    the paths ``leave_out`` names are never written (a crank's holdout: the agents' code runs
    in the checks, and what it prints goes back to them)."""
    env = _own_env(sandbox)
    if leave_out is None:
        git(sandbox, "checkout-index", "-a", "-f", "-u", env=env)
        return
    listed = git(sandbox, "ls-files", "-z", env=env).stdout.split(b"\0")
    keep = [p for p in listed if p and not leave_out(p.decode("utf-8", "surrogateescape"))]
    git(sandbox, "checkout-index", "-f", "-u", "-z", "--stdin", input=b"\0".join(keep), env=env)


ATTR_SOURCE_VERSION = (2, 42)


@functools.lru_cache(maxsize=1)
def honours_attr_source() -> bool:
    """Whether this git reads attributes from ``GIT_ATTR_SOURCE`` (git 2.42 or newer), measured
    once by behaviour, not assumed from the version: in a scratch repository whose working-tree
    ``.gitattributes`` says ``tree`` and whose tree object says ``base``, ``check-attr`` with
    ``GIT_ATTR_SOURCE`` set to that tree must answer ``base``. Older git silently ignores the
    variable, and checks would then read the patch's own attributes."""
    with tempfile.TemporaryDirectory(prefix="factory-attr-") as tmp:
        scratch = Path(tmp)
        env = proc.base_env({"GIT_CONFIG_NOSYSTEM": "1", "HOME": tmp, "XDG_CONFIG_HOME": tmp})
        env = {k: v for k, v in env.items() if not k.startswith("GIT_") or k in _PROBE_KEEP}
        git(scratch, "init", "-q", "--template=", env=env)
        blob = git(
            scratch, "hash-object", "-w", "--stdin", input=b"probe mark=base\n", env=env
        ).out.strip()
        tree = git(
            scratch, "mktree", input=f"100644 blob {blob}\t.gitattributes\n".encode(), env=env
        ).out.strip()
        (scratch / ".gitattributes").write_bytes(b"probe mark=tree\n")
        res = git(
            scratch,
            "check-attr",
            "mark",
            "--",
            "probe",
            env={**env, "GIT_ATTR_SOURCE": tree},
            check=False,
        )
        return res.rc == 0 and res.out.strip().endswith(": mark: base")


_PROBE_KEEP = frozenset({"GIT_CONFIG_NOSYSTEM", "GIT_EXEC_PATH"})


def diff_cached(sandbox: Path, commit: str, *pathspecs: str) -> bytes:
    """The sandbox index against ``commit`` as a patch, with fixed options (see DIFF_ARGS);
    ``pathspecs`` (literal) limit it to those paths and what is under them."""
    env = {**_own_env(sandbox), **_LITERAL} if pathspecs else _own_env(sandbox)
    return git(
        sandbox,
        *DIFF_ARGS,
        "diff",
        "--cached",
        "--binary",
        "--full-index",
        "-M",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        commit,
        "--",
        *pathspecs,
        env=env,
    ).stdout


def _name_status(sandbox: Path, commit: str) -> list[tuple[bytes, bytes]]:
    """(status letter, path) of each path the index changes against ``commit``, no renames."""
    out = git(
        sandbox,
        "diff",
        "--cached",
        "--name-status",
        "--no-renames",
        "-z",
        commit,
        "--",
        env=_own_env(sandbox),
    ).stdout
    fields = out.split(b"\0")
    return [(fields[i][:1], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]


# Below this many changed paths one `git diff` is as quick as two.
SPLIT_DIFF_MIN = 512


def merged_diff(sandbox: Path, commit: str) -> tuple[bytes, list[str]]:
    """:func:`diff_cached`, and the sorted paths the index changes against ``commit`` (every
    name its sections carry; a rename's two names are a deletion and an addition here), read
    by git from the index and the tree, not by parsing the diff again.

    The diff is taken by two git processes at once where that gives the same bytes.

    git writes a diff's sections in path order, each from its own file's two sides unless
    it pairs a deletion with an addition (-M). So when nothing was both deleted and added,
    and no path changed type (two sections), the diff of an early range of paths followed
    by that of the rest is the whole diff. The ranges are whole folders (literal pathspecs,
    no two alike but for case), and the halves must hold one section per changed path, or
    the single diff is taken instead.
    """
    entries = _name_status(sandbox, commit)
    changed = sorted({p.decode("utf-8", "surrogateescape") for _, p in entries})
    halves = _split(entries)
    if halves is None:
        return diff_cached(sandbox, commit), changed
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(lambda specs: diff_cached(sandbox, commit, *specs), halves))
    joined = b"".join(parts)
    if _sections(joined) != len(entries):
        return diff_cached(sandbox, commit), changed
    return joined, changed


def _sections(patch: bytes) -> int:
    """The ``diff --git`` headers of a patch git wrote (content lines start with ' ', '+',
    '-' or '\\'; base85 lines hold no space)."""
    return patch.count(b"\ndiff --git ") + patch.startswith(b"diff --git ")


def _alike(names: list[str]) -> bool:
    """Whether git on some OS could read one of ``names`` as a pathspec for another's paths:
    macOS git turns an argument's decomposed Unicode into composed form, Git for Windows
    reads '\\' as '/' and re-encodes bytes that are not UTF-8. So no two may share a
    :func:`names.fold` key (case, Unicode form, trailing dots), and none may hold '\\' or
    bytes that are not UTF-8. (Names are all as deep, or files: none is another's folder.)"""
    if any("\\" in n or any("\ud800" <= c <= "\udfff" for c in n) for n in names):
        return True
    return len({names_fold(n) for n in names}) != len(names)


def _command_chars(names: list[str]) -> int:
    """What ``names`` may take of a Windows command line (UTF-16 units): each one quoted,
    a space between. Either half may hold nearly all of them."""
    return sum(len(n.encode("utf-16-le")) // 2 + 3 for n in names)


def _split(entries: list[tuple[bytes, bytes]]) -> tuple[list[str], list[str]] | None:
    """Two lists of folder pathspecs that cover ``entries`` in two ranges of path order,
    or None where one diff must be taken whole."""
    if len(entries) < SPLIT_DIFF_MIN:
        return None
    kinds = {status for status, _ in entries}
    if not kinds <= {b"A", b"M", b"D"} or {b"A", b"D"} <= kinds:
        return None
    paths = sorted(p for _, p in entries)  # git's order: the bytes
    for depth in range(1, 9):
        groups: list[tuple[bytes, int]] = []  # (folder, paths under it), in path order
        for path in paths:
            head = b"/".join(path.split(b"/")[:depth])
            if groups and groups[-1][0] == head:
                groups[-1] = (head, groups[-1][1] + 1)
            else:
                groups.append((head, 1))
        if len(groups) >= 2:
            break
    else:
        return None
    names = [g.decode("utf-8", "surrogateescape") for g, _ in groups]
    if _alike(names) or _command_chars(names) > PATHSPEC_CHARS:
        return None
    total, running, cut = len(paths), 0, 1
    for i, (_, count) in enumerate(groups[:-1]):
        running += count
        cut = i + 1
        if 2 * running >= total:
            break
    return names[:cut], names[cut:]


# -- worktrees (real workers) -------------------------------------------------------------------
# Pathspec that keeps the reserved notes folder out of every collected diff.
NOTES_EXCLUDE = ":(exclude,top).factory"
# Sparse checkout is enabled per command (and per agent, through GIT_CONFIG_*), never by
# writing the user's repository config: `git sparse-checkout` in a linked worktree would turn
# on extensions.worktreeConfig in the shared .git/config.
SPARSE_CONFIG = (("core.sparseCheckout", "true"), ("core.sparseCheckoutCone", "false"))


def tree_paths(repo: Path, commit: str) -> list[str]:
    out = git(repo, "ls-tree", "-r", "-z", "--name-only", "--full-tree", commit).stdout
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]


def tree_paths_and_links(
    repo: Path, commit: str, max_target: int
) -> tuple[list[str], list[tuple[str, str]]]:
    """:func:`tree_paths`, and (path, target) of every symlink in ``commit``'s tree, sorted
    (the links a worker's new link may resolve through), from one ``git ls-tree``. A target
    over ``max_target`` bytes (or unreadable) is given as '/', which resolves nowhere inside
    the repository."""
    listing = git(repo, "ls-tree", "-r", "-z", "--full-tree", commit).stdout
    paths: list[str] = []
    oids: dict[str, list[str]] = {}
    for entry in listing.split(b"\0"):
        meta, tab, raw = entry.partition(b"\t")
        if not tab:
            continue
        path = raw.decode("utf-8", "surrogateescape")
        paths.append(path)
        fields = meta.split()
        if len(fields) == 3 and fields[0] == b"120000":
            oids.setdefault(fields[2].decode("ascii"), []).append(path)
    return paths, _link_targets(repo, oids, max_target)


def _link_targets(repo: Path, oids: dict[str, list[str]], max_target: int) -> list[tuple[str, str]]:
    """(path, target) for the link blobs ``oids`` (blob id -> the paths that hold it)."""
    if not oids:
        return []
    env = proc.base_env({"GIT_NO_REPLACE_OBJECTS": "1"})
    batch = git(
        repo, "cat-file", "--batch", input="".join(f"{o}\n" for o in oids).encode(), env=env
    ).stdout
    targets: dict[str, str] = {}
    pos = 0
    for oid in oids:
        end = batch.index(b"\n", pos)
        head = batch[pos:end].split()
        size = int(head[2]) if len(head) == 3 and head[1] == b"blob" else -1
        pos = end + 1 + (size + 1 if size >= 0 else 0)
        data = batch[end + 1 : end + 1 + size] if size >= 0 else b""
        ok = 0 < size <= max_target
        targets[oid] = data.decode("utf-8", "surrogateescape") if ok else "/"
    return sorted((path, targets[oid]) for oid, paths in oids.items() for path in paths)


def git_path(worktree: Path, name: str) -> Path:
    """``git rev-parse --git-path`` for a worktree (per-worktree files such as the index)."""
    out = git(worktree, "rev-parse", "--git-path", name).out.strip()
    path = Path(out)
    return path if path.is_absolute() else worktree / path


def valid_branch(name: str) -> bool:
    """Whether git takes ``name`` as a branch name. Asked once per name: a run names the same
    branches many times (launch, every runboard refresh, collect, clean), and a name without
    ``@{`` (which alone refers to the repository's history) has one answer."""
    if "@{" in name:
        return _valid_branch(name)
    return _valid_branch_cached(name)


def _valid_branch(name: str) -> bool:
    return git(None, "check-ref-format", "--branch", name, check=False).rc == 0


@functools.lru_cache(maxsize=4096)
def _valid_branch_cached(name: str) -> bool:
    return _valid_branch(name)


def branch_exists(repo: Path, branch: str) -> bool:
    return git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}", check=False).rc == 0


def branch_delete(repo: Path, branch: str) -> None:
    """Delete ``branch`` if it exists. Deleted first, asked after: only a failed deletion of
    a branch that is still there is an error (raised with git's own message)."""
    if git(repo, "branch", "-D", "--", branch, check=False).rc != 0 and branch_exists(repo, branch):
        git(repo, "branch", "-D", "--", branch)


def worktree_add(repo: Path, path: Path, branch: str, commit: str) -> None:
    """A linked worktree on a new branch at ``commit``, nothing checked out yet."""
    if branch_exists(repo, branch):
        raise UsageError(
            f"branch {branch} already exists (left over from an earlier run?): "
            "run `factory clean` or choose another run ID"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "--quiet", "--no-checkout", "-b", branch, str(path), commit)


def _sparse_line(path: str) -> str | None:
    """A non-cone sparse-checkout pattern excluding exactly ``path`` (None: not expressible)."""
    if "\n" in path or "\r" in path:
        return None
    body = "".join("\\" + ch if ch in "\\*?[]" else ch for ch in path)
    stripped = body.rstrip(" ")
    body = stripped + "\\ " * (len(body) - len(stripped))
    return f"!/{body}"


def sparse_file(worktree: Path) -> Path:
    """The worktree's own ``info/sparse-checkout`` file (in its admin folder)."""
    return git_path(worktree, "info/sparse-checkout")


def sparse_patterns(hidden: Sequence[str]) -> bytes:
    """Non-cone sparse-checkout patterns: include everything, then exclude each hidden file."""
    lines = ["/*"] + [line for p in sorted(hidden) if (line := _sparse_line(p)) is not None]
    return ("\n".join(lines) + "\n").encode("utf-8")


def worktree_checkout_sparse(worktree: Path, hidden: Sequence[str]) -> None:
    """Check the worktree out with the ``hidden`` files absent (skip-worktree, never written).

    The caller has written :func:`sparse_patterns` to :func:`sparse_file`; it is applied with
    ``core.sparseCheckout`` passed on the command line, so the user's repository config is not
    changed.
    """
    cfg = [a for key, value in SPARSE_CONFIG for a in ("-c", f"{key}={value}")]
    # No smudge filter writes the files: collect takes them back without a clean filter.
    git(
        worktree,
        *cfg,
        "read-tree",
        "-m",
        "-u",
        "HEAD",
        env=driver_free_env(worktree, proc.base_env()),
    )
    # Safety net: anything a pattern could not express is removed and marked by hand.
    leaked = [p for p in hidden if (worktree / p).exists() or (worktree / p).is_symlink()]
    for p in leaked:
        (worktree / p).unlink()
    if leaked:
        git(
            worktree,
            "update-index",
            "-z",
            "--skip-worktree",
            "--stdin",
            input=b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in leaked),
        )


def sparse_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus GIT_CONFIG_* entries that keep git commands in a worktree sparse and away
    from the user's hooks and fsmonitor (the agents' environment too)."""
    return with_config(env, [*SPARSE_CONFIG, *GUARD_CONFIG])


def worktree_list(repo: Path) -> list[dict[str, str]]:
    """Registered worktrees: path, head, branch (full ref or ''), prunable ('' or reason)."""
    out = git(repo, "worktree", "list", "--porcelain").out
    entries: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in [*out.splitlines(), ""]:
        if not line:
            if cur:
                entries.append(cur)
            cur = {}
            continue
        key, _, value = line.partition(" ")
        if key == "worktree":
            cur = {"path": value, "head": "", "branch": "", "prunable": ""}
        elif key in ("HEAD", "branch") and cur:
            cur["head" if key == "HEAD" else "branch"] = value
        elif key == "prunable" and cur:
            cur["prunable"] = value or "prunable"
    return entries


def _same_path(a: str, b: str) -> bool:
    def norm(p: str) -> str:
        return os.path.normcase(os.path.normpath(p))

    return norm(a) == norm(b) or norm(os.path.realpath(a)) == norm(os.path.realpath(b))


def worktree_admin_dir(repo: Path, path: Path) -> Path | None:
    """Our linked worktree's admin folder ``<common git dir>/worktrees/<name>``: the one whose
    ``gitdir`` file points at ``path``/.git (None: git has no registration for ``path``)."""
    root = common_dir(repo) / "worktrees"
    if not root.is_dir():
        return None
    for admin in sorted(root.iterdir()):
        try:
            gitdir = (admin / "gitdir").read_bytes().decode("utf-8", "surrogateescape").strip()
        except OSError:
            continue
        if gitdir and _same_path(os.path.dirname(gitdir), str(path)):
            return admin
    return None


def worktree_remove(repo: Path, path: Path) -> None:
    """Unregister and delete one linked worktree (its files included), and nothing else.

    Never ``git worktree prune``: that would also drop the user's own registrations of
    worktrees that are only missing for now (an unplugged drive). When the folder is gone,
    only the admin folder whose ``gitdir`` points at ``path`` is removed.
    """
    if path.exists():
        git(repo, "worktree", "remove", "--force", "--force", str(path))
        return
    admin = worktree_admin_dir(repo, path)
    if admin is not None:
        remove_tree(admin)


def branch_tip(repo: Path, branch: str) -> str | None:
    res = git(
        repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False
    )
    return (res.out.strip() or None) if res.rc == 0 else None


def commit_diff(repo: Path, base: str, tip: str) -> bytes:
    """``tip``'s tree against ``base`` with the options of :func:`worktree_diff` (same bytes
    for the same change), ``.factory/`` excluded."""
    return git(
        repo,
        *DIFF_ARGS,
        "diff",
        "--binary",
        "--full-index",
        "-M",
        "-U3",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--no-relative",
        base,
        tip,
        "--",
        ".",
        NOTES_EXCLUDE,
    ).stdout


def worktree_diff(worktree: Path, commit: str, hidden_missing: Sequence[str]) -> bytes:
    """Everything the worktree holds against ``commit``: committed, staged, unstaged, untracked.

    Built in a temporary index (the worktree's own index is never touched): the base tree,
    held-out files that are absent marked skip-worktree (absent by design, not deleted), then
    ``git add -A`` of the whole worktree minus ``.factory/``, diffed with fixed options. No
    filter or diff driver runs (:func:`driver_free_env`): the bytes are the ones the worker wrote.
    """
    with tempfile.TemporaryDirectory(prefix="factory-collect-") as tmp:
        env = driver_free_env(worktree, proc.base_env({"GIT_INDEX_FILE": str(Path(tmp) / "index")}))
        git(worktree, "read-tree", commit, env=env)
        if hidden_missing:
            data = b"".join(
                p.encode("utf-8", "surrogateescape") + b"\0" for p in sorted(hidden_missing)
            )
            git(worktree, "update-index", "-z", "--skip-worktree", "--stdin", input=data, env=env)
        git(worktree, "-c", "core.safecrlf=false", "add", "-A", "--", ".", NOTES_EXCLUDE, env=env)
        return git(
            worktree,
            *DIFF_ARGS,
            "diff",
            "--cached",
            "--binary",
            "--full-index",
            "-M",
            "-U3",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--no-relative",
            commit,
            "--",
            env=env,
        ).stdout


def uncommitted(repo: Path) -> list[str]:
    """The paths ``git status`` reports (changed, staged, untracked; ignored files are not):
    work that is in no commit, so in no run. Read-only and program-free: no filter or diff
    driver a config names runs on the files (their bytes are compared as they are), and the
    index is not refreshed (``--no-optional-locks``)."""
    out = git(
        repo,
        "--no-optional-locks",
        "status",
        "--porcelain=v1",
        "-z",
        "--no-renames",
        "--untracked-files=all",
        env=driver_free_env(repo, proc.base_env()),
    )
    return sorted({entry[3:] for entry in out.out.split("\0") if len(entry) > 3})


def is_ignored(repo: Path, rel: str) -> bool:
    return git(repo, "check-ignore", "-q", "--no-index", "--", rel, check=False).rc == 0


def branches(repo: Path) -> set[str]:
    out = git(repo, "for-each-ref", "--format=%(refname)", "refs/heads").out
    return {line.removeprefix("refs/heads/") for line in out.splitlines() if line}


def apply_cached(sandbox: Path, patch: bytes) -> proc.Result:
    """Apply one patch (from memory) to a sandbox's index only."""
    return git(
        sandbox,
        "apply",
        "--cached",
        "--whitespace=nowarn",
        "-",
        input=patch,
        check=False,
        env=sandbox_env(sandbox),
    )


# -- git's own reading of a patch ----------------------------------------------------------------
_HEX_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _bare_env(home: Path) -> dict[str, str]:
    """No repository to find (ceiling at ``home``'s parent, no GIT_* inherited) and no user or
    system config: what git prints must depend on the patch bytes alone."""
    return proc.base_env(
        {
            "GIT_CEILING_DIRECTORIES": str(home.parent.resolve()),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        },
        drop_git=True,
    )


def _apply_error(res: proc.Result) -> str | None:
    """git's complaint, if any: a non-zero exit, or an error printed while it went on (git
    stops reading at a corrupt binary hunk yet exits 0 for the sections before it)."""
    lines = [line.strip() for line in res.err.splitlines() if line.strip()]
    bad = [line for line in lines if line.startswith(("error:", "fatal:"))]
    if bad:
        return "; ".join(bad)[:400]
    if res.rc != 0:
        return (lines[0] if lines else f"git apply exited with rc={res.rc}")[:400]
    return None


_BINARY_SIZE = re.compile(rb"^(?:literal|delta) (\d+)\r?$", re.MULTILINE)


def apply_view(
    patch: bytes, timeout: float = 120, max_binary: int = gitbinary.DEFAULT_LIMIT
) -> GitView:
    """What git reads in ``patch``: ``git apply --numstat --summary -z`` and ``-R --numstat``.

    Run on stdin in an empty folder outside any repository (nothing is applied; the user's
    hooks and config play no part). A patch git refuses is reported as ``GitView.error``,
    never raised; so is one whose binary hunks declare more than ``max_binary`` bytes in all
    (git inflates every hunk into memory of the declared size while reading). A blank patch
    touches nothing and is not shown to git, which would refuse it.
    """
    with apply_view_started(patch, timeout, max_binary) as view:
        return view()


@contextlib.contextmanager
def apply_view_started(
    patch: bytes, timeout: float = 120, max_binary: int = gitbinary.DEFAULT_LIMIT
) -> Iterator[Callable[[], GitView]]:
    """:func:`apply_view`, started now: both git readings run (at once) while the caller
    does its own work, and the function it yields waits for them. Leaving the block waits
    for both processes and removes their folder, whatever happened."""
    if not patch.strip():
        yield GitView
        return
    declared = sum(int(m[1]) for m in _BINARY_SIZE.finditer(patch))
    if declared > max_binary:
        yield functools.partial(
            GitView, error=f"binary hunks declare {declared} bytes, over {max_binary}"
        )
        return
    with (
        tempfile.TemporaryDirectory(prefix="factory-gitview-") as tmp,
        concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool,
    ):
        cwd = Path(tmp)
        env = _bare_env(cwd)

        def read(extra: tuple[str, ...]) -> proc.Result:
            summary = () if extra else ("--summary",)
            return git(
                cwd,
                "-c",
                "core.quotePath=true",
                "apply",
                *extra,
                "--numstat",
                *summary,
                "-z",
                "-",
                input=patch,
                check=False,
                env=env,
                timeout=timeout,
            )

        runs = [pool.submit(read, ()), pool.submit(read, ("-R",))]

        def view() -> GitView:
            outputs = []
            for future in runs:
                try:
                    res = future.result()
                except GitError as exc:
                    if exc.rc is None and "timed out" in str(exc):
                        return GitView(error=f"git apply took longer than {timeout}s")
                    raise
                error = _apply_error(res)
                if error is not None:
                    return GitView(error=error)
                outputs.append(res.stdout)
            return read_apply_output(outputs[0], outputs[1])

        yield view


def object_format(repo: Path) -> str:
    """The repository's object format, 'sha1' or 'sha256'. A git too old to know the option
    echoes it back, and knows only sha1."""
    value = git(repo, "rev-parse", "--show-object-format").out.strip()
    return value if value in ("sha1", "sha256") else "sha1"


def cat_blob(repo: Path, oid: str, max_size: int) -> bytes | None:
    """The blob ``oid`` (a full object id, nothing else: ids come from hostile patches), or
    None if it is missing, not a blob or bigger than ``max_size`` bytes. Replace refs are
    ignored: the object store's own bytes are what git apply would use."""
    if not _HEX_OID.fullmatch(oid):
        return None
    env = proc.base_env({"GIT_NO_REPLACE_OBJECTS": "1"})
    check = git(
        repo, "cat-file", "--batch-check", input=(oid + "\n").encode(), check=False, env=env
    )
    fields = check.out.split()
    if check.rc != 0 or len(fields) != 3 or fields[0] != oid or fields[1] != "blob":
        return None
    if not fields[2].isdigit() or int(fields[2]) > max_size:
        return None
    res = git(repo, "cat-file", "blob", oid, check=False, env=env)
    if res.rc != 0 or len(res.stdout) != int(fields[2]):
        return None
    return res.stdout


def blobs_at(
    repo: Path, commit: str, paths: Sequence[str], max_size: int
) -> dict[str, bytes | None]:
    """The content of each of ``paths`` in ``commit``'s tree, or None where it is no regular
    file there or bigger than ``max_size`` bytes. The paths are the base's: the operator's
    own files, whatever patch named them.

    One ``ls-tree`` gives each path's blob id (of those paths when they are few enough to
    name, else of the whole tree). A checked-out copy whose bytes hash to that id is those
    bytes (:func:`_checked_out`: many times cheaper than inflating loose objects); the rest
    come from the object store by id, sizes first (``cat-file --batch-check``, then one
    ``--batch``): resolving each ``commit:path`` would walk the trees again for every path."""
    out: dict[str, bytes | None] = {p: None for p in paths}
    if not paths:
        return out
    wanted = set(paths)
    env = proc.base_env({"GIT_NO_REPLACE_OBJECTS": "1"})
    if sum(len(p) + 3 for p in paths) <= PATHSPEC_CHARS:
        # Few enough to name. Every pathspec is literal by the environment, not by a
        # ':(literal)' prefix each: more paths fit.
        literal = proc.base_env({**_LITERAL, "GIT_NO_REPLACE_OBJECTS": "1"})
        listing = git(
            repo, "ls-tree", "-r", "-z", "--full-tree", commit, "--", *sorted(wanted), env=literal
        )
    else:
        listing = git(repo, "ls-tree", "-r", "-z", "--full-tree", commit, env=env)
    oids: dict[str, list[str]] = {}
    listed = list(_tree_blobs(listing.stdout, wanted))
    copies = _checked_out(repo, listed, max_size)
    for path, oid in listed:
        data = copies.get(path)
        if data is None:
            oids.setdefault(oid, []).append(path)
        else:
            out[path] = data
    if not oids:
        return out
    sizes = git(
        repo, "cat-file", "--batch-check", input="".join(f"{o}\n" for o in oids).encode(),
        env=env,
    ).stdout.split(b"\n")  # fmt: skip
    small = [o for o, line in zip(oids, sizes, strict=False) if _blob_within(line, o, max_size)]
    if not small:
        return out
    # --buffer: one write per full buffer, not one per object (the output is read whole).
    feed = "".join(f"{o}\n" for o in small).encode()
    batch = git(repo, "cat-file", "--batch", "--buffer", input=feed, env=env).stdout
    pos = 0
    for oid in small:
        end = batch.index(b"\n", pos)
        head = batch[pos:end].split()
        size = int(head[2]) if len(head) == 3 and head[1] == b"blob" else -1
        pos = end + 1 + (size + 1 if size >= 0 else 0)
        if size >= 0 and head[0].decode("ascii", "replace") == oid:
            for path in oids[oid]:
                out[path] = batch[end + 1 : end + 1 + size]
    return out


# A blob id's hash by its length: SHA-1 (40 hex digits) or SHA-256 (64) repositories.
_OBJECT_HASHES = {40: "sha1", 64: "sha256"}
# A path component that names no plain entry below the work tree's top: '', '.', '..', one
# with a separator, a stream (':') or NUL, and those Windows reads as another name (a trailing
# '.' or ' ') or as a device (NUL, CON, COM1..., with any extension).
_NOT_PLAIN_PART = re.compile(
    r"\A(?:\.{1,2})?\Z|[\\:\x00]|[. ]\Z"
    r"|(?i:\A(?:CON|PRN|AUX|NUL|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3]|CONIN\$|CONOUT\$)"
    r"(?:[ .]|\Z))"
)


def _checked_out(repo: Path, listed: Sequence[tuple[str, str]], max_size: int) -> dict[str, bytes]:
    """The work tree's copy of each (path, blob id) whose bytes are that blob.

    The bytes are read once (a regular file only, reached through no link at any component:
    nothing outside the work tree is opened; no FIFO waited on; at most ``max_size`` bytes)
    and hashed as git hashes a blob; only bytes that hash to the id are used, so whatever the
    file is or holds, they are the base's content. An edited, filtered (CRLF) or missing copy,
    or one under a name some system reads otherwise, is left out: git reads it."""
    ids = {
        path: oid
        for path, oid in listed
        if len(oid) in _OBJECT_HASHES
        and not any(_NOT_PLAIN_PART.search(part) for part in path.split("/"))
    }
    out: dict[str, bytes] = {}
    for path, data in fsutil.read_regular_files(repo, ids, max_size).items():
        if data is None:
            continue
        digest = hashlib.new(_OBJECT_HASHES[len(ids[path])], b"blob %d\0" % len(data))
        digest.update(data)
        if digest.hexdigest() == ids[path]:
            out[path] = data
    return out


# Pathspecs matched as the exact paths they spell, whatever the operator's environment says.
_LITERAL = {
    "GIT_LITERAL_PATHSPECS": "1",
    "GIT_GLOB_PATHSPECS": "0",
    "GIT_NOGLOB_PATHSPECS": "0",
    "GIT_ICASE_PATHSPECS": "0",
}
# How much of a command line the paths of one ls-tree may take (Windows allows 32767
# characters in all).
PATHSPEC_CHARS = 16 * 1024


def _tree_blobs(listing: bytes, wanted: set[str]) -> Iterator[tuple[str, str]]:
    """(path, blob id) of each regular file of an ``ls-tree -r -z`` listing that is in
    ``wanted``."""
    for entry in listing.split(b"\0"):
        meta, tab, raw = entry.partition(b"\t")
        fields = meta.split()
        path = raw.decode("utf-8", "surrogateescape")
        if not tab or len(fields) != 3 or path not in wanted:
            continue
        if fields[0] not in (b"100644", b"100755"):
            continue
        yield path, fields[2].decode("ascii")


def _blob_within(line: bytes, oid: str, max_size: int) -> bool:
    """Whether a ``cat-file --batch-check`` line says ``oid`` is a blob of at most
    ``max_size`` bytes."""
    fields = line.split()
    return (
        len(fields) == 3
        and fields[0].decode("ascii", "replace") == oid
        and fields[1] == b"blob"
        and fields[2].isdigit()
        and int(fields[2]) <= max_size
    )


# -- the user's repository: what is tracked ------------------------------------------------------
def tracked_under(repo: Path, rel: str) -> list[str]:
    """Files git tracks at or below the folder ``rel`` (taken literally), repository-relative."""
    out = git(repo, "ls-files", "-z", "--full-name", "--", f":(literal){rel}").stdout
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


# -- scratch repositories (self-test) -----------------------------------------------------------
def init_commit(repo: Path, env: Mapping[str, str], message: str) -> str:
    """Make ``repo`` (whose files are written) a repository with one commit of all of them."""
    git(repo, "init", "-q", env=env)
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-q", "-m", message, env=env)
    return git(repo, "rev-parse", "HEAD", env=env).out.strip()


def worktree_patch(
    repo: Path, env: Mapping[str, str], paths: Sequence[str], new: Sequence[str]
) -> bytes:
    """``git diff --binary`` of ``paths`` in the work tree against HEAD (``new`` files included,
    as intent-to-add entries that are dropped again)."""
    if new:
        git(repo, "add", "-N", "--", *new, env=env)
    try:
        return git(
            repo, "diff", "--binary", "--full-index", "--no-color", "--no-ext-diff", "HEAD",
            "--", *paths, env=env,
        ).stdout  # fmt: skip
    finally:
        if new:
            git(repo, "reset", "-q", "--", *new, env=env)


def restore_from_head(repo: Path, env: Mapping[str, str], paths: Sequence[str]) -> None:
    if paths:
        git(repo, "checkout", "-q", "HEAD", "--", *paths, env=env)


def applies(repo: Path, patch_file: Path, env: Mapping[str, str]) -> bool:
    """Does ``git apply --check`` accept the patch on the repository's work tree?"""
    return git(repo, "apply", "--check", str(patch_file), env=env, check=False).rc == 0


def head_commit(repo: Path, env: Mapping[str, str] | None = None) -> str:
    return git(repo, "rev-parse", "HEAD", env=env).out.strip()


# -- the convergence loop: the holdout, exported trees, the crank branch --------------------------
def tree_files(repo: Path, commit: str, folder: str, max_size: int) -> list[tuple[str, bytes]]:
    """(path, bytes) of every regular file at or below ``folder`` in ``commit``'s tree, sorted:
    read from the object store, never from a working tree a worker could have written. A file
    over ``max_size`` bytes, a link or a gitlink there is an error naming it."""
    listing = git(
        repo, "ls-tree", "-r", "-z", "--full-tree", commit, "--", f":(literal){folder}"
    ).stdout
    entries: list[tuple[str, str]] = []
    for entry in listing.split(b"\0"):
        meta, tab, raw = entry.partition(b"\t")
        fields = meta.split()
        if not tab or len(fields) != 3:
            continue
        path = raw.decode("utf-8", "surrogateescape")
        if fields[1] != b"blob" or fields[0] not in (b"100644", b"100755"):
            raise UsageError(f"{path}: a holdout file must be a regular file in {commit[:12]}")
        entries.append((path, fields[2].decode("ascii")))
    out: list[tuple[str, bytes]] = []
    for path, oid in sorted(entries):
        data = cat_blob(repo, oid, max_size)
        if data is None:
            raise UsageError(f"{path}: over {max_size} bytes (limits.max_file_bytes) or unreadable")
        out.append((path, data))
    return out


@contextlib.contextmanager
def tree_exporter(repo: Path, commit: str) -> Iterator[Callable[[Path], None]]:
    """A function that writes ``commit``'s tree into an empty folder, as often as asked: files
    only, no ``.git``. The tree is read once into a temporary index (the user's index, HEAD and
    working tree are never touched) that each export only reads, so exports may run in
    parallel, each a git process of its own; every filter driver is emptied (no program a
    config names runs on the content)."""
    with tempfile.TemporaryDirectory(prefix="factory-export-") as tmp:
        env = driver_free_env(repo, proc.base_env({"GIT_INDEX_FILE": str(Path(tmp) / "index")}))
        git(repo, "read-tree", commit, env=env)

        def export(dest: Path) -> None:
            dest.mkdir(parents=True, exist_ok=True)
            prefix = str(dest.resolve()) + os.sep
            git(repo, "checkout-index", "-a", "-f", f"--prefix={prefix}", env=env)

        yield export


def commit_patch(repo: Path, parent: str, patch: bytes, message: str, when: str) -> str:
    """A new commit: ``parent``'s tree with ``patch`` applied, made through a temporary index
    (the user's index, HEAD and working tree are never touched). ``when`` (git's date format)
    is its author and committer date, and the author is the factory: same inputs, same id."""
    with tempfile.TemporaryDirectory(prefix="factory-commit-") as tmp:
        env = proc.base_env(
            {
                "GIT_INDEX_FILE": str(Path(tmp) / "index"),
                "GIT_AUTHOR_NAME": "factory",
                "GIT_AUTHOR_EMAIL": "factory@localhost",
                "GIT_AUTHOR_DATE": when,
                "GIT_COMMITTER_NAME": "factory",
                "GIT_COMMITTER_EMAIL": "factory@localhost",
                "GIT_COMMITTER_DATE": when,
            }
        )
        git(repo, "read-tree", parent, env=env)
        if patch:
            res = git(
                repo, "apply", "--cached", "--whitespace=nowarn", "-", input=patch, check=False,
                env=env,
            )  # fmt: skip
            if res.rc != 0:
                raise GitError(
                    ["git", "apply", "--cached"], res.rc, res.out, res.err,
                    why="the integrated patch does not apply to its parent commit",
                )  # fmt: skip
        tree = git(repo, "write-tree", env=env).out.strip()
        return git(repo, "commit-tree", tree, "-p", parent, "-m", message, env=env).out.strip()


def tree_of(repo: Path, commit: str) -> str:
    return git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{tree}}").out.strip()


def tree_if_present(repo: Path, commit: str) -> str | None:
    """The tree of ``commit``, or None when git does not have that commit (any more)."""
    res = git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{tree}}", check=False)
    return (res.out.strip() or None) if res.rc == 0 else None


def set_branch(repo: Path, branch: str, new: str, old: str | None) -> None:
    """Point ``refs/heads/<branch>`` at ``new``, only if it is still at ``old`` (None: only if it
    does not exist yet), so a concurrent change to the branch is refused, never overwritten."""
    expect = old if old is not None else "0" * len(new)
    git(repo, "update-ref", "-m", "factory crank", f"refs/heads/{branch}", new, expect)


def create_branch(repo: Path, branch: str, commit: str, why: str) -> None:
    """Create ``refs/heads/<branch>`` at ``commit``; the empty old value makes git refuse a
    branch that exists (created meanwhile), never overwrite it."""
    git(repo, "update-ref", "-m", why, f"refs/heads/{branch}", commit, "")


def delete_branch_at(repo: Path, branch: str, commit: str) -> bool:
    """Delete ``branch`` only while its tip is ``commit`` (a branch moved since is kept);
    whether it was deleted."""
    return git(repo, "update-ref", "-d", f"refs/heads/{branch}", commit, check=False).rc == 0


def remotes(repo: Path) -> list[str]:
    return sorted(r for r in git(repo, "remote").out.split() if r)


def push_commit(repo: Path, remote: str, commit: str, branch: str) -> proc.Result:
    """Push ``commit`` (the one recorded, not whatever the local branch holds now) as
    ``branch`` on ``remote``; the result says how it went."""
    return git(repo, "push", "--", remote, f"{commit}:refs/heads/{branch}", check=False)


def parents(repo: Path, commit: str) -> list[str]:
    out = git(repo, "rev-list", "--parents", "-n", "1", commit, "--").out.split()
    return out[1:]


def tree_with_patch(repo: Path, parent: str, patch: bytes) -> str:
    """The tree ``patch`` applied to ``parent`` gives, computed without writing anything into
    the repository (a temporary index, and new objects in a temporary object folder that
    borrows the repository's)."""
    with tempfile.TemporaryDirectory(prefix="factory-tree-") as tmp:
        (Path(tmp) / "objects").mkdir()
        env = proc.base_env(
            {
                "GIT_INDEX_FILE": str(Path(tmp) / "index"),
                "GIT_OBJECT_DIRECTORY": str(Path(tmp) / "objects"),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects_dir(repo)),
            }
        )
        git(repo, "read-tree", parent, env=env)
        if patch:
            git(repo, "apply", "--cached", "--whitespace=nowarn", "-", input=patch, env=env)
        return git(repo, "write-tree", env=env).out.strip()


def changed_paths(repo: Path, a: str, b: str) -> list[str]:
    """The paths whose content or mode differs between commits ``a`` and ``b`` (renames as
    their two sides), sorted."""
    if a == b:
        return []
    out = git(repo, "diff", "--name-only", "-z", "--no-renames", a, b, "--").stdout
    return sorted(p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p)


def user_identity(repo: Path) -> str | None:
    """``Name <email>`` as the repository's git config gives them (who approved a gate)."""
    name = git(repo, "config", "--get", "user.name", check=False).out.strip()
    email = git(repo, "config", "--get", "user.email", check=False).out.strip()
    if not name and not email:
        return None
    return f"{name} <{email}>" if email else name
