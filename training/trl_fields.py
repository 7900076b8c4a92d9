"""A stage section's `trl:` mapping: any field of the TRL config class that stage trains with,
passed through as is. Checked against TRL's own dataclass when the config loads (an unknown name or
a value of the wrong type fails before training), applied over the arguments the stage derives
from its section when it trains."""

from __future__ import annotations

import typing
from typing import Any

from .config import ConfigError, _conforms, _describe

TRL_CLASS = {"sft": "SFTConfig", "dpo_debias": "DPOConfig", "dpo_passn": "DPOConfig", "grpo": "GRPOConfig"}

# TRL fields a stage sets from its section's own keys (or from the run): naming one in `trl:` would
# leave two values for one setting, so it is refused with the key to use instead.
_RUN = {"output_dir": "run_dir", "seed": "seed", "data_seed": "seed", "use_cpu": "device", "bf16": "{stage}.dtype",
        "fp16": "{stage}.dtype", "num_train_epochs": "{stage}.epochs", "learning_rate": "{stage}.learning_rate",
        "save_steps": "{stage}.save_steps"}
OWNED = {
    "SFTConfig": _RUN | {"per_device_train_batch_size": "{stage}.batch_size",
                         "gradient_accumulation_steps": "{stage}.grad_accum", "max_length": "{stage}.max_length",
                         "train_sampling_strategy": "{stage}.group_by_length"},
    "DPOConfig": _RUN | {"per_device_train_batch_size": "{stage}.batch_size", "max_length": "{stage}.max_length",
                         "beta": "{stage}.beta"},
    "GRPOConfig": _RUN | {"num_generations": "{stage}.num_generations",
                          "per_device_train_batch_size": "{stage}.prompts_per_step",
                          "max_completion_length": "{stage}.max_new_tokens", "temperature": "{stage}.temperature"},
}


def trl_class(stage: str):
    import trl

    return getattr(trl, TRL_CLASS[stage])


def check(stage: str, extra: dict[str, Any]) -> None:
    """Raise ConfigError unless every key of `{stage}.trl` is a field of the stage's TRL config
    that the section does not set itself, with a value of that field's type."""
    if not extra:
        return  # importing TRL costs seconds: only a config that uses the pass-through pays it
    cls = trl_class(stage)
    hints = typing.get_type_hints(cls)
    for key, value in extra.items():
        where = f"{stage}.trl.{key}"
        if key in OWNED[cls.__name__]:
            raise ConfigError(f"{where}: set {OWNED[cls.__name__][key].format(stage=stage)} instead")
        if key not in hints:
            raise ConfigError(f"{where}: not a field of TRL's {cls.__name__}")
        try:
            fits = _conforms(value, hints[key])
        except TypeError:  # a hint these checks do not model (a Literal, an enum's own type): TRL checks it
            fits = True
        if not fits:
            raise ConfigError(f"{where}: expected {_describe(hints[key])}, got {value!r}"[:200])


def arguments(stage: str, derived: dict[str, Any], extra: dict[str, Any]):
    """The stage's TRL config: what it derives from its section, then the `trl:` fields."""
    return trl_class(stage)(**(derived | extra))
