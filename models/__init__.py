"""The lecture notes' example models, installed as :mod:`mlgrad.models` (the repository keeps
them in its top-level ``models/`` folder; the name ``models`` stays free for a user's own).

Each module defines a ``Config`` dataclass and ``build(cfg, data) -> mlgrad.Model``; the run
configs name them by their short names (``model.name: linear_regression``), which
:func:`mlgrad.find_model` finds here.

* ``linear_regression``: f(x) = a . x + b, mean squared error;
* ``logistic``: a sigmoid unit, mean log-loss plus an L2 penalty;
* ``autoencoder``: an MLP autoencoder (the linear one's optimum is PCA's).
"""
