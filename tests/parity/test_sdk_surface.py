"""The offline clients' surface, generated from the tinker SDK itself.

Every public method of tinker 0.38's ServiceClient, TrainingClient, SamplingClient and
RestClient must exist on the offline client with the same parameters (names, kinds,
order, defaults), the same sync/async nature and the same deprecation warning — or be
listed in docs/backends.md ("SDK methods refused offline") and refuse with a typed error.
A method added upstream fails here until it is implemented or listed.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import tinker

from tinkerkit.backends.rest_client import RestClient
from tinkerkit.backends.sampling_client import SamplingClient
from tinkerkit.backends.sdk_surface import sdk_deprecation
from tinkerkit.backends.service_client import ServiceClient
from tinkerkit.backends.training_client import TrainingClient

PAIRS = {
    "ServiceClient": (tinker.ServiceClient, ServiceClient),
    "TrainingClient": (tinker.TrainingClient, TrainingClient),
    "SamplingClient": (tinker.SamplingClient, SamplingClient),
    "RestClient": (tinker.RestClient, RestClient),
}
DOCS = Path(__file__).parents[2] / "docs" / "backends.md"

# Methods that exist offline but refuse, with the typed error they raise (each is listed,
# with its reason, in docs/backends.md).
REFUSED: dict[str, type[BaseException]] = {
    "SamplingClient.create": TypeError,
}


def _sdk_methods(cls: type) -> dict[str, object]:
    methods = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        member = inspect.getattr_static(cls, name)
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        if inspect.isfunction(member):
            methods[name] = member
    return methods


def _cases() -> list[tuple[str, str]]:
    return [(cls, name) for cls, (sdk, _) in PAIRS.items() for name in sorted(_sdk_methods(sdk))]


def _owner(cls: type, name: str) -> type:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    raise AssertionError(f"{cls.__name__} has no {name}")


def _params(fn: object) -> list[tuple[str, object, str]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    return [(p.name, p.kind, repr(p.default)) for p in params]


def test_every_sdk_method_is_checked():
    """The generated cases really cover the SDK (so an empty list cannot pass)."""
    names = {f"{c}.{n}" for c, n in _cases()}
    assert len(names) > 90
    for expected in (
        "TrainingClient.forward_backward_custom",
        "SamplingClient.get_sampler_handle",
        "RestClient.list_user_checkpoints",
        "ServiceClient.create_custom_loss",
    ):
        assert expected in names


@pytest.mark.parametrize(("cls_name", "name"), _cases(), ids=lambda v: v)
def test_offline_client_matches_the_sdk(cls_name: str, name: str):
    sdk, ours = PAIRS[cls_name]
    assert issubclass(ours, sdk), f"offline {cls_name} must subclass tinker.{cls_name}"
    owner = _owner(ours, name)
    assert not owner.__module__.startswith("tinker."), (
        f"{cls_name}.{name} is inherited from the SDK ({owner.__module__}); offline clients "
        "must define every public method (the SDK's need its HTTP holder)"
    )
    sdk_fn = _sdk_methods(sdk)[name]
    our_member = inspect.getattr_static(ours, name)
    sdk_member = inspect.getattr_static(sdk, name)
    assert isinstance(our_member, staticmethod) == isinstance(sdk_member, staticmethod)
    our_fn = getattr(ours, name)
    assert _params(our_fn) == _params(sdk_fn), f"{cls_name}.{name} parameters differ"
    assert inspect.iscoroutinefunction(inspect.unwrap(our_fn)) == inspect.iscoroutinefunction(
        inspect.unwrap(sdk_fn)
    ), f"{cls_name}.{name}: sync/async differs from the SDK"
    assert sdk_deprecation(our_fn) == sdk_deprecation(sdk_fn), (
        f"{cls_name}.{name}: deprecation differs from the SDK"
    )


def test_refused_methods_are_documented_and_typed():
    text = DOCS.read_text()
    for qualified, error in REFUSED.items():
        assert f"`{qualified}`" in text, f"{qualified} is refused offline but not in {DOCS.name}"
        cls_name, name = qualified.split(".")
        _, ours = PAIRS[cls_name]
        with pytest.raises(error, match="offline"):
            getattr(ours, name)(None)
