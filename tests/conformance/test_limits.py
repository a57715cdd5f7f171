"""Request limits on every offline backend, through the SDK (raw HTTP: tests/serve/test_limits.py).

They are tinkerkit's numbers (the service publishes none), so the real service is not
held to them.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import tinker
from tinker import types

from tinkerkit.backends import limits

PROMPT = types.ModelInput.from_ints([72, 105, 33])


@pytest.fixture(autouse=True)
def _offline_only(target):
    if target.backend == "tinker":
        pytest.skip("tinkerkit's own limits; the service's are not published")


def _sampler(training):
    return training.save_weights_and_get_sampling_client().result()


def test_huge_rank_is_refused_before_any_allocation(service, target, training):
    start = time.monotonic()
    with pytest.raises(tinker.BadRequestError) as info:
        service.create_lora_training_client(base_model=target.model, rank=10**8).result()
    # 10**8-rank matrices would take minutes and then run out of memory.
    assert time.monotonic() - start < 5
    assert info.value.status_code == 400
    assert (
        "rank = 100000000 is out of range: LoRA rank must be a whole number from 1 to 1024 "
        "(MAX_LORA_RANK). The guide's default is 32; 128 is plenty for large supervised "
        "datasets."
    ) in str(info.value)
    # The service still creates models.
    assert service.create_lora_training_client(base_model=target.model, rank=2).result()


def test_sampling_over_a_limit_is_refused_and_the_sampler_still_samples(training):
    sampler = _sampler(training)
    with pytest.raises(tinker.BadRequestError) as info:
        sampler.sample(PROMPT, 100_000_000, types.SamplingParams(max_tokens=4)).result()
    assert "num_samples = 100000000 is out of range" in str(info.value)
    assert "from 1 to 1024 per request (MAX_NUM_SAMPLES)" in str(info.value)
    # stop=[]: no EOS stop, so every sample is max_tokens long (an unseeded draw of EOS
    # ended one after 1 token on local in about 1 run in 50)
    out = sampler.sample(PROMPT, 3, types.SamplingParams(max_tokens=2, stop=[])).result()
    assert [len(s.tokens) for s in out.sequences] == [2, 2, 2]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (types.SamplingParams(max_tokens=-5), "max_tokens"),
        (types.SamplingParams(max_tokens=4, temperature=-0.5), "temperature"),
        (types.SamplingParams(max_tokens=4, top_p=1.5), "top_p"),
    ],
)
def test_nonsense_sampling_params_are_refused_by_name(training, params, field):
    with pytest.raises(tinker.BadRequestError) as info:
        _sampler(training).sample(PROMPT, 1, params).result()
    assert f"{field} = " in str(info.value) and "is out of range" in str(info.value)


@pytest.mark.parametrize("field", ["temperature", "top_p"])
def test_nan_sampling_params_never_leave_the_sdk(training, field):
    params = types.SamplingParams(max_tokens=4, **{field: float("nan")})
    with pytest.raises(ValueError, match="JSON compliant"):
        _sampler(training).sample(PROMPT, 1, params).result()


def test_oversized_batch_is_refused_before_any_datum_is_converted(training, monkeypatch):
    ones = np.ones(limits.MAX_TOKENS_PER_REQUEST + 1, dtype=np.int64)
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(ones.tolist()),
        loss_fn_inputs={"target_tokens": types.TensorData.from_numpy(ones)},
    )
    with pytest.raises(tinker.BadRequestError) as info:
        training.forward_backward([datum], "cross_entropy").result()
    assert f"tokens in the batch = {limits.MAX_TOKENS_PER_REQUEST + 1}" in str(info.value)
    assert "262,144 tokens (MAX_TOKENS_PER_REQUEST)" in str(info.value)

    monkeypatch.setattr(limits, "MAX_DATUMS_PER_REQUEST", 2)
    small = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2]),
        loss_fn_inputs={"target_tokens": types.TensorData.from_numpy(np.array([2, 3]))},
    )
    with pytest.raises(tinker.BadRequestError, match=r"len\(data\) = 3 is out of range"):
        training.forward([small] * 3, "cross_entropy").result()
    assert len(training.forward([small] * 2, "cross_entropy").result().loss_fn_outputs) == 2
