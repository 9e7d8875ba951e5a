"""Generated hostile runs: two or three workers' bundles (paths, header forms, names, sizes,
trailing text, planted links), judged against git itself.

The oracle, for every run generated:

(a) validation never disagrees with git about what a patch touches: the paths it records for a
    worker are the paths ``git apply --numstat -z`` reads in the same bytes, or the worker is
    refused for its DIFF.patch (``patch-ambiguous``, ``patch-unparseable``, ...);
(b) when validation says PASS, integrate's sandbox index holds exactly the validated paths
    changed: the paths of Z_integrator/DIFF.patch (``git diff --cached`` of the sandbox, read by
    git) are the union of the touched paths validation recorded for the workers applied;
(c) nothing is written outside the run folder: the working tree, every file in ``.git`` (the
    index by its entries) and a folder the planted links point at are as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.factory import RUNS, read_json, run_dir, write_json
from tests.support.repos import PINNED, git, make_repo, run_cli

# Paths a worker's patch may add or rename to: hostile ones (aliases, escapes, protected,
# quoting, portability) and plain ones, so that some runs pass and reach integrate.
NAMES = [
    "src/new.py", "src/new file.py", "src/caf\u00e9.py", unicodedata.normalize("NFD", "src/caf\u00e9.py"),
    "src/-dash.py", "src/q\"uote.py", "src/back\\slash.py", "src/tab\there.py", "src/trail.",
    "src/trail ", "src/CON.txt", "src/.gitattributes", "src/.git/config", "src/GIT~1/x",
    "scenarios/secret.md", "tools/codex/runs/fake.json", "../escape.py", "src/" + "a" * 300,
    "src/dir/deep.py", "SRC/a.py", "src/.gitmodules", "docs/readme.md", "docs/guide.md",
]  # fmt: skip
BASE = {
    "README.md": "hi\n",
    "src/a.py": "print('a')\n",
    "src/b.py": "print('b')\n",
    "docs/c.md": "c\n",
    "scenarios/secret.md": "s\n",
}
OWN = {"A": "src/a.py", "B": "src/b.py", "C": "docs/c.md"}  # the base file each one edits
STAMPS = ["", "\t2024-01-01 00:00:00.000000000 +0000", " 2024-01-01 00:00:00.000000000 +0000"]
# Each list is drawn from uniformly: repeats make the harmless choice the likelier one.
TRAILERS = ["", "\n\n", "-- \n2.43.0\n", "trailing words\n"]
PLANTS = [None, None, "VALIDATION.json", "snapshots", "A_worker/LOGS/planted", "Z_integrator",
          "sandbox"]  # fmt: skip
PATCH_RULES = {
    "patch-ambiguous",
    "patch-unparseable",
    "patch-too-many-lines",
    "patch-too-many-files",
}


def quote(path: str) -> str:
    raw = path.encode("utf-8")
    if all(32 <= b < 127 and b not in (34, 92) for b in raw):
        return path
    body = "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03o}" for b in raw)
    return f'"{body}"'


def prefixed(side: str, path: str) -> str:
    q = quote(path)
    return f'"{side}/{q[1:]}' if q.startswith('"') else f"{side}/{q}"


@st.composite
def target(draw: st.DrawFn, worker: str, hostile: bool) -> str:
    """A path of the worker's own, or (``hostile``) one from NAMES, sometimes made the worker's
    own (``src/A-new.py``)."""
    if not hostile or draw(st.booleans()):
        return draw(st.sampled_from([f"src/{worker}/new.py", f"docs/{worker}-notes.md"]))
    path = draw(st.sampled_from(NAMES))
    if draw(st.booleans()):
        head, _, name = path.rpartition("/")
        path = f"{head}/{worker}-{name}" if head else f"{worker}-{name}"
    return path


@st.composite
def sections(draw: st.DrawFn, worker: str, hostile: bool) -> str:
    own = OWN[worker]
    path = draw(target(worker, hostile))
    forms = ["new", "modify", "rename", "delete", "mode"] + (["plain"] if hostile else [])
    form = draw(st.sampled_from(forms))
    width = draw(st.sampled_from([1, 12, 3000]))
    count = draw(st.sampled_from([1, 3, 300]))
    body = "".join(f"+{draw(st.sampled_from(['x', 'hello world', 'é']))[:1] * width}\n" * count)
    if form == "new":
        return (
            f"diff --git {prefixed('a', path)} {prefixed('b', path)}\nnew file mode 100644\n"
            f"--- /dev/null\n+++ {prefixed('b', path)}\n@@ -0,0 +1,{count} @@\n{body}"
        )
    old = BASE[own].rstrip("\n")
    if form == "modify":
        side = draw(st.sampled_from(["a", "b"]))  # git reads a '+++ a/...' line as well
        return (
            f"diff --git a/{own} b/{own}\n--- a/{own}\n+++ {side}/{own}\n"
            f"@@ -1 +1,{count} @@\n-{old}\n{body}"
        )
    if form == "plain":
        stamp = draw(st.sampled_from(STAMPS))
        new = draw(st.sampled_from([own, path]))
        return f"--- a/{own}{stamp}\n+++ b/{new}{stamp}\n@@ -1 +1,{count} @@\n-{old}\n{body}"
    if form == "rename":
        return (
            f"diff --git a/{own} {prefixed('b', path)}\nsimilarity index 100%\n"
            f"rename from {own}\nrename to {quote(path)}\n"
        )
    if form == "delete":
        return (
            f"diff --git a/{own} b/{own}\ndeleted file mode 100644\n--- a/{own}\n+++ /dev/null\n"
            f"@@ -1 +0,0 @@\n-{old}\n"
        )
    return f"diff --git a/{own} b/{own}\nold mode 100644\nnew mode 100755\n"


@st.composite
def bundle(draw: st.DrawFn, worker: str, hostile: bool) -> dict[str, Any]:
    """One worker's bundle; one that is not ``hostile`` has only its own paths and no trailing
    text, and lists what it touches, so that runs pass and reach integrate."""
    patch = "".join(draw(st.lists(sections(worker, hostile), min_size=1, max_size=2)))
    patch += draw(st.sampled_from(TRAILERS if hostile else ["", "\n\n"]))
    if draw(st.booleans()):
        patch = patch.replace("\n", "\r\n")
    listing = draw(st.sampled_from(["parser", "names"])) if hostile else "parser"
    return {"patch": patch.encode("utf-8"), "listing": listing}


@st.composite
def runs(draw: st.DrawFn) -> dict[str, Any]:
    workers = ["A", "B", "C"][: draw(st.integers(min_value=2, max_value=3))]
    hostile = st.sampled_from([True, False])  # as likely as a clean run, which may pass
    clean = not draw(hostile)
    return {
        "bundles": {w: draw(bundle(w, not clean and draw(hostile))) for w in workers},
        "plant": draw(st.sampled_from(PLANTS)),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    repo = make_repo(root / "repo", BASE)
    outside = root / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"do not touch\n")
    plan = root / "plan.json"
    workers = [{"id": w, "task": "t", "allow": ["**"]} for w in OWN]
    write_json(plan, {"schema_version": 1, "workers": workers})
    return {"repo": repo, "outside": outside, "plan": plan, "scratch": root / "gitview"}


def state(world: dict[str, Path]) -> dict[str, str]:
    """Every file a stray write could change, by hash: the working tree outside the runs folder,
    all of ``.git`` (its index by its entries: git refreshes the stat data) and the folder
    the planted links point into."""
    repo = world["repo"]
    out = {}
    for label, base in (("outside", world["outside"]), ("repo", repo)):
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base).as_posix()
            if rel.startswith(RUNS + "/") or rel == ".git/index" or path.is_dir():
                continue
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else b"link"
            out[f"{label}:{rel}"] = hashlib.sha256(data).hexdigest()
    out["index"] = git(repo, "ls-files", "-s")
    out["status"] = git(repo, "status", "--porcelain", "--untracked-files=all")
    return out


def eol(patch: bytes) -> bytes:
    """The bytes validation judges: a patch whose first line ends in CRLF is converted back."""
    end = patch.find(b"\n")
    return patch.replace(b"\r\n", b"\n") if end > 0 and patch[end - 1] == 13 else patch


def git_paths(patch: bytes, scratch: Path) -> set[str] | None:
    """The paths git reads in ``patch``, or None when git refuses it: ``git apply --numstat -z``
    names each section by its new path, and with ``-R`` by its old one (a rename's source).
    Run outside any repository; nothing is applied."""
    if not patch.strip():
        return set()
    scratch.mkdir(exist_ok=True)
    paths: set[str] = set()
    for extra in ([], ["-R"]):
        res = subprocess.run(
            ["git", "apply", *extra, "--numstat", "-z", "-"],
            input=patch,
            cwd=scratch,
            capture_output=True,
            check=False,
        )
        if res.returncode != 0:
            return None
        fields = res.stdout.split(b"\0")
        i = 0
        while i < len(fields) and fields[i]:
            name = fields[i].split(b"\t", 2)[2]  # added \t deleted \t path
            names = [name] if name else fields[i + 1 : i + 3]  # or: old \0 new
            i += 1 if name else 3
            paths |= {n.decode("utf-8", "surrogateescape") for n in names}
    return paths


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    res = run_cli("--repo", str(repo), "--now", PINNED, *args)
    assert "Traceback" not in res.stderr and "internal error" not in res.stdout + res.stderr
    return res


def launch(world: dict[str, Path], workers: list[str]) -> Path:
    res = cli(world["repo"], "launch", "--dry-run", "--json", "--plan", str(world["plan"]),
              "--workers", ",".join(workers))  # fmt: skip
    assert res.returncode == 0, res.stderr
    return run_dir(world["repo"], json.loads(res.stdout)["run_id"])


def validate(world: dict[str, Path], folder: Path) -> tuple[int, dict[str, Any] | None]:
    res = cli(world["repo"], "bundle-validate", "--run-id", folder.name)
    assert res.returncode in (0, 3), res.stdout + res.stderr
    doc = folder / "VALIDATION.json"
    return res.returncode, read_json(doc) if doc.is_file() and not doc.is_symlink() else None


def listed(doc: dict[str, Any] | None, worker: str) -> list[str]:
    return [] if doc is None else list(doc["touched"].get(worker, []))


def check_paths_agree(doc: dict[str, Any], run: dict[str, Any], scratch: Path) -> None:
    """(a): validation's touched paths for each worker are git's, or its patch is refused."""
    for w, b in run["bundles"].items():
        refused = {f["rule"] for f in doc["findings"] if f["worker"] == w} & PATCH_RULES
        gits = git_paths(eol(b["patch"]), scratch)
        if gits != set(doc["touched"][w]):
            assert refused, (w, b["patch"], gits, doc["touched"][w])


def check_integrated(world: dict[str, Path], folder: Path, doc: dict[str, Any]) -> None:
    """(b): the sandbox's changes are the validated paths of the workers applied."""
    res = cli(world["repo"], "integrate", "--run-id", folder.name)
    assert res.returncode in (0, 1, 3), res.stdout + res.stderr
    z = folder / "Z_integrator"
    if z.is_symlink():  # planted: every write through it is refused, so nothing is reported
        assert res.returncode == 3 and "write to 'Z_integrator' refused" in res.stdout
        return
    status = read_json(z / "STATUS.json")
    expected = {p for w in status["applied"] for p in doc["touched"][w]}
    merged = (z / "DIFF.patch").read_bytes()
    assert git_paths(merged, world["scratch"]) == expected, status
    assert read_json(z / "FILES_CHANGED.json")["files"] == sorted(expected)
    if status["status"] == "PASS":
        assert status["applied"] == sorted(doc["touched"])


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(run=runs())
def test_validation_agrees_with_git_integrate_lands_what_it_judged_and_nothing_leaks(
    world: dict[str, Path], run: dict[str, Any]
) -> None:
    folder = launch(world, sorted(run["bundles"]))
    for w, b in run["bundles"].items():
        (folder / f"{w}_worker" / "DIFF.patch").write_bytes(b["patch"])
        files = sorted(NAMES[:3]) if b["listing"] == "names" else []
        write_json(folder / f"{w}_worker" / "FILES_CHANGED.json", {"schema_version": 1, "files": files})  # fmt: skip
    if run["plant"] is not None:
        plant = folder / run["plant"]
        if plant.is_dir():
            shutil.rmtree(plant)  # a folder of the run replaced by a link out of it
        os.symlink(world["outside"] / ("victim.txt" if "." in plant.name else ""), plant)
    before = state(world)
    code, doc = validate(world, folder)
    if doc is not None and any(b["listing"] == "parser" for b in run["bundles"].values()):
        # FILES_CHANGED as the validator read each patch: only the other rules may block now.
        for w, b in run["bundles"].items():
            if b["listing"] == "parser":
                path = folder / f"{w}_worker" / "FILES_CHANGED.json"
                write_json(path, {"schema_version": 1, "files": listed(doc, w)})
        code, doc = validate(world, folder)
    assert state(world) == before
    if doc is not None:
        check_paths_agree(doc, run, world["scratch"])
    if code == 0:
        assert doc is not None
        check_integrated(world, folder, doc)
    assert state(world) == before  # (c): nothing outside the run folder changed
    assert (world["outside"] / "victim.txt").read_bytes() == b"do not touch\n"
    assert sorted(p.name for p in world["outside"].iterdir()) == ["victim.txt"]
