"""The three-stage RLHF pipeline: SFT → reward model → RL against the reward model.

The guide's version calls a ``bradley_terry`` loss the service does not have, feeds
``{"preference": 1.0}`` inputs no loss reads, and scores RL samples with "the last ten
prompt logprobs". Here:

1. **SFT** (``tk.sft``) on chats → the policy's starting point;
2. **reward model** (``tk.preference.train_reward_model``): Bradley–Terry on preference
   pairs, through ``forward_backward_custom``; a response's reward is the
   log-probability that the model answers "Yes" to "is this answer good?"
   (``tk.data.reward_datum``) — one forward pass, no sampling;
3. **RL** (``tk.rl``) from the SFT weights, rewarded by ``RewardModel``, whose scoring
   requests for a whole batch are in flight together.

Every stage's settings and inputs (chats, preference pairs, prompts) are validated
before stage 1 trains, so a bad prompt file fails in a second, not after two trainings.
Each stage writes its own log folder under ``out_dir`` (``sft/``, ``reward/``, ``rl/``).
Re-running the pipeline returns finished stages' recorded results, resumes an
interrupted one from its last checkpoint, and starts again one stopped before its first.

    result = tk.recipes.rlhf(RLHFConfig(sft_data=chats, preference_data=pairs,
                                        prompts=prompts, out_dir="runs/rlhf"), service)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinkerkit._defaults import service_or_default
from tinkerkit.data.builders import REWARD_QUESTION, reward_datum
from tinkerkit.models.client_tokenizer import tokenizer_of
from tinkerkit.protocols import SamplingClientLike, ServiceClientLike
from tinkerkit.train.checkpoints import CheckpointLog
from tinkerkit.train.rlhf_config import RLHFConfig
from tinkerkit.train.scoring import datum_logprobs, weighted_scores


class RewardModel:
    """Scores (prompt, response) pairs with a Bradley–Terry reward model's sampling client.

    Usable directly as an RL reward function: ``reward(prompt, completion, **fields)``.

    Example:
        >>> rm = RewardModel(service.create_sampling_client(model_path=rm_path).result())
        >>> rm.score_many([("2+2?", "4"), ("2+2?", "five")])
        [-0.01, -4.2]
    """

    def __init__(
        self, sampling_client: SamplingClientLike, question: str = REWARD_QUESTION
    ) -> None:
        self.sampling_client = sampling_client
        self.tokenizer = tokenizer_of(sampling_client)
        self.question = question

    def score_many(self, items: Sequence[tuple[Any, str]]) -> list[float]:
        """Rewards for many (prompt, response) pairs; every request is sent before any is read."""
        datums = [
            reward_datum(prompt, response, self.tokenizer, question=self.question)
            for prompt, response in items
        ]
        return weighted_scores(datums, datum_logprobs(self.sampling_client, datums))

    def score(self, prompt: Any, response: str) -> float:
        return self.score_many([(prompt, response)])[0]

    def __call__(self, prompt: Any, completion: str, **fields: Any) -> float:
        return self.score(prompt, completion)


@dataclass
class RLHFResult:
    sft_state_path: str
    sft_sampler_path: str
    reward_model_path: str
    policy_sampler_path: str
    policy_state_path: str
    reward_evals: list[dict[str, Any]]
    rl_rewards: list[float]


def _stage_start(log_dir: Path) -> dict[str, bool]:
    """How a stage starts: resume it from a checkpoint (a finished stage then returns its
    recorded result), or overwrite one stopped before its first checkpoint."""
    if CheckpointLog(log_dir).last() is not None:
        return {"resume": True}
    return {"overwrite": True}


def _no_reward(prompt: Any, completion: str, **fields: Any) -> float:
    """Stands in for the reward model while the RL settings are checked."""
    return 0.0


def _stage_configs(config: RLHFConfig) -> tuple[Any, Any, Any]:
    """The three stages' configs (checked when made), with every input loaded once to
    validate it."""
    from tinkerkit.train import preference as tk_preference
    from tinkerkit.train import rl as tk_rl
    from tinkerkit.train import rl_sampling, sft_data
    from tinkerkit.train import sft as tk_sft

    out = Path(config.out_dir)
    common: dict[str, Any] = {
        "model": config.model,
        "rank": config.rank,
        "seed": config.seed,
        "progress": config.progress,
    }
    sft = tk_sft.Config(
        data=config.sft_data,
        epochs=config.sft_epochs,
        batch_size=config.sft_batch_size,
        learning_rate=config.sft_learning_rate,
        log_dir=out / "sft",
        save_each_epoch=False,
        **common,
    )
    reward = tk_preference.DPOConfig(
        data=config.preference_data,
        objective="bradley_terry",
        epochs=config.reward_epochs,
        batch_size=config.reward_batch_size,
        learning_rate=config.reward_learning_rate,
        eval_split=config.reward_eval_split,
        log_dir=out / "reward",
        **common,
    )
    rl = tk_rl.Config(
        prompts=config.prompts,
        reward=_no_reward,
        steps=config.rl_steps,
        batch_size=config.rl_batch_size,
        group_size=config.group_size,
        learning_rate=config.rl_learning_rate,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        log_dir=out / "rl",
        **common,
    )
    sft_data.load(config.sft_data)
    tk_preference.load_pairs(config.preference_data)
    rl_sampling.load(config.prompts)
    for stage in (sft, reward, rl):
        _stage_start(Path(stage.log_dir))  # a damaged checkpoint log fails now, too
    return sft, reward, rl


def rlhf(config: RLHFConfig, service: ServiceClientLike | None = None) -> RLHFResult:
    """Run (or finish) the three stages; returns every stage's output paths and metrics.

    Example:
        >>> r = rlhf(RLHFConfig(sft_data="chats.jsonl", preference_data="pairs.jsonl",
        ...                     prompts="prompts.jsonl"), tk.connect("mock"))
        >>> r.rl_rewards[-1] > r.rl_rewards[0]
    """
    from tinkerkit.train import preference as tk_preference
    from tinkerkit.train import rl as tk_rl
    from tinkerkit.train import sft as tk_sft

    sft_config, reward_config, rl_config = _stage_configs(config)
    service = service_or_default(service)  # None: the face's default, tk.connect()

    sft = tk_sft.train(
        sft_config.model_copy(update=_stage_start(Path(sft_config.log_dir))), service=service
    )
    reward = tk_preference.train_reward_model(
        reward_config.model_copy(update=_stage_start(Path(reward_config.log_dir))),
        service=service,
    )
    rm = RewardModel(service.create_sampling_client(model_path=reward.sampler_path).result())
    rl = tk_rl.train(
        rl_config.model_copy(
            update={
                "reward": rm,
                "init_state": sft.state_path,
                **_stage_start(Path(rl_config.log_dir)),
            }
        ),
        service=service,
    )
    return RLHFResult(
        sft_state_path=sft.state_path,
        sft_sampler_path=sft.sampler_path,
        reward_model_path=reward.sampler_path,
        policy_sampler_path=rl.sampler_path,
        policy_state_path=rl.state_path,
        reward_evals=reward.evals(),
        rl_rewards=rl.rewards,
    )
