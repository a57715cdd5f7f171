"""Tinker-named adapters → PEFT and merged models: Llama (tied and untied), Qwen3, shards."""

from __future__ import annotations

import json
from pathlib import Path

import peft
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

import tinkerkit.export as tke

R, ALPHA = 4, 8
MODULES = {
    "self_attn.q_proj": ("hidden", "q"),
    "self_attn.k_proj": ("hidden", "kv"),
    "self_attn.v_proj": ("hidden", "kv"),
    "self_attn.o_proj": ("q", "hidden"),
    "mlp.gate_proj": ("hidden", "inter"),
    "mlp.up_proj": ("hidden", "inter"),
    "mlp.down_proj": ("inter", "hidden"),
}


def small_config(family: str, tied: bool) -> LlamaConfig | Qwen3Config:
    kw = dict(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=tied,
    )
    return LlamaConfig(**kw) if family == "llama" else Qwen3Config(**kw)


def save_base(path: Path, family: str, tied: bool, shard: str | None = None) -> Path:
    torch.manual_seed(0)
    cls = LlamaForCausalLM if family == "llama" else Qwen3ForCausalLM
    model = cls(small_config(family, tied)).eval()
    model.save_pretrained(path, max_shard_size=shard) if shard else model.save_pretrained(path)
    return path


def tinker_adapter(path: Path, config: LlamaConfig | Qwen3Config) -> Path:
    """An adapter as the service writes it: PEFT-style names, ``unembed_tokens`` for the head."""
    dims = {
        "hidden": config.hidden_size,
        "inter": config.intermediate_size,
        "q": config.num_attention_heads * config.head_dim,
        "kv": config.num_key_value_heads * config.head_dim,
    }
    gen = torch.Generator().manual_seed(1)
    weights = {}
    for layer in range(config.num_hidden_layers):
        for module, (fan_in, fan_out) in MODULES.items():
            stem = f"base_model.model.model.layers.{layer}.{module}"
            weights[f"{stem}.lora_A.weight"] = torch.randn(R, dims[fan_in], generator=gen) * 0.1
            weights[f"{stem}.lora_B.weight"] = torch.randn(dims[fan_out], R, generator=gen) * 0.1
    stem = "base_model.model.model.unembed_tokens"
    weights[f"{stem}.lora_A.weight"] = torch.randn(R, config.hidden_size, generator=gen) * 0.1
    weights[f"{stem}.lora_B.weight"] = torch.randn(config.vocab_size, R, generator=gen) * 0.1
    path.mkdir()
    save_file(weights, str(path / "adapter_model.safetensors"))
    adapter_config = {"r": R, "lora_alpha": ALPHA, "base_model_name_or_path": "some/model"}
    (path / "adapter_config.json").write_text(json.dumps(adapter_config))
    return path


def logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.tensor([[1, 5, 9, 33, 2, 70, 12]])
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize(("family", "tied"), [("llama", False), ("llama", True), ("qwen3", True)])
def test_tinker_adapter_to_peft_and_merged_agree(tmp_path: Path, family: str, tied: bool) -> None:
    base = save_base(tmp_path / "base", family, tied)
    adapter = tinker_adapter(tmp_path / "adapter", small_config(family, tied))
    peft_dir = tke.to_peft(adapter, tmp_path / "peft", base_model=base)
    merged_dir = tke.merge(base, adapter, tmp_path / "merged")

    keys = load_file(str(peft_dir / "adapter_model.safetensors"))
    assert "base_model.model.lm_head.lora_A.weight" in keys
    assert not any("unembed_tokens" in k for k in keys)
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    assert config["lora_alpha"] == ALPHA and config["r"] == R
    assert config["target_modules"] == sorted([*(m.split(".")[1] for m in MODULES), "lm_head"])

    with_peft = peft.PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base), str(peft_dir)
    )
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    plain = AutoModelForCausalLM.from_pretrained(base)
    assert torch.allclose(logits(with_peft.eval()), logits(merged.eval()), atol=1e-4)
    assert not torch.allclose(logits(plain.eval()), logits(merged), atol=1e-2)

    # W' = W + (alpha / r) B @ A, exactly, for one weight.
    a = load_file(str(adapter / "adapter_model.safetensors"))
    stem = "base_model.model.model.layers.1.self_attn.q_proj"
    want = plain.model.layers[1].self_attn.q_proj.weight + ALPHA / R * (
        a[f"{stem}.lora_B.weight"] @ a[f"{stem}.lora_A.weight"]
    )
    assert torch.allclose(merged.model.layers[1].self_attn.q_proj.weight, want, atol=1e-6)
    # Tied: the head gets its own weight; the input embedding is unchanged.
    assert json.loads((merged_dir / "config.json").read_text())["tie_word_embeddings"] is False
    assert torch.equal(merged.model.embed_tokens.weight, plain.model.embed_tokens.weight)


