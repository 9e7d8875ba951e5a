"""Gate 0: each rule on a real `git diff`, and its honest twin that must not be flagged."""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.factory import make_patch
from tests.support.repos import make_repo
from tools.codex.factory.core import patchparse, review
from tools.codex.factory.core.globs import validate_glob
from tools.codex.factory.records.validation import ReviewFinding, ReviewSettings

_count = itertools.count()

CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
TEST_CALC = (
    "from calc import add, sub\n\n\n"
    "def test_add():\n    assert add(1, 2) == 3\n\n\n"
    "def test_sub():\n    assert sub(3, 2) == 1\n"
)


def reviewed(
    tmp_path: Path,
    base: dict[str, str],
    changes: dict[str, str | bytes | None],
    renames: dict[str, str] | None = None,
    conf: ReviewSettings | None = None,
) -> list[ReviewFinding]:
    """Gate 0 on the real `git diff` of ``changes`` to a repository holding ``base``, with
    the pre-images it asks for read from the base commit."""
    repo = make_repo(tmp_path / f"r{next(_count)}", base)
    data = make_patch(repo, changes, renames)
    patch = patchparse.parse(data)
    conf = conf or default_settings()
    pre: dict[str, bytes | None] = {}
    for path in review.needed_preimages(patch, conf):
        res = subprocess.run(
            ["git", "-C", str(repo), "show", f"HEAD:{path}"], capture_output=True, check=False
        )
        pre[path] = res.stdout if res.returncode == 0 else None
    return review.review("A", patch, pre, conf)


def default_settings() -> ReviewSettings:
    return review.settings_of(True, {}, review.DEFAULT_TEST_GLOBS, review.DEFAULT_SKIP_PATTERNS, [])


def review_bytes(
    worker: str, data: bytes, pre: dict[str, bytes | None], conf: ReviewSettings
) -> list[ReviewFinding]:
    """Gate 0 on patch bytes as validation gives them: none for a patch that does not parse
    (validation refuses it by its own rule)."""
    try:
        patch = patchparse.parse(data)
    except patchparse.PatchParseError:
        return []
    return review.review(worker, patch, pre, conf)


def rules(found: list[ReviewFinding]) -> set[str]:
    return {f["rule"] for f in found}


def base(**extra: str) -> dict[str, str]:
    return {"calc.py": CALC, "tests/test_calc.py": TEST_CALC, **extra}


# -- test-deleted -----------------------------------------------------------------------------
def test_deleted_test_file_is_flagged(tmp_path: Path) -> None:
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": None})
    assert [(f["rule"], f["path"], f["line"], f["severity"]) for f in found] == [
        ("test-deleted", "tests/test_calc.py", 0, "critical")
    ]


def test_deleted_with_the_code_it_tests_is_not(tmp_path: Path) -> None:
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": None, "calc.py": None})
    assert found == []


def test_renamed_away_is_flagged(tmp_path: Path) -> None:
    found = reviewed(tmp_path, base(), {}, renames={"tests/test_calc.py": "old/calc_check.py"})
    assert rules(found) == {"test-deleted"}


def test_renamed_within_tests_is_not(tmp_path: Path) -> None:
    found = reviewed(tmp_path, base(), {}, renames={"tests/test_calc.py": "tests/test_math.py"})
    assert found == []


@pytest.mark.parametrize(
    ("new", "flagged"),
    [
        ("tests/test_calc.py.bak", True),
        ("tests/calc_checks.py", True),
        ("tests/calc_test.py", False),
        ("tests/unit/test_math.py", False),
    ],
)
def test_renamed_to_a_name_pytest_does_not_collect(tmp_path: Path, new: str, flagged: bool) -> None:
    """Still under tests/, but no longer a test module by its name: its tests stop running."""
    found = reviewed(tmp_path, base(), {}, renames={"tests/test_calc.py": new})
    assert [(f["rule"], f["path"]) for f in found] == (
        [("test-deleted", "tests/test_calc.py")] if flagged else []
    )


def test_removed_test_function_is_flagged(tmp_path: Path) -> None:
    kept = "from calc import add, sub\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": kept})
    assert [(f["rule"], f["line"]) for f in found] == [("test-deleted", 0)]
    assert "'test_sub'" in found[0]["message"]


def test_removed_with_the_function_it_tests_is_not(tmp_path: Path) -> None:
    kept = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    code = "def add(a, b):\n    return a + b\n"
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": kept, "calc.py": code})
    assert found == []


def test_removed_while_its_function_is_only_edited_is_flagged(tmp_path: Path) -> None:
    """A def line edited (a type hint) is removed and added again: the function stays, so
    removing its test is no removal with its code."""
    kept = "from calc import add, sub\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    code = CALC.replace("def sub(a, b):", "def sub(a: int, b: int) -> int:")
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": kept, "calc.py": code})
    assert [(f["rule"], f["line"]) for f in found] == [("test-deleted", 0)]


@pytest.mark.parametrize(
    "moved",
    [
        "from calc import sub\n\n\ndef test_sub():\n    assert sub(3, 2) == 1\n",
        "from calc import sub\n\n\nclass TestSub:\n    def test_sub(self):\n        assert sub(3, 2) == 1\n",
    ],
    ids=["function", "into-a-class"],
)
def test_a_test_moved_to_another_test_file_is_not_removed(tmp_path: Path, moved: str) -> None:
    """Splitting a test file is a refactor, not a removal; the moved test is still
    reviewed where it lands."""
    kept = "from calc import add, sub\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": kept, "tests/test_sub.py": moved})
    assert found == []
    hollow = "def test_sub():\n    assert True\n"
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": kept, "tests/test_sub.py": hollow})
    assert rules(found) == {"tautology"}


def test_a_test_file_moved_and_rewritten_is_not_deleted(tmp_path: Path) -> None:
    """Deleted here, its tests (parametrized now) added in another test file: a move git
    does not see as a rename; one test left behind is still a deletion."""
    new = (
        "import pytest\n\nfrom calc import add, sub\n\n\n"
        "@pytest.mark.parametrize(('a', 'b', 'c'), [(1, 2, 3), (0, 0, 0), (5, 5, 10)])\n"
        "def test_add(a, b, c):\n    assert add(a, b) == c\n\n\n"
        "@pytest.mark.parametrize(('a', 'b', 'c'), [(3, 2, 1), (0, 0, 0)])\n"
        "def test_sub(a, b, c):\n    assert sub(a, b) == c\n"
    )
    moved = {"tests/test_calc.py": None, "tests/unit/test_arith.py": new}
    assert reviewed(tmp_path, base(), moved) == []
    partly = {"tests/test_calc.py": None, "tests/unit/test_arith.py": new.split("\n\n\n@")[0]}
    assert rules(reviewed(tmp_path, base(), partly)) == {"test-deleted"}


@pytest.mark.parametrize(
    ("cases", "flagged"), [("[(1, 2, 3), (0, 0, 0)]", False), ("[(1, 2, 3)]", True)]
)
def test_tests_merged_into_a_parametrized_one(tmp_path: Path, cases: str, flagged: bool) -> None:
    """Two tests become one test over two cases: a refactor; over one case: a test lost."""
    old = TEST_CALC + "\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n"
    new = (
        "import pytest\n\nfrom calc import add, sub\n\n\n"
        f"@pytest.mark.parametrize(('a', 'b', 'c'), {cases})\n"
        "def test_add(a, b, c):\n    assert add(a, b) == c\n\n\n"
        "def test_sub():\n    assert sub(3, 2) == 1\n"
    )
    found = reviewed(tmp_path, base(**{"tests/test_calc.py": old}), {"tests/test_calc.py": new})
    assert rules(found) == ({"test-deleted"} if flagged else set())


# -- test-emptied -----------------------------------------------------------------------------
def test_emptied_test_file_is_flagged(tmp_path: Path) -> None:
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": "# nothing to see\n"})
    assert "test-emptied" in rules(found)


def test_a_test_file_with_tests_left_is_not_emptied(tmp_path: Path) -> None:
    more = TEST_CALC + "\n\ndef test_more():\n    assert add(2, 2) == 4\n"
    assert reviewed(tmp_path, base(), {"tests/test_calc.py": more}) == []


