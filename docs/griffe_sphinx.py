"""A griffe extension (mkdocs.yml: mkdocstrings' python handler, ``extensions``) that turns the
reStructuredText of mlgrad's docstrings into the Markdown mkdocstrings renders.

mlgrad's docstrings are Google-style sections written with Sphinx's inline markup, as JAX's
are. Before griffe parses them, each docstring is rewritten:

* ``:func:`mlgrad.gradient``` (also ``:class:``, ``:meth:``, ``:mod:``, ``:attr:``, ``:data:``,
  ``:exc:``, ``:obj:``; ``~`` shows the last component) becomes a cross-reference to the API
  reference: a name that griffe finds in the package (absolute, or relative to the docstring's
  class and module, or to ``mlgrad``) links to its entry where the reference has one (else it
  is shown as code), and a name it cannot find is left as a reference that autorefs reports,
  so a misspelt or stale name fails the strict build. A name of another package
  (``jax.grad``) is shown as code.
* ``:math:`x^2``` becomes inline math, and a ``.. math::`` directive a display block
  (pymdownx.arithmatex, rendered by MathJax).
* ``Example:`` becomes ``Examples:`` (griffe's title for doctests), and ``Example (the
  saddle):`` such a section whose text starts with the title.
* A Returns section whose first line has a colon in its prose ("A dict with keys: ...") gets
  the function's return annotation as its type, so that griffe does not take the prose before
  the colon for one.
* ``label, var: as in secants.`` in Args (or Attributes) becomes an entry for each name.
* A paragraph's closing ``::`` (a literal block follows) becomes ``:``.
* Runs of doctest lines (``>>>``, ``...`` and the printed output) become ``pycon`` code blocks.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import griffe

ROLE = re.compile(r":(func|class|meth|mod|attr|data|exc|obj):`(~?)([^`<>]+?)(?:\(\))?`")
MATH = re.compile(r":math:`([^`]+)`")
MATH_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*(.*)$")
TITLED_EXAMPLE = re.compile(r"^(\s*)Examples? \((.+)\):\s*$")
EXAMPLES = re.compile(r"^(\s*)Examples?:\s*$")
PARAMETERS = re.compile(
    r"^(\s*)(Args|Arguments|Parameters|Attributes|Keyword Args|Other Parameters):\s*$"
)
RETURNS = re.compile(r"^\s*(Returns|Yields):\s*$")
TYPE = re.compile(r"^\(?[\w.]+(\[[\w.\[\], |]*\])?( \| [\w.\[\], |]+)*\)?$")  # int, tuple[a, b]
NAMES = re.compile(r"^(\s*)(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+):(\s.*|)$")
DOCTEST = re.compile(r"^(\s*)>>> ")
PACKAGES = ("mlgrad", "models")  # what a role may link to; other packages are shown as code


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name not in PACKAGES:
            return
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj, loader)


def _objects(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias and member.kind in (griffe.Kind.MODULE, griffe.Kind.CLASS):
            yield from _objects(member)
        elif not member.is_alias:
            yield member


def convert(text: str, obj: Any, loader: Any) -> str:
    """The Markdown of one docstring ``text`` of ``obj``."""
    text = MATH.sub(lambda m: rf"\({m[1]}\)", text)
    text = ROLE.sub(lambda m: _reference(m[3].strip(), bool(m[2]), obj, loader), text)
    returns = getattr(obj, "returns", None) if obj.is_function else None
    return "\n".join(_blocks(text.splitlines(), None if returns is None else str(returns)))


def _reference(target: str, short: bool, obj: Any, loader: Any) -> str:
    shown = target.rsplit(".", 1)[-1] if short else target
    path = _resolve(target, obj, loader)
    if path is not None:  # a link where the reference documents it, else code
        return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'
    if "." in target and target.split(".")[0] not in PACKAGES:
        return f"`{shown}`"  # another package's name (jax.grad, optax.adam)
    return f"[`{shown}`][{target}]"  # a name that is nowhere: autorefs fails the build on it


def _resolve(target: str, obj: Any, loader: Any) -> str | None:
    """The canonical path of ``target`` as seen from ``obj``'s docstring, or None."""
    if target == "mlgrad.models" or target.startswith("mlgrad.models."):
        target = target[len("mlgrad.") :]  # the example models install as mlgrad.models
    candidates = []
    scope = obj
    while scope is not None:
        candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    candidates += [target, f"mlgrad.{target}"]
    collection = loader.modules_collection
    for path in candidates:
        top = path.split(".")[0]
        if top not in PACKAGES:
            continue
        if top not in collection.members:
            try:
                loader.load(top)
            except Exception:
                continue
        try:
            found = collection[path]
            return str(found.final_target.path if found.is_alias else found.path)
        except Exception:
            continue
    for path in candidates:  # names griffe cannot see: mlgrad.training.Checkpointer loads lazily
        if path.split(".")[0] == "mlgrad":
            found = _runtime(path)
            if found is not None:
                return found
    return None


