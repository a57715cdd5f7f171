"""Images into a Hugging Face vision-language model (Qwen3-VL's layout).

The model's own image processor turns each picture into patches (``pixel_values``,
``image_grid_thw``); the model's vision tower embeds them at the positions that hold
its image token; rotary positions are the model's 3-D ones (``get_rope_index``), given
explicitly, so no state is left on the shared module between requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

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


def vision_inputs(
    model: Any, vision: Vision, tokens: torch.Tensor, rows: Sequence[Sequence[Picture]]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The keyword arguments that put ``rows``' pictures (per row of right-padded
    ``tokens`` (B, T), in order) into ``model`` (a ``Qwen3VLModel``), and each row's
    rotary offset after its last position (``rope_deltas`` (B, 1))."""
    pictures = [p for row in rows for p in row]
    processed = image_processor(vision.processor)(
        images=[p.pixels for p in pictures], return_tensors="pt"
    )
    grid = processed["image_grid_thw"]
    for picture, (_, h, w) in zip(pictures, grid.tolist(), strict=True):
        if (h, w) != picture.grid:  # the service's count and the processor's must agree
            raise RuntimeError(f"image processor grid {(h, w)} != counted {picture.grid}")
    device = tokens.device
    mm = (tokens == vision.image_token).int()
    grid = grid.to(device)
    positions, deltas = model.get_rope_index(
        tokens, image_grid_thw=grid, attention_mask=torch.ones_like(tokens), mm_token_type_ids=mm
    )
    dtype = next(model.visual.parameters()).dtype
    kwargs = {
        "pixel_values": processed["pixel_values"].to(device, dtype),
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
