"""Training: the compiled gradient-descent loop and checkpoints of its full state.

``fit`` runs gradient descent (full-batch or shuffled mini-batch) as compiled ``lax.scan``
chunks; ``TrainState`` is everything needed to continue a run; ``checkpoint`` saves and
restores it atomically with orbax; ``sweep`` trains seeds x learning rates as one vmapped
program; ``parallel`` holds the data-parallel mesh ``fit`` trains on when JAX sees several
devices (``fit(..., devices=...)``); ``modules`` maps Flax NNX and Linen models onto ``fit``'s
params and model state (Equinox modules need no adapter).
"""

import importlib
from typing import Any

from mlgrad.training import modules, parallel
from mlgrad.training.fit import FitResult, TrainingDivergedError, TrainState, fit
from mlgrad.training.sweep import SweepResult, SweepState, sweep

# The checkpoint layer imports orbax (a quarter of a second): loaded on first use, so that
# `import mlgrad` stays quick for calculus alone.
_LAZY = {
    "checkpoint": None,
    "Checkpointer": "Checkpointer",
    "CheckpointError": "CheckpointError",
    "DamagedCheckpointError": "DamagedCheckpointError",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module("mlgrad.training.checkpoint")
    attr = _LAZY[name]
    return module if attr is None else getattr(module, attr)


__all__ = [
    "CheckpointError",
    "Checkpointer",
    "DamagedCheckpointError",
    "FitResult",
    "SweepResult",
    "SweepState",
    "TrainState",
    "TrainingDivergedError",
    "checkpoint",
    "fit",
    "modules",
    "parallel",
    "sweep",
]
