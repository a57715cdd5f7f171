"""Wall time of ONE RL batch (8 prompts x group 8): ours vs the guide's sequential loop.

Both sample the same prompts from the same sampler under ``tk.connect("mock",
latency=0.2)`` and score every completion with the same reward (which itself waits
``--reward-latency`` s, like a call to a judge model), side by side in one run:

- ours: what ``tk.rl.train`` does each step — all 8 ``sample`` requests submitted before
  the first ``.result()``, then the 64 rewards scored concurrently;
- sequential: the guide's loop — one ``sample`` request, wait, score its completions one
  by one, next prompt.

Target: ours <= 1.5 latencies. Usage: python benchmarks/rl_sampling.py [--latency 0.2]
"""

from __future__ import annotations

import argparse
import time

from tinker import types

import tinkerkit as tk
from tinkerkit.data import chat_prompt_tokens
from tinkerkit.train.rl_rewards import RewardCall, score_all
from tinkerkit.train.rl_sampling import sample_groups, sampling_seed

PROMPTS = [f"Write a word with many a's (#{i})" for i in range(8)]
GROUP = 8
MAX_TOKENS = 16


def make_reward(delay: float):
    def reward(prompt: str, completion: str, **fields: object) -> float:
        time.sleep(delay)  # a judge model, a test runner...
        return completion.count("a") / max(len(completion), 1)

    return reward


def ours(sampler, prompts: list[list[int]], tok, reward) -> float:
    start = time.monotonic()
    groups = sample_groups(
        sampler,
        list(enumerate(prompts)),
        tok,
        group_size=GROUP,
        step=1,
        seed=0,
        max_tokens=MAX_TOKENS,
        temperature=1.0,
    )
    calls = [RewardCall(PROMPTS[s.prompt_index], s.text) for g in groups for s in g]
    outcomes = score_all(reward, calls)
    assert len(outcomes) == len(PROMPTS) * GROUP and all(o.error is None for o in outcomes)
    return time.monotonic() - start


def sequential(sampler, prompts: list[list[int]], tok, reward) -> float:
    start = time.monotonic()
    rewards = []
    for index, tokens in enumerate(prompts):
        params = types.SamplingParams(
            max_tokens=MAX_TOKENS, temperature=1.0, seed=sampling_seed(0, 1, index)
        )
        result = sampler.sample(types.ModelInput.from_ints(tokens), GROUP, params).result()
        for seq in result.sequences:
            text = tok.decode(list(seq.tokens), skip_special_tokens=True)
            rewards.append(reward(PROMPTS[index], text))
    assert len(rewards) == len(PROMPTS) * GROUP
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--reward-latency", type=float, default=0.01)
    args = parser.parse_args()
    service = tk.connect("mock", latency=args.latency)
    training = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=8).result()
    sampler = training.save_weights_and_get_sampling_client().result()
    tok = training.get_tokenizer()
    prompts = [chat_prompt_tokens([{"role": "user", "content": p}], tok) for p in PROMPTS]
    reward = make_reward(args.reward_latency)
    ours(sampler, prompts, tok, reward)  # warm-up: imports, caches
    t_ours = ours(sampler, prompts, tok, reward)
    t_seq = sequential(sampler, prompts, tok, reward)
    print(
        f"ours {t_ours:.2f} s ({t_ours / args.latency:.2f} latencies) | "
        f"sequential {t_seq:.2f} s | ratio {t_seq / t_ours:.1f}x "
        f"[{len(PROMPTS)} prompts x group {GROUP}, latency {args.latency} s, "
        f"reward {args.reward_latency} s]"
    )


if __name__ == "__main__":
    main()
