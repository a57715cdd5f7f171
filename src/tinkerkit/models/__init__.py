"""Built-in models and the offline tokenizer."""

from tinkerkit.models.client_tokenizer import tokenizer_of
from tinkerkit.models.registry import SERVICE_MODELS, TINY, ModelSpec
from tinkerkit.models.tokenizer import byte_tokenizer

__all__ = ["SERVICE_MODELS", "TINY", "ModelSpec", "byte_tokenizer", "tokenizer_of"]