# -- skips --------------------------------------------------------------------------------------
def test_skip_added_names_the_line(tmp_path: Path) -> None:
    text = TEST_CALC.replace("def test_sub", "@pytest.mark.skip(reason='later')\ndef test_sub")
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": "import pytest\n" + text})
    assert [(f["rule"], f["path"], f["line"]) for f in found] == [
        ("skip-added", "tests/test_calc.py", 9)
    ]


def test_an_existing_skip_is_not_new(tmp_path: Path) -> None:
    skipped = "import pytest\n" + TEST_CALC.replace(
        "def test_sub", "@pytest.mark.skip(reason='flaky on CI')\ndef test_sub"
    )
    edited = skipped.replace("assert add(1, 2) == 3", "assert add(2, 2) == 4")
    found = reviewed(
        tmp_path, base(**{"tests/test_calc.py": skipped}), {"tests/test_calc.py": edited}
    )
    assert found == []


@pytest.mark.parametrize(
    "decorator",
    ["@unittest.skip('x')", "@pytest.mark.skipif(True, reason='x')", "@skip('x')"],
)
def test_other_skip_spellings(tmp_path: Path, decorator: str) -> None:
    text = "import unittest\nimport pytest\nfrom unittest import skip\n" + TEST_CALC.replace(
        "def test_add", f"{decorator}\ndef test_add"
    )
    assert rules(reviewed(tmp_path, base(), {"tests/test_calc.py": text})) == {"skip-added"}


def test_a_conditional_skipif_is_not_flagged(tmp_path: Path) -> None:
    text = "import sys\nimport pytest\n" + TEST_CALC.replace(
        "def test_add", "@pytest.mark.skipif(sys.platform == 'win32', reason='posix')\ndef test_add"
    )
    assert reviewed(tmp_path, base(), {"tests/test_calc.py": text}) == []


def test_xfail_added(tmp_path: Path) -> None:
    text = "import pytest\n" + TEST_CALC.replace("def test_add", "@pytest.mark.xfail\ndef test_add")
    assert rules(reviewed(tmp_path, base(), {"tests/test_calc.py": text})) == {"xfail-added"}


def test_an_existing_xfail_is_not_new(tmp_path: Path) -> None:
    old = "import pytest\n" + TEST_CALC.replace("def test_add", "@pytest.mark.xfail\ndef test_add")
    new = old.replace("== 1", "== 1  # checked")
    assert (
        reviewed(tmp_path, base(**{"tests/test_calc.py": old}), {"tests/test_calc.py": new}) == []
    )


def test_module_skipped(tmp_path: Path) -> None:
    text = "import pytest\npytestmark = pytest.mark.skip(reason='x')\n" + TEST_CALC
    assert rules(reviewed(tmp_path, base(), {"tests/test_calc.py": text})) == {
        "test-module-skipped"
    }


def test_module_skip_by_call(tmp_path: Path) -> None:
    text = "import pytest\npytest.skip('x', allow_module_level=True)\n" + TEST_CALC
    assert rules(reviewed(tmp_path, base(), {"tests/test_calc.py": text})) == {
        "test-module-skipped"
    }


def test_an_existing_module_skip_is_not_new(tmp_path: Path) -> None:
    old = "import pytest\npytestmark = pytest.mark.skip(reason='x')\n" + TEST_CALC
    new = old.replace("== 3", "== 3  # same")
    assert (
        reviewed(tmp_path, base(**{"tests/test_calc.py": old}), {"tests/test_calc.py": new}) == []
    )


# -- assertions ---------------------------------------------------------------------------------
def test_no_assertion_is_a_warning(tmp_path: Path) -> None:
    text = TEST_CALC + "\n\ndef test_mul():\n    add(2, 3)\n"
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": text})
    assert [(f["rule"], f["line"], f["severity"]) for f in found] == [
        ("no-assertion", 12, "warning")
    ]


def test_an_asserting_test_is_not(tmp_path: Path) -> None:
    text = TEST_CALC + "\n\ndef test_mul(self):\n    self.assertEqual(add(2, 3), 5)\n"
    assert reviewed(tmp_path, base(), {"tests/test_calc.py": text}) == []


@pytest.mark.parametrize(
    "line", ["assert True", "assert add(1, 2) == add(1, 2)", "self.assertTrue(1)"]
)
def test_tautology(tmp_path: Path, line: str) -> None:
    text = TEST_CALC.replace("assert add(1, 2) == 3", line)
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": text})
    assert [(f["rule"], f["line"]) for f in found] == [("tautology", 5)]


def test_a_real_comparison_is_not_a_tautology(tmp_path: Path) -> None:
    text = TEST_CALC.replace("assert add(1, 2) == 3", "assert add(2, 2) == 4")
    assert reviewed(tmp_path, base(), {"tests/test_calc.py": text}) == []


def test_raises_everything(tmp_path: Path) -> None:
    text = "import pytest\n" + TEST_CALC.replace(
        "    assert add(1, 2) == 3", "    with pytest.raises(Exception):\n        add(None, 2)"
    )
    assert rules(reviewed(tmp_path, base(), {"tests/test_calc.py": text})) == {"raises-everything"}


def test_raises_a_named_error_is_not(tmp_path: Path) -> None:
    text = "import pytest\n" + TEST_CALC.replace(
        "    assert add(1, 2) == 3", "    with pytest.raises(TypeError):\n        add(None, 2)"
    )
    assert reviewed(tmp_path, base(), {"tests/test_calc.py": text}) == []


# -- self-mock ----------------------------------------------------------------------------------
def test_self_mock(tmp_path: Path) -> None:
    text = "from unittest.mock import patch\n" + TEST_CALC.replace(
        "def test_add():", "@patch('calc.add', return_value=3)\ndef test_add(_m):"
    )
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": text})
    assert [(f["rule"], f["line"]) for f in found] == [("self-mock", 5)]


def test_mocking_a_collaborator_is_not(tmp_path: Path) -> None:
    text = "from unittest.mock import patch\n" + TEST_CALC.replace(
        "def test_add():", "@patch('calc.requests.get')\ndef test_add(_m):"
    )
    assert reviewed(tmp_path, base(), {"tests/test_calc.py": text}) == []


def test_self_mock_by_monkeypatch(tmp_path: Path) -> None:
    text = "import calc\n" + TEST_CALC.replace(
        "def test_add():\n",
        "def test_add(monkeypatch):\n    monkeypatch.setattr(calc, 'add', max)\n",
    )
    assert rules(reviewed(tmp_path, base(), {"tests/test_calc.py": text})) == {"self-mock"}


# -- test detection -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line",
    [
        "if 'pytest' in sys.modules:",
        "if os.environ.get('PYTEST_CURRENT_TEST'):",
        "if 'pytest' in sys.argv[0]:",
    ],
)
def test_detection(tmp_path: Path, line: str) -> None:
    code = f"import os, sys\n\n\ndef add(a, b):\n    {line}\n        return 3\n    return a + b\n"
    found = reviewed(tmp_path, base(), {"calc.py": code})
    assert [(f["rule"], f["path"], f["line"]) for f in found] == [("test-detection", "calc.py", 5)]


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        ("T = 'py' 'test' in sys.modules", True),
        ("T = os.environ.get('PYTEST_' + 'CURRENT_TEST')", True),
        ("T = any('pytest' in m for m in sys.modules)", True),
        ("T = sys.modules.__contains__('pytest')", True),
        ("MOD = sys.modules[__name__]", False),
        ("NAME = 'py' 'thon' + '3'", False),
    ],
)
def test_detection_spelled_otherwise(tmp_path: Path, line: str, flagged: bool) -> None:
    code = CALC + "\n\nimport os\nimport sys\n\n" + line + "\n"
    found = reviewed(tmp_path, base(), {"calc.py": code})
    assert rules(found) == ({"test-detection"} if flagged else set())


