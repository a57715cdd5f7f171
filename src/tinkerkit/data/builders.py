"""Datum builders for prompt/completion pairs, preference pairs and RL samples.

All of them end in ``shifted_datum`` (the one place the next-token shift happens) or
build the same alignment by hand for RL inputs, so ``target_tokens``, ``weights``,
``logprobs`` and ``advantages`` always line up with ``model_input``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from tinker import types

from tinkerkit.data.chat import ChatFormatError, as_messages, render_chat
from tinkerkit.data.datum import shifted_datum
from tinkerkit.data.schemas import Message, PreferencePair
from tinkerkit.protocols import Tokenizer


def _encode(tokenizer: Tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def completion_datum(
    prompt: str,
    completion: str,
    tokenizer: Tokenizer,
    *,
    add_eos: bool = False,
    max_length: int | None = None,
    truncate: Literal["error", "left"] = "error",
) -> types.Datum:
    """Train on ``completion`` given ``prompt`` (the guide's ``create_datum``, fixed).

    Example:
        >>> d = completion_datum("Q: 2+2?\\nA:", " 4", tok)
        >>> d.loss_fn_inputs["weights"].tolist()[-2:]
        [0.0, 1.0]
    """
    prompt_tokens = _encode(tokenizer, prompt)
    completion_tokens = _encode(tokenizer, completion)
    if add_eos and tokenizer.eos_token_id is not None:
        completion_tokens.append(tokenizer.eos_token_id)
    if not prompt_tokens or not completion_tokens:
        raise ChatFormatError("prompt and completion must both be non-empty")
    tokens = prompt_tokens + completion_tokens
    if max_length is not None and len(tokens) > max_length:
        cut = len(tokens) - max_length
        if truncate == "error" or cut >= len(prompt_tokens):
            raise ChatFormatError(
                f"prompt + completion is {len(tokens)} tokens, over max_length={max_length}"
                + (
                    "; pass truncate='left' to cut the prompt"
                    if truncate == "error"
                    else "; the completion alone is too long"
                )
            )
        prompt_tokens = prompt_tokens[cut:]
        tokens = prompt_tokens + completion_tokens
    return shifted_datum(tokens, [0.0] * len(prompt_tokens) + [1.0] * len(completion_tokens))


def _as_chat(pair_prompt: Any, answer: Any) -> list[dict[str, Any]]:
    if isinstance(answer, list):
        return as_messages([m.model_dump() if isinstance(m, Message) else m for m in answer])
    prompt = pair_prompt
    head = (
        [{"role": "user", "content": prompt}]
        if isinstance(prompt, str)
        else as_messages([m.model_dump() if isinstance(m, Message) else m for m in prompt])
    )
    return [*head, {"role": "assistant", "content": answer}]


def preference_datums(
    pair: PreferencePair, tokenizer: Tokenizer, *, chat: bool = True
) -> tuple[types.Datum, types.Datum]:
    """(chosen, rejected) datums that share the prompt's tokens exactly.

    With ``chat=True`` the prompt and answers are rendered with the chat template and
    each datum trains on the final assistant turn; with ``chat=False`` (string pairs
    only) they are a plain prompt + completion.

    Example:
        >>> pair = PreferencePair(prompt="2+2?", chosen="4", rejected="5")
        >>> chosen, rejected = preference_datums(pair, tok)
    """
    if not chat:
        if not (isinstance(pair.prompt, str) and isinstance(pair.chosen, str)):
            raise ChatFormatError("chat=False needs a string prompt and string answers")
        assert isinstance(pair.rejected, str)
        return (
            completion_datum(pair.prompt, pair.chosen, tokenizer),
            completion_datum(pair.prompt, pair.rejected, tokenizer),
        )
    out = []
    prefixes = []
    for answer in (pair.chosen, pair.rejected):
        rendered = render_chat(_as_chat(pair.prompt, answer), tokenizer)
        start, end = rendered.assistant_spans[-1]
        prefixes.append(rendered.tokens[:start])
        weights = [0.0] * len(rendered.tokens)
        weights[start:end] = [1.0] * (end - start)
        out.append(shifted_datum(rendered.tokens, weights))
    if prefixes[0] != prefixes[1]:
        raise ChatFormatError(
            "chosen and rejected do not share the same prompt tokens; give them the same "
            "conversation up to the final assistant turn"
        )
    return out[0], out[1]


REWARD_QUESTION = "Is the last answer helpful and correct? Reply Yes or No."


def reward_datum(
    prompt: str | Sequence[Any],
    response: str,
    tokenizer: Tokenizer,
    *,
    question: str = REWARD_QUESTION,
    score_text: str = "Yes",
) -> types.Datum:
    """A reward-model datum: the conversation, a judging question, and the score answer.

    Only the answer ``score_text`` (and its end-of-turn token) is weighted, so
    ``Σ weights · logprobs`` is the log-probability that the model answers "Yes" about
    this response: the scalar reward ``tk.losses.bradley_terry`` trains and
    ``tinkerkit.recipes.rlhf.RewardModel`` reads back.

    Example:
        >>> d = reward_datum("2+2?", "4", tok)
    """
    chat = _as_chat(prompt, response)
    chat += [{"role": "user", "content": question}, {"role": "assistant", "content": score_text}]
    rendered = render_chat(chat, tokenizer)
    start, end = rendered.assistant_spans[-1]
    weights = [0.0] * len(rendered.tokens)
    weights[start:end] = [1.0] * (end - start)
    return shifted_datum(rendered.tokens, weights)


def rl_datum(
    prompt_tokens: Sequence[int],
    completion_tokens: Sequence[int],
    sampling_logprobs: Sequence[float],
    advantage: float | Sequence[float],
) -> types.Datum:
    """A datum for ``importance_sampling`` / ``ppo`` from exactly the sampled tokens.

    Prompt positions get advantage 0 (not trained); each completion token gets its
    sampling logprob and the advantage (one per sequence, or one per token).

    Example:
        >>> seq = response.sequences[0]
        >>> d = rl_datum(prompt.to_ints(), seq.tokens, seq.logprobs, advantage=0.5)
    """
    n_prompt, n_completion = len(prompt_tokens), len(completion_tokens)
    if n_prompt == 0 or n_completion == 0:
        raise ChatFormatError("an RL datum needs a non-empty prompt and completion")
    if len(sampling_logprobs) != n_completion:
        raise ChatFormatError(
            f"{n_completion} completion tokens but {len(sampling_logprobs)} sampling logprobs"
        )
    per_token = np.broadcast_to(np.asarray(advantage, dtype=np.float32), (n_completion,))
    tokens = [*prompt_tokens, *completion_tokens]
    pad = np.zeros(n_prompt - 1, dtype=np.float32)
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": types.TensorData.from_numpy(np.asarray(tokens[1:], dtype=np.int64)),
            "logprobs": types.TensorData.from_numpy(
                np.concatenate([pad, np.asarray(sampling_logprobs, dtype=np.float32)])
            ),
            "advantages": types.TensorData.from_numpy(np.concatenate([pad, per_token])),
        },
    )
