"""The client and tokenizer types tinkerkit's helpers take.

Every backend hands out the official ``tinker`` clients (``tk.connect`` returns
``tinker.ServiceClient`` itself), so helpers annotate with the SDK's own classes, under
the names ``ServiceClientLike``, ``TrainingClientLike`` and ``SamplingClientLike``:
nothing here re-declares an SDK method. ``Tokenizer`` is the part of a Hugging Face
tokenizer tinkerkit uses (what ``get_tokenizer()`` returns on every backend), and
``FutureLike`` what a client call returns.

A low layer: this module imports only the standard library and ``tinker``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, TypeVar

import tinker

T_co = TypeVar("T_co", covariant=True)


class FutureLike(Protocol[T_co]):
    """What a client call returns: ``.result()`` waits for the value (``APIFuture``)."""

    def result(self, timeout: float | None = None) -> T_co: ...


class Tokenizer(Protocol):
    """A Hugging Face tokenizer, as far as tinkerkit uses one.

    Calling it (``tokenizer(text, add_special_tokens=False)["input_ids"]``) encodes;
    ``decode`` answers ``str`` for a list of ids (the HF annotation also allows a batch);
    ``apply_chat_template``'s answer depends on ``tokenize``/``return_dict``, so it is
    ``Any``. Optional HF members (``chat_template``, ``special_tokens_map``) are read with
    ``getattr`` where used, since not every tokenizer has them.
    """

    @property
    def eos_token_id(self) -> int | None: ...

    @property
    def pad_token_id(self) -> int | None: ...

    def __len__(self) -> int:
        """The vocabulary size, added tokens included."""
        ...

    def __call__(self, text: Any, /, *args: Any, **kwargs: Any) -> Any: ...

    def encode(self, text: str, /, *args: Any, **kwargs: Any) -> list[int]: ...

    def decode(self, token_ids: Any, /, *args: Any, **kwargs: Any) -> Any: ...

    def apply_chat_template(self, conversation: Any, /, *args: Any, **kwargs: Any) -> Any: ...


# The clients are the SDK's own on every backend (tk.connect returns tinker.ServiceClient
# itself): helpers annotate with the SDK's classes, under the names they always used.
SamplingClientLike: TypeAlias = tinker.SamplingClient
TrainingClientLike: TypeAlias = tinker.TrainingClient
ServiceClientLike: TypeAlias = tinker.ServiceClient


__all__ = [
    "FutureLike",
    "SamplingClientLike",
    "ServiceClientLike",
    "Tokenizer",
    "TrainingClientLike",
]
