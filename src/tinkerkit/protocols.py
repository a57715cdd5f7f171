"""The client and tokenizer shapes tinkerkit's helpers take, as ``typing.Protocol``s.

Every backend hands out the official ``tinker`` clients (``ServiceClient``,
``TrainingClient``, ``SamplingClient``), which satisfy these structurally, and so does a
Hugging Face tokenizer (what ``get_tokenizer()`` returns on every backend). Each
protocol names only the members tinkerkit calls, with parameters no stricter than the
SDK's, so a test double with just those methods type-checks too (a fake sampler for
``tk.sample_text``), and a helper's annotation says which calls it makes. ``tests/test_layers.py`` checks every member
against the SDK's classes.

A low layer: this module imports only the standard library and ``tinker.types``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from tinker import types

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


class SamplingClientLike(Protocol):
    """A sampling client: ``sample``, ``compute_logprobs`` and its tokenizer."""

    def sample(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> FutureLike[types.SampleResponse]: ...

    def compute_logprobs(
        self, prompt: types.ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> FutureLike[list[float | None]]: ...

    def get_tokenizer(self) -> Any: ...

    def get_base_model(self) -> str: ...


class TrainingClientLike(Protocol):
    """A LoRA training client: steps, saves, and a sampler of its weights."""

    def forward_backward(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: Any = None,
    ) -> FutureLike[types.ForwardBackwardOutput]: ...

    def forward(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: Any = None,
    ) -> FutureLike[types.ForwardBackwardOutput]: ...

    def optim_step(
        self, optim_params: types.OptimParams | None = None
    ) -> FutureLike[types.OptimStepResponse]: ...

    def forward_backward_custom(
        self, data: list[types.Datum], loss_fn: Any
    ) -> FutureLike[types.ForwardBackwardOutput]: ...

    def save_state(
        self, name: str, ttl_seconds: int | None = None, overwrite: bool = False
    ) -> FutureLike[types.SaveWeightsResponse]: ...

    def save_weights_for_sampler(
        self, name: str, ttl_seconds: int | None = None
    ) -> FutureLike[types.SaveWeightsForSamplerResponse]: ...

    def save_weights_and_get_sampling_client(
        self, name: str | None = None
    ) -> FutureLike[SamplingClientLike]: ...

    def save_weights_external(self, name: str) -> FutureLike[types.SaveWeightsExternalResponse]: ...

    def get_tokenizer(self) -> Any: ...


class ServiceClientLike(Protocol):
    """A service client (``tk.connect(...)``, the SDK's ``tinker.ServiceClient``): the
    ``create_*`` calls tinkerkit makes. Each answers a future of the client."""

    def create_lora_training_client(
        self, base_model: str, rank: int = 32, seed: int | None = None
    ) -> FutureLike[TrainingClientLike]: ...

    def create_training_client_from_state(
        self, path: str, base_model: str | None = None
    ) -> FutureLike[TrainingClientLike]: ...

    def create_training_client_from_state_with_optimizer(
        self, path: str, base_model: str | None = None
    ) -> FutureLike[TrainingClientLike]: ...

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> FutureLike[SamplingClientLike]: ...


__all__ = [
    "FutureLike",
    "SamplingClientLike",
    "ServiceClientLike",
    "Tokenizer",
    "TrainingClientLike",
]
