"""Entry points a repository cannot shadow: its own `click/` or `tools/` never replaces the
factory's dependency or package, and `doctor` says which module file was loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.support.repos import ROOT, make_repo, run_cli
from tools.codex.factory.run import probes

HOSTILE = 'raise RuntimeError("the repository\'s own click was imported")\n'
# What pip writes for the `factory` console script (pyproject's [project.scripts]).
CONSOLE_SCRIPT = """import re
import sys
from tools.codex.factory.cli import main
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(main())
"""


def _shadowing_repo(path: Path, own_tools: bool) -> Path:
    files = {"README.md": "hi\n", "click/__init__.py": HOSTILE, "jsonschema.py": HOSTILE}
    if own_tools:
        files["tools/__init__.py"] = ""
    else:  # a `tools/` folder of the user's without __init__.py (a namespace portion)
        files["tools/codex/notes.txt"] = "mine\n"
    return make_repo(path, files)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(ROOT)  # the factory under test, as an installed copy would be
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_python_m_from_a_repository_root_uses_the_installed_click(tmp_path: Path) -> None:
    repo = _shadowing_repo(tmp_path / "repo", own_tools=False)
    res = _run(["-m", "tools.codex.factory", "runs", "--json"], repo)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [] and "own click" not in res.stderr
    doc = _run(["-m", "tools.codex.factory", "doctor", "--json"], repo)
    checks = {c["name"]: c for c in json.loads(doc.stdout)["checks"]}
    click_check = checks["dependency-click"]
    assert click_check["level"] == "WARN" and "repository's click/ shadows" in click_check["detail"]
    assert str(Path(click.__file__).resolve().parent) in click_check["detail"]  # the one loaded
    assert "`factory` console script" in click_check["fix"]
    assert checks["dependency-jsonschema"]["level"] == "WARN"
    assert (
        checks["dependency-orjson"]["level"] == "OK"
        and " from " in checks["dependency-orjson"]["detail"]
    )
    assert checks["entry-point"]["level"] == "OK"


def test_a_repository_with_its_own_tools_package(tmp_path: Path) -> None:
    repo = _shadowing_repo(tmp_path / "repo", own_tools=True)
    script = tmp_path / "bin" / "factory"
    script.parent.mkdir()
    script.write_text(CONSOLE_SCRIPT, encoding="utf-8")
    # The console script, started in the repository: the factory's tools and the installed click.
    res = _run([str(script), "runs", "--json"], repo)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []
    doc = _run([str(script), "doctor", "--json"], repo)
    checks = {c["name"]: c for c in json.loads(doc.stdout)["checks"]}
    assert checks["entry-point"]["level"] == "WARN"
    assert "tools/__init__.py" in checks["entry-point"]["detail"]
    assert "`factory` console script" in checks["entry-point"]["fix"]
    # python -m from the factory's checkout, on that repository, keeps working.
    here = _run(["-m", "tools.codex.factory", "--repo", str(repo), "runs", "--json"], ROOT)
    assert here.returncode == 0, here.stderr
    if sys.version_info >= (3, 11):  # -P: Python does not put the folder first
        safe = _run(["-P", "-m", "tools.codex.factory", "runs", "--json"], repo)
        assert safe.returncode == 0, safe.stderr


def test_a_dependency_loaded_from_the_repository_is_a_warn(tmp_path: Path) -> None:
    site = Path(click.__file__).resolve().parents[1]  # as if the repository held click/
    found = {p.name: p for p in probes.dependencies(site)}
    assert found["dependency-click"].level == probes.WARN
    assert "loaded from the repository (click/__init__.py)" in found["dependency-click"].detail
    clean = make_repo(tmp_path / "clean")
    assert all(p.level == probes.OK for p in probes.dependencies(clean))


def test_dependencies_installed_in_an_environment_inside_the_repository_are_ok() -> None:
    """A project's own virtual environment in the repository (.venv/lib/.../site-packages)
    with the factory installed in it: installed packages, not the repository's code."""
    site = Path(click.__file__).resolve().parents[1]
    assert site.name in ("site-packages", "dist-packages")
    holder = site.parents[1]  # as if the repository held the environment (.venv/lib/...)
    found = {p.name: p for p in probes.dependencies(holder)}
    assert found["dependency-click"].level == probes.OK, found["dependency-click"].detail


def test_main_takes_the_repository_off_the_front_of_sys_path(tmp_path: Path) -> None:
    from tools.codex.factory.__main__ import without_repository

    repo = make_repo(tmp_path / "repo")
    other = tmp_path / "lib"
    other.mkdir()
    cwd = str(tmp_path)
    assert without_repository(["", cwd, str(repo), str(other), cwd], cwd) == [str(other), cwd]
    assert without_repository([str(other)], cwd) == [str(other)]


def test_doctor_in_process_reports_what_it_loaded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    res = run_cli("--repo", str(repo), "doctor")
    line = next(ln for ln in res.stdout.splitlines() if "dependency-click" in ln)
    assert line.startswith("OK") and str(Path(click.__file__)) in line


@pytest.mark.parametrize("name", ["README.md"])
def test_readme_leads_with_the_console_script(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    fence = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert len(fence) == 2  # the two set-up commands, exactly
    assert fence[0].endswith("&& factory oneshot --base-ref HEAD --dry-run")
    ci = (ROOT / ".ci/run").read_text(encoding="utf-8")
    assert fence[1] in ci