def test_argv_parsing_and_test_side_detection_are_not(tmp_path: Path) -> None:
    code = "import sys\n\n\ndef main():\n    return sys.argv[1:]\n"
    conftest = "import sys\n\nRUNNING = 'pytest' in sys.modules\n"
    found = reviewed(tmp_path, base(), {"cli.py": code, "tests/helpers.py": conftest})
    assert found == []


# -- test selection and check configuration -----------------------------------------------------
@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pytest.ini", "[pytest]\naddopts = -k 'not slow'\n"),
        (
            "pyproject.toml",
            "[tool.pytest.ini_options]\naddopts = '--deselect tests/test_calc.py::test_sub'\n",
        ),
        ("setup.cfg", "[coverage:run]\nomit =\n    calc.py\n"),
    ],
)
def test_selection_changed(tmp_path: Path, name: str, text: str) -> None:
    found = reviewed(tmp_path, base(), {name: text})
    assert "test-selection-changed" in rules(found)
    assert {f["path"] for f in found} == {name}


def test_conftest_deselecting(tmp_path: Path) -> None:
    text = "def pytest_collection_modifyitems(config, items):\n    items[:] = items[:1]\n"
    found = reviewed(tmp_path, base(), {"tests/conftest.py": text})
    assert ("test-selection-changed", 1) in {(f["rule"], f["line"]) for f in found}


@pytest.mark.parametrize("path", ["calc_plugin.py", "tests/plugins/deselect.py"])
def test_a_collection_hook_in_a_plugin_module(tmp_path: Path, path: str) -> None:
    """A plugin module (loaded by pytest_plugins, -p or an entry point) chooses tests as a
    conftest does; an ordinary function there is no hook."""
    hook = "def pytest_collection_modifyitems(config, items):\n    items[:] = []\n"
    found = reviewed(tmp_path, base(), {path: hook})
    assert [(f["rule"], f["line"]) for f in found] == [("test-selection-changed", 1)]
    helper = "def pytest_helper_value():\n    return 2\n"
    assert reviewed(tmp_path, base(), {path: helper}) == []


@pytest.mark.parametrize(
    ("old", "new"), [("pytest.ini", "old/pytest.ini.bak"), ("ci/pytest.ini", "pytest.ini")]
)
def test_a_settings_file_moved_is_test_selection(tmp_path: Path, old: str, new: str) -> None:
    """A rename git finds identical has no changed line: moving pytest.ini away drops its
    settings, moving one in adds them."""
    ini = "[pytest]\naddopts = --cov=calc --cov-fail-under=90\ntestpaths = tests\n"
    found = reviewed(tmp_path, base(**{old: ini}), {}, renames={old: new})
    assert [(f["rule"], f["path"], f["line"]) for f in found] == [
        ("test-selection-changed", new, 0)
    ]
    other = reviewed(tmp_path, base(**{"ci/x.ini": ini}), {}, renames={"ci/x.ini": "ci/y.ini"})
    assert other == []


def test_an_unrelated_config_change_is_not(tmp_path: Path) -> None:
    old = "[project]\nname = 'calc'\ndependencies = []\n"
    new = "[project]\nname = 'calc'\ndependencies = ['attrs']\n"
    conftest = "import pytest\n\n\n@pytest.fixture\ndef two():\n    return 2\n"
    found = reviewed(
        tmp_path,
        base(**{"pyproject.toml": old}),
        {"pyproject.toml": new, "tests/conftest.py": conftest},
    )
    assert found == []


_TOOLS = (
    "[tool.ruff]\nline-length = 100\nexclude = ['build']\n"
    + "".join(f"# line {i}\n" for i in range(10))
    + "[tool.setuptools.packages.find]\ninclude = ['calc*']\n"
    + "".join(f"# more {i}\n" for i in range(10))
    + "[tool.coverage.run]\nsource = ['calc']\n"
    + "".join(f"# coverage {i}\n" for i in range(10))
    + "omit = []\n"
)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("exclude = ['build']", "exclude = ['build', 'dist']"),
        ("include = ['calc*']", "include = ['calc*', 'extra*']"),
    ],
)
def test_another_tools_exclude_or_include_is_no_test_selection(
    tmp_path: Path, old: str, new: str
) -> None:
    """ruff's, mypy's, flake8's or setuptools' exclude/include choose no test: only
    coverage's do, in its own section, even when the hunk does not show the header."""
    found = reviewed(
        tmp_path, base(**{"pyproject.toml": _TOOLS}), {"pyproject.toml": _TOOLS.replace(old, new)}
    )
    assert found == []
    cfg = "[flake8]\nexclude = build\n\n[coverage:run]\n" + "# x\n" * 10 + "omit = \n"
    found = reviewed(
        tmp_path,
        base(**{"setup.cfg": cfg}),
        {"setup.cfg": cfg.replace("exclude = build", "exclude = build,dist")},
    )
    assert found == []


def test_coverage_omit_deep_in_its_section_is_test_selection(tmp_path: Path) -> None:
    changed = _TOOLS.replace("omit = []", "omit = ['calc.py']")
    found = reviewed(tmp_path, base(**{"pyproject.toml": _TOOLS}), {"pyproject.toml": changed})
    assert {(f["rule"], f["line"]) for f in found} >= {("test-selection-changed", 38)}
    cfg = "[flake8]\nexclude = build\n\n[coverage:run]\n" + "# x\n" * 10 + "omit = \n"
    found = reviewed(tmp_path, base(**{"setup.cfg": cfg}), {"setup.cfg": cfg + "    calc.py\n"})
    assert rules(found) == {"test-selection-changed"}


def test_check_config_changed(tmp_path: Path) -> None:
    conf = review.settings_of(True, {}, review.DEFAULT_TEST_GLOBS, [], [["bash", "ci/check.sh"]])
    assert conf["check_files"] == ["ci/check.sh"]
    found = reviewed(
        tmp_path, base(**{"ci/check.sh": "pytest\n"}), {"ci/check.sh": "true\n"}, conf=conf
    )
    assert [(f["rule"], f["severity"]) for f in found] == [("check-config-changed", "warning")]
    assert (
        reviewed(tmp_path, base(**{"ci/other.sh": "x\n"}), {"ci/other.sh": "y\n"}, conf=conf) == []
    )


def test_check_files_of_a_command() -> None:
    assert review.check_files(["make", "test"]) == ["Makefile", "makefile", "GNUmakefile"]
    argv = ["{python}", "-m", "pytest", "-c", "ci/pytest.ini", "--rcfile=./.cov.toml", "tests"]
    assert review.check_files(argv) == ["ci/pytest.ini", ".cov.toml"]
    assert review.check_files(["git", "diff", "--check", "{base_commit}"]) == []


# -- hard-coded outputs -------------------------------------------------------------------------
def test_hardcoded_output(tmp_path: Path) -> None:
    code = "def names():\n    return {'alice': 31, 'bob': 42}\n"
    test = "from people import names\n\n\ndef test_names():\n    assert names() == {'alice': 31, 'bob': 42}\n"
    found = reviewed(tmp_path, base(), {"people.py": code, "tests/test_people.py": test})
    assert [(f["rule"], f["path"], f["line"]) for f in found] == [
        ("hardcoded-output", "people.py", 2)
    ]


def test_a_computed_result_is_not_hardcoded(tmp_path: Path) -> None:
    code = "def names(rows):\n    return {r['name']: r['age'] for r in rows}\n"
    test = (
        "from people import names\n\n\ndef test_names():\n"
        "    assert names([{'name': 'alice', 'age': 31}]) == {'alice': 31}\n"
    )
    assert reviewed(tmp_path, base(), {"people.py": code, "tests/test_people.py": test}) == []


