"""Run configs: a typed schema, YAML loading, dotted overrides, and one clear error per mistake.

A run config names a model, a data set, an optax optimizer (with an optional schedule) and the
training settings::

    name: linear_regression          # run name (default: the file's stem)
    seed: 0                          # PRNG seed of the initial parameters and the batch order
    model: {name: linear_regression} # + the model module's own Config fields
    data: {name: ice_cream, features: [temp], target: cons, val_split: 0.0, split_seed: 0}
    optimizer:
      name: sgd                      # any optax optimizer: sgd, adam, adamw, lbfgs, ...
      learning_rate: 0.1             # or a schedule: {name: cosine_decay_schedule,
                                     #                 init_value: 0.1, decay_steps: 1000}
      momentum: 0.9                  # other keys: keyword arguments of optax.<name>
    train: {steps: 1000, batch_size: null, eval_every: 100, checkpoint_every: 1000,
            keep_checkpoints: 3, log_every: 10, sharpness_every: null, dtype: float32}

:func:`load_config` reads the YAML file, applies ``key=value`` overrides
(``optimizer.learning_rate=0.05 data.features=[temp,price]``), validates everything against
the schema (the ``model`` section against the chosen model module's own ``Config`` dataclass,
the optimizer keys against the optax function's signature), and returns an OmegaConf
``DictConfig``. Every mistake raises :class:`ConfigError` (a ``ValueError``) with one message
that names the full dotted key, the value, what was expected and, for a misspelling, the
closest valid name. OmegaConf's own exceptions never escape.

Validating imports the model module named in the config: a dotted path (``mypkg.mymodel``)
runs that module's code, so name only modules you trust.
"""

from mlgrad.config.errors import ConfigError, is_number
from mlgrad.config.files import keys_following, parse_override, read_config_file
from mlgrad.config.load import config_diff, load_config, to_yaml, validate_config
from mlgrad.config.models import build_model, model_config
from mlgrad.config.optimizers import (
    build_optimizer,
    learning_rate,
    learning_rate_key,
    optimizer_label,
    optimizer_names,
    optimizer_spec,
    schedule_length_warnings,
    schedule_names,
)
from mlgrad.config.schema import DTYPES, MAX_SEED, MAX_STEPS, DataConfig, RunConfig, TrainConfig

__all__ = [
    "DTYPES",
    "MAX_SEED",
    "MAX_STEPS",
    "ConfigError",
    "DataConfig",
    "RunConfig",
    "TrainConfig",
    "build_model",
    "build_optimizer",
    "config_diff",
    "is_number",
    "keys_following",
    "learning_rate",
    "learning_rate_key",
    "load_config",
    "model_config",
    "optimizer_label",
    "optimizer_names",
    "optimizer_spec",
    "parse_override",
    "read_config_file",
    "schedule_length_warnings",
    "schedule_names",
    "to_yaml",
    "validate_config",
]
