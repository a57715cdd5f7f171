"""tinkerkit: a typed SDK on the official ``tinker`` client, runnable offline.

import tinkerkit as tk
service = tk.connect("mock")            # or "local", or "tinker"
training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
"""

from tinker import types

from tinkerkit import data, errors
from tinkerkit.connect import connect

__version__ = "0.1.0"

__all__ = ["__version__", "connect", "data", "errors", "types"]
