"""tinkerkit: a typed SDK on the official ``tinker`` client, runnable offline.

import tinkerkit as tk
service = tk.connect("mock")            # or "local", or "tinker"
training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
"""

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tinkerkit import _defaults

if TYPE_CHECKING:
    from tinker import types

    from tinkerkit import data, errors, export, hparams, recipes
    from tinkerkit.connect import connect, connection_of, rest_client
    from tinkerkit.models import tokenizer_of
    from tinkerkit.text import Completion, sample_text
    from tinkerkit.train import losses, preference, rl, sft

__version__ = "0.1.0"

# Resolved on first use (PEP 562), so ``import tinkerkit.cli`` and ``tinkerkit --help``
# do not import tinker, torch or numpy: name -> (module, attribute or None for the module).
_LAZY: dict[str, tuple[str, str | None]] = {
    "types": ("tinker.types", None),
    "data": ("tinkerkit.data", None),
    "errors": ("tinkerkit.errors", None),
    "export": ("tinkerkit.export", None),
    "hparams": ("tinkerkit.hparams", None),
    "recipes": ("tinkerkit.recipes", None),
    "connect": ("tinkerkit.connect", "connect"),
    "rest_client": ("tinkerkit.connect", "rest_client"),
    "connection_of": ("tinkerkit.connect", "connection_of"),
    "tokenizer_of": ("tinkerkit.models", "tokenizer_of"),
    "Completion": ("tinkerkit.text", "Completion"),
    "sample_text": ("tinkerkit.text", "sample_text"),
    "losses": ("tinkerkit.train.losses", None),
    "preference": ("tinkerkit.train.preference", None),
    "rl": ("tinkerkit.train.rl", None),
    "sft": ("tinkerkit.train.sft", None),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'tinkerkit' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(ModuleType):
    """Importing the submodule ``tinkerkit.connect`` must not replace ``tk.connect``, the
    function of the same name (Python sets a package attribute for every submodule it
    imports: ``tk.rest_client(...)`` then ``tk.connect(...)`` called a module)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and name in _LAZY and _LAZY[name][1] is not None:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


# The face fills in the client: loops, export and recipes called without one use these
# (``tinkerkit._defaults``); they never import ``tinkerkit.connect`` themselves.
def _default_service() -> Any:
    from tinkerkit.connect import connect

    return connect()


def _default_rest_client(service: Any) -> Any:
    from tinkerkit.connect import rest_client

    return rest_client(service)


_defaults.install(_default_service, _default_rest_client)


def _export_final(external_path: str, out_dir: Any, service: Any) -> Any:
    from tinkerkit.export.pipeline import export

    return export(external_path, out_dir, format="peft", service=service, progress=False)


_defaults.install_export(_export_final)


def serve(backend: str = "mock", **kwargs: Any) -> Any:
    """A Tinker-compatible HTTP server on an offline backend, as a context manager.

    Unmodified ``tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)``
    code then runs offline. See ``tinkerkit.server.serve``.

    Example:
        >>> with tk.serve("mock") as server:
        ...     client = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
    """
    from tinkerkit.server.runner import serve as _serve

    return _serve(backend, **kwargs)


def run(command: Any, backend: str = "mock", **kwargs: Any) -> int:
    """Run ``command`` (a list of arguments) against a private server on ``backend``.

    The command sees ``TINKER_BASE_URL``/``TINKER_API_KEY``, so ``tinker.ServiceClient()``
    in it (cookbook recipes included) runs offline; returns its exit code. The Python
    side of ``tinkerkit run``; see ``tinkerkit.server.run.run`` for the options.

    Example:
        >>> tk.run(["python", "-m", "tinker_cookbook.recipes.sl_basic"], backend="mock")
        0
    """
    from tinkerkit.server.run import run as _run

    return _run(command, backend, **kwargs)


def serving_env(backend: str = "mock", **kwargs: Any) -> Any:
    """A private server, as a context manager yielding the environment for a command.

    Example:
        >>> with tk.serving_env("mock") as env:
        ...     subprocess.run(["python", "train.py"], env=env, check=True)
    """
    from tinkerkit.server.run import serving_env as _serving_env

    return _serving_env(backend, **kwargs)


__all__ = [
    "Completion",
    "__version__",
    "connect",
    "connection_of",
    "data",
    "errors",
    "export",
    "hparams",
    "losses",
    "preference",
    "recipes",
    "rest_client",
    "rl",
    "run",
    "sample_text",
    "serve",
    "serving_env",
    "sft",
    "tokenizer_of",
    "types",
]
