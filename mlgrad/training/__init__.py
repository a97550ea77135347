"""Training: the compiled gradient-descent loop and checkpoints of its full state.

``fit`` runs gradient descent (full-batch or shuffled mini-batch) as compiled ``lax.scan``
chunks; ``TrainState`` is everything needed to continue a run; ``checkpoint`` saves and
restores it atomically with orbax; ``sweep`` trains seeds x learning rates as one vmapped
program; ``parallel`` holds the data-parallel mesh ``fit`` trains on when JAX sees several
devices (``fit(..., devices=...)``).
"""

from mlgrad.training import checkpoint, parallel
from mlgrad.training.checkpoint import Checkpointer, CheckpointError
from mlgrad.training.fit import FitResult, TrainingDivergedError, TrainState, fit
from mlgrad.training.sweep import SweepResult, sweep

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "FitResult",
    "SweepResult",
    "TrainState",
    "TrainingDivergedError",
    "checkpoint",
    "fit",
    "parallel",
    "sweep",
]
