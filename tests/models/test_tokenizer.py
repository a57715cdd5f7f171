from tinkerkit.models.tokenizer import IM_END, VOCAB_SIZE, byte_tokenizer


def test_round_trip_any_text():
    tok = byte_tokenizer()
    text = "héllo wörld\n\t🙂 <b>"
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode("abc")) == 3  # one token per byte, no BOS added
    assert len(tok) == VOCAB_SIZE


def test_chat_template_and_assistant_mask():
    tok = byte_tokenizer()
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "sure"},
    ]
    out = tok.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    trained = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert trained == f"yo{IM_END}sure{IM_END}"
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
