"""Image chunks on every backend (issue 24): a vision model trains, scores and samples on
mixed text and image inputs; a wrong ``expected_tokens``, a bad image and an image for a
text-only model are refused with the SDK's error class, naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import tinker
from tinker import types

from tests.images import shape_png
from tinkerkit.rules.images import QWEN_VL_PROCESSOR

MODEL = "tinkerkit/tiny-vl"
START, PAD, END = 261, 262, 263  # tiny-vl's <|vision_start|>, <|image_pad|>, <|vision_end|>


def image_input(png: bytes, text: bytes = b"What shape?", expected: int | None = 64):
    return types.ModelInput(
        chunks=[
            types.EncodedTextChunk(tokens=[START]),
            types.ImageChunk(data=png, format="png", expected_tokens=expected),
            types.EncodedTextChunk(tokens=[END, *text]),
        ]
    )


def image_datum(png: bytes, answer: bytes = b" circle") -> types.Datum:
    """An SFT datum: the image and question, then ``answer`` trained (targets 0 and
    weight 0 on the image's positions, as tinker-cookbook builds them)."""
    prompt = image_input(png)
    n = prompt.length
    text = [END, *b"What shape?"]
    sequence = [START, *([0] * 64), *text, *answer]
    weights = np.r_[np.zeros(n), np.ones(len(answer))][1:].astype(np.float32)
    model_input = types.ModelInput(
        chunks=[*prompt.chunks[:2], types.EncodedTextChunk(tokens=[*text, *answer[:-1]])]
    )
    return types.Datum(
        model_input=model_input,
        loss_fn_inputs={
            "target_tokens": types.TensorData.from_numpy(np.asarray(sequence[1:], np.int64)),
            "weights": types.TensorData.from_numpy(weights),
        },
    )


@pytest.fixture
def vl(service, target):
    if target.backend == "tinker":
        pytest.skip("tinkerkit/tiny-vl is offline only")
    return service.create_lora_training_client(base_model=MODEL, rank=8, seed=3).result()


def test_the_image_count_is_the_processors():
    """A 64×64 picture is resized to 256×256 (the 65,536-pixel floor): 16×16 patches, 64
    tokens; a 480×320 one keeps its size (rounded to 32): 30×20 patches, 150 tokens."""
    assert QWEN_VL_PROCESSOR.tokens(64, 64) == 64
    assert QWEN_VL_PROCESSOR.tokens(480, 320) == 150
    transformers = pytest.importorskip("transformers")
    processor_cls = getattr(transformers, "Qwen2VLImageProcessorPil", None)
    if processor_cls is None:
        pytest.skip("transformers without the PIL Qwen2-VL processor")
    config = QWEN_VL_PROCESSOR.config()
    del config["image_processor_type"], config["processor_class"]
    hf = processor_cls(**config)
    for h, w in [(64, 64), (480, 320), (37, 1000), (4000, 3000), (31, 33)]:
        expected = hf.get_number_of_image_patches(h, w, images_kwargs={}) // 4
        assert QWEN_VL_PROCESSOR.tokens(h, w) == expected, (h, w)


def test_images_change_the_logprobs_and_training_learns_them(vl):
    rng = np.random.default_rng(0)
    circle, square = shape_png("circle", rng), shape_png("square", rng)
    data = [image_datum(circle), image_datum(square, b" square")]
    first = vl.forward(data, "cross_entropy").result()
    same_text = vl.forward([image_datum(square, b" circle")], "cross_entropy").result()
    lp_circle = first.loss_fn_outputs[0]["logprobs"].to_numpy()
    lp_other = same_text.loss_fn_outputs[0]["logprobs"].to_numpy()
    assert len(lp_circle) == data[0].model_input.length == 64 + 1 + 12 + 6
    # the same text after another image: the answer's logprobs differ
    assert np.abs(lp_circle[-6:] - lp_other[-6:]).max() > 1e-4
    for _ in range(6):
        vl.forward_backward(data, "cross_entropy")
        vl.optim_step(types.AdamParams(learning_rate=1e-2))
    after = vl.forward(data, "cross_entropy").result()
    assert after.metrics["loss:sum"] < 0.6 * first.metrics["loss:sum"]


def test_no_loss_on_image_positions(vl):
    """Weights on positions whose target is an image token count for nothing: the loss
    equals the one with those weights 0."""
    png = shape_png("circle", np.random.default_rng(1))
    datum = image_datum(png)
    weights = datum.loss_fn_inputs["weights"].to_numpy().copy()
    weights[:64] = 5.0  # targets 1..64 are the image's positions
    loaded = types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={**datum.loss_fn_inputs, "weights": types.TensorData.from_numpy(weights)},
    )
    a = vl.forward([datum], "cross_entropy").result().metrics["loss:sum"]
    b = vl.forward([loaded], "cross_entropy").result().metrics["loss:sum"]
    assert a == pytest.approx(b, rel=1e-6)


