"""Local inference on exported weights: the guide's "Local Inference" in two calls.

``load_for_inference(base, adapter)`` gives ``(model, tokenizer)``: a merged model
folder alone, or a base (folder or ``tinkerkit/tiny``) plus an adapter, which is
converted to PEFT names first if it still has Tinker's. ``generate`` takes a string or
chat messages and returns the new text (greedy at ``temperature=0``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tinkerkit.export.bases import resolve_base
from tinkerkit.export.convert import ADAPTER_CONFIG, ADAPTER_FILE, load_adapter, to_peft
from tinkerkit.protocols import Tokenizer


def load_for_inference(
    base: str | Path, adapter: str | Path | None = None, *, dtype: torch.dtype | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode: ``base`` (merged folder, local folder or
    ``tinkerkit/tiny``) with an optional LoRA ``adapter`` folder or tar on top.

    Example:
        >>> model, tok = load_for_inference("tinkerkit/tiny", adapter="peft/")
        >>> generate(model, tok, "Q: 2+2? A:", max_new_tokens=8)
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = resolve_base(base)
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(base_dir), dtype=dtype or torch.float32, local_files_only=True
    )
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    if adapter is not None:
        import peft

        path = Path(adapter)
        if _is_peft_folder(path):
            model = peft.PeftModel.from_pretrained(model, str(path))
        else:  # Tinker names or a tar: convert into a scratch folder, then load
            with tempfile.TemporaryDirectory() as tmp:
                folder = to_peft(load_adapter(path), Path(tmp) / "peft", base_model=base_dir)
                # PEFT reads the tensors into memory, so the scratch folder can go.
                model = peft.PeftModel.from_pretrained(model, str(folder))
    model.eval()
    return model, tokenizer


def _is_peft_folder(path: Path) -> bool:
    """A folder whose tensors already carry PEFT names (nothing to convert)."""
    if not (
        path.is_dir() and (path / ADAPTER_FILE).is_file() and (path / ADAPTER_CONFIG).is_file()
    ):
        return False
    from safetensors import safe_open

    with safe_open(str(path / ADAPTER_FILE), framework="pt") as f:
        keys = list(f.keys())
    return all(k.startswith("base_model.model.") and "unembed_tokens" not in k for k in keys) and (
        "target_modules" in json.loads((path / ADAPTER_CONFIG).read_text())
    )


def generate(
    model: Any,
    tokenizer: Tokenizer,
    prompt_or_messages: str | Sequence[dict[str, str]],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
) -> str:
    """The model's continuation of a prompt, or its reply to chat ``messages``.

    Messages go through the tokenizer's chat template with a generation prompt.
    ``temperature=0`` decodes greedily.

    Example:
        >>> generate(model, tok, [{"role": "user", "content": "Hi"}], max_new_tokens=16)
    """
    if isinstance(prompt_or_messages, str):
        ids = tokenizer(prompt_or_messages, return_tensors="pt")["input_ids"]
    else:
        ids = tokenizer.apply_chat_template(
            list(prompt_or_messages),
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )["input_ids"]
    ids = ids.to(next(model.parameters()).device)
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0}
    if temperature > 0:
        options["temperature"] = temperature
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), pad_token_id=pad, **options
        )
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