@pytest.mark.parametrize("where", ["added", "changed"])
def test_hardcoded_output_reads_strings_whole_and_skips_dict_keys(
    tmp_path: Path, where: str
) -> None:
    """A one-character string in the test does not shift which quotes pair up; dict keys
    are a result's shape (a to_dict), not hard-coded values."""
    names = "\n\ndef names(prefix):\n    return [\n        'alice',\n        'bob',\n    ]\n"
    to_dict = "\n\ndef info(n, a):\n    return {\n        'name': n,\n        'age': a,\n    }\n"
    test = (
        "\n\ndef test_more():\n    from calc import info, names\n"
        "    assert names('x') == ['alice', 'bob']\n"
        "    assert info('y', 3) == {'name': 'y', 'age': 3}\n"
    )
    module = "calc.py" if where == "changed" else "calc2.py"
    found = reviewed(
        tmp_path,
        base(),
        {
            module: (CALC if where == "changed" else "") + names + to_dict,
            "tests/test_calc.py": TEST_CALC + test,
        },
    )
    assert [(f["rule"], f["path"]) for f in found] == [("hardcoded-output", module)]
    assert "'alice', 'bob'" in found[0]["message"]


# -- other languages ----------------------------------------------------------------------------
def test_deleted_go_test(tmp_path: Path) -> None:
    files = base(**{"pkg/sum.go": "package pkg\n", "pkg/sum_test.go": "package pkg\n"})
    found = reviewed(tmp_path, files, {"pkg/sum_test.go": None})
    assert [(f["rule"], f["path"]) for f in found] == [("test-deleted-glob", "pkg/sum_test.go")]


def test_deleted_go_test_with_its_source_is_not(tmp_path: Path) -> None:
    files = base(**{"pkg/sum.go": "package pkg\n", "pkg/sum_test.go": "package pkg\n"})
    assert reviewed(tmp_path, files, {"pkg/sum_test.go": None, "pkg/sum.go": None}) == []


def test_deleted_test_data_is_not(tmp_path: Path) -> None:
    files = base(**{"tests/data/cases.json": "[]\n", "tests/fixture.txt": "x\n"})
    assert (
        reviewed(tmp_path, files, {"tests/data/cases.json": None, "tests/fixture.txt": None}) == []
    )


def test_js_skip_added(tmp_path: Path) -> None:
    old = "it('adds', () => {\n  expect(add(1, 2)).toBe(3);\n});\n"
    files = base(**{"web/add.test.js": old})
    found = reviewed(tmp_path, files, {"web/add.test.js": old.replace("it(", "it.skip(")})
    assert [(f["rule"], f["line"]) for f in found] == [("skip-added-pattern", 1)]


def test_js_existing_skip_is_not_new(tmp_path: Path) -> None:
    old = "it.skip('adds', () => {\n  expect(add(1, 2)).toBe(3);\n});\n"
    files = base(**{"web/add.test.js": old})
    assert reviewed(tmp_path, files, {"web/add.test.js": old.replace("'adds'", "'sums'")}) == []


# -- settings -----------------------------------------------------------------------------------
def test_severity_off_and_warning(tmp_path: Path) -> None:
    off = review.settings_of(True, {"test-deleted": "off"}, review.DEFAULT_TEST_GLOBS, [], [])
    assert reviewed(tmp_path, base(), {"tests/test_calc.py": None}, conf=off) == []
    warn = review.settings_of(True, {"test-deleted": "warning"}, review.DEFAULT_TEST_GLOBS, [], [])
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": None}, conf=warn)
    assert [f["severity"] for f in found] == ["warning"]
    disabled = review.settings_of(False, {}, review.DEFAULT_TEST_GLOBS, [], [])
    assert reviewed(tmp_path, base(), {"tests/test_calc.py": None}, conf=disabled) == []


_HEAD = "import builtins\nimport unittest\n\nimport pytest\n\nfrom calc import add, sub\n\nHAVE = True\n\n\n"
_SUB = "\n\ndef test_sub():\n    assert sub(3, 2) == 1\n"


@pytest.mark.parametrize(
    ("test_add", "rule"),
    [
        ("@pytest.mark.skipif(condition=True, reason='x')\ndef test_add():\n    assert add(1, 2) == 3\n", "skip-added"),
        ("@pytest.mark.skipif(not 0, reason='x')\ndef test_add():\n    assert add(1, 2) == 3\n", "skip-added"),
        ("@pytest.mark.skipif(1 == 1, reason='x')\ndef test_add():\n    assert add(1, 2) == 3\n", "skip-added"),
        ("def test_add():\n    raise unittest.SkipTest('later')\n", "skip-added"),
        ("class TestAdd:\n    __test__ = False\n\n    def test_add(self):\n        assert add(1, 2) == 3\n", "skip-added"),
        ("pytestmark: object = pytest.mark.skip\n\n\ndef test_add():\n    assert add(1, 2) == 3\n", "test-module-skipped"),
        ("def test_add():\n    assert add(1, 2) == 4 or True\n", "tautology"),
        ("def test_add():\n    assert (add(1, 2) == 4, 'sum')\n", "tautology"),
        ("def test_add():\n    assert not False\n", "tautology"),
        ("def test_add():\n    with pytest.raises(builtins.Exception):\n        add(1, 'a')\n", "raises-everything"),
        ("later = pytest.mark.skip(reason='x')\n\n\n@later\ndef test_add():\n    assert add(1, 2) == 3\n", "skip-added"),
        ("flaky = pytest.mark.xfail\n\n\nclass TestAdd:\n    @flaky\n    def test_add(self):\n        assert add(1, 2) == 3\n", "xfail-added"),
        ("slow = pytest.mark.slow\n\n\n@slow\ndef test_add():\n    assert add(1, 2) == 3\n", None),
        ("@pytest.mark.parametrize('a', [pytest.param(1, marks=pytest.mark.skip)])\ndef test_add(a):\n    assert add(a, 2) == 3\n", "skip-added"),
        ("@pytest.mark.parametrize('a', [pytest.param(1, marks=[pytest.mark.xfail])])\ndef test_add(a):\n    assert add(a, 2) == 3\n", "xfail-added"),
        ("@pytest.mark.parametrize('a', [pytest.param(1, id='one'), 2])\ndef test_add(a):\n    assert add(a, 1) == a + 1\n", None),
        ("@pytest.mark.skipif(not HAVE, reason='x')\ndef test_add():\n    assert add(1, 2) == 3\n", None),
        ("def test_add():\n    assert add(1, 2) == 3 and True\n", None),
        ("def test_add():\n    assert (add(1, 2), 3) == (3, 3)\n", None),
        ("def test_add():\n    with pytest.raises(TypeError, match='unsupported'):\n        add(1, 'a')\n", None),
    ],
)  # fmt: skip
def test_evasions_of_the_python_rules(tmp_path: Path, test_add: str, rule: str | None) -> None:
    """Spellings that say the same as a flagged one are flagged; the honest ones are not."""
    old = _HEAD + "def test_add():\n    assert add(1, 2) == 3\n" + _SUB
    found = reviewed(
        tmp_path,
        base(**{"tests/test_calc.py": old}),
        {"tests/test_calc.py": _HEAD + test_add + _SUB},
    )
    assert rules(found) == ({rule} if rule else set())


# -- hostile input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content",
    [
        b"def test_x(:\n  assert True\n",  # invalid Python: line rules only
        b"\x00\x01binary\x00 assert True\n",
        b"def test_x():\r\n    assert True\r\n",
        "def test_x():\n    assert True\n".encode("utf-16"),
        b"x = " + b"(" * 5000 + b"\n",
        b"assert True  " + b"#" * 200_000 + b"\n",
        b"import pytest\n\n\n@pytest"
        + b".x" * 3000
        + b"\ndef test_a():\n    f"
        + b"()" * 3000
        + b"\n",
    ],
    ids=["invalid", "nul", "crlf", "utf16", "nesting", "huge-line", "deep-chains"],
)
def test_hostile_test_files_never_crash(tmp_path: Path, content: bytes) -> None:
    found = reviewed(
        tmp_path, base(), {"tests/test_calc.py": content, "tests/test_new.py": content}
    )
    assert all(f["rule"] in review.RULES for f in found)


def test_invalid_python_gets_the_line_rules(tmp_path: Path) -> None:
    text = TEST_CALC.replace("def test_sub", "@pytest.mark.skip\ndef test_sub(:")
    found = reviewed(tmp_path, base(), {"tests/test_calc.py": text})
    assert ("skip-added", 8) in {(f["rule"], f["line"]) for f in found}


