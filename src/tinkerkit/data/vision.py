"""Chats with images: image parts of messages → ``ImageChunk``s in a ``ModelInput``.

A message's content may be a list of parts, ``{"type": "text", "text": ...}`` and
``{"type": "image", "image": X}`` with X a path, a ``file://``, ``data:`` or http(s)
URL, png/jpeg bytes, or a PIL image (sent as JPEG, as tinker-cookbook does). The
tokenizer's chat template writes each image as
``<|vision_start|><|image_pad|><|vision_end|>`` (Qwen-VL's format); the one
``<|image_pad|>`` token becomes an ``ImageChunk`` that takes as many positions as the
model's image processor makes tokens of the image (``rules.images.Processor.tokens``),
none of them trained. A list of text parts alone is joined into one string, so every
template renders it.

In a data file an image is a path (relative to the file's folder) or a URL;
``resolve_image_paths`` makes those paths absolute and names the field of a missing one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinker import types

from tinkerkit.errors import ChatFormatError
from tinkerkit.protocols import Tokenizer
from tinkerkit.rules.images import REMOTE, Vision, image_file, image_to_chunk

IMAGE_PAD = "<|image_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VISION_MODELS = "tinkerkit/tiny-vl, Qwen/Qwen3-VL-30B-A3B-Instruct or a Qwen3.5 model"
_PARTS = 'give {"type": "text", "text": "..."} or {"type": "image", "image": PATH_OR_URL}'

ChatImage = tuple[str, Any]
"""Where an image part is (``messages[0].content[1]``) and its image."""


def normalize_content(content: Any, where: str) -> Any:
    """A message's content as a chat template reads it: a string (or anything but a
    list) unchanged; a list of text parts joined into one string; a list with images as
    plain ``{"type", "text" | "image"}`` dicts. ``ChatFormatError`` for a bad part.

    Example:
        >>> normalize_content([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "m")
        'ab'
    """
    if not isinstance(content, list | tuple):
        return content
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        if hasattr(part, "as_dict"):  # a schemas.ContentPart
            part = part.as_dict()
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image" and part.get("image") is not None:
            parts.append({"type": "image", "image": part["image"]})
        else:
            raise ChatFormatError(f"{where}[{index}] is {part!r:.100}: {_PARTS}")
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def chat_images(messages: Sequence[Mapping[str, Any]]) -> list[ChatImage]:
    """Every image part of ``messages`` (normalized), in the order the chat shows them."""
    found: list[ChatImage] = []
    for m, message in enumerate(messages):
        content = message["content"]
        if isinstance(content, list):
            found.extend(
                (f"messages[{m}].content[{p}]", part["image"])
                for p, part in enumerate(content)
                if part["type"] == "image"
            )
    return found


def without_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with their image parts left out (what counts as the chat's text)."""
    if all(isinstance(m["content"], str) for m in messages):
        return messages
    return [
        {
            "role": m["role"],
            "content": [p for p in m["content"] if p["type"] != "image"]
            if isinstance(m["content"], list)
            else m["content"],
        }
        for m in messages
    ]


def _single_id(tokenizer: Tokenizer, text: str) -> int | None:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return int(ids[0]) if len(ids) == 1 else None


def tokenizer_vision(tokenizer: Tokenizer) -> Vision | None:
    """The ``Vision`` a tokenizer implies: the ids of its ``<|image_pad|>``,
    ``<|vision_start|>`` and ``<|vision_end|>`` tokens with Qwen-VL's image processor;
    None when it lacks one of them (a text-only model).

    Example:
        >>> tokenizer_vision(vl_byte_tokenizer()).image_token
        262
    """
    ids = [_single_id(tokenizer, name) for name in (IMAGE_PAD, VISION_START, VISION_END)]
    if None in ids:
        return None
    image, start, end = (int(i) for i in ids if i is not None)
    return Vision(image, start, end)


def chat_vision(tokenizer: Tokenizer, vision: Vision | None, where: str) -> Vision:
    """``vision`` if given, else the tokenizer's; ``ChatFormatError`` naming the image at
    ``where`` when the tokenizer's model reads text only."""
    found = vision if vision is not None else tokenizer_vision(tokenizer)
    if found is None:
        raise ChatFormatError(
            f"{where} is an image, but this tokenizer has no {IMAGE_PAD} token: its model "
            f"reads text only. Use a vision model's tokenizer ({VISION_MODELS}), or remove "
            "the image parts."
        )
    return found


def image_chunk(image: Any, vision: Vision, where: str) -> types.ImageChunk:
    """``rules.images.image_to_chunk``, its failures a ``ChatFormatError`` naming ``where``."""
    try:
        return image_to_chunk(image, vision)
    except FileNotFoundError:
        raise ChatFormatError(f"{where}: no such image file: {image}") from None
    except Exception as exc:  # PIL, httpx, base64 and OS errors alike
        raise ChatFormatError(
            f"{where}: cannot read the image ({type(exc).__name__}: {exc}); give a png or "
            "jpeg file, its bytes, a URL or a PIL image"
        ) from exc


@dataclass(frozen=True)
class ImageSequence:
    """A rendered chat with its images in place: the chunks, a weight per position, and
    each image placeholder's token index with the positions its image takes."""

    chunks: list[types.ModelInputChunk]
    weights: list[float]
    placeholders: list[tuple[int, int]]

    def position(self, token: int) -> int:
        """Where rendered token ``token`` sits once every image takes its positions."""
        return token + sum(n - 1 for pad, n in self.placeholders if pad < token)


def insert_images(
    tokens: Sequence[int], weights: Sequence[float], images: Sequence[ChatImage], vision: Vision
) -> ImageSequence:
    """Split rendered ``tokens`` at each ``<|image_pad|>`` and put the image's
    ``ImageChunk`` there; its positions get weight 0.

    Example:
        >>> seq = insert_images([1, 262, 2], [0, 0, 1], [("m", "cat.png")], vision)
        >>> [c.type for c in seq.chunks], len(seq.weights)
        (['encoded_text', 'image', 'encoded_text'], 66)
    """
    pads = [i for i, t in enumerate(tokens) if t == vision.image_token]
    if len(pads) != len(images):
        raise ChatFormatError(
            f"the chat template wrote {len(pads)} {IMAGE_PAD} placeholders for {len(images)} "
            "image parts: its template does not render images (a text-only model?), or a "
            f"text part holds {IMAGE_PAD} itself. Use a vision model's tokenizer "
            f"({VISION_MODELS}) and keep that token out of text."
        )
    chunks: list[types.ModelInputChunk] = []
    out: list[float] = []
    placeholders = []
    start = 0
    for pad, (where, image) in zip(pads, images, strict=True):
        if pad > start:
            chunks.append(types.EncodedTextChunk(tokens=list(tokens[start:pad])))
            out.extend(weights[start:pad])
        chunk = image_chunk(image, vision, where)
        size = chunk.length
        chunks.append(chunk)
        out.extend([0.0] * size)
        placeholders.append((pad, size))
        start = pad + 1
    if start < len(tokens):
        chunks.append(types.EncodedTextChunk(tokens=list(tokens[start:])))
        out.extend(weights[start:])
    return ImageSequence(chunks, out, placeholders)


def cut_left(
    chunks: Sequence[types.ModelInputChunk], weights: Sequence[float], cut: int
) -> tuple[list[types.ModelInputChunk], list[float]]:
    """Drop ``cut`` positions from the start; an image in the way goes whole (there is
    no half an image), so a little more may go."""
    out: list[types.ModelInputChunk] = []
    dropped = 0
    for chunk in chunks:
        size = chunk.length
        if dropped >= cut:
            out.append(chunk)
        elif isinstance(chunk, types.EncodedTextChunk) and dropped + size > cut:
            out.append(types.EncodedTextChunk(tokens=list(chunk.tokens[cut - dropped :])))
            dropped = cut
        else:
            dropped += size
    return out, list(weights[dropped:])


def resolve_image_paths(record: Any, base: Path | None) -> tuple[str, str] | None:
    """Make the image paths of a raw record's messages absolute (relative ones are read
    from ``base``, the data file's folder) and check the files exist; ``(field,
    problem)`` for the first one that does not, else None. URLs stay as they are.

    Example:
        >>> resolve_image_paths({"messages": [{"role": "user", "content": [
        ...     {"type": "image", "image": "gone.png"}]}]}, Path("data"))
        ('messages[0].content[0].image', 'no such image file: data/gone.png ...')
    """
    if not isinstance(record, dict):
        return None
    for key in ("messages", "prompt", "chosen", "rejected"):
        messages = record.get(key)
        if not isinstance(messages, list):
            continue
        for m, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, list):
                continue
            for p, part in enumerate(content):
                if not (isinstance(part, dict) and part.get("type") == "image"):
                    continue
                image = part.get("image")
                if not isinstance(image, str):
                    continue  # the schema names what is wrong with it
                problem = _resolve(part, image, base)
                if problem is not None:
                    return f"{key}[{m}].content[{p}].image", problem
    return None


def _resolve(part: dict[str, Any], image: str, base: Path | None) -> str | None:
    if "://" in image and not image.startswith((*REMOTE, "file://")):
        scheme = image.split("://")[0]
        return f"{scheme}:// is not an image source: give a path or a file://, data: or http(s) URL"
    path = image_file(image)
    if path is None:
        return None
    if not image.startswith("file://"):
        path = path.expanduser()
        if not path.is_absolute():
            if base is None:
                return (
                    f"the relative image path {image!r} has no folder to be read from (the "
                    "data is not a local file): give an absolute path or a URL"
                )
            path = base / path
        part["image"] = str(path)
    if not path.is_file():
        what = "is a folder, not an image file" if path.is_dir() else "no such image file"
        return f"{what}: {path} (relative paths are read from the data file's folder)"
    return None
