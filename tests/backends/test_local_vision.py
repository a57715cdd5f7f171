"""The local engine's image inputs: transformers' own processor output, kept for reuse."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tinkerkit.backends.local import vision  # noqa: E402
from tinkerkit.models.stand_ins import ModelNames  # noqa: E402
from tinkerkit.rules.images import Picture  # noqa: E402


def test_processed_pictures_equal_the_processors_batch_and_are_reused(monkeypatch):
    spec = ModelNames().vision("tinkerkit/tiny-vl")
    assert spec is not None
    rng = np.random.default_rng(0)
    shapes = [(64, 64), (80, 64), (37, 200)]
    pixels = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    pictures = [Picture(0, p, spec.processor.grid(*p.shape[:2])) for p in pixels]
    batch = vision.image_processor(spec.processor)(images=pixels, return_tensors="pt")
    monkeypatch.setattr(vision, "_processed", type(vision._processed)())
    calls = []
    real = vision.image_processor(spec.processor)
    monkeypatch.setattr(vision, "image_processor", lambda p: calls.append(1) or real)
    for _ in range(2):  # the second pass is served from the cache
        parts = [vision._patches(spec.processor, p) for p in pictures]
        torch.testing.assert_close(torch.cat([v for v, _ in parts]), batch["pixel_values"])
        assert [list(g) for _, g in parts] == batch["image_grid_thw"].tolist()
    assert len(calls) == len(pictures)


def test_vl_clients_trained_together_get_their_own_gradients():
    """Image datums of two clients in one shared pass (the vision trunk, each row's own
    LoRA): the same logprobs and gradients as separate passes."""
    from tests.conformance.test_images import image_datum
    from tests.images import shape_png
    from tinkerkit.backends.engine import LoraConfig
    from tinkerkit.backends.local.engine import LocalFactory
    from tinkerkit.backends.local.multi_lora import TrainJob, run_together
    from tinkerkit.backends.validation import check_batch

    factory = LocalFactory()
    spec = factory.resolve("tinkerkit/tiny-vl")
    rng = np.random.default_rng(1)
    datums = [image_datum(shape_png(s, rng)) for s in ("circle", "square", "triangle")]
    batches = [
        [c.engine_input for c in check_batch(datums[:2], spec, None)],
        [c.engine_input for c in check_batch(datums[2:], spec, None)],
    ]

    def engines():
        return [factory.create(spec, LoraConfig(rank=4, seed=s)) for s in (1, 2)]

    def gradient(i, lp):
        return np.linspace(-1, 1, lp.size).astype(np.float32).reshape(lp.shape) * (i + 1)

    apart, together = engines(), engines()
    for pair in (apart, together):  # B non-zero: each client's LoRA shapes its logprobs
        for e, s in zip(pair, (1, 2), strict=True):
            g = torch.Generator().manual_seed(s)
            for p in e.params.values():
                p.data.copy_(torch.randn(p.shape, generator=g) * 0.05)
    want = []
    for engine, batch in zip(apart, batches, strict=True):
        fp = engine.forward(batch, grad=True)
        want.append(fp.logprobs)
        fp.backward([gradient(i, lp) for i, lp in enumerate(fp.logprobs)])
    got: list[dict] = [{}, {}]

    def recording(c):
        def record(i, lp):
            got[c][i] = lp
            return gradient(i, lp)

        return record

    pairs = enumerate(zip(together, batches, strict=True))
    jobs = [TrainJob(e, b, recording(c)) for c, (e, b) in pairs]
    run_together(jobs)
    for job in jobs:
        job.future.result()
    for a, b in zip(want, got, strict=True):
        for i, x in enumerate(a):
            np.testing.assert_allclose(x, b[i], atol=1e-5)
    for e1, e2 in zip(apart, together, strict=True):
        for key, p in e1.params.items():
            np.testing.assert_allclose(e2.params[key].grad.numpy(), p.grad.numpy(), atol=1e-5)
