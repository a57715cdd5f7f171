"""Numpy references of the built-in losses, written from the tinker docs (not from
tinkerkit's ``backends/losses.py``), and the cookbook's RL datum construction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from tinker import types

PROMPT = "Q: What is the capital of France?\nA:"

# Defaults: ppo and cispo are the service's (tinker docs); the others are tinkerkit's
# stated offline choices (docs/backends.md).
DEFAULTS: dict[str, dict[str, float]] = {
    "ppo": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
    "cispo": {"clip_low_threshold": 0.0, "clip_high_threshold": 4.0},
    "gspo": {"clip_low_threshold": 1 - 3e-4, "clip_high_threshold": 1 + 4e-4},
    "dro": {"beta": 0.05},
    "stable_reinforce": {"kl_coeff": 0.0},
    "importance_sampling": {},
}
STABLE_REINFORCE_CAP = 2.0


def arrays(datum: types.Datum) -> dict[str, np.ndarray]:
    """The datum's ``loss_fn_inputs`` as float64 numpy arrays (weights default to ones)."""
    out = {k: np.asarray(v.to_numpy(), dtype=np.float64) for k, v in datum.loss_fn_inputs.items()}
    out.setdefault("weights", np.ones_like(out["target_tokens"]))
    return out


def td(values, dtype=np.float32) -> types.TensorData:
    return types.TensorData.from_numpy(np.asarray(values, dtype=dtype))


def _bounds(x: Mapping[str, np.ndarray], config: Mapping[str, float]):
    low = x.get("clip_low_threshold", config["clip_low_threshold"])
    high = x.get("clip_high_threshold", config["clip_high_threshold"])
    return low, high


def reference_terms(
    loss: str, lp: np.ndarray, datum: types.Datum, config: Mapping[str, float] | None = None
) -> np.ndarray:
    """Per-token loss of ``loss`` on ``datum`` given its returned target logprobs ``lp``.

    ``config`` is merged over ``DEFAULTS``. Not for stable_reinforce (see
    ``stable_reinforce_terms``).
    """
    cfg = {**DEFAULTS.get(loss, {}), **(config or {})}
    x = arrays(datum)
    w = x["weights"]
    if loss == "cross_entropy":
        return -w * lp
    a, q = x["advantages"], x["logprobs"]
    ratio = np.exp(lp - q)
    if loss == "importance_sampling":
        return -w * ratio * a
    if loss == "dro":
        return -w * (lp * a - 0.5 * cfg["beta"] * (lp - q) ** 2)
    low, high = _bounds(x, cfg)
    if loss == "ppo":
        return -w * np.minimum(ratio * a, np.clip(ratio, low, high) * a)
    if loss == "cispo":
        return -w * np.clip(ratio, low, high) * lp * a
    if loss == "gspo":
        in_ratio = x["sequence_ratio_mask"] != 0
        s = np.exp(np.mean((lp - q)[in_ratio]))
        return -w * np.minimum(s * a, np.clip(s, low, high) * a)
    raise AssertionError(loss)


def stable_reinforce_terms(
    lp: np.ndarray, datum: types.Datum, sampler_logprobs: np.ndarray, kl_coeff: float = 0.0
) -> np.ndarray:
    """tinkerkit's stated offline objective (docs/backends.md), per target row: on rows
    under a SampledProvenanceSpan, ``-min(exp(lp - q), 2) * A * lp + kl/2 * (lp - q)^2``
    (times weights); 0 on prompt rows. ``sampler_logprobs`` are the sampler's logprobs of
    the sampled tokens (``SampledSequence.logprobs``)."""
    x = arrays(datum)
    terms = np.zeros_like(lp)
    position = 0
    for span in datum.loss_fn_input_spans or []:
        if isinstance(span, types.SampledProvenanceSpan):
            rows = slice(position, position + span.length)
            q = sampler_logprobs[span.offset : span.offset + span.length]
            rho = np.minimum(np.exp(lp[rows] - q), STABLE_REINFORCE_CAP)
            per_token = -rho * x["advantages"][rows] * lp[rows]
            per_token += 0.5 * kl_coeff * (lp[rows] - q) ** 2
            terms[rows] = x["weights"][rows] * per_token
        position += span.length
    return terms


