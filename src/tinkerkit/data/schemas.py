"""Typed records for training data (pydantic), one per kind of example.

| record              | JSON shape                                                        |
|---------------------|-------------------------------------------------------------------|
| ``Conversation``    | ``{"messages": [{"role": "user", "content": "..."}, ...]}``       |
| ``PromptCompletion``| ``{"prompt": "...", "completion": "..."}``                        |
| ``PreferencePair``  | ``{"prompt": "...", "chosen": "...", "rejected": "..."}`` or two  |
|                     | chats ``{"chosen": [msgs], "rejected": [msgs]}``                  |
| ``RLPrompt``        | ``{"prompt": "..."}`` or ``{"messages": [...]}`` + any extra      |
|                     | fields (e.g. ``"answer"``), passed on to reward functions         |
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "user", "assistant", "tool"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str


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

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


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
