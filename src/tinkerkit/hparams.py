"""Hyperparameter presets from the fine-tuning guide, and a LoRA learning-rate suggestion.

tk.hparams.LORA_RANKS["standard"]          # 32
tk.hparams.suggest_lora_lr("meta-llama/Llama-3.1-8B")
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from tinkerkit.train import rl_config, rlhf_config, sft_config
from tinkerkit.train.run_options import Settings

logger = logging.getLogger("tinkerkit")


def _defaults(config: type[Settings]) -> dict[str, Any]:
    return {name: f.default for name, f in config.model_fields.items() if not f.is_required()}


# The numbers are the loops' (and RLHF's) Config defaults: one source; the config modules
# import nothing heavy.
_SFT = _defaults(sft_config.Config)
_RL = _defaults(rl_config.Config)
_RLHF = _defaults(rlhf_config.RLHFConfig)

LORA_RANKS = {"quick_test": 8, "standard": 32, "high_quality": 64, "maximum": 128}
LEARNING_RATES = {"sft": _SFT["learning_rate"], "rl": _RL["learning_rate"], "fine_adjustment": 5e-6}
HYPERPARAMS = {
    "sft": {k: _SFT[k] for k in ("rank", "learning_rate", "batch_size", "epochs")},
    "rl": {
        "rank": _RL["rank"],
        "learning_rate": _RL["learning_rate"],
        "samples_per_prompt": _RL["group_size"],
        "iterations": 1000,  # the guide's; Config.steps defaults to the prompts' epochs
    },
    "rlhf": {
        "sft_epochs": _RLHF["sft_epochs"],
        "reward_lr": _RLHF["reward_learning_rate"],
        "policy_lr": _RLHF["rl_learning_rate"],
    },
}

# Hidden sizes of the families the service offers; LoRA's best learning rate shrinks
# roughly with the square root of the width (and is ~10x full fine-tuning's).
_HIDDEN = {
    r"llama-3\.2-1b": 2048,
    r"llama-3\.2-3b": 3072,
    r"llama-3\.1-8b|llama-3-8b": 4096,
    r"llama-3\.[13]-70b": 8192,
    r"qwen3-4b": 2560,
    r"qwen3-8b": 4096,
    r"qwen3-30b-a3b": 2048,
    r"qwen3-32b": 5120,
    r"qwen3-235b": 4096,
    r"gpt-oss-20b": 2880,
    r"gpt-oss-120b": 2880,
    r"tinkerkit/tiny": 64,
}
REFERENCE_BATCH = 128  # examples per step the suggestion assumes


@dataclass(frozen=True)
class LrSuggestion:
    learning_rate: float
    assumed_batch_size: int
    basis: str

    def __float__(self) -> float:
        return self.learning_rate


def suggest_lora_lr(model: str, batch_size: int = REFERENCE_BATCH) -> LrSuggestion:
    """A starting LoRA learning rate for ``model`` (scaled by sqrt of the batch size).

    Unknown models get the guide's SFT default (1e-4) with a log line saying so.

    Example:
        >>> suggest_lora_lr("meta-llama/Llama-3.1-8B").learning_rate
        0.00028...
    """
    name = model.lower()
    hidden = next((h for pattern, h in _HIDDEN.items() if re.search(pattern, name)), None)
    if hidden is None:
        logger.info(
            "no LoRA learning-rate data for %s; using the guide's SFT default %g",
            model,
            LEARNING_RATES["sft"],
        )
        return LrSuggestion(LEARNING_RATES["sft"], batch_size, "guide default (unknown model)")
    # 5e-4 at width 2048 and batch 128 (LoRA Without Regret's range), ~1/sqrt(width).
    lr = 5e-4 * math.sqrt(2048 / hidden) * math.sqrt(batch_size / REFERENCE_BATCH)
    return LrSuggestion(lr, batch_size, f"width {hidden}, batch {batch_size}")
