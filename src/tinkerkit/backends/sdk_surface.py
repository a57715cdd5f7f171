"""Keep the offline clients' surface identical to the tinker SDK's, read from the SDK itself.

``@mirrors(tinker.TrainingClient)`` on an offline client class:

- wraps each method the SDK marks ``@deprecated`` with the SDK's own message and warning
  category, so a deprecated call warns offline exactly as it does online;
- gives each method without a docstring the SDK's docstring (``help()`` reads the same).

The SDK is pinned (``tinker>=0.38,<0.39``); ``tests/parity`` checks every public method
and parameter against it by introspection.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from typing_extensions import deprecated

C = TypeVar("C", bound=type)


def sdk_deprecation(method: Any) -> tuple[str, type[Warning]] | None:
    """(message, category) of an SDK method marked ``@deprecated``, else None.

    Example:
        >>> sdk_deprecation(tinker.TrainingClient.forward_async)[1]
        <class 'FutureWarning'>
    """
    message = getattr(method, "__deprecated__", None)
    if not isinstance(message, str):
        return None
    category: type[Warning] = FutureWarning
    code, closure = getattr(method, "__code__", None), getattr(method, "__closure__", None)
    if code is not None and closure:
        cells = dict(zip(code.co_freevars, closure, strict=False))
        cell = cells.get("category")
        if cell is not None and isinstance(cell.cell_contents, type):
            category = cell.cell_contents
    return message, category


def _public_functions(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


def mirrors(sdk_cls: type) -> Callable[[C], C]:
    """Class decorator: the SDK's deprecations and docstrings on ``cls``'s own methods."""

    def apply(cls: C) -> C:
        for name, member in _public_functions(cls).items():
            sdk_member = inspect.getattr_static(sdk_cls, name, None)
            if sdk_member is None:
                continue
            if member.__doc__ is None:
                member.__doc__ = getattr(sdk_member, "__doc__", None)
            found = sdk_deprecation(sdk_member)
            if found is not None:
                message, category = found
                setattr(cls, name, deprecated(message, category=category)(member))
        return cls

    return apply
