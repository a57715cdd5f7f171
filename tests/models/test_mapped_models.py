"""A service name mapped to a real local Hugging Face model: ``local`` trains that model
under the name, every training client on it sharing one copy of its weights."""

from __future__ import annotations

import pytest
from tinker import types

import tinkerkit as tk
from tests.engines import engine_of, service_behind
from tinkerkit.models import tokenizer as byte_tok

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

NAME = "Qwen/Qwen3-8B"


@pytest.fixture
def model_folder(tmp_path):
    """A real (tiny) HF Llama with its own tokenizer and generation config."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "real-model"
    tok = byte_tok.byte_tokenizer()
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    GenerationConfig(eos_token_id=[tok.eos_token_id, 257]).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_local_trains_the_mapped_model_under_the_service_name(model_folder):
    service = tk.connect("local", models={NAME: model_folder})
    training = service.create_lora_training_client(base_model=NAME, rank=4, seed=0).result()
    info = training.get_info()
    assert info.model_name == NAME
    assert info.model_data.tokenizer_id == str(model_folder.resolve())
    spec = engine_of(service, training).spec
    assert (spec.arch, spec.vocab_size, spec.max_context_length) == ("llama", 300, 512)
    assert spec.stands_in_for is None
    tok = training.get_tokenizer()
    tokens = tok.encode("Paris is the capital of France.")
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )
    losses = []
    for _ in range(5):
        fb = training.forward_backward([datum], "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=5e-2)).result()
        losses.append(fb.result().metrics["loss:sum"])
    assert losses[-1] < losses[0], losses
    # Stop tokens: the tokenizer's EOS and the generation config's.
    assert service_behind(service).factory.stop_tokens(spec) == [tok.eos_token_id, 257]


def test_training_clients_on_one_mapped_base_share_its_weights(model_folder):
    service = tk.connect("local", models={NAME: model_folder})
    a = service.create_lora_training_client(base_model=NAME, rank=4, seed=0).result()
    b = service.create_lora_training_client(base_model=NAME, rank=8, seed=1).result()
    weight_a = engine_of(service, a).lm.get_input_embeddings().weight
    weight_b = engine_of(service, b).lm.get_input_embeddings().weight
    assert weight_a.data_ptr() == weight_b.data_ptr()
    from tinkerkit.backends.local import models

    assert [k for k in models._bases if k[0] == str(model_folder.resolve())] == [
        (str(model_folder.resolve()), str(models.device()))
    ]


def test_mock_uses_the_mapped_models_tokenizer_and_vocabulary(model_folder):
    service = tk.connect("mock", models={NAME: model_folder})
    training = service.create_lora_training_client(base_model=NAME, rank=4).result()
    assert engine_of(service, training).spec.vocab_size == 300
    assert len(training.get_tokenizer()) == byte_tok.VOCAB_SIZE
