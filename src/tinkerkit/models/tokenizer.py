"""The offline byte-level tokenizer, built in code: no files, no hub downloads.

Every byte is one token (ids 0-255, in byte order), followed by a few special tokens.
It is a real ``transformers`` fast tokenizer, so ``encode``/``decode``/``batch encode``
and ``apply_chat_template`` (with ``{% generation %}`` markers, so
``return_assistant_tokens_mask=True`` works) behave as they do for hub models::

    tok = byte_tokenizer()
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                  add_generation_prompt=True, tokenize=True)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from tinkerkit.rules.images import Vision

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (BOS, EOS, IM_START, IM_END, PAD)
VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)

VISION_TOKENS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>")
VL_SPECIAL_TOKENS = (*SPECIAL_TOKENS, *VISION_TOKENS)
VL_VOCAB_SIZE = 256 + len(VL_SPECIAL_TOKENS)

# ChatML-style, the format of the Qwen family. `generation` marks what the assistant
# wrote (content and end-of-turn token), which is what SFT trains on.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The same, where a message's content may be a list of parts; an image part is
# <|vision_start|><|image_pad|><|vision_end|>, as Qwen3-VL's template writes it.
_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
)
VL_CHAT_TEMPLATE = CHAT_TEMPLATE.replace("message['content']", "__CONTENT__").replace(
    "{{ __CONTENT__ + '<|im_end|>' }}", _CONTENT + "{{ '<|im_end|>' }}"
)


def _byte_to_unicode() -> dict[int, str]:
    """The byte → printable character map byte-level BPE tokenizers use (GPT-2's)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def build_byte_tokenizer(
    special_tokens: tuple[str, ...],
    chat_template: str | None,
    *,
    bos: str | None,
    eos: str,
    pad: str | None = None,
) -> PreTrainedTokenizerBase:
    """A byte-level fast tokenizer: ids 0-255 are bytes, then ``special_tokens`` in order.

    Used for the built-in models, and by tests to mimic other model families' chat
    formats (e.g. Llama-3's header tokens) without downloading their tokenizers.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = _byte_to_unicode()
    vocab = {byte_chars[b]: b for b in range(256)}
    for offset, token in enumerate(special_tokens):
        vocab[token] = 256 + offset
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    named = {t for t in (bos, eos, pad) if t}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        additional_special_tokens=[t for t in special_tokens if t not in named],
        model_max_length=1 << 30,
        clean_up_tokenization_spaces=False,
    )
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


@lru_cache(maxsize=1)
def _build() -> PreTrainedTokenizerBase:
    tok = build_byte_tokenizer(SPECIAL_TOKENS, CHAT_TEMPLATE, bos=BOS, eos=IM_END, pad=PAD)
    tok.name_or_path = "tinkerkit/byte-tokenizer"
    return tok


def tiny_vl_vision() -> Vision:
    """The vision tokens of ``vl_byte_tokenizer`` (ids 261-263), for ``tinkerkit/tiny-vl``.

    Example:
        >>> tiny_vl_vision().image_token
        262
    """
    from tinkerkit.rules.images import Vision

    start, image, end = (256 + VL_SPECIAL_TOKENS.index(t) for t in VISION_TOKENS)
    return Vision(image_token=image, start_token=start, end_token=end)


@lru_cache(maxsize=1)
def vl_byte_tokenizer() -> PreTrainedTokenizerBase:
    """The byte tokenizer of ``tinkerkit/tiny-vl``: ``byte_tokenizer`` plus the three
    vision tokens (ids 261-263), with a chat template that writes image parts.

    Example:
        >>> vl_byte_tokenizer().convert_tokens_to_ids("<|image_pad|>")
        262
    """
    tok = build_byte_tokenizer(VL_SPECIAL_TOKENS, VL_CHAT_TEMPLATE, bos=BOS, eos=IM_END, pad=PAD)
    tok.name_or_path = "tinkerkit/byte-tokenizer-vl"
    return tok


def byte_tokenizer() -> PreTrainedTokenizerBase:
    """The offline tokenizer shared by the built-in models (a cached instance).

    Example:
        >>> tok = byte_tokenizer()
        >>> tok.decode(tok.encode("héllo"))
        'héllo'
    """
    return _build()


def stop_token_ids() -> list[int]:
    """Token ids that end a generation by default (end of turn, end of text)."""
    return [256 + SPECIAL_TOKENS.index(IM_END), 256 + SPECIAL_TOKENS.index(EOS)]


def tokenizer_directory(tokenizer: PreTrainedTokenizerBase, name: str) -> Path:
    """``tokenizer`` saved as a normal HF folder under ``TINKERKIT_HOME/tokenizers``.

    Code that only knows how to ``AutoTokenizer.from_pretrained(...)`` (such as the
    official SDK's ``get_tokenizer`` talking to ``tinkerkit serve``) loads it from there,
    offline. Written once, atomically.

    Example:
        >>> AutoTokenizer.from_pretrained(tokenizer_directory(byte_tokenizer(), "byte"))
    """
    import re

    from tinkerkit.atomic import staged_folder
    from tinkerkit.paths import tinkerkit_home

    root = tinkerkit_home() / "tokenizers"
    target = root / re.sub(r"[^A-Za-z0-9._-]+", "--", name)
    if (target / "tokenizer_config.json").is_file():
        return target
    try:
        with staged_folder(target, prefix=".tokenizer-") as tmp:
            tokenizer.save_pretrained(str(tmp))
    except OSError:  # another process published it first: theirs is as good
        if not (target / "tokenizer_config.json").is_file():
            raise
    return target
