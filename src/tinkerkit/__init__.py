"""tinkerkit: a typed SDK on the official ``tinker`` client, runnable offline.

import tinkerkit as tk
service = tk.connect("mock")            # or "local", or "tinker"
training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
"""

from tinker import types

from tinkerkit import data, errors, export, hparams, recipes
from tinkerkit.connect import connect
from tinkerkit.text import Completion, sample_text
from tinkerkit.train import losses, preference, rl, sft

__version__ = "0.1.0"

__all__ = [
    "Completion",
    "__version__",
    "connect",
    "data",
    "errors",
    "export",
    "hparams",
    "losses",
    "preference",
    "recipes",
    "rl",
    "sample_text",
    "sft",
    "types",
]
