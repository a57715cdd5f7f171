"""Generated pictures for the image tests: coloured shapes on noisy backgrounds."""

from __future__ import annotations

import io

import numpy as np

SHAPES = {"circle": (220, 40, 40), "square": (40, 200, 60), "triangle": (50, 80, 230)}
"""Three classes: each shape in its own colour (jittered per picture)."""


def shape_png(name: str, rng: np.random.Generator, size: int = 64, fmt: str = "PNG") -> bytes:
    """A ``size``² picture of shape ``name`` at a random place and scale, encoded as ``fmt``."""
    from PIL import Image, ImageDraw

    background = tuple(int(x) for x in rng.integers(0, 70, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    s = int(rng.integers(size * 2 // 7, size // 2 + 2))
    x, y = (int(v) for v in rng.integers(2, size - 2 - s, 2))
    colour = tuple(int(np.clip(c + rng.integers(-30, 31), 0, 255)) for c in SHAPES[name])
    if name == "circle":
        draw.ellipse([x, y, x + s, y + s], fill=colour)
    elif name == "square":
        draw.rectangle([x, y, x + s, y + s], fill=colour)
    else:
        draw.polygon([(x, y + s), (x + s, y + s), (x + s // 2, y)], fill=colour)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
