"""Peak memory of ``tk.export.merge`` vs the size of the largest base shard.

Builds a random Llama (bf16, ~235 MB: hidden 1024, 8 layers, vocab 32000, tied
embeddings like Llama-3.2-1B) saved in ~100 MB shards, and a rank-32 Tinker-named
adapter on every linear layer plus the output head. Each merge runs in a fresh
subprocess that reports its peak RSS (``ru_maxrss``, and ``VmHWM`` from
/proc/self/status) and its RSS right after the imports, so the figure is the merge's
own, not torch's import cost. ``--naive`` also measures the usual way (load the full
model, apply the deltas, ``save_pretrained``) for contrast.

Usage: python benchmarks/merge_memory.py [--layers 8] [--shard-mb 100] [--naive]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1 << 20


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(root: Path, layers: int, shard_mb: int, rank: int) -> tuple[Path, Path]:
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=layers,
        num_attention_heads=16,
        num_key_value_heads=4,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    base = root / "base"
    model.save_pretrained(base, max_shard_size=f"{shard_mb}MB")
    adapter = root / "adapter"
    adapter.mkdir()
    weights = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            stem = f"base_model.model.{name}"
            weights[f"{stem}.lora_A.weight"] = torch.randn(rank, module.in_features) * 0.01
            weights[f"{stem}.lora_B.weight"] = torch.randn(module.out_features, rank) * 0.01
    stem = "base_model.model.model.unembed_tokens"
    weights[f"{stem}.lora_A.weight"] = torch.randn(rank, config.hidden_size) * 0.01
    weights[f"{stem}.lora_B.weight"] = torch.randn(config.vocab_size, rank) * 0.01
    save_file(weights, str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": rank}))
    return base, adapter


def child(mode: str, base: str, adapter: str, out: str) -> None:
    """Runs in the subprocess: import, note RSS, merge, report the peak."""
    import torch
    from transformers import AutoModelForCausalLM

    from tinkerkit.export.convert import load_adapter, module_pairs
    from tinkerkit.export.merging import apply_delta, merge

    baseline = rss_now_mb()
    start = time.perf_counter()
    if mode == "stream":
        merge(base, adapter, out)
    else:  # naive: the whole model in memory, as PeftModel.merge_and_unload would need
        loaded = load_adapter(adapter)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
        params = dict(model.named_parameters())
        for key, (a, b) in module_pairs(loaded).items():
            with torch.no_grad():
                target = params.get(key)
                if target is None:  # tied head: untie first
                    model.lm_head.weight = torch.nn.Parameter(
                        model.model.embed_tokens.weight.clone()
                    )
                    target = model.lm_head.weight
                apply_delta(target.data, a, b, loaded.scaling)
        model.config.tie_word_embeddings = False
        model.save_pretrained(out)
    seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from the parent
    # (which built the model), while VmHWM belongs to this process's own memory map.
    peak = hwm_mb()
    print(json.dumps({"baseline": baseline, "peak": peak, "seconds": seconds}))


def measure(mode: str, base: Path, adapter: Path, out: Path) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", mode, str(base), str(adapter), str(out)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--shard-mb", type=int, default=100)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--naive", action="store_true", help="also measure a full-model merge")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base, adapter = build(root, args.layers, args.shard_mb, args.rank)
        shards = sorted(base.glob("*.safetensors"))
        largest = max(p.stat().st_size for p in shards) / MB
        total = sum(p.stat().st_size for p in shards) / MB
        adapter_mb = (adapter / "adapter_model.safetensors").stat().st_size / MB
        print(f"base: {len(shards)} shards, {total:.0f} MB (bf16); adapter rank {args.rank}")
        modes = ["stream", "naive"] if args.naive else ["stream"]
        for mode in modes:
            r = measure(mode, base, adapter, root / f"out-{mode}")
            label = "tk.export.merge" if mode == "stream" else "full-model merge"
            print(
                f"{label}: peak RSS {r['peak']:.0f} MB | largest shard {largest:.0f} MB | "
                f"adapter {adapter_mb:.0f} MB   (RSS after imports {r['baseline']:.0f} MB, "
                f"merge added {r['peak'] - r['baseline']:.0f} MB; model {total:.0f} MB; "
                f"{r['seconds']:.1f} s)"
            )


if __name__ == "__main__":
    main()