def test_sharded_base_merges_shard_by_shard(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base", "llama", tied=True, shard="20KB")
    one = save_base(tmp_path / "one", "llama", tied=True)
    shards = sorted(p.name for p in base.glob("*.safetensors"))
    assert len(shards) > 3
    adapter = tinker_adapter(tmp_path / "adapter", small_config("llama", True))
    merged = tke.merge(base, adapter, tmp_path / "merged")
    reference = tke.merge(one, adapter, tmp_path / "reference")

    assert sorted(p.name for p in merged.glob("*.safetensors")) == shards
    index = json.loads((merged / "model.safetensors.index.json").read_text())
    embed_shard = index["weight_map"]["model.embed_tokens.weight"]
    assert index["weight_map"]["lm_head.weight"] == embed_shard
    assert "lm_head.weight" in load_file(str(merged / embed_shard))
    assert index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for s in shards for t in load_file(str(merged / s)).values()
    )
    a = AutoModelForCausalLM.from_pretrained(merged).eval()
    b = AutoModelForCausalLM.from_pretrained(reference).eval()
    assert torch.allclose(logits(a), logits(b), atol=1e-6)


def test_bf16_base_stays_bf16(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LlamaForCausalLM(small_config("llama", False)).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "base")
    adapter = tinker_adapter(tmp_path / "adapter", small_config("llama", False))
    merged = tke.merge(tmp_path / "base", adapter, tmp_path / "merged")
    tensors = load_file(str(merged / "model.safetensors"))
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}


@pytest.mark.parametrize("model_type", ["gpt_oss", "qwen3_moe", "deepseek_v3"])
def test_other_families_are_refused_naming_what_is_supported(
    tmp_path: Path, model_type: str
) -> None:
    base = save_base(tmp_path / "base", "llama", tied=False)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
    adapter = tinker_adapter(tmp_path / "adapter", small_config("llama", False))
    for call in (
        lambda: tke.to_peft(adapter, tmp_path / "p", base_model=base),
        lambda: tke.merge(base, adapter, tmp_path / "m"),
    ):
        with pytest.raises(tke.UnsupportedModelError, match="supports dense Llama-3") as info:
            call()
        assert model_type in str(info.value)
    assert not (tmp_path / "p").exists() and not (tmp_path / "m").exists()


def test_moe_expert_tensors_are_refused(tmp_path: Path) -> None:
    base = save_base(tmp_path / "base", "llama", tied=False)
    adapter = tinker_adapter(tmp_path / "adapter", small_config("llama", False))
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    weights["base_model.model.model.layers.0.mlp.experts.w1.lora_A.weight"] = torch.zeros(1, R, 32)
    weights["base_model.model.model.layers.0.mlp.experts.w1.lora_B.weight"] = torch.zeros(4, 48, R)
    save_file(weights, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(tke.UnsupportedModelError, match="mixture-of-experts"):
        tke.to_peft(adapter, tmp_path / "p", base_model=base)


def test_adapter_for_another_model_is_refused(tmp_path: Path) -> None:
    adapter = tinker_adapter(tmp_path / "adapter", small_config("llama", False))
    with pytest.raises(tke.AdapterFormatError, match="trained on another model"):
        tke.merge("tinkerkit/tiny", adapter, tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "tinkerkit-home"]


def test_pickled_weights_are_never_loaded(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    (folder / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 8}')
    with pytest.raises(tke.AdapterFormatError, match="never loads pickles"):
        tke.load_adapter(folder)