def test_a_test_file_of_thousands_of_skipping_tests_is_reviewed_in_linear_time() -> None:
    """Each test takes its markers and added lines by bisection: 20000 tests that each
    skip took close to a minute when every test scanned every call and every line."""
    lines = ["import pytest"]
    for i in range(20_000):
        lines += [f"def test_{i}():", "    pytest.skip()"]
    started = time.monotonic()
    found = review_bytes("A", _patch_of("tests/test_many.py", lines), {}, default_settings())
    assert time.monotonic() - started < 10
    assert len(found) == review.MAX_FINDINGS
    assert {f["rule"] for f in found} == {"no-assertion", "skip-added"}


def test_many_unclosed_literal_returns_are_read_once() -> None:
    """A return of a literal table is read to its closing bracket, at most 200 lines and
    never past the next return: 400 returns that never close made every line be read 200
    times (twenty seconds for a patch of 1.4 MB)."""
    test = _patch_of("tests/test_y.py", ["def test_y():", "    assert f() == ['ab', 'cd']"])
    lines = ["return [" + '"ab", ' * 600 for _ in range(400)]
    body = "".join(f"+{line}\n" for line in lines)
    source = (
        "diff --git a/src/m.py b/src/m.py\n--- a/src/m.py\n+++ b/src/m.py\n"
        f"@@ -1,1 +1,{len(lines) + 1} @@\n x = 0\n{body}"
    ).encode()
    started = time.monotonic()
    found = review_bytes("A", test + source, {}, default_settings())
    assert time.monotonic() - started < 8
    assert found == []


def test_long_lines_of_repeated_words_are_searched_linearly() -> None:
    """The built-in patterns have no '.*' between two alternatives: a line of 4000
    characters of 'pytest ' (or 'add_marker(') made one such pattern backtrack over every
    pair of positions, some ten seconds for 1500 such lines."""
    source = _patch_of("src/m.py", ["x = '" + "pytest " * 570 + "'" for _ in range(1500)])
    hooks = _patch_of("tests/conftest.py", ["x = '" + "add_marker(" * 360 + "'"] * 1500)
    started = time.monotonic()
    found = review_bytes("A", source + hooks, {}, default_settings())
    assert time.monotonic() - started < 6
    assert [(f["path"], f["rule"]) for f in found] == [("tests/conftest.py", "file-too-long")]
    honest = _patch_of("src/m.py", ["import sys", "ARGS = sys.argv[1:]"])
    sniff = _patch_of("src/m.py", ["import sys", "T = 'pytest' in ' '.join(sys.argv)"])
    hook = _patch_of("tests/conftest.py", ["    item.add_marker(pytest.mark.skip(reason='x'))"])
    assert review_bytes("A", honest, {}, default_settings()) == []
    assert rules(review_bytes("A", sniff, {}, default_settings())) == {"test-detection"}
    assert rules(review_bytes("A", hook, {}, default_settings())) == {"test-selection-changed"}


def _patch_of(path: str, lines: list[str]) -> bytes:
    body = "".join(f"+{line}\n" for line in lines)
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
        f"@@ -0,0 +1,{len(lines)} @@\n{body}"
    ).encode("utf-8", "surrogatepass")


_line = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=60
)


@settings(derandomize=True, max_examples=150, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(
        ["tests/test_a.py", "src/a.py", "a.test.js", "pytest.ini", "tests/conftest.py"]
    ),
    st.lists(_line, min_size=1, max_size=12),
)
def test_arbitrary_added_code_never_raises(path: str, lines: list[str]) -> None:
    patch = _patch_of(path, lines)
    for found in (
        review_bytes("A", patch, {}, default_settings()),
        review_bytes("A", patch + b"garbage\n", {}, default_settings()),
    ):
        assert all(f["rule"] in review.RULES for f in found)


@settings(derandomize=True, max_examples=150, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=400), st.binary(max_size=200))
def test_arbitrary_patch_bytes_never_raise(data: bytes, pre: bytes) -> None:
    head = b"diff --git a/tests/test_a.py b/tests/test_a.py\n--- a/tests/test_a.py\n+++ b/tests/test_a.py\n"
    for patch in (data, head + data):
        found = review_bytes("A", patch, {"tests/test_a.py": pre}, default_settings())
        assert isinstance(found, list)


_seg = st.text(st.sampled_from("ab.*?_"), min_size=1, max_size=5).filter(
    lambda s: s not in (".", "..") and "**" not in s
)
_glob = st.lists(st.one_of(_seg, st.just("**")), min_size=1, max_size=4).map("/".join)
_path = st.lists(
    st.text(st.sampled_from("ab._"), min_size=1, max_size=5).filter(lambda s: s not in (".", "..")),
    min_size=1,
    max_size=5,
).map("/".join)


@settings(derandomize=True, max_examples=400, suppress_health_check=list(HealthCheck))
@given(st.lists(_glob, min_size=1, max_size=3), _path)
def test_test_globs_match_as_scope_globs_do(globs: list[str], path: str) -> None:
    """Gate 0's fast test-file matcher agrees with the scope-glob matcher everywhere."""
    from tools.codex.factory.core.globs import match_any

    conf = review.settings_of(True, {}, globs, [], [])
    assert review.is_test(path, conf) == (match_any(path, globs) is not None)


_any_seg = st.text(st.sampled_from("ab.*?_[]!^-+()$|{}"), min_size=1, max_size=6)
_any_glob = st.tuples(
    st.lists(st.one_of(_any_seg, st.just("**")), min_size=1, max_size=5).map("/".join),
    st.sampled_from(["", "/"]),
).map("".join)
_any_path = st.lists(
    st.text(st.sampled_from("ab._+()$|{}[]!^-*?\n"), min_size=1, max_size=5), min_size=1, max_size=6
).map("/".join)


def _usable(glob: str) -> bool:
    try:
        validate_glob(glob)
    except ValueError:
        return False
    return True


@settings(derandomize=True, max_examples=1500, suppress_health_check=list(HealthCheck))
@given(st.lists(_any_glob, min_size=1, max_size=4), _any_path)
def test_test_globs_of_every_shape_match_as_scope_globs_do(globs: list[str], path: str) -> None:
    """Classes, regex metacharacters, trailing '/', many '**', invalid globs among them: the
    combined fast matcher says what the scope-glob matcher says of the usable ones."""
    from tools.codex.factory.core.globs import match_any

    usable = [g for g in globs if _usable(g)]
    conf = review.settings_of(True, {}, globs, [], [])
    assert review.is_test(path, conf) == (match_any(path, usable) is not None)


def test_default_test_globs_match_as_scope_globs_do() -> None:
    from tools.codex.factory.core.globs import match_any

    for path in ["tests/a.py", "a/tests/b/c.js", "test_x.py", "pkg/x_test.go", "src/app.py",
                 "web/__tests__/a.ts", "conftest.py", "x.spec.tsx", "tests", "a/src/test/B.java"]:  # fmt: skip
        conf = default_settings()
        assert review.is_test(path, conf) == (match_any(path, conf["test_globs"]) is not None)


def test_a_test_glob_of_many_double_stars_is_matched_in_linear_time() -> None:
    """A regular expression backtracks a power of the path's segments per '**': such a glob
    against a worker's deep path (within max_path_chars) goes to the glob matcher."""
    glob = "**/src/**/test/**/lib/**/x.py"
    assert review._glob_regex(glob) is None and review._glob_regex("**/src/**/x.py") is not None
    path = "src/test/lib/" * 300 + "y.py"
    conf = review.settings_of(True, {}, [glob], [], [])
    assert not review.is_test(path, conf) and review.is_test(path[:-4] + "x.py", conf)


def test_an_invalid_glob_in_a_record_matches_nothing() -> None:
    conf = review.settings_of(True, {}, ["a/../b", "tests/**"], [], [])
    assert review.is_test("tests/x.py", conf) and not review.is_test("a/../b", conf)


