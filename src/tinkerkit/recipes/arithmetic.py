"""A toy arithmetic environment: small sums whose answers a tiny model can learn by RL.

On the ``mock`` backend the reward climbs within a few dozen steps, which makes it the
quickest end-to-end check of an RL setup (prompts → samples → rewards → updates).

    prompts = arithmetic_prompts(32, seed=0)        # RLPrompt("What is 3+4?", answer="7")
    tk.rl.train(tk.rl.Config(prompts=prompts, reward=arithmetic_reward, max_tokens=4, ...))
"""

from __future__ import annotations

import random
from typing import Any

from tinkerkit.data.schemas import RLPrompt
from tinkerkit.recipes.math import CORRECT, WRONG, answers_match, extract_answer

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def arithmetic_prompts(
    n: int, seed: int = 0, *, ops: str = "+", max_operand: int = 9
) -> list[RLPrompt]:
    """``n`` prompts like ``"What is 3+4?"``, each with its ``answer`` field (``"7"``).

    Example:
        >>> p = arithmetic_prompts(1, seed=0)[0]
        >>> p.prompt, p.fields
        ('What is 6+6?', {'answer': '12'})
    """
    unknown = set(ops) - set(_OPS)
    if unknown or not ops:
        raise ValueError(f"ops must be made of '+', '-', '*', got {ops!r}")
    if n < 1 or max_operand < 0:
        raise ValueError(f"need n >= 1 and max_operand >= 0, got n={n}, max_operand={max_operand}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b, op = rng.randint(0, max_operand), rng.randint(0, max_operand), rng.choice(ops)
        record = {"prompt": f"What is {a}{op}{b}?", "answer": str(_OPS[op](a, b))}
        out.append(RLPrompt.model_validate(record))
    return out


def arithmetic_reward(prompt: Any, completion: str, *, answer: str, **_fields: Any) -> float:
    """The guide's math scoring (+1 / -0.1) plus partial credit a random model can find.

    A model that starts out emitting noise almost never writes the exact answer, so
    the +1 alone gives RL nothing to work with. Writing any digits earns +0.1, and
    starting with the answer's first digit +0.2 more, so the reward climbs in steps.

    Example:
        >>> arithmetic_reward("What is 3+4?", "7", answer="7")
        1.0
        >>> arithmetic_reward("What is 3+4?", "5", answer="7")
        0.1
    """
    given = extract_answer(completion)
    if answers_match(given, answer):
        return CORRECT
    text = completion.strip()
    score = 0.0
    if any(c.isdigit() for c in text):
        score += 0.1
    if text[:1] == answer[:1]:
        score += 0.2
    return score if score else WRONG
