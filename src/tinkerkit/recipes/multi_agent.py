"""Multi-agent competition: text games, self-play, and training against fixed opponents.

A game implements ``GameEnv`` (reset, whose turn, an observation per agent, step,
done, rewards). Each agent is either *trained* (its own LoRA training client) or
*fixed* (any ``policy(observation) -> action`` function). Every iteration plays a
group of games side by side — all of a turn's sample requests go out at once — then
each trained agent gets an importance-sampling update on exactly the tokens it sampled,
with its reward centred on the group's mean (the guide's loop plays one game at a time,
has no baseline, and refreshes samplers every 50 games).

    result = train_competition(service, DigitDuel, [Trained("tinkerkit/tiny"), Fixed(random_digit)],
                               iterations=30)
    result.win_rates[0]    # per iteration, agent 0
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from tinker import types

from tinkerkit.data.builders import rl_datum
from tinkerkit.data.chat import chat_prompt_tokens
from tinkerkit.models.client_tokenizer import tokenizer_of
from tinkerkit.protocols import ServiceClientLike


class GameEnv(Protocol):
    """A turn-based text game for ``n_agents`` agents."""

    n_agents: int

    def reset(self, seed: int) -> None: ...

    def current_agent(self) -> int:
        """Whose move it is."""
        ...

    def observation(self, agent: int) -> str:
        """What ``agent`` sees before moving (a user message)."""
        ...

    def step(self, agent: int, action: str) -> None: ...

    @property
    def done(self) -> bool: ...

    def rewards(self) -> list[float]:
        """Final reward per agent (e.g. +1 win, -1 loss, 0 draw)."""
        ...


class DigitDuel:
    """Both players name a digit; the higher one wins. A reply without a digit forfeits.

    Small enough that a tiny model learns it in seconds, and still a real game: against
    a uniformly random opponent, naming 9 wins 90% of the time.
    """

    n_agents = 2
    _DIGIT = re.compile(r"\d")

    def reset(self, seed: int) -> None:
        self._moves: dict[int, int | None] = {}

    def current_agent(self) -> int:
        return len(self._moves)

    def observation(self, agent: int) -> str:
        return "Digit duel: reply with one digit from 0 to 9. The higher digit wins."

    def step(self, agent: int, action: str) -> None:
        found = self._DIGIT.search(action)
        self._moves[agent] = int(found.group(0)) if found else None

    @property
    def done(self) -> bool:
        return len(self._moves) == self.n_agents

    def rewards(self) -> list[float]:
        a, b = self._moves[0], self._moves[1]
        if a is None and b is None:
            return [-1.0, -1.0]
        if a is None or b is None:
            return [-1.0, 1.0] if a is None else [1.0, -1.0]
        return [0.0, 0.0] if a == b else ([1.0, -1.0] if a > b else [-1.0, 1.0])


@dataclass
class Trained:
    """An agent trained by RL: its own LoRA on ``model``."""

    model: str = "tinkerkit/tiny"
    rank: int = 16
    learning_rate: float = 5e-3


@dataclass
class Fixed:
    """An agent that never learns: ``policy(observation) -> action``."""

    policy: Callable[[str], str]


def random_digit(seed: int = 0) -> Callable[[str], str]:
    """A fixed DigitDuel opponent: a uniformly random digit each move (seeded)."""
    rng = random.Random(seed)
    return lambda observation: str(rng.randrange(10))


@dataclass
class _Move:
    prompt: list[int]
    tokens: list[int]
    logprobs: list[float]


@dataclass
class CompetitionResult:
    win_rates: list[list[float]]
    """Per agent, its win rate in each iteration."""
    rewards: list[list[float]] = field(default_factory=list)
    """Per agent, its mean reward in each iteration."""
    sampler_paths: list[str | None] = field(default_factory=list)


def train_competition(
    service: ServiceClientLike,
    make_env: Callable[[], GameEnv],
    agents: Sequence[Trained | Fixed],
    *,
    iterations: int = 30,
    games_per_iteration: int = 16,
    max_tokens: int = 4,
    temperature: float = 1.0,
    seed: int = 0,
) -> CompetitionResult:
    """Play and train; returns win rates per iteration. Self-play: pass two ``Trained``.

    Example:
        >>> r = train_competition(tk.connect("mock"), DigitDuel, [Trained(), Fixed(random_digit())])
        >>> np.mean(r.win_rates[0][-5:]) > np.mean(r.win_rates[0][:5])
        True
    """
    clients: list[Any] = []
    for i, player in enumerate(agents):
        if isinstance(player, Trained):
            clients.append(
                service.create_lora_training_client(
                    base_model=player.model, rank=player.rank, seed=seed + i
                ).result()
            )
        else:
            clients.append(None)
    tokenizer = tokenizer_of(next(c for c in clients if c is not None))
    result = CompetitionResult([[] for _ in agents], [[] for _ in agents])
    for iteration in range(iterations):
        samplers: list[Any] = [
            c.save_weights_and_get_sampling_client().result() if c else None for c in clients
        ]
        envs = [make_env() for _ in range(games_per_iteration)]
        for g, env in enumerate(envs):
            env.reset(seed * 1_000_003 + iteration * 1_000 + g)
        moves: list[list[list[_Move]]] = [[[] for _ in agents] for _ in envs]
        while not all(env.done for env in envs):
            pending = []
            for g, env in enumerate(envs):
                if env.done:
                    continue
                agent = env.current_agent()
                spec = agents[agent]
                if isinstance(spec, Fixed):
                    env.step(agent, spec.policy(env.observation(agent)))
                    continue
                prompt = chat_prompt_tokens(
                    [{"role": "user", "content": env.observation(agent)}], tokenizer
                )
                params = types.SamplingParams(
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=hash((seed, iteration, g, agent)) % (1 << 31),
                )
                pending.append(
                    (
                        g,
                        agent,
                        prompt,
                        samplers[agent].sample(types.ModelInput.from_ints(prompt), 1, params),
                    )
                )
            for g, agent, prompt, future in pending:  # every request of the turn is in flight
                seq = future.result().sequences[0]
                moves[g][agent].append(_Move(prompt, list(seq.tokens), list(seq.logprobs or [])))
                envs[g].step(agent, tokenizer.decode(seq.tokens, skip_special_tokens=True))
        rewards = np.array([env.rewards() for env in envs])  # (games, agents)
        for a in range(len(agents)):
            result.win_rates[a].append(float(np.mean(rewards[:, a] > 0)))
            result.rewards[a].append(float(np.mean(rewards[:, a])))
        _update(clients, agents, moves, rewards)
    result.sampler_paths = [
        c.save_weights_for_sampler("final").result().path if c else None for c in clients
    ]
    return result


def _update(
    clients: list[Any],
    agents: Sequence[Trained | Fixed],
    moves: list[list[list[_Move]]],
    rewards: np.ndarray,
) -> None:
    for a, (client, spec) in enumerate(zip(clients, agents, strict=True)):
        if client is None or not isinstance(spec, Trained):
            continue
        advantages = rewards[:, a] - rewards[:, a].mean()
        data = [
            rl_datum(m.prompt, m.tokens, m.logprobs, float(adv))
            for g, adv in enumerate(advantages)
            if adv != 0
            for m in moves[g][a]
            if m.tokens
        ]
        if data:
            client.forward_backward(data, "importance_sampling")
            client.optim_step(types.AdamParams(learning_rate=spec.learning_rate))