# Statements that make or miss every name the text prefilters look for (skip, xfail, patch,
# setattr), some spelled with non-ASCII letters Python folds to them (NFKC).
_TOP = [
    "import pytest",
    "import unittest",
    "from unittest import mock",
    "from pkg import calc",
    "from pkg.calc import add",
    "import pkg.calc as calc",
    "pytestmark = pytest.mark.skip",
    "pytest.skip('m', allow_module_level=True)",
    "pytest.\uff53kip('m', allow_module_level=True)",
    "x = 1",
]
_DECORATORS = ["", "@pytest.mark.xfail", "@pytest.mark.skip", "@pytest.mark.\uff53kip"]
_BODY = [
    "assert add(1, 2) == 3",
    "assert calc.add(1, 1) == calc.add(1, 1)",
    "assert True",
    "pytest.skip('x')",
    "pytest.\uff53kip('x')",
    "self.skipTest('x')",
    "raise unittest.SkipTest('x')",
    "raise unittest.\uff33kipTest('x')",
    "pytest.xfail('x')",
    "pytest.\uff58fail('x')",
    "mock.patch('pkg.calc.add')",
    "mock.\uff50atch('pkg.calc.add')",
    "monkeypatch.setattr(calc, 'add', len)",
    "mp.setattr('pkg.calc.add', len)",
    "mp.\uff53etattr('pkg.calc.add', len)",
    "mock.patch.object(calc, 'add')",
    "pytest.raises(Exception)",
    "y = 2",
]
_body = st.lists(st.sampled_from(_BODY), min_size=1, max_size=3)
_item = st.one_of(
    st.tuples(st.just("top"), st.sampled_from(_TOP), st.just([])),
    st.tuples(st.just("def"), st.sampled_from(_DECORATORS), _body),
    st.tuples(st.just("class"), st.sampled_from(_DECORATORS), _body),
)


def _module_lines(items: list[tuple[str, str, list[str]]]) -> list[str]:
    out: list[str] = []
    for i, (kind, head, body) in enumerate(items):
        if kind == "top":
            out.append(head)
            continue
        indent = "    " if kind == "def" else "        "
        if kind == "class":
            out.append(f"class TestC{i}:")
        if head:
            out.append(indent[4:] + head)
        arg = "self" if kind == "class" else "mp"
        out.append(f"{indent[4:]}def test_{i}({arg}):")
        out.extend(indent + line for line in body)
    return out


@settings(derandomize=True, max_examples=300, suppress_health_check=list(HealthCheck))
@given(st.lists(_item, min_size=1, max_size=8), st.integers(0, 40))
@example([("def", "", ["raise unittest.SkipTest('x')"])], 0)  # each word alone
@example([("def", "", ["pytest.xfail('x')"])], 0)
@example([("def", "", ["self.skipTest('x')"])], 0)
@example(
    [("top", "from pkg.calc import add", []), ("def", "", ["mp.setattr('pkg.calc.add', len)"])], 1
)
@example([("top", "from pkg.calc import add", []), ("def", "", ["mock.patch('pkg.calc.add')"])], 1)
def test_the_text_prefilters_change_no_finding(
    items: list[tuple[str, str, list[str]]], kept: int
) -> None:
    """A module whose text cannot name a skip, an xfail or a mock is not searched for them;
    the findings are those of the full search (every prefilter word set to "", which every
    text holds), for an added test file and for one grown from its first lines."""
    lines = _module_lines(items)
    path = "tests/test_calc.py"
    cases: list[tuple[bytes, dict[str, bytes | None]]] = [(_patch_of(path, lines), {})]
    kept = min(max(kept, 1), len(lines))
    old, new = lines[:kept], lines[kept:]
    if new:
        body = "".join(f" {x}\n" for x in old) + "".join(f"+{x}\n" for x in new)
        head = f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
        hunk = f"@@ -1,{len(old)} +1,{len(lines)} @@\n"
        pre = "".join(f"{x}\n" for x in old).encode()
        cases.append(((head + hunk + body).encode(), {path: pre}))
    got = [review_bytes("A", data, pre, default_settings()) for data, pre in cases]
    marks = _marks(review._module(lines))  # a finding can hide another: the markers too
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(review, "_MARKER_WORDS", ("",))
        mp.setattr(review, "_MOCK_WORDS", ("",))
        assert got == [review_bytes("A", data, pre, default_settings()) for data, pre in cases]
        assert marks == _marks(review._module(lines))


def _marks(module: review._Module | None) -> object:
    if module is None:
        return None
    return module.module_skips, {name: test.markers for name, test in module.tests.items()}


@pytest.mark.parametrize(
    ("path", "flagged"),
    [
        ("tests/test_a.py", True),
        ("src/m.py", True),  # test detection is read line by line in source too
        ("pytest.ini", True),
        ("tests/app.test.js", True),
        ("tests/data/cases.json", False),  # test data, not code
        ("web/app.min.js", False),  # minified source: no Gate 0 rule reads it
    ],
)
def test_a_line_longer_than_gate_0_reads_is_flagged(path: str, flagged: bool) -> None:
    """Gate 0 reads the first MAX_LINE characters of a line: a longer added line of code it
    reviews could hide a skip after them (``X = "..."; pytestmark = pytest.mark.skip``)."""
    hidden = f'X = "{"x" * review.MAX_LINE}"; pytestmark = pytest.mark.skip'
    found = review_bytes(
        "A", _patch_of(path, ["import pytest", hidden, "Y = 1"]), {}, default_settings()
    )
    got = [(f["rule"], f["line"], f["severity"]) for f in found if f["rule"] == "line-too-long"]
    assert got == ([("line-too-long", 2, "critical")] if flagged else [])


def test_a_line_of_exactly_the_limit_is_read_whole() -> None:
    at = "#" + "x" * (review.MAX_LINE - 1)
    over = at + "x"
    patch = _patch_of("tests/test_a.py", [at, "def test_a():", "    assert f() == 1", over])
    found = review_bytes("A", patch, {}, default_settings())
    assert [(f["rule"], f["line"]) for f in found] == [("line-too-long", 4)]
    assert f"{review.MAX_LINE + 1} characters" in found[0]["message"]


def test_the_line_rule_is_off_for_a_policy_before_it() -> None:
    """Settings of policy version 8 do not name the rule, and a rule they do not name is off:
    a run recorded then is judged as it was."""
    old = review.settings_of(True, {}, review.DEFAULT_TEST_GLOBS, [], [], policy_version=8)
    assert "line-too-long" not in old["severity"]
    assert "skip-added" in old["severity"]
    now = review.settings_of(True, {}, review.DEFAULT_TEST_GLOBS, [], [], policy_version=9)
    assert now["severity"]["line-too-long"] == "critical"
    patch = _patch_of("tests/test_a.py", ["#" + "x" * review.MAX_LINE])
    assert review_bytes("A", patch, {}, old) == []
    assert rules(review_bytes("A", patch, {}, now)) == {"line-too-long"}
    warn = review.settings_of(True, {"line-too-long": "warning"}, review.DEFAULT_TEST_GLOBS, [], [])
    assert [f["severity"] for f in review_bytes("A", patch, {}, warn)] == ["warning"]


_TOKENS = ["sys", ".", "modules", "argv", '"', "'", " ", "+", "PYTEST_", "CURRENT_TEST", "py"]
_TOKENS += ["test", "x = ", "[", "]", "if ", " in ", "skip", "sys.argv", "sys.modules"]
_TOKENS += ['"PYT"', '"EST_VERSION"', "'sys.mod'", "'ules'", '"sys.ar" + "gv"', "'pytest'"]
_WHOLE = ["[pytest]", "[coverage:run]", "addopts = -k fast", "omit = src/*", "x = 1"]
_WHOLE += ["def test_a():", "    assert 1", "    pass", ""]
_code_line = st.one_of(
    st.lists(st.sampled_from(_TOKENS), max_size=6).map("".join), st.sampled_from(_WHOLE)
)


