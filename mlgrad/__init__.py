"""mlgrad: the vector calculus of machine learning as exact, composable JAX wrappers.

Each concept of the lecture notes is one small function built on one JAX transformation;
the same functions drive the compiled training of the notes' example models.
"""

from mlgrad import numerical as numerical
from mlgrad.backprop import BackpropTable as BackpropTable
from mlgrad.backprop import backprop_table as backprop_table
from mlgrad.derivatives import derivative as derivative
from mlgrad.derivatives import directional_derivative as directional_derivative
from mlgrad.derivatives import gradient as gradient
from mlgrad.derivatives import partial_derivative as partial_derivative
from mlgrad.jacobians import ChainRule as ChainRule
from mlgrad.jacobians import chain_rule as chain_rule
from mlgrad.jacobians import hessian as hessian
from mlgrad.jacobians import hvp as hvp
from mlgrad.jacobians import jacobian as jacobian
from mlgrad.jacobians import value_and_jacobian as value_and_jacobian
from mlgrad.numerical import GradientCheckError as GradientCheckError
from mlgrad.numerical import check_grad as check_grad
from mlgrad.numerical import difference_quotient as difference_quotient
from mlgrad.taylor import Linearization as Linearization
from mlgrad.taylor import Taylor as Taylor
from mlgrad.taylor import linearization as linearization
from mlgrad.taylor import taylor as taylor
from mlgrad.training import FitResult as FitResult
from mlgrad.training import SweepResult as SweepResult
from mlgrad.training import TrainingDivergedError as TrainingDivergedError
from mlgrad.training import TrainState as TrainState
from mlgrad.training import fit as fit
from mlgrad.training import sweep as sweep

__version__ = "0.1.0"

__all__ = [
    "BackpropTable",
    "ChainRule",
    "FitResult",
    "GradientCheckError",
    "Linearization",
    "SweepResult",
    "Taylor",
    "TrainState",
    "TrainingDivergedError",
    "__version__",
    "backprop_table",
    "chain_rule",
    "check_grad",
    "derivative",
    "difference_quotient",
    "directional_derivative",
    "fit",
    "gradient",
    "hessian",
    "hvp",
    "jacobian",
    "linearization",
    "numerical",
    "partial_derivative",
    "sweep",
    "taylor",
    "value_and_jacobian",
]
