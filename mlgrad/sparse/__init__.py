"""Sparse Jacobians and Hessians: the pattern from the jaxpr, one product per colour.

* :func:`sparse_jacobian`  J from as many JVPs/VJPs as colours (a band of width b: about b)
* :func:`sparse_hessian`   H from as many Hessian-vector products as colours
* :class:`SparseJacobian`  the result: a ``jax.experimental.sparse.BCOO``, the products used,
                           and the :class:`Coloring` (pattern, colours, seeds)

How: ``_propagate`` finds which inputs each output can depend on by a forward pass over the
jaxpr (dense, hence safe, for primitives without a rule); ``_coloring`` groups structurally
orthogonal columns (rows) greedily; ``_jacobian`` runs the products and reads each entry off
the one product that holds it alone.
"""

from mlgrad.sparse._coloring import Coloring
from mlgrad.sparse._jacobian import SparseJacobian, sparse_hessian, sparse_jacobian

__all__ = ["Coloring", "SparseJacobian", "sparse_hessian", "sparse_jacobian"]
