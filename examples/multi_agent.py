"""Multi-agent competition: an agent learns to beat a fixed opponent at a text game.

`DigitDuel`: both players name a digit, the higher wins. Every iteration plays 16 games
side by side and updates the trained agent on exactly its sampled tokens, with rewards
centred on the group. For self-play, pass two `Trained()` agents.

Run: python examples/multi_agent.py
"""

from __future__ import annotations

import numpy as np

import tinkerkit as tk
from tinkerkit.recipes import DigitDuel, Fixed, Trained, train_competition
from tinkerkit.recipes.multi_agent import random_digit

result = train_competition(
    tk.connect("mock"),
    DigitDuel,
    [Trained(), Fixed(random_digit(0))],
    iterations=30,
    games_per_iteration=16,
)
wins = result.win_rates[0]
print(
    f"win rate vs a random opponent: first 5 iterations {np.mean(wins[:5]):.2f}, last 5 {np.mean(wins[-5:]):.2f}"
)
