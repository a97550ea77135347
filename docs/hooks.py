"""MkDocs hooks of mlgrad's documentation (mkdocs.yml: ``hooks``).

1. **The public API is documented.** Every public function, class and module (a name in the
   ``__all__`` of one of :data:`PUBLIC_MODULES`) must be the object of a ``::: path``
   directive on some page (under any of its names: ``mlgrad.fit`` is documented by
   ``::: mlgrad.training.fit.fit``), and it and every documented object must have a
   docstring of its own. Otherwise the build fails, naming each missing name and the page
   where its kind goes. ``python docs/hooks.py`` runs the same check without building.
2. **README sections, not copies.** ``<!-- readme-section: HEADING -->`` is replaced by the
   README's section under ``HEADING`` (its heading and subsections included), and
   ``<!-- readme-text: HEADING -->`` by its text before the first subsection (no heading);
   a heading that is not in README.md fails the build. ``HEADING as ##`` moves the section's
   headings to that level. Functions named in the section's tables link to their reference
   entries (``<!-- readme-section: HEADING | mlgrad.draw -->`` looks names up in
   ``mlgrad.draw`` before ``mlgrad``).
3. **The command line's help.** ``<!-- cli-help: train -->`` is replaced by the text of
   ``mlgrad train --help`` (from ``mlgrad.cli.parsers``, which imports no JAX), and
   ``<!-- cli-help: all -->`` by every command's.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: The modules whose ``__all__`` is public API: each of its functions, classes and modules
#: must be in the reference.
PUBLIC_MODULES = (
    "mlgrad",
    "mlgrad.runs",
    "mlgrad.training",
    "mlgrad.numerical",
    "mlgrad.curvature",
    "mlgrad.sparse",
    "mlgrad.training.sweep",
    "mlgrad.training.modules",
    "mlgrad.training.parallel",
    "mlgrad.config",
    "mlgrad.registry",
    "mlgrad.data",
    "mlgrad.draw",
    "mlgrad.plots",
)
DIRECTIVE = re.compile(r"^:::[ \t]+([\w.]+)[ \t]*$", re.M)
PLACEHOLDER = re.compile(r"^<!-- (readme-section|readme-text|cli-help): (.+?) -->$", re.M)
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")
CODE_SPAN = re.compile(r"(?<![\[`])`([A-Za-z_][\w.]*)([^`]*)`")

_documented: dict[int, str] = {}  # id(object) -> the directive path that documents it


# --- 1. the public API check ----------------------------------------------------------------


def resolve(path: str) -> Any:
    """The object at the dotted ``path`` as griffe (and so a ``::: path`` directive) reads it:
    a submodule before an attribute of the same name (``mlgrad.runs.evaluate`` is the module
    ``mlgrad/runs/evaluate.py``, not the function ``mlgrad/runs/__init__.py`` imports from it;
    that one is ``mlgrad.runs.evaluate.evaluate``)."""
    parts = path.split(".")
    obj = importlib.import_module(parts[0])
    for i, name in enumerate(parts[1:], 2):
        if hasattr(obj, "__path__"):  # a package: its submodule, if it has one of that name
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                continue
            except ModuleNotFoundError as error:
                if error.name != ".".join(parts[:i]):
                    raise
        obj = getattr(obj, name)
    return obj


def canonical(obj: Any) -> str:
    """Where ``obj`` is defined: the path a directive for it names."""
    if inspect.ismodule(obj):
        return obj.__name__
    return f"{obj.__module__}.{obj.__qualname__}"


def public_api() -> dict[str, Any]:
    """``{"module.name": object}`` for every public function, class and module."""
    api: dict[str, Any] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj):
                api[f"{module_name}.{name}"] = obj
    return api


def has_docstring(obj: Any) -> bool:
    """Whether ``obj`` has a docstring of its own (not one that NamedTuple, a dataclass or a
    base class wrote for it)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return False
    return not (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("))


def directives(pages: dict[str, str]) -> dict[str, str]:
    """``{path: page}`` of every ``::: path`` directive in the pages ``{page: markdown}``."""
    return {path: page for page, text in pages.items() for path in DIRECTIVE.findall(text)}


def problems(pages: dict[str, str]) -> list[str]:
    """What is wrong with the reference in ``pages`` (``{page: markdown}``); empty when every
    public name is documented and every documented object has a docstring."""
    if str(ROOT) not in sys.path:  # the repository's models/ (and mlgrad, if not installed)
        sys.path.insert(0, str(ROOT))
    found: list[str] = []
    documented: dict[int, str] = {}
    for path, page in directives(pages).items():
        try:
            obj = resolve(path)
        except (ImportError, AttributeError) as error:
            found.append(f"{page}: '::: {path}' names nothing that exists ({error})")
            continue
        documented.setdefault(id(obj), path)
        if not has_docstring(obj):
            found.append(f"{page}: {path} has no docstring")
    for name, obj in public_api().items():
        if id(obj) not in documented:
            found.append(
                f"{name} is public (in {name.rsplit('.', 1)[0]}.__all__) but no page of "
                f"docs/reference documents it: add '::: {canonical(obj)}' to the page of its module"
            )
        elif not has_docstring(obj):
            found.append(f"{name} is public but has no docstring")
    _documented.clear()
    _documented.update(documented)
    return found


def docs_pages() -> dict[str, str]:
    """``{page: markdown}`` of every page under docs/."""
    return {str(p.relative_to(DOCS)): p.read_text() for p in sorted(DOCS.rglob("*.md"))}


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.exceptions import PluginError

    pages = {f.src_uri: f.content_string for f in files.documentation_pages()}
    found = problems(pages)
    if found:
        raise PluginError("The API reference is incomplete:\n  " + "\n  ".join(found))
    return files


# --- 2. README sections and 3. the command line's help ---------------------------------------


def readme_section(heading: str, text_only: bool = False, new_level: int | None = None) -> str:
    """The README's section under ``heading``: with its heading and subsections (their level
    moved so that the section's heading has ``new_level``, if given), or (with ``text_only``) its
    text before the first subsection."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start, level, out, fenced = None, 0, [], False
    for line in lines:
        fenced ^= line.lstrip().startswith("```")
        match = None if fenced or line.lstrip().startswith("```") else HEADING.match(line)
        if start is None:
            if match and match[2] == heading:
                start, level = True, len(match[1])
                if not text_only:
                    out.append(line)
            continue
        if match and (text_only or len(match[1]) <= level):
            break
        out.append(line)
    if start is None:
        raise ValueError(f"README.md has no heading {heading!r}")
    if new_level is not None:
        out = _relevel(out, new_level - level)
    return "\n".join(out).strip() + "\n"


def _relevel(lines: list[str], shift: int) -> list[str]:
    out, fenced = [], False
    for line in lines:
        fenced ^= line.lstrip().startswith("```")
        match = None if fenced or line.lstrip().startswith("```") else HEADING.match(line)
        out.append(f"{'#' * max(1, len(match[1]) + shift)} {match[2]}" if match else line)
    return out


def link_tables(markdown: str, scopes: list[str]) -> str:
    """Table cells' code spans that start with a documented name, as links to its entry (and
    their escaped pipes unescaped)."""

    def link(match: re.Match) -> str:
        name = match[1]
        for candidate in [*(f"{scope}.{name}" for scope in scopes), name]:
            try:
                obj = resolve(candidate)
            except (ImportError, AttributeError, ValueError):
                continue
            if id(obj) in _documented:
                return f"[{match[0]}][{_documented[id(obj)]}]"
        return match[0]

    def unescape(match: re.Match) -> str:  # GitHub needs \| in a cell's code; MkDocs not
        return match[0].replace("\\|", "|")

    return "\n".join(
        CODE_SPAN.sub(link, re.sub(r"`[^`]*`", unescape, line)) if line.startswith("|") else line
        for line in markdown.splitlines()
    )


def cli_help(command: str) -> str:
    """``mlgrad COMMAND --help`` as a code block; for ``all``, the top-level help and then a
    section for each command (``mlgrad.cli.parsers.COMMANDS``, so a new one appears)."""
    from mlgrad.cli import parsers

    if command == "all":
        sections = [cli_help("mlgrad")]
        sections += [f"### mlgrad {name}\n\n{cli_help(name)}" for name in parsers.COMMANDS]
        return "\n".join(sections)

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "96"
    try:
        parser = (
            parsers.main_parser()
            if command == "mlgrad"
            else getattr(parsers, f"{command}_parser")()
        )
        text = parser.format_help()
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    prog = "mlgrad" if command == "mlgrad" else f"mlgrad {command}"
    return f"```text\n$ {prog} --help\n{text.rstrip()}\n```\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    from mkdocs.exceptions import PluginError

    to_docs_html = "../" * page.url.count("/")  # raw HTML is relative to the page's URL,
    to_docs_md = "../" * page.file.src_uri.count("/")  # a Markdown link to its source file

    def replace(match: re.Match) -> str:
        kind, argument = match[1], match[2]
        try:
            if kind == "cli-help":
                return cli_help(argument.strip())
            heading, _, scope = argument.partition(" | ")
            heading, _, new_level = heading.partition(" as ")
            level = len(new_level.strip()) if new_level.strip() else None
            text = readme_section(heading.strip(), kind == "readme-text", level)
        except (ValueError, AttributeError) as error:
            raise PluginError(f"{page.file.src_uri}: {match[0]}: {error}") from error
        text = text.replace('src="docs/', f'src="{to_docs_html}')
        text = text.replace("](docs/", f"]({to_docs_md}")
        scopes = [s.strip() for s in scope.split(",") if s.strip()] + ["mlgrad"]
        return link_tables(text, scopes)

    return PLACEHOLDER.sub(replace, markdown)


if __name__ == "__main__":
    found = problems(docs_pages())
    print("\n".join(found) or f"every public name of {len(PUBLIC_MODULES)} modules is documented")
    sys.exit(1 if found else 0)