def _runtime(path: str) -> str | None:
    """Where the mlgrad object at ``path`` is defined, found by importing it; None if nothing
    is (or it belongs to another package)."""
    parts = path.split(".")
    try:
        obj = importlib.import_module(parts[0])
        for i, name in enumerate(parts[1:], 2):
            try:
                obj = getattr(obj, name)
            except AttributeError:
                obj = importlib.import_module(".".join(parts[:i]))
    except (ImportError, AttributeError):
        return None
    if inspect.ismodule(obj):
        module, qualname = obj.__name__, None
    else:
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or module.split(".")[0] != "mlgrad":
        return None  # reached through an import of another package (mlgrad.derivatives.jax)
    return f"{module}.{qualname}" if qualname else module


def _blocks(lines: list[str], returns: str | None = None) -> list[str]:
    """Math directives as display blocks, titled examples as sections, doctests outside an
    Examples section as code."""
    out: list[str] = []
    examples_indent: int | None = None  # in an Examples section: griffe renders its doctests
    parameters_indent: int | None = None  # inside Args or Attributes
    returns_title = False  # the line before was "Returns:"
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() and examples_indent is not None and _indent(line) <= examples_indent:
            examples_indent = None
        if EXAMPLES.match(line):
            examples_indent = _indent(line)
            line = line.replace("Example:", "Examples:")  # griffe's title for doctests
        if line.strip() and parameters_indent is not None and _indent(line) <= parameters_indent:
            parameters_indent = None
        if PARAMETERS.match(line):
            parameters_indent = _indent(line)
        if returns_title and line.strip():
            returns_title = False
            head, colon, _ = line.strip().partition(":")
            if colon and returns and not TYPE.match(head):  # griffe would take head as the type
                line = f"{line[: _indent(line)]}{returns}: {line.strip()}"
        if RETURNS.match(line):
            returns_title = True
        names = NAMES.match(line) if parameters_indent is not None else None
        if names:  # "label, var: as in secants." is one entry per name
            item = [line]
            i += 1
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(names[1])):
                item.append(lines[i])
                i += 1
            tail = []
            while not item[-1].strip():
                tail.insert(0, item.pop())
            for name in re.split(r"\s*,\s*", names[2]):
                out += [f"{names[1]}{name}:{names[3]}", *item[1:]]
            out += tail
            continue
        math = MATH_DIRECTIVE.match(line)
        titled = TITLED_EXAMPLE.match(line)
        doctest = DOCTEST.match(line)
        if math:
            indent, body = math[1], [math[2].strip()] if math[2].strip() else []
            i += 1
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) > len(indent):
                body.append(lines[i].strip())
                i += 1
            out += ["", f"{indent}$$", *(f"{indent}{b}" for b in body), f"{indent}$$", ""]
            continue
        if titled:
            indent = titled[1]
            inner = next((lines[j] for j in range(i + 1, len(lines)) if lines[j].strip()), "")
            inner_indent = " " * max(_indent(inner), len(indent) + 2)
            text = titled[2][0].upper() + titled[2][1:]
            out += [f"{indent}Examples:", f"{inner_indent}{text}:", ""]
            examples_indent = len(indent)
            i += 1
            continue
        if doctest and examples_indent is None:
            indent = doctest[1]
            block = []
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
                block.append(lines[i][len(indent) :])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}```pycon", *(f"{indent}{b}" for b in block), f"{indent}```"]
            continue
        if line.rstrip().endswith("::") and not line.strip().startswith(".."):
            line = line.rstrip()[:-1]  # "settings::" introduces a literal (indented) block
        out.append(line)
        i += 1
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())
