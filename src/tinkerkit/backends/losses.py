"""The service's built-in losses: moved to :mod:`tinkerkit.rules.losses` (the API's
rules, shared with ``tinkerkit.data``); these names stay importable from here."""

from tinkerkit.rules.losses import (
    BUILTIN_LOSSES,
    HIGH,
    LOW,
    RECORDED_LOGPROBS,
    SAMPLED,
    STABLE_REINFORCE_RATIO_CAP,
    CheckFn,
    Inputs,
    LossFn,
    LossSpec,
    apply,
    check_config,
    check_inputs,
    get_loss,
)

__all__ = [
    "BUILTIN_LOSSES",
    "HIGH",
    "LOW",
    "RECORDED_LOGPROBS",
    "SAMPLED",
    "STABLE_REINFORCE_RATIO_CAP",
    "CheckFn",
    "Inputs",
    "LossFn",
    "LossSpec",
    "apply",
    "check_config",
    "check_inputs",
    "get_loss",
]
