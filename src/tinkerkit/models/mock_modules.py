"""The ``mock`` engine's LoRA module names, and telling its adapters apart by them.

The numpy model of the ``mock`` backend trains LoRA on modules no Hugging Face model
has (``model.mix.fast`` and the like), so its adapters cannot be exported or merged.
The engine (``backends/mock/model.py``) names its LoRA targets with these constants and
export (``export/convert.py``) refuses an adapter that has them; both may import this
module, which sits below the backends.
"""

from __future__ import annotations

from collections.abc import Iterable

MIX_FAST = "model.mix.fast"
MIX_SLOW = "model.mix.slow"
UP_PROJ = "model.mlp.up_proj"
LM_HEAD = "lm_head"

MOCK_ONLY_MODULES = (MIX_FAST, MIX_SLOW, UP_PROJ)
"""The modules only the mock model has (``lm_head`` every causal LM has)."""

_PREFIXES = tuple(f"base_model.model.{module}." for module in MOCK_ONLY_MODULES)


def is_mock_adapter(tensor_names: Iterable[str]) -> bool:
    """Whether these LoRA tensors (PEFT or Tinker names) are the ``mock`` backend's.

    Example:
        >>> is_mock_adapter(["base_model.model.model.mix.fast.lora_A.weight"])
        True
        >>> is_mock_adapter(["base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"])
        False
    """
    return any(name.startswith(_PREFIXES) for name in tensor_names)
