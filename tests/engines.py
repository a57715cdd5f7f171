"""Reaching behind the SDK, for tests of the engines: the engine of a training client."""

from __future__ import annotations

from typing import Any

import tinkerkit as tk
from tinkerkit.server import inprocess


def service_behind(service: Any) -> Any:
    """The in-process ``Service`` a ``tk.connect('mock' | 'local')`` client talks to."""
    connection = tk.connection_of(service)
    assert connection is not None, "needs a tk.connect('mock' | 'local') client"
    found = inprocess.local_server().host.lookup(connection.api_key.encode())
    assert found is not None
    return found


def engine_of(service: Any, training: Any) -> Any:
    """The engine the in-process service trains for ``training`` (an SDK TrainingClient
    of ``service``, a ``tk.connect`` ServiceClient).

    Example:
        >>> engine_of(service, training).state().weights
    """
    return service_behind(service).models[training.model_id].model.engine
