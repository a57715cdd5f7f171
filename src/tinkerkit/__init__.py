"""tinkerkit: a typed SDK on the official ``tinker`` client, runnable offline.

import tinkerkit as tk
service = tk.connect("mock")            # or "local", or "tinker"
training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
"""

from typing import Any

from tinker import types

from tinkerkit import data, errors, export, hparams, recipes
from tinkerkit.connect import connect, rest_client
from tinkerkit.text import Completion, sample_text
from tinkerkit.train import losses, preference, rl, sft

__version__ = "0.1.0"


def serve(backend: str = "mock", **kwargs: Any) -> Any:
    """A Tinker-compatible HTTP server on an offline backend, as a context manager.

    Unmodified ``tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)``
    code then runs offline (needs ``tinkerkit[serve]``). See ``tinkerkit.server.serve``.

    Example:
        >>> with tk.serve("mock") as server:
        ...     client = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
    """
    from tinkerkit.server.runner import serve as _serve

    return _serve(backend, **kwargs)


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
    "rest_client",
    "rl",
    "sample_text",
    "serve",
    "sft",
    "types",
]
