"""The API's rules for datums and losses, below both ``tinkerkit.data`` and the backends.

``losses``: the service's built-in losses (inputs, config defaults, per-token math);
``datums``: the checks a ``tinker.types.Datum`` must pass. ``data.check_datums`` and
every offline backend run the same rules, so this package imports neither of them.
"""