@settings(derandomize=True, max_examples=300, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(["src/m.py", "tests/test_m.py", "pytest.ini", "docs/m.txt", "tests/m.js"]),
    st.lists(_code_line, min_size=1, max_size=8),
    st.lists(_code_line, min_size=1, max_size=8),
)
@example("src/m.py", ["x = 1"], ["if 'pytest' in sys.modules: x = 1"])  # each alone
@example("src/m.py", ["x = 1"], ['x = "PYT" "EST_VERSION"'])
@example("src/m.py", ["x = 1"], ["x = 'py' 'test' in ' '.join(sys.argv)"])
@example("src/m.py", ["x = 1"], ["m = 'sys.mod' 'ules'; 'pytest'"])
@example("pytest.ini", ["[pytest]", "x = 1"], ["[pytest]", "addopts = -k fast"])
def test_partial_sections_and_the_detection_prefilter_change_no_finding(
    path: str, old: list[str], new: list[str]
) -> None:
    """Hunks are kept only where a rule reads them, and a section whose joined text names no
    sys.modules, sys.argv or PYTEST_ is not searched line by line: the findings are those of
    full sections searched whole (strings split and joined: "PYTEST_" + "CURRENT_TEST")."""
    import difflib

    diff = list(difflib.unified_diff([f"{x}\n" for x in old], [f"{x}\n" for x in new], n=2))
    if not diff:
        return
    head = f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
    data = (head + "".join(diff[2:])).encode()
    pre: dict[str, bytes | None] = {path: "".join(f"{x}\n" for x in old).encode()}
    got = review_bytes("A", data, pre, default_settings())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(review, "_reads_hunks", lambda f, s: True)
        mp.setattr(review, "_DETECTION_ANY", re.compile(""))
        assert got == review_bytes("A", data, pre, default_settings())


# A lone carriage return is a line break to Python (and to configparser), not to git: the
# parser numbers the lines after it further on than the patch does, so a rule that asks
# whether a node's line is added missed `assert True` on a line the patch adds.
CR_PADDED = "import os\r\r\r\r\r\rimport sys\n\n\ndef test_add():\n    assert True\n"


@pytest.mark.parametrize(
    ("path", "text", "flagged"),
    [
        ("tests/test_new.py", CR_PADDED, True),
        ("src/m.py", "import os\rimport sys\n", True),
        ("pytest.ini", "[pytest]\nx = 1\rtestpaths = elsewhere\n", True),
        ("tests/test_new.py", CR_PADDED.replace("\r", "\r\n"), False),  # CRLF line endings
        ("tests/test_new.py", "X = 1\r\n\r\n", False),
        ("tests/data/cases.txt", "a\rb\n", False),  # test data, not code
    ],
)
def test_a_line_break_git_does_not_see_is_flagged(
    tmp_path: Path, path: str, text: str, flagged: bool
) -> None:
    found = reviewed(tmp_path, base(), {path: text})
    got = [(f["rule"], f["line"], f["severity"]) for f in found if f["rule"] == "hidden-line-break"]
    assert got == (
        [("hidden-line-break", 1 + path.endswith(".ini"), "critical")] if flagged else []
    )


def test_a_run_before_the_line_break_rule_is_judged_without_it(tmp_path: Path) -> None:
    old = review.settings_of(True, {}, review.DEFAULT_TEST_GLOBS, [], [], policy_version=9)
    assert "hidden-line-break" not in old["severity"]
    assert reviewed(tmp_path, base(), {"src/m.py": "import os\rimport sys\n"}, conf=old) == []


def _padded(head: str, size: int) -> str:
    """A test module of at least ``size`` characters: ``head``, data lines, one test."""
    row = f"DATA = {'1' * 60!r}\n"
    return head + row * (size // len(row) + 1) + "def test_add():\n    assert add(1, 2) == 3\n"


def test_a_test_file_longer_than_gate_0_parses_is_flagged(tmp_path: Path) -> None:
    """Gate 0 parses a test file of up to MAX_SOURCE characters and reads a longer one line
    by line, where ``import pytest; pytestmark = pytest.mark.skip`` passed unseen."""
    head = "from calc import add\nimport pytest; pytestmark = pytest.mark.skip\n"
    found = reviewed(tmp_path, base(), {"tests/test_big.py": _padded(head, review.MAX_SOURCE)})
    assert [(f["rule"], f["line"], f["severity"]) for f in found] == [
        ("file-too-long", 0, "critical")
    ]
    under = reviewed(tmp_path, base(), {"tests/test_big.py": _padded(head, 1000)})
    assert rules(under) == {"test-module-skipped"}
    data = {"tests/data/big.py.txt": _padded("", review.MAX_SOURCE)}
    assert reviewed(tmp_path, base(), data) == []
    old = review.settings_of(True, {}, review.DEFAULT_TEST_GLOBS, [], [], policy_version=9)
    honest = _padded("from calc import add\n", review.MAX_SOURCE)
    assert reviewed(tmp_path, base(), {"tests/test_big.py": honest}, conf=old) == []


# Python decodes a source file by its coding declaration (or a UTF-8 byte-order mark), Gate 0
# reads UTF-8: in each of these pytest skips the module, and Gate 0 read no skip.
SKIP_TAIL = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
UTF7_SKIP = "+AHAAeQB0AGUAcwB0AG0AYQByAGsAIAA9ACAAcAB5AHQAZQBzAHQALgBtAGEAcgBrAC4AcwBrAGkAcA-"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("\ufeff# coding: latin-1\n" + SKIP_TAIL, 1),
        ("# coding: utf-7\nimport pytest\n" + UTF7_SKIP + "\n" + SKIP_TAIL, 1),
        (
            "#!/usr/bin/env python\n# -*- coding: unicode_escape -*-\nimport pytest\n"
            "pytestmar\\u006b = pytest.mark.skip\n" + SKIP_TAIL,
            2,
        ),
        ("# vim: set fileencoding=latin-1 :\n" + SKIP_TAIL, 1),
        ("# coding: no-such-codec\n" + SKIP_TAIL, 1),
        ("# -*- coding: utf-8 -*-\n" + SKIP_TAIL, 0),
        ("# coding: UTF8\n" + SKIP_TAIL, 0),
        ("# coding=ascii\n" + SKIP_TAIL, 0),
        ("import os\n\n# coding: utf-7\n" + SKIP_TAIL, 0),  # line 3: Python does not read it
    ],
)
def test_a_source_encoding_gate_0_does_not_read_is_flagged(
    tmp_path: Path, text: str, line: int
) -> None:
    found = reviewed(tmp_path, base(), {"tests/test_new.py": text})
    got = [(f["line"], f["severity"]) for f in found if f["rule"] == "source-encoding"]
    assert got == ([(line, "critical")] if line else [])


def test_a_source_encoding_is_read_in_python_files_only(tmp_path: Path) -> None:
    changes = {"tests/data/cases.txt": "\ufeffa\n", "src/m.py": "# coding: utf-7\nX = 1\n"}
    found = reviewed(tmp_path, base(), changes)
    assert [(f["path"], f["rule"]) for f in found] == [("src/m.py", "source-encoding")]
    old = review.settings_of(True, {}, review.DEFAULT_TEST_GLOBS, [], [], policy_version=9)
    assert reviewed(tmp_path, base(), changes, conf=old) == []


# pytest reads pytest.ini, tox.ini and setup.cfg with iniconfig, which splits lines where
# str.splitlines does: 'x = 1<VT>testpaths = elsewhere' set testpaths (pytest collected only
# `elsewhere`) while Gate 0 read one line keyed 'x'.
@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
@pytest.mark.parametrize(
    ("path", "head"),
    [("pytest.ini", "[pytest]\n"), ("tox.ini", "[pytest]\n"), ("setup.cfg", "[tool:pytest]\n")],
)
def test_a_line_break_pytests_ini_reader_sees_is_flagged(
    tmp_path: Path, path: str, head: str, char: str
) -> None:
    found = reviewed(tmp_path, base(), {path: f"{head}x = 1{char}testpaths = elsewhere\n"})
    assert [(f["rule"], f["line"]) for f in found] == [("hidden-line-break", 2)]


def test_a_form_feed_in_python_is_no_line_break(tmp_path: Path) -> None:
    """Python's tokenizer reads a form feed as white space (Emacs page breaks)."""
    found = reviewed(tmp_path, base(), {"src/m.py": "X = 1\n\x0c\nY = 2  # \u2028\n"})
    assert found == []


