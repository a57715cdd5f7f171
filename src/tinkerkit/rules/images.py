"""Images in a ``ModelInput``, read the way the service reads them for a vision model.

An ``ImageChunk`` (png or jpeg bytes) takes as many positions in the sequence as the
model's image processor makes tokens of it: Qwen3-VL and Qwen3.5 resize an image to a
multiple of 32 pixels (``patch_size`` 16 × ``merge_size`` 2) with between 65,536 and
16,777,216 pixels, cut it into 16-pixel patches and merge them 2×2, so a 64×80 image is
256×288 pixels after resizing, 16×18 patches, 72 tokens::

    >>> QWEN_VL_PROCESSOR.tokens(64, 80)
    72

A chunk's ``expected_tokens`` must agree (the service fails a request fast otherwise).
The token ids of the sequence carry the model's ``<|image_pad|>`` at every image
position, so an engine finds its images where the Hugging Face model does; text chunks
may not hold that id themselves.

Both ``tinkerkit.data`` (building image datums) and the service (checking requests)
read images through here, so they cannot disagree on a count.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from tinker import types

from tinkerkit.errors import InvalidImageError


@dataclass(frozen=True)
class Processor:
    """The image processor of a vision model family: its ``preprocessor_config.json``."""

    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 65536
    max_pixels: int = 16777216

    @classmethod
    def of(cls, config: dict[str, Any]) -> Processor:
        """The processor a ``preprocessor_config.json`` describes (Qwen2-VL's keys).

        Example:
            >>> Processor.of({"patch_size": 14, "min_pixels": 3136}).patch_size
            14
        """
        size = config.get("size") or {}
        return cls(
            patch_size=int(config.get("patch_size", 16)),
            merge_size=int(config.get("merge_size", 2)),
            temporal_patch_size=int(config.get("temporal_patch_size", 2)),
            min_pixels=int(size.get("shortest_edge", config.get("min_pixels", 65536))),
            max_pixels=int(size.get("longest_edge", config.get("max_pixels", 16777216))),
        )

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) of patches after the processor's resize (``smart_resize``)."""
        factor = self.patch_size * self.merge_size
        h = max(factor, round(height / factor) * factor)
        w = max(factor, round(width / factor) * factor)
        if h * w > self.max_pixels:
            beta = math.sqrt(height * width / self.max_pixels)
            h = max(factor, math.floor(height / beta / factor) * factor)
            w = max(factor, math.floor(width / beta / factor) * factor)
        elif h * w < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h = math.ceil(height * beta / factor) * factor
            w = math.ceil(width * beta / factor) * factor
        return h // self.patch_size, w // self.patch_size

    def tokens(self, height: int, width: int) -> int:
        """Image tokens of a ``height`` × ``width`` image."""
        rows, cols = self.grid(height, width)
        return rows * cols // self.merge_size**2

    def config(self) -> dict[str, Any]:
        """The ``preprocessor_config.json`` ``AutoImageProcessor`` loads (offline, no
        torchvision needed: transformers falls back to its PIL processor)."""
        return {
            "image_processor_type": "Qwen2VLImageProcessorFast",
            "processor_class": "Qwen3VLProcessor",
            "patch_size": self.patch_size,
            "merge_size": self.merge_size,
            "temporal_patch_size": self.temporal_patch_size,
            "size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "do_convert_rgb": True,
        }


QWEN_VL_PROCESSOR = Processor()
"""Qwen3-VL's and Qwen3.5's processor (their published ``preprocessor_config.json``)."""


@dataclass(frozen=True)
class Vision:
    """How a model reads images: its processor and the token ids around an image."""

    image_token: int
    start_token: int
    end_token: int
    processor: Processor = field(default=QWEN_VL_PROCESSOR)


@dataclass(frozen=True)
class Picture:
    """One decoded image of a sequence: RGB pixels as sent, where it starts, its grid."""

    start: int
    pixels: np.ndarray = field(repr=False)  # uint8 (H, W, 3)
    grid: tuple[int, int]  # patches (rows, columns) after the processor's resize
    merge_size: int = 2

    @property
    def tokens(self) -> int:
        return self.grid[0] * self.grid[1] // self.merge_size**2


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow comes with the vision extra
        raise InvalidImageError(
            "image chunks need Pillow offline: pip install 'tinkerkit[vision]'."
        ) from exc
    return Image


def decode(chunk: types.ImageChunk, where: str) -> np.ndarray:
    """The RGB pixels (uint8 (H, W, 3)) of ``chunk``; a clear error for bytes that are
    not an image of the declared format."""
    image_module = _pil()
    try:
        with image_module.open(io.BytesIO(chunk.data)) as opened:
            actual = (opened.format or "").lower()
            opened.load()
            rgb = opened.convert("RGB")
    except Exception as exc:  # PIL raises many kinds for corrupt data
        raise InvalidImageError(
            f"{where}: the ImageChunk's {len(chunk.data)} bytes are not a readable "
            f"{chunk.format} image ({type(exc).__name__}: {exc})."
        ) from None
    if actual != chunk.format:
        raise InvalidImageError(
            f"{where}: the ImageChunk says format={chunk.format!r} but its bytes are "
            f"{actual or 'unknown'}; set format to {actual!r}."
        )
    return np.asarray(rgb, dtype=np.uint8)


def read(
    model_input: types.ModelInput, vision: Vision | None, where: str
) -> tuple[list[int], list[Picture]]:
    """The token ids of ``model_input`` (``vision.image_token`` at image positions) and
    its pictures; ``InvalidImageError`` for an image on a text-only model, a bad image,
    or a wrong ``expected_tokens``."""
    tokens: list[int] = []
    pictures: list[Picture] = []
    for i, chunk in enumerate(model_input.chunks):
        if isinstance(chunk, types.EncodedTextChunk):
            tokens.extend(int(t) for t in chunk.tokens)
            continue
        here = f"{where} chunk {i}"
        if not isinstance(chunk, types.ImageChunk):
            raise InvalidImageError(
                f"{here} is a {type(chunk).__name__}; offline, images come as ImageChunk "
                "(png or jpeg bytes)."
            )
        if vision is None:
            raise InvalidImageError(
                f"{here} is an image, but this model reads text only. Use a vision model "
                "(Qwen/Qwen3-VL-30B-A3B-Instruct, a Qwen3.5 model, or tinkerkit/tiny-vl)."
            )
        pixels = decode(chunk, here)
        processor = vision.processor
        grid = processor.grid(pixels.shape[0], pixels.shape[1])
        picture = Picture(len(tokens), pixels, grid, processor.merge_size)
        if chunk.expected_tokens is not None and chunk.expected_tokens != picture.tokens:
            raise InvalidImageError(
                f"{here}: expected_tokens={chunk.expected_tokens}, but this model makes "
                f"{picture.tokens} tokens of a {pixels.shape[1]}×{pixels.shape[0]} image "
                f"({grid[0]}×{grid[1]} patches of {processor.patch_size} px, merged "
                f"{processor.merge_size}×{processor.merge_size})."
            )
        pictures.append(picture)
        tokens.extend([vision.image_token] * picture.tokens)
    if vision is not None and pictures:
        _check_no_stray_pad(tokens, pictures, vision, where)
    return tokens, pictures


def _check_no_stray_pad(
    tokens: Sequence[int], pictures: Sequence[Picture], vision: Vision, where: str
) -> None:
    expected = sum(p.tokens for p in pictures)
    found = sum(1 for t in tokens if t == vision.image_token)
    if found != expected:
        raise InvalidImageError(
            f"{where}: a text chunk holds the image token id {vision.image_token}; send each "
            "image as an ImageChunk, not its placeholder token."
        )


REMOTE = ("data:", "http://", "https://")
"""Image sources that are not a local file (``image_to_chunk`` reads them)."""


def image_file(source: str) -> Path | None:
    """The local file an image string names: a path, or a ``file://`` URL; None for a
    ``data:`` or http(s) URL.

    Example:
        >>> image_file("file:///data/cat%201.png"), image_file("https://x/cat.png")
        (PosixPath('/data/cat 1.png'), None)
    """
    if source.startswith(REMOTE):
        return None
    if source.startswith("file://"):
        return Path(unquote(urlparse(source).path))
    return Path(source)


def image_to_chunk(image: Any, vision: Vision) -> types.ImageChunk:
    """An ``ImageChunk`` of ``image`` (PIL image, png/jpeg bytes, a path, a ``file://``,
    ``data:`` or http(s) URL) for a model
    that reads images like ``vision``: bytes and files keep their encoding, a PIL image
    becomes JPEG (as tinker-cookbook's renderers send it), ``expected_tokens`` filled in.

    Example:
        >>> chunk = image_to_chunk("cat.png", vision)
        >>> chunk.format, chunk.expected_tokens
        ('png', 64)
    """
    image_module = _pil()
    if isinstance(image, str) and (path := image_file(image)) is not None:
        data = path.read_bytes()
    elif isinstance(image, str) and image.startswith("data:"):
        data = base64.b64decode(image.split(",", 1)[-1])
    elif isinstance(image, str):  # http(s)
        import httpx

        data = httpx.get(image, follow_redirects=True, timeout=30).raise_for_status().content
    elif isinstance(image, bytes | bytearray):
        data = bytes(image)
    elif hasattr(image, "__fspath__"):
        data = Path(image).read_bytes()
    elif isinstance(image, image_module.Image):
        rgb = image.convert("RGB") if image.mode in ("RGBA", "LA", "P") else image
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG")
        data = buffer.getvalue()
    else:
        raise InvalidImageError(
            f"an image must be a PIL image, png/jpeg bytes, a file path or a URL; got "
            f"{type(image).__name__}."
        )
    with image_module.open(io.BytesIO(data)) as opened:
        fmt = (opened.format or "").lower()
        width, height = opened.size
    tokens = vision.processor.tokens(height, width)
    if fmt == "png":
        return types.ImageChunk(data=data, format="png", expected_tokens=tokens)
    if fmt == "jpeg":
        return types.ImageChunk(data=data, format="jpeg", expected_tokens=tokens)
    raise InvalidImageError(f"images must be png or jpeg; this one is {fmt or 'unknown'}.")