def test_sampling_on_an_image_matches_scoring(vl, target):
    png = shape_png("triangle", np.random.default_rng(2))
    sampler = vl.save_weights_and_get_sampling_client().result()
    prompt = image_input(png)
    params = types.SamplingParams(max_tokens=6, temperature=1.0, seed=5, stop=[])
    seq = sampler.sample(prompt, 1, params).result().sequences[0]
    full = types.ModelInput(chunks=[*prompt.chunks, types.EncodedTextChunk(tokens=seq.tokens)])
    scored = sampler.compute_logprobs(full).result()[-len(seq.tokens) :]
    np.testing.assert_allclose(seq.logprobs, scored, atol=target.logprob_tolerance)
    # Top-k prompt logprobs after the image: the greedy token tops the last row.
    greedy = types.SamplingParams(max_tokens=1, temperature=0.0, stop=[])
    first = sampler.sample(prompt, 1, greedy).result().sequences[0]
    longer = types.ModelInput(chunks=[*prompt.chunks, types.EncodedTextChunk(tokens=first.tokens)])
    topk = sampler.sample(longer, 1, greedy, topk_prompt_logprobs=3).result()
    (token, logprob), *_ = topk.topk_prompt_logprobs[-1]
    assert token == first.tokens[0]
    assert logprob == pytest.approx(first.logprobs[0], abs=target.logprob_tolerance)
    ending = types.ModelInput(chunks=list(prompt.chunks[:2]))  # <|vision_start|>, the image
    with pytest.raises(tinker.RequestFailedError, match="the prompt ends with an image"):
        sampler.sample(ending, 1, params).result()


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        (
            types.ImageChunk(data=b"", format="png", expected_tokens=63),
            r"expected_tokens=63, but this model makes 64 tokens of a 64×64 image",
        ),
        (
            types.ImageChunk(data=b"not an image", format="png", expected_tokens=64),
            r"12 bytes are not a readable png image",
        ),
        (
            types.ImageChunk(data=b"", format="jpeg", expected_tokens=64),
            r"says format='jpeg' but its bytes are png",
        ),
    ],
    ids=["wrong-expected-tokens", "not-an-image", "wrong-format"],
)
def test_bad_images_are_refused(vl, chunk, message):
    png = shape_png("circle", np.random.default_rng(3))
    if not chunk.data:
        chunk = chunk.model_copy(update={"data": png})
    model_input = types.ModelInput(chunks=[types.EncodedTextChunk(tokens=[START]), chunk])
    datum = types.Datum(
        model_input=types.ModelInput(
            chunks=[*model_input.chunks, types.EncodedTextChunk(tokens=[END])]
        ),
        loss_fn_inputs={"target_tokens": types.TensorData.from_numpy(np.zeros(66, np.int64))},
    )
    with pytest.raises(tinker.RequestFailedError, match=message) as info:
        vl.forward_backward([datum], "cross_entropy").result()
    assert "data[0].model_input chunk 1" in str(info.value)


def test_an_image_for_a_text_only_model_is_refused(service, target):
    if target.backend == "tinker":
        pytest.skip("offline message")
    text_only = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=4).result()
    png = shape_png("square", np.random.default_rng(4))
    sampler = text_only.save_weights_and_get_sampling_client().result()
    with pytest.raises(tinker.RequestFailedError, match="this model reads text only"):
        sampler.sample(image_input(png), 1, types.SamplingParams(max_tokens=2)).result()
