"""Training: the compiled gradient-descent loop and checkpoints of its full state.

``fit`` runs gradient descent (full-batch or shuffled mini-batch) as compiled ``lax.scan``
chunks; ``TrainState`` is everything needed to continue a run; ``checkpoint`` saves and
restores it atomically with orbax.
"""

from mlgrad.training import checkpoint
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
    "sweep",
]
