"""``crank --pr``: a pull request for a converged crank, when ``gh`` and a remote are there;
else the commands that would open one. Nothing is pushed unless the operator asked (``--pr``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tools.codex.factory.core.text import clip
from tools.codex.factory.infra import gitops, proc


def open_pr(repo: Path, branch: str, tip: str, title: str, report: Path) -> list[str]:
    """Messages for stderr: what was done, or how to do it by hand."""
    found = gitops.remotes(repo)
    remote = "origin" if "origin" in found else (found[0] if found else None)
    by_hand = (
        f"git push {remote or '<remote>'} {branch} && gh pr create --head {branch} "
        f'--title "{title}" --body-file {report}'
    )
    if remote is None or shutil.which("gh") is None:
        missing = "no git remote" if remote is None else "gh is not installed"
        return [f"factory: no pull request opened ({missing}); to open one: {by_hand}"]
    pushed = gitops.push_commit(repo, remote, tip, branch)
    if pushed.rc != 0:
        why = clip(pushed.err.strip().splitlines()[-1] if pushed.err.strip() else "", 300)
        return [f"factory: could not push {branch} to {remote} ({why}); to retry: {by_hand}"]
    made = proc.run(
        ["gh", "pr", "create", "--head", branch, "--title", title, "--body-file", str(report)],
        repo,
        check=False,
    )
    if made.rc != 0:
        why = clip(made.err.strip().splitlines()[-1] if made.err.strip() else "", 300)
        return [f"factory: gh pr create failed ({why}); to retry: {by_hand}"]
    return [f"factory: pull request: {made.out.strip()}"]
