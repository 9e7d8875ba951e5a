"""Two bundles that are clean alone never combine into a change neither of them makes.

The attack: worker A's patch ends with a section that is headers only (a mode change); worker
B's patch starts with text that git, read alone, skips as leading junk (``rename from`` /
``rename to`` lines). Joined into one `git apply` stream, git read B's first lines as more
headers of A's last section and renamed a file into the factory's protected import chain.
Validation refuses B (``patch-stray-text``); and integrate, even handed B by a validator
without that rule, applies each worker's patch alone, so git never reads the two together.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.factory import make_patch, read_json, run_dir, set_bundle, write_plan
from tests.support.repos import PINNED, git, make_repo, run_cli
from tools.codex.factory.core import patchparse

FILES = {
    "README.md": "hi\n",
    "src/run.sh": "echo run\n",
    "src/a.sh": "echo a\n",
    "docs/b.md": "doc\n",
}
EVIL = "tools/codex/factory/evil.py"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def attack_run(repo: Path) -> str:
    """A run whose workers hand in the two halves of the attack, each listing what it touches."""
    plan = write_plan(
        repo.parent / "plan.json",
        [
            {"id": "A", "task": "mode", "allow": ["src/**"]},
            {"id": "B", "task": "docs", "allow": ["docs/**"]},
        ],
    )
    res = run_cli("--repo", str(repo), "--now", PINNED, "launch", "--dry-run", "--json",
                  "--plan", str(plan))  # fmt: skip
    assert res.returncode == 0, res.stderr
    run_id = str(json.loads(res.stdout)["run_id"])
    a = make_patch(repo, {}, chmod=["src/a.sh"])
    assert a.rstrip().endswith(b"new mode 100755")  # the last section is headers only
    b = f"rename from src/run.sh\nrename to {EVIL}\n".encode() + make_patch(
        repo, {"docs/b.md": "doc 2\n"}
    )
    set_bundle(repo, run_id, "A", a, ["src/a.sh"])
    set_bundle(repo, run_id, "B", b, ["docs/b.md"])
    # What made the attack: each half alone is read by git as touching only its own path,
    # the two joined as renaming a protected file in.
    joined = git(repo, "apply", "--numstat", "--summary", "-", input=a + b)
    assert EVIL in joined
    return run_id


def cli(repo: Path, *args: str) -> tuple[int, str]:
    res = run_cli("--repo", str(repo), "--now", PINNED, *args)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, res.stdout + res.stderr


def test_stray_text_before_the_first_section_is_refused(repo: Path) -> None:
    run_id = attack_run(repo)
    code, out = cli(repo, "bundle-validate", "--run-id", run_id)
    assert code == 3, out
    doc = read_json(run_dir(repo, run_id) / "VALIDATION.json")
    assert doc["verdicts"] == {"A": "PASS", "B": "BLOCKED"}
    (finding,) = doc["findings"]
    assert (finding["worker"], finding["path"], finding["rule"]) == (
        "B",
        "DIFF.patch",
        "patch-stray-text",
    )
    assert "line 1: 'rename from src/run.sh'" in finding["message"]
    code, out = cli(repo, "integrate", "--run-id", run_id)
    assert code == 3 and "bundle-validate said BLOCKED" in out
    assert cli(repo, "ledger-replay", "--run-id", run_id)[0] == 0


def test_integrate_applies_each_patch_alone(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation bypassed (its stray-text rule switched off): integrate still lands exactly
    the paths validation judged, never the rename the joined stream would have made."""
    real = patchparse.parse

    def without_stray(
        data: bytes, max_lines: int | None = None, max_files: int | None = None
    ) -> patchparse.Patch:
        parsed = real(data, max_lines, max_files)
        parsed.stray = None
        return parsed

    monkeypatch.setattr(patchparse, "parse", without_stray)
    run_id = attack_run(repo)
    code, out = cli(repo, "bundle-validate", "--run-id", run_id)
    assert code == 0, out
    judged = read_json(run_dir(repo, run_id) / "VALIDATION.json")["touched"]
    assert judged == {"A": ["src/a.sh"], "B": ["docs/b.md"]}
    code, out = cli(repo, "integrate", "--run-id", run_id)
    z = run_dir(repo, run_id) / "Z_integrator"
    merged = (z / "DIFF.patch").read_bytes()
    assert read_json(z / "FILES_CHANGED.json")["files"] == ["docs/b.md", "src/a.sh"], out
    assert EVIL.encode() not in merged and b"src/run.sh" not in merged
    assert code == 0, out  # what was judged, and only that, is a clean merge
    assert b"old mode 100644\nnew mode 100755\n" in merged
    assert cli(repo, "ledger-replay", "--run-id", run_id)[0] == 0
