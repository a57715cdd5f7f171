"""``tinkerkit serve``: tinker 0.38's HTTP API on tinkerkit's offline backends.

Code written against ``tinker.ServiceClient`` runs unchanged, offline::

    from tinkerkit.server import serve
    with serve("mock") as server:
        service = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
"""

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # the extra is not installed: say which, and how to get it
    raise ImportError(
        f"tinkerkit serve needs the 'serve' extra ({exc.name or 'starlette'} is not "
        "installed): pip install 'tinkerkit[serve]'",
        name=exc.name,
    ) from None

from tinkerkit.server.app import create_app
from tinkerkit.server.runner import Server, serve

__all__ = ["Server", "create_app", "serve"]
