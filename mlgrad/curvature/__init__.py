"""Curvature without the matrix: the Hessian's spectrum, trace and diagonal, the Laplacian.

"The second-order derivative tells us whether the function looks like a cup or an upside-down
cup." A dense Hessian answers that for a few hundred parameters; these functions answer it for
a trained model's hundreds of thousands, from Hessian-vector products (reverse mode) or
second-order forward passes only. Each is exact where it can be (small ``n``, or ``n``
products that suffice), stochastic with a standard error where it must be, jit-able, and takes
pytrees (dicts of parameters) as ``mlgrad.hessian`` does.

* :func:`hessian_eigenvalues` the ``k`` extreme eigenpairs (block Lanczos, restarted)
* :func:`hessian_trace`       Hutchinson and Hutch++ with their standard errors
* :func:`hessian_diagonal`    exact, or Hutchinson's :math:`E[v \\odot Hv]` per entry
* :func:`spectral_density`    stochastic Lanczos quadrature: a plottable eigenvalue density
* :func:`laplacian`           :math:`\\operatorname{tr} \\nabla^2 f` by forward mode
* :func:`divergence`          :math:`\\operatorname{tr} \\partial f / \\partial x` by forward mode

The first four take ``matrix="ggn"`` for the generalized Gauss-Newton matrix
:math:`J^\\top H_\\ell J` of ``f = (model_fn, loss_fn)``; ``eigenvalues_of``, ``trace_of``,
``diagonal_of`` and ``spectral_density_of`` take any symmetric product ``v -> M v`` instead.
"""

from mlgrad.curvature._laplacian import divergence, laplacian
from mlgrad.curvature._spectrum import (
    Eigenpairs,
    SpectralDensity,
    eigenvalues_of,
    hessian_eigenvalues,
    spectral_density,
    spectral_density_of,
)
from mlgrad.curvature._trace import (
    Estimate,
    diagonal_of,
    hessian_diagonal,
    hessian_trace,
    trace_of,
)

__all__ = [
    "Eigenpairs",
    "Estimate",
    "SpectralDensity",
    "diagonal_of",
    "divergence",
    "eigenvalues_of",
    "hessian_diagonal",
    "hessian_eigenvalues",
    "hessian_trace",
    "laplacian",
    "spectral_density",
    "spectral_density_of",
    "trace_of",
]
