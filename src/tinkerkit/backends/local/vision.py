"""Images into a Hugging Face vision-language model (Qwen3-VL's layout).

The model's own image processor turns each picture into patches (``pixel_values``,
``image_grid_thw``); the model's vision tower embeds them at the positions that hold
its image token; rotary positions are the model's 3-D ones (``get_rope_index``), given
explicitly, so no state is left on the shared module between requests.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from tinkerkit.rules.images import Picture, Processor, Vision


@lru_cache(maxsize=8)
def image_processor(processor: Processor) -> Any:
    """transformers' Qwen2-VL image processor (its PIL variant: no torchvision needed)."""
    import transformers

    cls = (
        getattr(transformers, "Qwen2VLImageProcessorPil", None)
        or transformers.Qwen2VLImageProcessor
    )
    config = processor.config()
    for key in ("image_processor_type", "processor_class"):
        config.pop(key)
    return cls(**config)


CACHE_BYTES = 256 << 20
"""The processed pictures kept for reuse (an epoch sees each picture again): the image
processor costs about 5 ms for a 64×64 picture, a third of a tiny model's step."""
_processed: OrderedDict[tuple[Processor, bytes], tuple[torch.Tensor, tuple[int, ...]]] = (
    OrderedDict()
)
_cached_bytes = 0
_lock = threading.Lock()


def _patches(processor: Processor, picture: Picture) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``pixel_values`` and ``image_grid_thw`` of one picture, from the cache when seen."""
    global _cached_bytes
    pixels = np.ascontiguousarray(picture.pixels)
    digest = hashlib.blake2b(pixels.tobytes(), digest_size=16)
    digest.update(str(pixels.shape).encode())
    key = (processor, digest.digest())
    with _lock:
        found = _processed.get(key)
        if found is not None:
            _processed.move_to_end(key)
            return found
    out = image_processor(processor)(images=[pixels], return_tensors="pt")
    found = (out["pixel_values"], tuple(out["image_grid_thw"][0].tolist()))
    with _lock:
        _processed[key] = found
        _cached_bytes += found[0].numel() * found[0].element_size()
        while _cached_bytes > CACHE_BYTES and len(_processed) > 1:
            _, (old, _) = _processed.popitem(last=False)
            _cached_bytes -= old.numel() * old.element_size()
    return found


def vision_inputs(
    model: Any, vision: Vision, tokens: torch.Tensor, rows: Sequence[Sequence[Picture]]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The keyword arguments that put ``rows``' pictures (per row of right-padded
    ``tokens`` (B, T), in order) into ``model`` (a ``Qwen3VLModel``), and each row's
    rotary offset after its last position (``rope_deltas`` (B, 1))."""
    pictures = [p for row in rows for p in row]
    processed = [_patches(vision.processor, p) for p in pictures]
    for picture, (_, (_, h, w)) in zip(pictures, processed, strict=True):
        if (h, w) != picture.grid:  # the service's count and the processor's must agree
            raise RuntimeError(f"image processor grid {(h, w)} != counted {picture.grid}")
    pixel_values = torch.cat([values for values, _ in processed])
    grid = torch.tensor([thw for _, thw in processed], dtype=torch.long)
    device = tokens.device
    mm = (tokens == vision.image_token).int()
    grid = grid.to(device)
    positions, deltas = model.get_rope_index(
        tokens, image_grid_thw=grid, attention_mask=torch.ones_like(tokens), mm_token_type_ids=mm
    )
    dtype = next(model.visual.parameters()).dtype
    kwargs = {
        "pixel_values": pixel_values.to(device, dtype),
        "image_grid_thw": grid,
        "mm_token_type_ids": mm,
        "position_ids": positions,
    }
    return kwargs, deltas


class VisionTrunk(nn.Module):
    """A VL model's trunk (``Qwen3VLModel``) called like a text trunk: ``input_ids`` and,
    where a batch has images, ``pictures`` (one sequence of pictures per row)."""

    def __init__(self, model: nn.Module, vision: Vision) -> None:
        super().__init__()
        self.model = model
        self.vision = vision

    def forward(
        self,
        input_ids: torch.Tensor,
        pictures: Sequence[Sequence[Picture]] = (),
        **kwargs: Any,
    ) -> Any:
        if any(pictures):
            extra, _ = vision_inputs(self.model, self.vision, input_ids, pictures)
            kwargs.update(extra)
        return self.model(input_ids=input_ids, **kwargs)
