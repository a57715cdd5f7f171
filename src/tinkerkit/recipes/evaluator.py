"""Fine-tuned models as evaluators: train a scorer with SFT, score text with it robustly.

The guide parses a score with ``float(text.strip())``, which crashes on "Score: 85/100"
and on every junk reply. ``Evaluator.score`` finds the number, handles ranges and
fractions, clamps to the scale, retries, and reports failures instead of raising.

    chats = [evaluator_chat(ex["code"], ex["score"], ex["reasoning"]) for ex in data]
    result = tk.sft.train(tk.sft.Config(data=chats, ...), service)
    judge = Evaluator(service.create_sampling_client(model_path=result.sampler_path).result())
    judge.score(code)            # -> 85.0, or None with judge.failures recording why
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from tinkerkit.protocols import SamplingClientLike
from tinkerkit.text import sample_text

logger = logging.getLogger("tinkerkit")

DEFAULT_INSTRUCTION = "Rate the quality of this code from {low} to {high}. Answer 'Score: N' then one line of reasoning."
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_SCORE = re.compile(
    rf"score\s*[:=]?\s*({_NUMBER})(?:\s*(?:/|out of)\s*({_NUMBER}))?", re.IGNORECASE
)
_RANGE = re.compile(rf"({_NUMBER})\s*(?:-|–|to)\s*({_NUMBER})")
_FRACTION = re.compile(rf"({_NUMBER})\s*(?:/|out of)\s*({_NUMBER})", re.IGNORECASE)
_ANY = re.compile(_NUMBER)


def evaluator_prompt(
    text: str, low: float = 0, high: float = 100, instruction: str = DEFAULT_INSTRUCTION
) -> str:
    """The user message an evaluator sees for ``text``."""
    return f"{instruction.format(low=_fmt(low), high=_fmt(high))}\n\n{text}"


def evaluator_chat(
    text: str, score: float, reasoning: str = "", low: float = 0, high: float = 100
) -> dict[str, Any]:
    """One SFT example for an evaluator: the prompt, then ``Score: N`` and the reasoning.

    Example:
        >>> evaluator_chat("def f(): pass", 40, "No docstring, does nothing.")["messages"][1]
        {'role': 'assistant', 'content': 'Score: 40\\nNo docstring, does nothing.'}
    """
    answer = f"Score: {_fmt(score)}" + (f"\n{reasoning}" if reasoning else "")
    return {
        "messages": [
            {"role": "user", "content": evaluator_prompt(text, low, high)},
            {"role": "assistant", "content": answer},
        ]
    }


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def parse_score(reply: str, low: float = 0, high: float = 100) -> float | None:
    """The score in a model's reply, on the ``[low, high]`` scale, or None if there is none.

    Understands ``Score: 85``, ``85/100`` and ``4 out of 5`` (rescaled), ``80-90`` (the
    midpoint), and a bare number; values outside the scale are clamped.

    Example:
        >>> parse_score("I'd say 4 out of 5.", 0, 100)
        80.0
    """
    text = reply.strip()
    match = _SCORE.search(text)
    if match:
        value, denominator = float(match.group(1)), match.group(2)
        if denominator is not None and float(denominator) > 0 and float(denominator) != high:
            value = low + (high - low) * value / float(denominator)
        return min(high, max(low, value))
    fraction = _FRACTION.search(text)
    if fraction and float(fraction.group(2)) > 0:
        value = low + (high - low) * float(fraction.group(1)) / float(fraction.group(2))
        return min(high, max(low, value))
    span = _RANGE.search(text)
    if span:
        return min(high, max(low, (float(span.group(1)) + float(span.group(2))) / 2))
    number = _ANY.search(text)
    if number:
        return min(high, max(low, float(number.group(0))))
    return None


@dataclass
class Evaluator:
    """Scores text with a sampling client of a (fine-tuned) evaluator model."""

    sampling_client: SamplingClientLike
    low: float = 0
    high: float = 100
    instruction: str = DEFAULT_INSTRUCTION
    retries: int = 1
    max_tokens: int = 48
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(text excerpt, reply) of every scoring that found no number."""

    def score(self, text: str) -> float | None:
        """The evaluator's score for ``text``; None (and a recorded failure) if unparseable.

        Example:
            >>> Evaluator(sampler).score("def add(a, b):\\n    return a + b")
            85.0
        """
        prompt = evaluator_prompt(text, self.low, self.high, self.instruction)
        reply = ""
        for attempt in range(self.retries + 1):
            temperature = 0.0 if attempt == 0 else 0.7
            reply = sample_text(
                self.sampling_client,
                prompt,
                max_tokens=self.max_tokens,
                temperature=temperature,
                seed=attempt,
            )[0].text
            value = parse_score(reply, self.low, self.high)
            if value is not None:
                return value
        self.failures.append((text[:80], reply[:200]))
        logger.warning("evaluator gave no score for %r: %r", text[:40], reply[:80])
        return None

    def score_many(self, texts: list[str]) -> list[float | None]:
        return [self.score(t) for t in texts]
