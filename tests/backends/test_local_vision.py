"""The local engine's image inputs: transformers' own processor output, kept for reuse."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tinkerkit.backends.local import vision  # noqa: E402
from tinkerkit.models.stand_ins import ModelNames  # noqa: E402
from tinkerkit.rules.images import Picture  # noqa: E402


def test_processed_pictures_equal_the_processors_batch_and_are_reused(monkeypatch):
    spec = ModelNames().vision("tinkerkit/tiny-vl")
    assert spec is not None
    rng = np.random.default_rng(0)
    shapes = [(64, 64), (80, 64), (37, 200)]
    pixels = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    pictures = [Picture(0, p, spec.processor.grid(*p.shape[:2])) for p in pixels]
    batch = vision.image_processor(spec.processor)(images=pixels, return_tensors="pt")
    monkeypatch.setattr(vision, "_processed", type(vision._processed)())
    calls = []
    real = vision.image_processor(spec.processor)
    monkeypatch.setattr(vision, "image_processor", lambda p: calls.append(1) or real)
    for _ in range(2):  # the second pass is served from the cache
        parts = [vision._patches(spec.processor, p) for p in pictures]
        torch.testing.assert_close(torch.cat([v for v, _ in parts]), batch["pixel_values"])
        assert [list(g) for _, g in parts] == batch["image_grid_thw"].tolist()
    assert len(calls) == len(pictures)