# Python reads a UTF-8 byte-order mark as the file's encoding, Gate 0's parser refused it:
# a test file saved with one (Windows editors do) was read line by line only, where a skip
# through an alias passed unseen.
ALIAS_SKIP = TEST_CALC.replace("sub\n", "sub\nimport pytest\n", 1).replace(
    "def test_add", "off = pytest.mark.skip\n\n\n@off\ndef test_add"
)


def test_a_test_file_with_a_byte_order_mark_is_parsed(tmp_path: Path) -> None:
    bom = base(**{"tests/test_calc.py": "\ufeff" + TEST_CALC})
    found = reviewed(tmp_path, bom, {"tests/test_calc.py": "\ufeff" + ALIAS_SKIP})
    assert [(f["rule"], f["line"]) for f in found] == [("skip-added", 8)]
    new = "\ufeffimport pytest; pytestmark = pytest.mark.skip\n" + SKIP_TAIL
    found = reviewed(tmp_path, base(), {"tests/test_new.py": new})
    assert [(f["rule"], f["line"]) for f in found] == [("test-module-skipped", 1)]


# Python reads a coding declaration as its tokenizer does: line 2 only after a blank or comment
# line 1, the first declaration only, and any 'utf-8-...' name (Emacs's utf-8-unix) as UTF-8.
@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("# -*- coding: utf-8-unix -*-\n" + SKIP_TAIL, 0),
        ("# vim: set fileencoding=UTF_8_dos :\n" + SKIP_TAIL, 0),
        ("import os\n# coding: latin-1\n" + SKIP_TAIL, 0),
        ('"""Decoding files.\n# coding: utf-7 is what the sample declares.\n"""\n' + SKIP_TAIL, 0),
        ("# coding: utf-8\n# coding: utf-7\n" + SKIP_TAIL, 0),
        ("\n# coding: utf-7\n" + SKIP_TAIL, 2),
        ("\x0c\n# coding: utf-7\n" + SKIP_TAIL, 2),  # a form feed: a blank line 1
        ("# coding: utf8-unix\n" + SKIP_TAIL, 1),  # no such codec: Python refuses the file
    ],
)
def test_a_coding_declaration_is_read_as_python_reads_it(
    tmp_path: Path, text: str, line: int
) -> None:
    found = reviewed(tmp_path, base(), {"tests/test_new.py": text})
    assert [f["line"] for f in found if f["rule"] == "source-encoding"] == ([line] if line else [])


@pytest.mark.parametrize(("first", "flagged"), [("X = 1", False), ("# header", True)])
def test_a_declaration_added_under_an_unchanged_first_line(
    tmp_path: Path, first: str, flagged: bool
) -> None:
    found = reviewed(
        tmp_path, {"m.py": f"{first}\nY = 2\n"}, {"m.py": f"{first}\n# coding: utf-7\n"}
    )
    assert [f["rule"] for f in found] == (["source-encoding"] if flagged else [])


# Gate 0 reads the first 4,000 characters of a line; it parsed the base's lines so cut, so a
# test file whose base holds one longer line (a data blob) never parsed: every change to it
# was read line by line only, and a skip through an alias passed unseen.
LONG_DATA = f"BLOB = {'x' * (review.MAX_LINE + 100)!r}\n"


def test_a_test_file_with_a_long_line_in_its_base_is_parsed(tmp_path: Path) -> None:
    long_base = base(**{"tests/test_calc.py": LONG_DATA + TEST_CALC})
    found = reviewed(tmp_path, long_base, {"tests/test_calc.py": LONG_DATA + ALIAS_SKIP})
    assert [(f["rule"], f["line"]) for f in found] == [("skip-added", 9)]
    # The base parsed as well: a skip it already had is not new when the long line goes.
    skipped = "import pytest\n" + TEST_CALC.replace(
        "def test_add", "@pytest.mark.skip\ndef test_add"
    )
    long_skipped = base(**{"tests/test_calc.py": LONG_DATA + skipped})
    found = reviewed(tmp_path, long_skipped, {"tests/test_calc.py": "BLOB = 'x'\n" + skipped})
    assert found == []


# git places a hunk by its content, near the old line its header names, and ignores the new
# line: a patch whose hunks are out of order, or whose header names another line, applies as
# written while Gate 0, numbering by the headers, read another file (or none) and passed
# `assert True` and a skip through an alias.
BASE_T = (
    "from calc import add, sub\n\n\n"
    + "".join(f"def test_add_{i}():\n    assert add({i}, 1) == {i + 1}\n\n\n" for i in range(4))
    + "def test_sub():\n    assert sub(3, 2) == 1\n"
)
HUNKED = BASE_T.replace("from calc", "import pytest\nfrom calc").replace(
    "def test_sub():\n    assert sub(3, 2) == 1",
    "off = pytest.mark.skip\n\n\n@off\ndef test_sub():\n    assert True",
)


def _forged(tmp_path: Path, forge: Callable[[bytes], bytes]) -> list[ReviewFinding]:
    repo = make_repo(tmp_path / f"r{next(_count)}", base(**{"tests/test_calc.py": BASE_T}))
    data = forge(make_patch(repo, {"tests/test_calc.py": HUNKED}))
    (tmp_path / "p.diff").write_bytes(data)
    subprocess.run(
        ["git", "-C", str(repo), "apply", "--cached", str(tmp_path / "p.diff")], check=True
    )
    pre = subprocess.run(
        ["git", "-C", str(repo), "show", "HEAD:tests/test_calc.py"], capture_output=True
    )
    return review_bytes("A", data, {"tests/test_calc.py": pre.stdout}, default_settings())


def _swap(data: bytes) -> bytes:
    head, first, second = re.split(rb"\n(?=@@ )", data, maxsplit=2)
    return b"\n".join([head, second.rstrip(b"\n"), first]) + b"\n"


@pytest.mark.parametrize(
    "forge",
    [
        _swap,  # the hunks out of order
        lambda d: re.sub(rb"\+(\d+),(\d+) @@", lambda m: b"+%d,%s @@" % (int(m[1]) + 50, m[2]), d),
        lambda d: re.sub(rb"@@ -17,", b"@@ -14,", d),  # git finds it 3 lines further
    ],
)
def test_a_hunk_placed_otherwise_than_its_header_says_is_flagged(
    tmp_path: Path, forge: Callable[[bytes], bytes]
) -> None:
    assert ("tautology", 26) in [(f["rule"], f["line"]) for f in _forged(tmp_path, lambda d: d)]
    found = _forged(tmp_path, forge)
    assert ("hunk-misplaced", 0, "critical") in [
        (f["rule"], f["line"], f["severity"]) for f in found
    ]


def test_hunks_as_git_writes_them_are_not_misplaced(tmp_path: Path) -> None:
    """Zero context, a pure insertion, a pure deletion, a new and an emptied file."""
    repo = make_repo(tmp_path / "r", base(**{"tests/test_sub.py": TEST_CALC}))
    changes: dict[str, str | bytes | None] = {
        "tests/test_calc.py": TEST_CALC.replace("from calc", "X = 1\nfrom calc").replace(
            "\n\ndef test_sub():\n    assert sub(3, 2) == 1\n", "\n"
        ),
        "tests/test_sub.py": "",
        "tests/test_new.py": TEST_CALC,
    }
    for context in ("-U0", "-U3"):
        subprocess.run(["git", "-C", str(repo), "reset", "-q", "--hard"], check=True)
        for path, text in changes.items():
            (repo / path).write_text(str(text))
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
        data = subprocess.run(
            ["git", "-C", str(repo), "diff", "--cached", context], capture_output=True, check=True
        ).stdout
        pre = {
            p: subprocess.run(
                ["git", "-C", str(repo), "show", f"HEAD:{p}"], capture_output=True
            ).stdout
            for p in ("tests/test_calc.py", "tests/test_sub.py")
        }
        found = review_bytes("A", data, pre, default_settings())
        assert "hunk-misplaced" not in rules(found), (context, found)
