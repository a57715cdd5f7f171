"""Served: the official SDK's ``get_tokenizer()`` returns the server's real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from tinker import types

from tests.models.corpus import varied_strings
from tinkerkit.models.tokenizers import resolve

pytest.importorskip("quicktok")
QWEN = "Qwen/Qwen3-4B-Instruct-2507"


def test_sdk_get_tokenizer_gives_the_servers_ids(official):
    training = official.create_lora_training_client(base_model=QWEN, rank=4).result()
    folder = training.get_info().model_data.tokenizer_id
    assert Path(folder).is_dir()  # a local folder: the SDK loads it without the hub
    served = training.get_tokenizer()
    direct = resolve(QWEN).tokenizer
    for text in varied_strings(60):
        assert served.encode(text) == direct.encode(text)
    chat = [{"role": "user", "content": "Hi"}]
    assert served.apply_chat_template(chat, add_generation_prompt=True, return_dict=False) == (
        direct.apply_chat_template(chat, add_generation_prompt=True, return_dict=False)
    )
    assert served.encode("<|im_start|>", add_special_tokens=False) == [151644]
    assert (served.eos_token_id, served.pad_token_id) == (151645, 151643)
    # A datum tokenized with it trains: no TokenOutOfVocabularyError through the server.
    tokens = served.apply_chat_template(
        [*chat, {"role": "assistant", "content": "Hello."}], return_dict=False
    )
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )
    out = training.forward_backward([datum], "cross_entropy").result()
    assert out.metrics["loss:sum"] > 0
