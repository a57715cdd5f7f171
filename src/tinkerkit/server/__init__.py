"""tinkerkit's Tinker service: tinker 0.38's HTTP API over the offline backends.

The one implementation of the service's semantics, behind every offline client:
``tk.connect("mock")`` runs it in the process (``inprocess``), ``tinkerkit serve`` and
``tinkerkit run`` for other processes. Code written against ``tinker.ServiceClient`` runs
unchanged against it::

    from tinkerkit.server import serve
    with serve("mock") as server:
        service = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
"""

from tinkerkit.server.app import create_app
from tinkerkit.server.runner import Server, serve

__all__ = ["Server", "create_app", "serve"]
