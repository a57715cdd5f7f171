"""How the mock model sees an image: one fixed vector per image token.

Each token covers a ``merge × merge`` block of the processor's patches (2×2 of 16 px on
Qwen's grid). The image is resized to one pixel per patch (the patch's mean colour), a
block's ``merge² × 3`` colours are taken relative to the picture's mean colour (what
stands out of the background counts), and a fixed random projection with a
``tanh`` maps them to the model's width: deterministic for a base, different for
different pictures, and entering the trunk where the token embeddings do (so forward,
backward, sampling and ``compute_logprobs`` take mixed inputs unchanged).
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

from tinkerkit.backends.mock.model import DIM, DTYPE
from tinkerkit.rules.images import Picture

CONTRAST = 4.0
"""Colours are taken relative to the picture's mean colour and scaled by this, so what
stands out of an image (an object on a background) dominates its vectors."""


@lru_cache(maxsize=8)
def _projection(base_id: str, features: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{base_id}/vision".encode()))
    out = (rng.standard_normal((features, DIM)) * 2.0 * features**-0.5).astype(DTYPE)
    out.flags.writeable = False
    return out


def embed(base_id: str, picture: Picture) -> np.ndarray:
    """``(picture.tokens, DIM)`` float32: the picture's token vectors, row-major over
    its grid of merged blocks."""
    from PIL import Image

    rows, cols = picture.grid
    m = picture.merge_size
    small = Image.fromarray(picture.pixels).resize((cols, rows), Image.Resampling.BOX)
    colours = np.asarray(small, dtype=np.float32) / 127.5 - 1.0  # (rows, cols, 3)
    blocks = colours.reshape(rows // m, m, cols // m, m, 3).transpose(0, 2, 1, 3, 4)
    features = blocks.reshape(-1, m * m * 3)
    features = (features - features.mean(axis=0)) * CONTRAST
    return np.tanh(features @ _projection(base_id, m * m * 3)).astype(DTYPE)
