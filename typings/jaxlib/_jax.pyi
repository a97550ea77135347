# A stand-in for the type stubs jaxlib does not ship (jaxlib 0.8-0.10 wheels hold the
# compiled jaxlib._jax without its .pyi). Without it mypy cannot resolve jax's PyTreeDef
# (jax.tree.structure's type) and reports "PyTreeDef? has no attribute ..." on every use of
# a tree definition. Here PyTreeDef is a class whose attributes are unchecked (Any), and
# the rest of the module is Any. pyproject.toml's [tool.mypy] mypy_path points here.
from typing import Any

def __getattr__(name: str) -> Any: ...

class pytree:
    class PyTreeDef:
        def __getattr__(self, name: str) -> Any: ...

    def __getattr__(self, name: str) -> Any: ...
