"""The architecture as a test: dependencies flow one way, and nothing imports in a circle.

cli -> runs -> training / config / data / registry / plots / models -> calculus -> helpers.
Every import counts (function-level ones too), except those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The layers, top first: a module may import its own layer and the layers below it.
LAYERS = [
    ("cli", ("mlgrad.cli", "mlgrad.__main__")),
    ("runs", ("mlgrad.runs",)),
    (
        "library",
        (
            "mlgrad.training",
            "mlgrad.config",
            "mlgrad.data",
            "mlgrad.plots",
            "mlgrad.draw",
            "mlgrad.curvature_report",
            "mlgrad.curvature_plots",
            "mlgrad.models",
            "mlgrad.configs",
            "mlgrad._figure_worker",
        ),
    ),
    ("library", ("mlgrad.registry",)),
    (
        "calculus",
        (
            "mlgrad.numerical",
            "mlgrad.derivatives",
            "mlgrad.jacobians",
            "mlgrad.expansions",
            "mlgrad.sparse",
            "mlgrad.curvature",
        ),
    ),
    ("calculus", ("mlgrad.backprop",)),
    (
        "helpers",
        (
            "mlgrad._validation",
            "mlgrad._series",
            "mlgrad._faults",
            "mlgrad._version",
            "mlgrad._atomic",
        ),
    ),
]
# The package's facade re-exports (lazily); only the command line imports it (its version).
FACADE = "mlgrad"
FACADE_USERS = ("mlgrad.cli",)
# Folders that install inside the package under another name (pyproject's package-dir).
INSTALLED_AS = {"mlgrad": "mlgrad", "models": "mlgrad.models", "configs": "mlgrad.configs"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in INSTALLED_AS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports anywhere (``from a import b`` means a.b when that
    is a module), not counting ``if TYPE_CHECKING:`` blocks."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in out if m in modules}


def _layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def test_every_import_points_down_or_sideways():
    upward = []
    for module, deps in _graph().items():
        if module == FACADE:
            continue
        for dep in deps:
            if dep == FACADE:
                if not module.startswith(FACADE_USERS):
                    upward.append(f"{module} imports the facade {FACADE}")
            elif _layer(dep) < _layer(module):
                upward.append(
                    f"{module} ({LAYERS[_layer(module)][0]}) imports {dep} "
                    f"({LAYERS[_layer(dep)][0]})"
                )
    assert upward == []


def test_no_import_circles():
    graph = _graph()
    graph[FACADE] = set()  # its names load lazily, on use
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    circles = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                circles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                walk(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert circles == []


def test_only_the_cli_names_the_cli():
    names = []
    for module, path in _modules().items():
        if module.startswith("mlgrad.cli") or module == "mlgrad.__main__":
            continue
        if "mlgrad.cli" in path.read_text(encoding="utf-8"):
            names.append(module)
    assert names == []


def test_the_checker_sees_an_upward_import_and_a_circle(tmp_path):
    """The rules above can fail: a calculus module importing the run layer is upward."""
    fake = {"mlgrad.runs": tmp_path / "r.py", "mlgrad.derivatives": tmp_path / "d.py"}
    fake["mlgrad.derivatives"].write_text("def f():\n    from mlgrad.runs import x\n")
    assert _imports(fake["mlgrad.derivatives"], fake) == {"mlgrad.runs"}
    assert _layer("mlgrad.runs") < _layer("mlgrad.derivatives")
    fake["mlgrad.runs"].write_text("if TYPE_CHECKING:\n    import mlgrad.derivatives\n")
    assert _imports(fake["mlgrad.runs"], fake) == set()


def _cli_in_a_fresh_interpreter(calls: str, shown: str) -> str:
    """The last line a fresh Python prints after ``calls`` (mlgrad.cli's ``main`` calls,
    their results as ``codes``) and ``print(shown)``, with ``sys`` imported."""
    script = f"import sys\nfrom mlgrad.cli import main\ncodes = {calls}\nprint({shown})\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_help_answers_without_importing_jax():
    """``mlgrad --help``, each command's ``--help`` and an argument error need no JAX."""
    calls = (
        "[main(a) for a in (['--help'], ['train', '--help'], ['eval', '--help'],"
        " ['sweep', '--help'], ['draw', '--help'], ['trian'], ['train'])]"
    )
    shown = "codes, 'jax' in sys.modules, 'mlgrad.runs' in sys.modules"
    assert _cli_in_a_fresh_interpreter(calls, shown) == "[0, 0, 0, 0, 0, 2, 2] False False"


def test_config_errors_answer_without_importing_jax():
    """A config or override mistake (the schema's keys, types and ranges) is found before
    JAX is imported (issue J: 0.4 s, against 1.6 s with JAX's import)."""
    calls = (
        "[main(a) for a in (['train', 'linear_regression', 'train.stepz=3'],"
        " ['train', 'linear_regression', 'train.steps=-1'], ['train', 'no_such_config'],"
        " ['sweep', 'linear_regression', 'train.stepz=1,2'])]"
    )
    shown = "codes, 'jax' in sys.modules"
    assert _cli_in_a_fresh_interpreter(calls, shown) == "[2, 2, 2, 2] False"


def test_a_dry_run_needs_neither_orbax_nor_matplotlib():
    """``--dry-run`` builds the model (JAX) but writes nothing: no checkpointing, figures or
    event files are imported (issue J, item 2)."""
    calls = "main(['train', 'linear_regression', '--dry-run', '-q'])"
    shown = "codes, [m for m in ('orbax', 'matplotlib', 'tensorboardX') if m in sys.modules]"
    assert _cli_in_a_fresh_interpreter(calls, shown) == "0 []"


def test_the_console_script_help_does_not_import_jax():
    """The installed entry point (what `mlgrad --help` runs), in a fresh interpreter."""
    script = (
        "import sys, runpy\n"
        "sys.argv = ['mlgrad', 'train', '--help']\n"
        "from importlib.metadata import entry_points\n"
        "(main,) = [e for e in entry_points(group='console_scripts') if e.name == 'mlgrad']\n"
        "main = main.load()\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('jax' in sys.modules)\n"
    )
    out = (
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert out == "False"
