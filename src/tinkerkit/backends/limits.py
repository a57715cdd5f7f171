"""Request limits: what one request may ask for, checked before any work is done.

The service refuses oversized requests with HTTP 400 (``tinker.BadRequestError``) but
publishes no numbers (the SDK only splits ``forward_backward`` into chunks of at most
1024 datums, ``ClientConfigResponse.fwdbwd_max_chunk_len``). These are tinkerkit's,
chosen well above what the fine-tuning guide and tinker-cookbook recipes send (LoRA
rank 32-128, groups of 4-64 samples, a few hundred datums a step) and well below what
takes a 16 GB machine down. Every offline backend and ``tinkerkit serve`` apply them,
so a request refused served is refused in-process too, with the same
``RequestLimitError`` (a ``tinker.BadRequestError``) naming the field, the value and
the limit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing the limits stays light: the CLI checks options against them
    from tinker import types

    from tinkerkit.errors import RequestLimitError

MAX_LORA_RANK = 1024
"""Largest LoRA ``rank`` (the cookbook's largest is 128; ``LoRA Without Regret`` went
to 512)."""

MAX_NUM_SAMPLES = 1024
"""Most samples one ``sample`` request draws."""

MAX_SAMPLED_TOKENS_PER_REQUEST = 1_048_576
"""Most tokens one ``sample`` request may generate: ``num_samples`` × ``max_tokens``,
where ``max_tokens`` counts as the context the prompt leaves when that is smaller (or
when ``max_tokens`` is None)."""

MAX_DATUMS_PER_REQUEST = 65_536
"""Most datums in one ``forward``/``forward_backward`` request."""

MAX_TOKENS_PER_REQUEST = 262_144
"""Most ``model_input`` tokens, summed over the datums, in one ``forward``/
``forward_backward`` request."""

MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""Largest request body ``tinkerkit serve`` reads (after decompression), bytes."""

MAX_LATENCY_S = 60.0
"""Largest simulated round trip (``latency=``, ``--latency``), seconds: a minute is slower
than any network; ``1e23`` would hold every request forever."""


def check_latency(latency: float) -> float:
    """``latency`` as seconds, if it is a number from 0 to ``MAX_LATENCY_S``; else ValueError.

    Example:
        >>> check_latency(0.05)
        0.05
    """
    seconds = float(latency)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_LATENCY_S:
        raise ValueError(
            f"latency must be a number of seconds from 0 to {MAX_LATENCY_S:g}, got {latency}"
        )
    return seconds


def _refusal(field: str, value: object, limit: str, hint: str = "") -> RequestLimitError:
    from tinkerkit.errors import RequestLimitError

    return RequestLimitError(field, value, limit, hint)


def _whole(value: object) -> int | None:
    """``value`` as an int when it is a whole number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def check_lora_rank(rank: object) -> int:
    """``rank`` as an int, or ``RequestLimitError`` unless it is 1..``MAX_LORA_RANK``.

    Example:
        >>> check_lora_rank(32)
        32
    """
    value = _whole(rank)
    if value is None or not 1 <= value <= MAX_LORA_RANK:
        raise _refusal(
            "rank",
            rank,
            f"LoRA rank must be a whole number from 1 to {MAX_LORA_RANK} (MAX_LORA_RANK)",
            "The guide's default is 32; 128 is plenty for large supervised datasets.",
        )
    return value


def check_sampling(num_samples: object, params: types.SamplingParams) -> None:
    """Refuse a ``sample`` request that is over a limit or nonsense on every backend:
    ``num_samples`` outside 1..``MAX_NUM_SAMPLES``, ``max_tokens`` < 1, ``temperature``
    negative, NaN or infinite, ``top_p`` outside [0, 1].

    Example:
        >>> check_sampling(4, types.SamplingParams(max_tokens=16, temperature=0.7))
    """
    count = _whole(num_samples)
    if count is None or not 1 <= count <= MAX_NUM_SAMPLES:
        raise _refusal(
            "num_samples",
            num_samples,
            f"it must be a whole number from 1 to {MAX_NUM_SAMPLES} per request (MAX_NUM_SAMPLES)",
            "Draw more with several sample() calls." if (count or 0) > MAX_NUM_SAMPLES else "",
        )
    max_tokens = params.max_tokens
    if max_tokens is not None and (_whole(max_tokens) is None or max_tokens < 1):
        raise _refusal(
            "max_tokens",
            max_tokens,
            "it must be a whole number of at least 1 (or None: until a stop token or the "
            "end of the context)",
            "max_tokens=1 is a single prefill of the prompt; ignore the sampled token.",
        )
    temperature = params.temperature
    if not (isinstance(temperature, int | float) and math.isfinite(temperature)) or (
        temperature < 0
    ):
        raise _refusal(
            "temperature",
            temperature,
            "it must be a finite number of at least 0 (0 is greedy, 1 the model's own "
            "distribution)",
        )
    top_p = params.top_p
    if not (isinstance(top_p, int | float) and 0 <= top_p <= 1):
        raise _refusal("top_p", top_p, "it must be a number from 0 to 1 (1 keeps every token)")


def check_sampled_tokens(
    num_samples: int, params: types.SamplingParams, prompt_length: int, max_context: int
) -> None:
    """Refuse a ``sample`` request that could generate more than
    ``MAX_SAMPLED_TOKENS_PER_REQUEST`` tokens (``num_samples`` × its token budget).

    Example:
        >>> check_sampled_tokens(64, types.SamplingParams(max_tokens=256), 12, 2048)
    """
    budget = max(max_context - prompt_length, 0)
    if params.max_tokens is not None:
        budget = min(budget, params.max_tokens)
    if num_samples * budget > MAX_SAMPLED_TOKENS_PER_REQUEST:
        given = "None (the rest of the context)" if params.max_tokens is None else budget
        raise _refusal(
            "num_samples × max_tokens",
            f"{num_samples} × {given} = {num_samples * budget}",
            f"one request generates at most {MAX_SAMPLED_TOKENS_PER_REQUEST:,} tokens "
            "(MAX_SAMPLED_TOKENS_PER_REQUEST)",
            "Set a smaller max_tokens, or draw the samples over several sample() calls.",
        )


def check_datum_count(count: int) -> None:
    """Refuse a ``forward``/``forward_backward`` request of more than
    ``MAX_DATUMS_PER_REQUEST`` datums.

    Example:
        >>> check_datum_count(128)
    """
    if count > MAX_DATUMS_PER_REQUEST:
        raise _refusal(
            "len(data)",
            count,
            f"one request takes at most {MAX_DATUMS_PER_REQUEST:,} datums (MAX_DATUMS_PER_REQUEST)",
            "Split the data into smaller forward_backward calls (gradients accumulate "
            "until optim_step).",
        )


def check_body_size(size: int, what: str = "request body") -> None:
    """Refuse a request body over ``MAX_REQUEST_BYTES`` (``tinkerkit serve``).

    Example:
        >>> check_body_size(1024)
    """
    limit = MAX_REQUEST_BYTES
    if size > limit:
        raise _refusal(
            what,
            f"{size:,} bytes",
            f"tinkerkit serve reads at most {limit:,} bytes (MAX_REQUEST_BYTES)",
            "Split the request (forward_backward: fewer datums per call).",
        )
