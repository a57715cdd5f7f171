"""The RLHF pipeline's settings (``RLHFConfig``): one source of its defaults, light to import.

``tinkerkit.recipes.rlhf`` runs it; ``tinkerkit rlhf``'s options and
``tk.hparams.HYPERPARAMS["rlhf"]`` are read from it.

config = tk.recipes.RLHFConfig(sft_data="chats.jsonl", preference_data="pairs.jsonl",
                               prompts="prompts.jsonl", out_dir="runs/rlhf")
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tinkerkit.train.run_options import MAX_STEPS, Records, Settings


class RLHFConfig(Settings):
    """Settings of the three stages; learning rates default to the guide's RLHF table."""

    sft_data: Records
    """Chats for stage 1 (SFT)."""
    preference_data: Records
    """Preference pairs for stage 2 (the reward model)."""
    prompts: Records
    """RL prompts for stage 3."""
    model: str = "tinkerkit/tiny"
    out_dir: str | Path = "runs/rlhf"
    """Each stage logs under it: sft/, reward/, rl/."""
    rank: int = Field(default=16, ge=1)
    """LoRA rank of all three stages."""
    seed: int = Field(default=0, ge=0)
    sft_epochs: int = Field(default=1, ge=1, le=MAX_STEPS)
    sft_batch_size: int = Field(default=8, ge=1)
    sft_learning_rate: float = Field(default=1e-4, gt=0)
    """Stage 1's learning rate."""
    reward_epochs: int = Field(default=1, ge=1, le=MAX_STEPS)
    reward_batch_size: int = Field(default=8, ge=1)
    reward_learning_rate: float = Field(default=1e-5, gt=0)
    """Stage 2's learning rate (the guide's reward_lr)."""
    reward_eval_split: float = Field(default=0.0, ge=0, le=0.99)
    rl_steps: int = Field(default=20, ge=1, le=MAX_STEPS)
    """RL steps of stage 3."""
    rl_batch_size: int = Field(default=4, ge=1)
    group_size: int = Field(default=4, ge=1)
    """Samples per prompt in stage 3."""
    rl_learning_rate: float = Field(default=1e-6, gt=0)
    """Stage 3's learning rate (the guide's policy_lr)."""
    max_tokens: int = Field(default=32, ge=1)
    """Longest sampled completion in stage 3, in tokens."""
    temperature: float = Field(default=1.0, ge=0)
    progress: bool = True


__all__ = ["RLHFConfig"]
