"""The fine-tuning guide's Quick Start, corrected, running offline on the mock backend.

What the guide got wrong, and what this does instead:
- datums need `target_tokens` (the next token at each position) and `weights` aligned
  with them: model_input = tokens[:-1], target_tokens = tokens[1:];
- `create_lora_training_client` returns a future in tinker 0.38: call `.result()`;
- `forward_backward` and `optim_step` return futures; submit both, then wait;
- `save_weights_and_get_sampling_client(name=...)`: the name is deprecated in 0.38 and
  saves nothing (the snapshot is ephemeral); use `save_weights_for_sampler(name)` for a
  checkpoint that lasts;
- `sample` takes a `ModelInput`, not a string, and returns `.sequences` (token ids),
  not `.completions[0].text`: decode the tokens with the tokenizer.

Run: python examples/quickstart.py   (set TINKERKIT_BACKEND=tinker to use the service)
"""

from __future__ import annotations

import os

from tinker import types

import tinkerkit as tk

service = tk.connect(os.environ.get("TINKERKIT_BACKEND", "mock"))
training_client = service.create_lora_training_client(
    base_model="meta-llama/Llama-3.2-1B",  # offline, tinkerkit/tiny stands in for it
    rank=32,
    seed=0,
).result()
tokenizer = training_client.get_tokenizer()


def create_datum(prompt: str, completion: str) -> types.Datum:
    """A prompt-completion pair as a training datum: train on the completion only."""
    prompt_tokens = tokenizer.encode(prompt, add_special_tokens=False)
    completion_tokens = tokenizer.encode(completion, add_special_tokens=False)
    tokens = prompt_tokens + completion_tokens
    weights = [0.0] * len(prompt_tokens) + [1.0] * len(completion_tokens)
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights[1:]},
    )


examples = [
    create_datum("What is Python?", " Python is a programming language."),
    create_datum("Explain recursion.", " Recursion is when a function calls itself."),
]

for epoch in range(30):
    fwd_bwd = training_client.forward_backward(examples, loss_fn="cross_entropy")
    optim = training_client.optim_step(types.AdamParams(learning_rate=5e-3))
    loss = fwd_bwd.result().metrics["loss:sum"]
    optim.result()
    if epoch % 10 == 0 or epoch == 29:
        print(f"epoch {epoch:2d}  loss {loss:8.3f}")

sampling_client = training_client.save_weights_and_get_sampling_client().result()
prompt = types.ModelInput.from_ints(tokenizer.encode("What is Python?", add_special_tokens=False))
result = sampling_client.sample(
    prompt=prompt,
    sampling_params=types.SamplingParams(max_tokens=40, temperature=0.0),
    num_samples=1,
).result()
print("sample:", tokenizer.decode(result.sequences[0].tokens, skip_special_tokens=True))