def assert_loss(out: types.ForwardBackwardOutput, terms: Sequence[np.ndarray]) -> None:
    """``loss:sum`` equals the sum of the reference terms to 1e-5 of their magnitude."""
    total = float(sum(t.sum() for t in terms))
    scale = float(sum(np.abs(t).sum() for t in terms))
    assert out.metrics["loss:sum"] == pytest.approx(total, rel=1e-5, abs=1e-5 * scale + 1e-9)


# --- the cookbook's RL datums (tinker_cookbook/recipes/rl_loop.py) -------------------------


def with_sampled_provenance(
    datum: types.Datum, prompt_length: int, num_sampled: int, sequence_id: str
) -> types.Datum:
    """``tinker_cookbook.recipes.rl_loop.with_sampled_provenance``, reproduced (that module
    imports chz/datasets, which the offline test environment does not have)."""
    return datum.with_provenance(
        model_input=[
            types.PromptProvenanceSpan(sequence_id=sequence_id, length=prompt_length),
            types.SampledProvenanceSpan(sequence_id=sequence_id, length=num_sampled - 1),
        ],
        loss_fn_inputs=[
            types.PromptProvenanceSpan(sequence_id=sequence_id, offset=1, length=prompt_length - 1),
            types.SampledProvenanceSpan(sequence_id=sequence_id, length=num_sampled),
        ],
    )


def cookbook_datum(
    prompt: types.ModelInput, sequence: types.SampledSequence, advantage: float, loss_fn: str
) -> types.Datum:
    """One rollout as ``rl_loop.main`` builds it for ``loss_fn`` (numpy instead of torch)."""
    sampled_tokens = list(sequence.tokens)
    logprobs = list(sequence.logprobs or [])
    ob_len = prompt.length - 1
    model_input = prompt.append(types.EncodedTextChunk(tokens=sampled_tokens[:-1]))
    target_tokens = [0] * ob_len + sampled_tokens
    padded_logprobs = [0.0] * ob_len + logprobs
    padded_advantages = [0.0] * ob_len + [advantage] * (model_input.length - ob_len)
    loss_fn_inputs = {
        "target_tokens": td(target_tokens, np.int64),
        "logprobs": td(padded_logprobs),
        "advantages": td(padded_advantages),
    }
    if loss_fn == "gspo":
        loss_fn_inputs["sequence_ratio_mask"] = td([0.0] * ob_len + [1.0] * len(sampled_tokens))
    datum = types.Datum(model_input=model_input, loss_fn_inputs=loss_fn_inputs)
    if loss_fn == "stable_reinforce":
        datum = with_sampled_provenance(
            datum, prompt.length, len(sampled_tokens), sequence.sequence_id
        )
    return datum


def sample_rollouts(training, tokenizer, *, record: bool = True, n: int = 4, max_tokens: int = 8):
    """``n`` continuations of ``PROMPT`` from the current weights (stop disabled, so each
    has ``max_tokens`` tokens)."""
    sampler = training.save_weights_and_get_sampling_client(record_stability_info=record).result()
    prompt = types.ModelInput.from_ints(tokenizer.encode(PROMPT))
    params = types.SamplingParams(max_tokens=max_tokens, seed=0, stop=[])
    return prompt, sampler.sample(prompt, n, params).result().sequences


def sft_on(datum: types.Datum, prompt: types.ModelInput) -> types.Datum:
    """A cross_entropy datum training the sampled rows of a cookbook datum."""
    ob_len = prompt.length - 1
    rows = datum.model_input.length
    return types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={
            "target_tokens": datum.loss_fn_inputs["target_tokens"],
            "weights": td([0.0] * ob_len + [1.0] * (rows - ob_len)),
        },
    )
