"""The documentation's checks that need no MkDocs (the build itself is .ci/run's stage 4).

docs/hooks.py fails the docs build when a public name is in no page of the API reference or
has no docstring; these tests run the same check in the default suite, show that it fails
when a name goes missing, and check that the README sections the pages include exist, that
the changelog has the current version and that LICENSE is the Apache-2.0 text.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import mlgrad

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hooks() -> Iterator[Any]:
    """docs/hooks.py; it imports the repository's models/ as ``models`` (the tutorials document
    it), which is undone afterwards so that no later test in this process sees it."""
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location("mlgrad_docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name == "models" or name.startswith("models."):
            del sys.modules[name]


def test_every_public_name_is_documented(hooks: Any) -> None:
    assert hooks.problems(hooks.docs_pages()) == []


def test_a_public_name_missing_from_the_reference_fails_the_check(hooks: Any) -> None:
    pages = hooks.docs_pages()
    page = "reference/derivatives.md"
    assert "::: mlgrad.gradient\n" in pages[page]
    pages[page] = pages[page].replace("::: mlgrad.gradient\n", "")
    problems = hooks.problems(pages)
    assert len(problems) == 1
    assert problems[0].startswith("mlgrad.gradient is public (in mlgrad.__all__)")
    assert "::: mlgrad.derivatives.gradient" in problems[0]  # where it is defined


def test_a_directive_naming_nothing_fails_the_check(hooks: Any) -> None:
    pages = hooks.docs_pages()
    pages["reference/derivatives.md"] += "\n::: mlgrad.derivatives.gradeint\n"
    problems = hooks.problems(pages)
    assert len(problems) == 1
    assert "'::: mlgrad.derivatives.gradeint' names nothing that exists" in problems[0]


def test_directives_read_paths_as_griffe_does(hooks: Any) -> None:
    # A submodule wins over an attribute of the same name: mlgrad.training.fit is the module.
    assert hooks.resolve("mlgrad.training.fit").__name__ == "mlgrad.training.fit"
    assert hooks.resolve("mlgrad.training.fit.fit") is mlgrad.fit
    assert hooks.resolve("mlgrad.gradient") is mlgrad.gradient


def test_docstrings_written_by_python_do_not_count(hooks: Any) -> None:
    class Point(NamedTuple):  # NamedTuple writes "Point(x, y)"
        x: float
        y: float

    class Documented(NamedTuple):
        """A documented tuple."""

        x: float

    class Error(ValueError):  # would inherit ValueError's docstring through inspect.getdoc
        pass

    def function() -> None:
        pass

    assert not hooks.has_docstring(Point)
    assert not hooks.has_docstring(Error)
    assert not hooks.has_docstring(function)
    assert hooks.has_docstring(Documented)
    assert hooks.has_docstring(mlgrad.FitResult)


def test_the_readme_sections_the_pages_include_exist(hooks: Any) -> None:
    for page, text in hooks.docs_pages().items():
        for kind, argument in hooks.PLACEHOLDER.findall(text):
            if kind == "cli-help":
                assert "$ mlgrad" in hooks.cli_help(argument)
                continue
            heading = argument.partition(" | ")[0].partition(" as ")[0].strip()
            assert hooks.readme_section(heading, kind == "readme-text").strip(), (page, heading)
    with pytest.raises(ValueError, match="README.md has no heading"):
        hooks.readme_section("No such heading")


def test_the_changelog_has_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert versions[0] == "Unreleased"
    assert versions[1] == mlgrad.__version__


def test_the_license_is_the_apache_2_text() -> None:
    # The SHA-256 of https://www.apache.org/licenses/LICENSE-2.0.txt, appendix included.
    digest = hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest()
    assert digest == "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
