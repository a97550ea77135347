"""The run config's typed schema: dataclasses (OmegaConf structured configs) and ranges."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

#: The dtypes a run can train in (``train.dtype``).
DTYPES = ("float32", "float64")


#: Largest step count (the engine's step counter is an int32).
MAX_STEPS = 2**31 - 1


#: PRNG seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1


#: Largest mini-batch (``train.batch_size``): an int32 index, like a step count.
MAX_BATCH_SIZE = 2**31 - 1


#: Most checkpoints a run keeps (``train.keep_checkpoints``): each is a directory on disk.
MAX_KEEP_CHECKPOINTS = 10**6


@dataclasses.dataclass
class DataConfig:
    """Where the data comes from: a built-in data set (``name``) or a CSV/NPZ file (``path``)."""

    name: str | None = None
    path: str | None = None
    features: list[str] | None = None
    target: str | None = None
    val_split: float = 0.0
    split_seed: int = 0


@dataclasses.dataclass
class TrainConfig:
    """Training loop settings (all counts are optimizer steps)."""

    steps: int = 1000
    batch_size: int | None = None
    eval_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    # Every this many steps, the sharpness (the top Hessian eigenvalue of the step's batch
    # loss: fit's sharpness_every), logged as ``sharpness`` and plotted beside the optimizer's
    # stability limit 2/eta; null (the default) measures nothing.
    sharpness_every: int | None = None
    # The floating-point dtype of the data, the parameters and the arithmetic: float64 turns
    # on JAX's x64 mode for the run only (``jax.enable_x64``).
    dtype: str = "float32"
    # Where to train: "auto" (every device JAX sees; data parallel when there are several) or
    # a number N (the first N devices). Any: a str-or-int union that OmegaConf can hold.
    devices: Any = "auto"


@dataclasses.dataclass
class RunConfig:
    """The whole run. ``model`` and ``optimizer`` are open mappings, validated separately."""

    name: str = ""
    seed: int = 0
    model: Any = dataclasses.field(default_factory=dict)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optimizer: Any = dataclasses.field(default_factory=dict)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def _count(limit: int) -> tuple[Callable[[Any], bool], str]:
    """An integer count in [1, limit]: the predicate and what it must be."""
    return (lambda v: 0 < v <= limit), f"an integer > 0 and <= {limit}"


# (full key, predicate on the value, what it must be). Checked after the types. Every integer
# key has an upper bound: step counts are int32 (MAX_STEPS), seeds uint32 (MAX_SEED);
# train.devices is bounded by the devices JAX sees (checked when the run is set up).
_RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("seed", lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"),
    ("data.val_split", lambda v: 0.0 <= v < 1.0, "a number in [0, 1) (0 = no validation split)"),
    ("data.split_seed", lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"),
    ("train.steps", lambda v: 0 < v <= MAX_STEPS, f"an integer in [1, {MAX_STEPS}]"),
    (
        "train.batch_size",
        lambda v: v is None or 0 < v <= MAX_BATCH_SIZE,
        f"null (full batch) or an integer > 0 and <= {MAX_BATCH_SIZE}",
    ),
    ("train.eval_every", *_count(MAX_STEPS)),
    ("train.checkpoint_every", *_count(MAX_STEPS)),
    ("train.keep_checkpoints", *_count(MAX_KEEP_CHECKPOINTS)),
    ("train.log_every", *_count(MAX_STEPS)),
    (
        "train.sharpness_every",
        lambda v: v is None or 0 < v <= MAX_STEPS,
        f"null (never) or an integer > 0 and <= {MAX_STEPS}",
    ),
    ("train.dtype", lambda v: v in DTYPES, "float32 or float64"),
    (
        "train.devices",
        lambda v: v == "auto" or (type(v) is int and v > 0),
        "auto (every device) or a number of devices > 0",
    ),
)


_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
