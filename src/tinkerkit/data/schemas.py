"""Typed records for training data (pydantic), one per kind of example.

| record              | JSON shape                                                        |
|---------------------|-------------------------------------------------------------------|
| ``Conversation``    | ``{"messages": [{"role": "user", "content": "..."}, ...]}``       |
|                     | (a content may be a list of parts: ``{"type": "text", "text":     |
|                     | "..."}``, ``{"type": "image", "image": "cat.png"}``, for vision)  |
| ``PromptCompletion``| ``{"prompt": "...", "completion": "..."}``                        |
| ``PreferencePair``  | ``{"prompt": "...", "chosen": "...", "rejected": "..."}`` or two  |
|                     | chats ``{"chosen": [msgs], "rejected": [msgs]}``                  |
| ``RLPrompt``        | ``{"prompt": "..."}`` or ``{"messages": [...]}`` + any extra      |
|                     | fields (e.g. ``"answer"``), passed on to reward functions         |
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

Role = Literal["system", "user", "assistant", "tool"]


class ContentPart(BaseModel):
    """One part of a message's content: ``{"type": "text", "text": ...}`` or
    ``{"type": "image", "image": ...}`` (a path, a URL, png/jpeg bytes or a PIL image; in
    a data file, a path relative to the file's folder or a URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["text", "image"]
    text: str | None = None
    image: Any = None

    @field_validator("image")
    @classmethod
    def _image_kind(cls, image: Any) -> Any:
        ok = isinstance(image, str | bytes | bytearray | os.PathLike) or (
            hasattr(image, "save") and hasattr(image, "mode")  # a PIL image
        )
        if image is not None and not ok:
            raise ValueError(
                f"an image must be a path, a URL, png/jpeg bytes or a PIL image, not "
                f"{type(image).__name__}"
            )
        return image

    @model_validator(mode="after")
    def _one_payload(self) -> ContentPart:
        wanted, other = ("text", "image") if self.type == "text" else ("image", "text")
        article = "a" if self.type == "text" else "an"
        if getattr(self, wanted) is None:
            raise ValueError(f"{article} {self.type} part needs its {wanted!r} field")
        if getattr(self, other) is not None:
            raise ValueError(f"{article} {self.type} part has no {other!r} field: remove it")
        return self

    def as_dict(self) -> dict[str, Any]:
        if self.type == "text":
            return {"type": "text", "text": self.text}
        return {"type": "image", "image": self.image}


def _content_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    return "" if isinstance(value, list | tuple) else None


# A string, or a list of parts. Dispatched on the Python type (not tried both ways), so a
# bad part is reported once, at ``messages[0].content[1].image`` (the list's tag is "",
# which ``loaders.field_name`` leaves out).
Content = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[ContentPart], Tag("")],
    Discriminator(
        _content_kind,
        custom_error_type="content_type",
        custom_error_message="Input should be a valid string, or a list of text and image parts",
    ),
]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: Content

    def as_dict(self) -> dict[str, Any]:
        """``{"role", "content"}``, a list content as plain part dicts (what chat
        templates read)."""
        content = self.content
        if isinstance(content, str):
            return {"role": self.role, "content": content}
        return {"role": self.role, "content": [part.as_dict() for part in content]}


class Conversation(BaseModel):
    """A chat to train on: at least one message, at least one assistant turn."""

    model_config = ConfigDict(extra="allow", frozen=True)

    messages: list[Message] = Field(min_length=1)

    @field_validator("messages")
    @classmethod
    def _has_assistant_turn(cls, messages: list[Message]) -> list[Message]:
        if not any(m.role == "assistant" for m in messages):
            raise ValueError("has no assistant turn to train on")
        return messages

    def as_dicts(self) -> list[dict[str, Any]]:
        return [m.as_dict() for m in self.messages]


class PromptCompletion(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    prompt: str = Field(min_length=1)
    completion: str = Field(min_length=1)


class PreferencePair(BaseModel):
    """A preferred and a dispreferred answer to the same prompt."""

    model_config = ConfigDict(extra="allow", frozen=True)

    prompt: str | list[Message] | None = None
    chosen: str | list[Message]
    rejected: str | list[Message]

    @model_validator(mode="after")
    def _same_shape(self) -> PreferencePair:
        if isinstance(self.chosen, str) != isinstance(self.rejected, str):
            raise ValueError("chosen and rejected must both be strings or both be chats")
        if isinstance(self.chosen, str) and self.prompt is None:
            raise ValueError("string chosen/rejected answers need a prompt")
        return self


class RLPrompt(BaseModel):
    """A prompt for RL; every extra field is kept and handed to the reward function."""

    model_config = ConfigDict(extra="allow", frozen=True)

    prompt: str | None = None
    messages: list[Message] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> RLPrompt:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self

    @property
    def fields(self) -> dict[str, Any]:
        """The extra fields (e.g. the expected answer), for reward functions."""
        return dict(self.model_extra or {})
