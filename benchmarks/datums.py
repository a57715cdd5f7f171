"""Datums per second for 10k chats: ``tk.data.chat_datums`` vs the per-example way.

The per-example way is what a careful user writes from the guide and the HF docs: for
each chat, ``apply_chat_template`` the prompt (all but the last assistant turn, with
the generation prompt) and the whole chat, ``encode`` both, and weight the tokens after
the prompt. Ours renders each chat once, encodes all chats in one batched call, and
finds every assistant span from character offsets. Both produce ``tinker.types.Datum``s
with the same tokens and weights (checked). Target: >= 2x.

Usage: python benchmarks/datums.py [--n 10000]
"""

from __future__ import annotations

import argparse
import random
import time

from tinker import types

from tinkerkit.data import chat_datums, shifted_datum
from tinkerkit.models.tokenizer import byte_tokenizer

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "bees",
    "make",
    "honey",
    "near",
    "paris",
]


def _chats(n: int) -> list[list[dict[str, str]]]:
    rng = random.Random(0)

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    return [
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": text(rng.randint(5, 20))},
            {"role": "assistant", "content": text(rng.randint(5, 30))},
            {"role": "user", "content": text(rng.randint(5, 20))},
            {"role": "assistant", "content": text(rng.randint(5, 30))},
        ]
        for _ in range(n)
    ]


def per_example(chats, tok) -> list[types.Datum]:
    out = []
    for chat in chats:
        prompt = tok.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(chat, tokenize=False)
        prompt_ids = tok.encode(prompt, add_special_tokens=False)
        ids = tok.encode(full, add_special_tokens=False)
        # The template ends a turn with "<|im_end|>\n": train on the turn, not the newline.
        end = len(ids) - 1
        weights = [0.0] * len(prompt_ids) + [1.0] * (end - len(prompt_ids)) + [0.0]
        out.append(shifted_datum(ids, weights))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    tok = byte_tokenizer()
    chats = _chats(args.n)
    per_example(chats[:50], tok), chat_datums(chats[:50], tok)  # warm caches
    start = time.perf_counter()
    baseline = per_example(chats, tok)
    t_base = time.perf_counter() - start
    start = time.perf_counter()
    ours = chat_datums(chats, tok)
    t_ours = time.perf_counter() - start
    for a, b in zip(baseline[:200], ours[:200], strict=True):
        assert a.model_input.to_ints() == b.model_input.to_ints()
        assert a.loss_fn_inputs["weights"].tolist() == b.loss_fn_inputs["weights"].tolist()
    print(
        f"{args.n} chats: per-example {args.n / t_base:,.0f} datums/s | "
        f"tk.data.chat_datums {args.n / t_ours:,.0f} datums/s | ratio {t_base / t_ours:.2f}x"
    )


if __name__ == "__main__":
    main()
