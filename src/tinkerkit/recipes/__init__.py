"""Recipes: rewards and environments for ``tk.rl``, and the guide's advanced workflows.

- rewards: ``math_reward``, ``format_reward``, ``length_penalty``, ``code_reward``
  (runs code in ``sandbox.run_python``), a toy arithmetic environment;
- ``rlhf`` (SFT → reward model → RL), ``distill_prompt``, ``train_competition``
  (multi-agent), ``Evaluator`` (fine-tuned scorers).

from tinkerkit.recipes import arithmetic_prompts, math_reward
tk.rl.train(tk.rl.Config(prompts=arithmetic_prompts(64), reward=math_reward, ...))
"""

from tinkerkit.recipes.arithmetic import arithmetic_prompts, arithmetic_reward
from tinkerkit.recipes.code import code_reward, extract_code
from tinkerkit.recipes.distill import distill_prompt
from tinkerkit.recipes.evaluator import Evaluator, evaluator_chat, parse_score
from tinkerkit.recipes.format import char_fraction, combine, format_reward, length_penalty
from tinkerkit.recipes.math import answers_match, extract_answer, math_reward
from tinkerkit.recipes.multi_agent import DigitDuel, Fixed, GameEnv, Trained, train_competition
from tinkerkit.recipes.rlhf import RewardModel, RLHFConfig, rlhf

__all__ = [
    "DigitDuel",
    "Evaluator",
    "Fixed",
    "GameEnv",
    "RLHFConfig",
    "RewardModel",
    "Trained",
    "answers_match",
    "arithmetic_prompts",
    "arithmetic_reward",
    "char_fraction",
    "code_reward",
    "combine",
    "distill_prompt",
    "evaluator_chat",
    "extract_answer",
    "extract_code",
    "format_reward",
    "length_penalty",
    "math_reward",
    "parse_score",
    "rlhf",
    "train_competition",
]
