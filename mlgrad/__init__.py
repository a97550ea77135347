"""mlgrad: the vector calculus of machine learning as exact, composable JAX wrappers.

Each concept of the lecture notes is one small function built on one JAX transformation;
the same functions drive the compiled training of the notes' example models.

The public names load on first use (PEP 562), so ``import mlgrad`` and the command line's
``--help`` do not import JAX; ``mlgrad.gradient`` imports it the first time it is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlgrad._version import __version__

# Public name -> the module that defines it (a module itself where the name is the module).
_EXPORTS = {
    "numerical": "mlgrad.numerical",
    "draw": "mlgrad.draw",
    "BackpropTable": "mlgrad.backprop",
    "backprop_table": "mlgrad.backprop",
    "derivative": "mlgrad.derivatives",
    "directional_derivative": "mlgrad.derivatives",
    "gradient": "mlgrad.derivatives",
    "partial_derivative": "mlgrad.derivatives",
    "value_and_gradient": "mlgrad.derivatives",
    "divergence": "mlgrad.curvature",
    "hessian_diagonal": "mlgrad.curvature",
    "hessian_eigenvalues": "mlgrad.curvature",
    "hessian_trace": "mlgrad.curvature",
    "laplacian": "mlgrad.curvature",
    "spectral_density": "mlgrad.curvature",
    "ChainRule": "mlgrad.jacobians",
    "chain_rule": "mlgrad.jacobians",
    "gnvp": "mlgrad.jacobians",
    "hessian": "mlgrad.jacobians",
    "hvp": "mlgrad.jacobians",
    "jacobian": "mlgrad.jacobians",
    "value_and_jacobian": "mlgrad.jacobians",
    "vector_jacobian_product": "mlgrad.jacobians",
    "GradientCheckError": "mlgrad.numerical",
    "check_grad": "mlgrad.numerical",
    "difference_quotient": "mlgrad.numerical",
    "Linearization": "mlgrad.expansions",
    "Taylor": "mlgrad.expansions",
    "linearization": "mlgrad.expansions",
    "taylor": "mlgrad.expansions",
    "FitResult": "mlgrad.training",
    "SweepResult": "mlgrad.training",
    "TrainingDivergedError": "mlgrad.training",
    "TrainState": "mlgrad.training",
    "fit": "mlgrad.training",
    "sweep": "mlgrad.training",
    "SparseJacobian": "mlgrad.sparse",
    "sparse_hessian": "mlgrad.sparse",
    "sparse_jacobian": "mlgrad.sparse",
    "Model": "mlgrad.registry",
    "find_model": "mlgrad.registry",
    "find_config": "mlgrad.registry",
}

if TYPE_CHECKING:  # what type checkers and editors see: every name, eagerly
    from mlgrad import draw as draw
    from mlgrad import numerical as numerical
    from mlgrad.backprop import BackpropTable as BackpropTable
    from mlgrad.backprop import backprop_table as backprop_table
    from mlgrad.curvature import divergence as divergence
    from mlgrad.curvature import hessian_diagonal as hessian_diagonal
    from mlgrad.curvature import hessian_eigenvalues as hessian_eigenvalues
    from mlgrad.curvature import hessian_trace as hessian_trace
    from mlgrad.curvature import laplacian as laplacian
    from mlgrad.curvature import spectral_density as spectral_density
    from mlgrad.derivatives import derivative as derivative
    from mlgrad.derivatives import directional_derivative as directional_derivative
    from mlgrad.derivatives import gradient as gradient
    from mlgrad.derivatives import partial_derivative as partial_derivative
    from mlgrad.derivatives import value_and_gradient as value_and_gradient
    from mlgrad.expansions import Linearization as Linearization
    from mlgrad.expansions import Taylor as Taylor
    from mlgrad.expansions import linearization as linearization
    from mlgrad.expansions import taylor as taylor
    from mlgrad.jacobians import ChainRule as ChainRule
    from mlgrad.jacobians import chain_rule as chain_rule
    from mlgrad.jacobians import gnvp as gnvp
    from mlgrad.jacobians import hessian as hessian
    from mlgrad.jacobians import hvp as hvp
    from mlgrad.jacobians import jacobian as jacobian
    from mlgrad.jacobians import value_and_jacobian as value_and_jacobian
    from mlgrad.jacobians import vector_jacobian_product as vector_jacobian_product
    from mlgrad.numerical import GradientCheckError as GradientCheckError
    from mlgrad.numerical import check_grad as check_grad
    from mlgrad.numerical import difference_quotient as difference_quotient
    from mlgrad.registry import Model as Model
    from mlgrad.registry import find_config as find_config
    from mlgrad.registry import find_model as find_model
    from mlgrad.sparse import SparseJacobian as SparseJacobian
    from mlgrad.sparse import sparse_hessian as sparse_hessian
    from mlgrad.sparse import sparse_jacobian as sparse_jacobian
    from mlgrad.training import FitResult as FitResult
    from mlgrad.training import SweepResult as SweepResult
    from mlgrad.training import TrainingDivergedError as TrainingDivergedError
    from mlgrad.training import TrainState as TrainState
    from mlgrad.training import fit as fit
    from mlgrad.training import sweep as sweep


if not TYPE_CHECKING:  # hidden from checkers, so that a misspelt name is an error there

    def __getattr__(name: str) -> Any:
        module_name = _EXPORTS.get(name)
        if module_name is None:
            raise AttributeError(f"module 'mlgrad' has no attribute {name!r}")
        module = importlib.import_module(module_name)
        value = module if module_name == f"mlgrad.{name}" else getattr(module, name)
        globals()[name] = value  # later lookups skip __getattr__
        return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", *sorted(_EXPORTS)]
