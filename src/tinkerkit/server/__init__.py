"""``tinkerkit serve``: tinker 0.38's HTTP API on tinkerkit's offline backends.

Code written against ``tinker.ServiceClient`` runs unchanged, offline::

    from tinkerkit.server import serve
    with serve("mock") as server:
        service = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
"""

from tinkerkit.server.app import create_app
from tinkerkit.server.runner import Server, serve

__all__ = ["Server", "create_app", "serve"]
