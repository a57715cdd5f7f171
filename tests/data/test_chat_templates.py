"""Assistant spans are exact on the offline template and on Llama-3 / Qwen templates."""

from __future__ import annotations

import pytest

from tests.data.data_templates import llama3_tokenizer, plain_tokenizer, qwen_tokenizer
from tinkerkit.data.chat import ChatFormatError, chat_datum, chat_prompt_tokens, render_chat
from tinkerkit.models.tokenizer import byte_tokenizer

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, since 1871."},
]

FAMILIES = {
    "tinkerkit": (byte_tokenizer, "<|im_end|>"),
    "llama3": (llama3_tokenizer, "<|eot_id|>"),
    "qwen": (qwen_tokenizer, "<|im_end|>"),
    "plain": (plain_tokenizer, "</s>"),
}


def _trained(datum, tok):
    targets = datum.loss_fn_inputs["target_tokens"].tolist()
    weights = datum.loss_fn_inputs["weights"].tolist()
    return tok.decode([t for t, w in zip(targets, weights, strict=True) if w > 0])


@pytest.mark.parametrize("family", FAMILIES)
def test_last_turn_is_exactly_the_last_assistant_message(family):
    make, end = FAMILIES[family]
    tok = make()
    assert _trained(chat_datum(CHAT, tok, train_on="last"), tok) == f"Rome, since 1871.{end}"


@pytest.mark.parametrize("family", FAMILIES)
def test_all_assistant_turns(family):
    make, end = FAMILIES[family]
    tok = make()
    assert (
        _trained(chat_datum(CHAT, tok, train_on="all_assistant"), tok)
        == f"Paris.{end}Rome, since 1871.{end}"
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_datum_tokens_are_the_rendered_conversation(family):
    make, _ = FAMILIES[family]
    tok = make()
    rendered = render_chat(CHAT, tok)
    datum = chat_datum(CHAT, tok)
    assert datum.model_input.to_ints() == rendered.tokens[:-1]
    assert datum.loss_fn_inputs["target_tokens"].tolist() == rendered.tokens[1:]
    # the generation prompt is a prefix of the conversation: sampling sees the trained format
    prompt = chat_prompt_tokens(CHAT[:4], tok)
    assert rendered.tokens[: len(prompt)] == prompt


def test_template_that_rewrites_history_is_refused():
    tok = qwen_tokenizer()
    # A template that only shows the *last* assistant turn (like reasoning templates that
    # drop earlier thoughts) cannot be trained on earlier turns exactly.
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}"
        "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    with pytest.raises(ChatFormatError, match="message 2"):
        chat_datum(CHAT, tok, train_on="all_assistant")


def test_left_truncation_keeps_the_trained_turn():
    tok = byte_tokenizer()
    full = chat_datum(CHAT, tok)
    cut = chat_datum(CHAT, tok, max_length=40, truncate="left")
    assert cut.model_input.length == 39
    assert _trained(cut, tok) == _trained(full, tok)
    with pytest.raises(ChatFormatError, match="trained turn"):
        chat_datum(CHAT, tok, max_length=10, truncate="left")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("train_on", ["last", "all_assistant"])
def test_batched_datums_equal_one_by_one(family, train_on):
    from tinkerkit.data.chat import chat_datums

    make, _ = FAMILIES[family]
    tok = make()
    convs = [
        CHAT,
        CHAT[1:3],
        [
            *CHAT[:3],
            {"role": "user", "content": "ünïcode ✓?"},
            {"role": "assistant", "content": "ja — 🙂"},
        ],
    ]
    batched = chat_datums(convs, tok, train_on=train_on)
    for conv, datum in zip(convs, batched, strict=True):
        single = chat_datum(conv, tok, train_on=train_on)
        assert datum.model_input.to_ints() == single.model_input.to_ints()
        assert datum.loss_fn_inputs["weights"].tolist() == single.loss_fn_inputs["weights"].tolist()
