"""RL inputs: whatever the user gave (a JSONL path, strings, dicts, ``RLPrompt``) → prompts.

A prompt is sampled through the chat template (a string is one user message), and the
reward function sees the prompt as the user wrote it (the string, or the messages) plus
the prompt's extra fields (``answer=...`` and so on).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tinkerkit.data.chat import chat_prompt_tokens
from tinkerkit.data.loaders import load_rl_prompts
from tinkerkit.data.schemas import RLPrompt
from tinkerkit.data.sources import coerce_records
from tinkerkit.errors import DataError

PromptSource = str | Path | Sequence[str | dict[str, Any] | RLPrompt]


def load(source: PromptSource) -> list[RLPrompt]:
    """``RLPrompt``s from a JSONL/JSON/CSV path or an in-memory list; never empty.

    Example:
        >>> load(["What is 2+2?", {"prompt": "3+4?", "answer": "7"}])[1].fields
        {'answer': '7'}
    """
    return coerce_records(
        source, from_file=_from_file, from_item=_one, empty="has no prompts", label="prompts"
    )


def _from_file(source: str | Path) -> list[RLPrompt]:
    path = Path(source)
    if not path.exists():
        raise DataError(str(path), None, None, "no such file; give a JSONL file of prompts")
    prompts = load_rl_prompts(path)
    if not prompts:
        raise DataError(str(source), None, None, "has no prompts")
    return prompts


def _one(item: Any, where: str) -> RLPrompt:
    if isinstance(item, RLPrompt):
        return item
    obj = {"prompt": item} if isinstance(item, str) else item
    if not isinstance(obj, dict):
        raise DataError(
            where,
            None,
            None,
            f"unsupported type {type(item).__name__}; use a string, a dict or an RLPrompt",
        )
    try:
        return RLPrompt.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise DataError(where, None, field, str(first["msg"])) from None


def messages(prompt: RLPrompt) -> list[dict[str, str]]:
    """The chat the model is prompted with."""
    if prompt.messages is not None:
        return [m.model_dump() for m in prompt.messages]
    return [{"role": "user", "content": str(prompt.prompt)}]


def for_reward(prompt: RLPrompt) -> str | list[dict[str, str]]:
    """What a reward function receives as ``prompt``: the string, or the messages."""
    return prompt.prompt if prompt.prompt is not None else messages(prompt)


def label(prompt: RLPrompt, index: int, width: int = 60) -> str:
    """A short name for log lines: ``prompt #3 'What is 2+2?'``."""
    text = prompt.prompt if prompt.prompt is not None else messages(prompt)[-1]["content"]
    text = " ".join(text.split())
    if len(text) > width:
        text = text[: width - 3] + "..."
    return f"prompt #{index} {text!r}"


def render(prompts: Sequence[RLPrompt], tokenizer: Any) -> list[list[int]]:
    """Prompt tokens through the chat template, exactly as sampled and trained."""
    return [chat_prompt_tokens(messages(p), tokenizer) for p in prompts]


def fingerprint(prompts: Sequence[RLPrompt]) -> str:
    """A hash of the prompts and their fields: resuming on other prompts is refused."""
    digest = hashlib.sha256()
    for p in prompts:
        digest.update(json.dumps(p.model_dump(), sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]
