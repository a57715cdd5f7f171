"""The tokenizer of any training or sampling client, offline included.

A ``TrainingClient``'s ``get_tokenizer()`` loads what the service names in ``get_info``
(tinkerkit's service names a local folder). The SDK's ``SamplingClient.get_tokenizer()``
instead asks the Hugging Face hub for its base model's name, which cannot answer for
``tinkerkit/tiny`` and cannot be reached offline; for those, the tokenizer tinkerkit's
service uses for that name is the right one (for the service's own models it is the
model's published tokenizer, the same ids).
"""

from __future__ import annotations

from typing import Any

from tinkerkit.models.registry import TINY


def tokenizer_of(client: Any) -> Any:
    """``client.get_tokenizer()``, or the tokenizer tinkerkit's service uses for the
    client's base model where the hub cannot provide it.

    Example:
        >>> tokenizer_of(service.create_sampling_client(base_model="tinkerkit/tiny").result())
        PreTrainedTokenizerFast(name_or_path='tinkerkit/tiny', ...)
    """
    from tinkerkit.models.stand_ins import ModelNames

    get_base_model = getattr(client, "get_base_model", None)
    name = get_base_model() if callable(get_base_model) else None
    if isinstance(name, str) and (name == TINY or name.startswith(TINY + "/")):
        return ModelNames().tokenizer(name)
    try:
        return client.get_tokenizer()
    except OSError:  # the hub is offline, or does not know the name
        names = ModelNames()
        if not isinstance(name, str) or name not in names.known():
            raise
        return names.tokenizer(name)


_PROBE = "The capital of France is Paris. 12345 éè 日本 <|im_start|>user\n"


def known_tokenizer(model: str) -> Any | None:
    """The tokenizer tinkerkit knows for ``model`` (``tinkerkit/tiny``, the service's
    models, ``$TINKERKIT_MODELS``) without any client, or None for a name it does not
    know. A loop prepares its data with it before it creates a run, so data the
    tokenizer refuses leaves no run behind; ``same_tokenizer`` then checks it against the
    training client's.

    Example:
        >>> known_tokenizer("tinkerkit/tiny").encode("hi")
        [104, 105]
    """
    from tinkerkit.models.stand_ins import ModelNames

    names = ModelNames()
    return names.tokenizer(model) if model in names.known() else None


def same_tokenizer(a: Any, b: Any) -> bool:
    """Whether two tokenizers give the same ids (size, and ids of a probe text with
    special tokens)."""
    if a is b:
        return True
    try:
        return len(a) == len(b) and list(a.encode(_PROBE)) == list(b.encode(_PROBE))
    except Exception:
        return False
