"""A normal (non-editable) install works: the wheel carries the JSON Schemas.

Builds a wheel from a copy of the project (so no build/ or egg-info lands in the checkout),
then loads every schema from the unpacked wheel and from a venv the wheel is installed into,
both from a folder outside the project. About 15-30 s (two pip runs; pip fetches the build
backend from the configured index). Skipped, with the reason, only when that backend cannot be
fetched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.repos import ROOT

# One worker builds the wheel once for every test that needs it.
pytestmark = pytest.mark.xdist_group("wheel")

PROBE = r"""
import json, sys
from pathlib import Path
from tools.codex.factory.infra import schemas
where = Path(schemas.schema_dir()).resolve()
names = sorted(p.name.removesuffix(".schema.json") for p in where.glob("*.schema.json"))
assert names, where
for name in names:
    schemas.load(name)
    schemas.errors(name, {})
bad = schemas.errors("factory_config", {"run": {"kind": 5}})
assert bad and bad[0][0] == "run.kind", bad
print(json.dumps({"dir": str(where), "module": str(Path(schemas.__file__).resolve()), "names": names}))
"""


def _copy_project(dest: Path) -> Path:
    src = dest / "src"
    keep = ["pyproject.toml", "README.md", "schemas", "tools"]
    for name in keep:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(
                path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "runs")
            )
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    return src


def _pip(*args: str, cwd: Path, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(
        [python, "-m", "pip", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _probe(python: str, cwd: Path, pythonpath: Path | None) -> dict[str, object]:
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    res = subprocess.run(
        [python, "-c", PROBE],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_project(tmp)
    res = _pip("wheel", "--no-deps", "-w", str(tmp / "dist"), ".", cwd=src)
    if (
        res.returncode != 0
        and "setuptools" in res.stderr
        and "satisfies the requirement" in res.stderr
    ):
        pytest.skip(
            f"the build backend cannot be fetched here: {res.stderr.strip().splitlines()[-1]}"
        )
    assert res.returncode == 0, res.stdout + res.stderr
    (found,) = (tmp / "dist").glob("multi_codex_factory-*.whl")
    return found


def test_the_wheel_carries_every_schema(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        packed = {
            Path(n).name for n in zf.namelist() if n.startswith("tools/codex/factory/_schemas/")
        }
    assert packed == {p.name for p in (ROOT / "schemas").glob("*.schema.json")}


def test_schemas_load_from_the_unpacked_wheel_outside_the_project(
    wheel: Path, tmp_path: Path
) -> None:
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    got = _probe(sys.executable, elsewhere, unpacked)
    assert Path(str(got["module"])).is_relative_to(unpacked.resolve())
    assert Path(str(got["dir"])) == (unpacked / "tools/codex/factory/_schemas").resolve()
    assert len(list(got["names"])) == len(list((ROOT / "schemas").glob("*.schema.json")))  # type: ignore[call-overload]


def test_the_wheel_installs_into_a_venv_and_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # --system-site-packages: the runtime deps come from this environment (no network needed).
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    python = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    res = _pip(
        "install",
        "--no-deps",
        "--no-index",
        "--ignore-installed",
        str(wheel),
        cwd=tmp_path,
        python=python,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    got = _probe(python, elsewhere, None)
    assert not Path(str(got["dir"])).is_relative_to(ROOT), (
        got
    )  # the installed copy, not the checkout
    assert Path(str(got["dir"])).name == "_schemas"
    # The CLI validates its config against a schema: it works from the installed copy.
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    show = subprocess.run(
        [python, "-m", "tools.codex.factory", "--repo", str(repo), "config", "show", "--json"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    )
    assert show.returncode == 0, show.stderr


def test_a_source_checkout_reads_the_top_level_schemas() -> None:
    from tools.codex.factory.infra import schemas

    assert schemas.schema_dir() == ROOT / "schemas"
    assert not (ROOT / "tools/codex/factory/_schemas").exists()  # the one source of truth
