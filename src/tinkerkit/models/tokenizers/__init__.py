"""Real tokenizers for the service's model names, offline (see ``resolution``)."""

from tinkerkit.models.tokenizers.resolution import (
    BYTE_TOKENIZER_ID,
    ResolvedTokenizer,
    clear_cache,
    downloads_allowed,
    resolve,
)

__all__ = ["BYTE_TOKENIZER_ID", "ResolvedTokenizer", "clear_cache", "downloads_allowed", "resolve"]
