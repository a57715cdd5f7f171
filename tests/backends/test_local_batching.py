"""The ``local`` engine's shared work: torch sampling rules, continuous batching of sample
requests, several clients' forward_backward in one pass, and the thread count."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from tinker import types  # noqa: E402

from tinkerkit.backends import sampler  # noqa: E402
from tinkerkit.backends.local import sampling, threads  # noqa: E402
from tinkerkit.backends.local.generate import Generation, Lane  # noqa: E402
from tinkerkit.backends.local.multi_lora import TrainJob, run_together  # noqa: E402
from tinkerkit.backends.local.sampling import Rule  # noqa: E402

from .test_local_engine import make_batch, make_engine  # noqa: E402


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINKERKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --- the sampling rules ------------------------------------------------------------------


class _Uniforms:
    """A stand-in for the numpy generator that hands out given uniforms."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def random(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.values.reshape(shape)


def numpy_rule(logits: np.ndarray, rule: Rule, uniforms: np.ndarray) -> np.ndarray:
    """The shared numpy sampler's own draw (backends/sampler.py), with given uniforms."""
    params = types.SamplingParams(temperature=rule.temperature, top_k=rule.top_k, top_p=rule.top_p)
    logprobs = sampler.log_softmax(logits.astype(np.float64))
    return sampler._draw(logprobs, params, _Uniforms(uniforms))  # type: ignore[arg-type]


RULES = [
    Rule(1.0, -1, 1.0),
    Rule(0.7, -1, 1.0),
    Rule(1.3, 20, 1.0),
    Rule(1.0, -1, 0.8),
    Rule(0.9, 50, 0.5),
    Rule(0.0, -1, 1.0),
]


@pytest.mark.parametrize("rule", RULES, ids=str)
@pytest.mark.parametrize("vocab", [261, 1000])
def test_torch_draw_picks_what_the_numpy_rule_picks(rule, vocab):
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(400, vocab, generator=gen) * 3
    uniforms = torch.rand(400, generator=gen, dtype=torch.float64)
    tokens, logprobs = sampling.draw(logits, rule, uniforms)
    want = numpy_rule(logits.numpy(), rule, uniforms.numpy())
    # Float32 against float64 sums: a uniform within ~1e-6 of a boundary may land on the
    # neighbour; anything beyond that is a different rule.
    assert (tokens.numpy() == want).mean() >= 0.995
    expected = torch.log_softmax(logits.double(), -1).gather(-1, tokens[:, None])[:, 0]
    np.testing.assert_allclose(logprobs.numpy(), expected.numpy(), atol=2e-6)


def test_unfiltered_draw_follows_the_distribution():
    logits = torch.linspace(-4, 4, 300)[None, :]
    n = 100_000
    uniforms = torch.rand(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    tokens, _ = sampling.draw(logits.expand(n, -1).contiguous(), Rule(0.8, -1, 1.0), uniforms)
    freq = np.bincount(tokens.numpy(), minlength=300) / n
    probs = torch.softmax(logits[0] / 0.8, -1).numpy()
    assert 0.5 * np.abs(freq - probs).sum() < 0.02  # total variation


def test_top_logprobs_descend_with_ties_by_lower_id():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 2.0]])
    ids, values = sampling.top_logprobs(logits, 4)
    assert ids.tolist() == [[1, 2, 4, 5]]
    want = torch.log_softmax(logits, -1)[0, [1, 2, 4, 5]]
    np.testing.assert_allclose(values[0].numpy(), want.numpy(), atol=1e-6)


# --- continuous batching ------------------------------------------------------------------


def _job(prompt, n, seed, max_tokens=12, stop=None, topk=0):
    params = types.SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=seed, stop=stop)
    return sampler.job(
        prompt,
        n,
        params,
        max_context=256,
        default_stop_tokens=[259],
        decode=lambda ids: bytes(i for i in ids if i < 256).decode("latin-1"),
        topk=topk,
    )


def _decode(engine, joins: dict[int, list]) -> None:
    """Rounds of one lane; ``joins[r]`` are the jobs that join before round ``r``."""
    lane = Lane(engine.lm, engine.device, engine.shape)
    rounds = 0
    while lane.busy or any(r >= rounds for r in joins):
        for job in joins.get(rounds, []):
            lane.join(job)
        lane.round()
        rounds += 1


def test_a_request_draws_the_same_alone_and_joined_midway():
    """Rows of other requests (other prompts and lengths, joining and leaving at other
    rounds) change nothing in a request's tokens and logprobs."""
    engine = make_engine()
    alone = Generation(_job([72, 105, 33], 3, seed=5, topk=3))
    _decode(engine, {0: [alone]})
    first = Generation(_job([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 2, seed=1, max_tokens=4))
    joined = Generation(_job([72, 105, 33], 3, seed=5, topk=3))
    late = Generation(_job([50, 60], 4, seed=2, stop=["a"]))
    _decode(engine, {0: [first], 2: [joined], 5: [late]})
    want, got = alone.future.result(), joined.future.result()
    assert [s.tokens for s in got] == [s.tokens for s in want]
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
        np.testing.assert_array_equal(a.topk_logprobs_np.token_ids, b.topk_logprobs_np.token_ids)
    assert all(len(s.tokens) == 4 for s in first.future.result())
    for seq in late.future.result():
        text = bytes(t for t in seq.tokens if t < 256).decode("latin-1")
        assert seq.stop_reason == "length" or text.endswith("a") or seq.tokens[-1] == 259


def test_prompts_of_other_lengths_prefilled_together_draw_as_alone():
    """Requests joining in one round share one left-padded prefill: the padding changes
    nothing in any request's tokens or logprobs."""
    engine = make_engine()
    prompts = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [72], [40, 41, 42, 43]]
    alone = []
    for seed, prompt in enumerate(prompts):
        request = Generation(_job(prompt, 2, seed=seed, topk=2))
        _decode(engine, {0: [request]})
        alone.append(request.future.result())
    together = [Generation(_job(p, 2, seed=seed, topk=2)) for seed, p in enumerate(prompts)]
    _decode(engine, {0: together})
    for want, request in zip(alone, together, strict=True):
        got = request.future.result()
        assert [s.tokens for s in got] == [s.tokens for s in want]
        for a, b in zip(want, got, strict=True):
            assert np.isfinite(b.logprobs).all()
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_requests_on_other_adapters_of_the_base_decode_together_as_alone():
    """Two adapters' requests in one lane: each row through its own LoRA, the numbers of
    each request's own lane."""
    first, second = make_engine(seed=1), make_engine(seed=2)
    alone = []
    for engine, prompt in ((first, [72, 105]), (second, [40, 41, 42])):
        request = Generation(_job(prompt, 2, seed=3, topk=2))
        lane = Lane(engine.lm, engine.device, engine.shape)
        lane.join(request)
        while lane.busy:
            lane.round()
        alone.append(request.future.result())
    lane = Lane(first.lm, first.device, first.shape)
    mixed = [
        Generation(_job([72, 105], 2, seed=3, topk=2)),
        Generation(_job([40, 41, 42], 2, 3, topk=2)),
    ]
    lane.join(mixed[1], second.lm)  # the lead's rows come second
    lane.round()
    lane.join(mixed[0], first.lm)
    while lane.busy:
        lane.round()
    for want, request in zip(alone, mixed, strict=True):
        got = request.future.result()
        assert [s.tokens for s in got] == [s.tokens for s in want]
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_batched_logprobs_are_the_models_own():
    """A sampled sequence's logprobs equal a full forward pass over prompt + sequence."""
    engine = make_engine()
    prompt = [10, 20, 30, 40]
    jobs = [Generation(_job(prompt, 2, seed=9)), Generation(_job([7, 8], 3, seed=4))]
    _decode(engine, {0: [jobs[0]], 1: [jobs[1]]})
    for job in jobs:
        for seq in job.future.result():
            tokens = list(job.job.prompt) + seq.tokens
            item = make_batch([1])[0].__class__(np.array(tokens[:-1]), np.array(tokens[1:]))
            scored = engine.forward([item], grad=False).logprobs[0][-len(seq.tokens) :]
            np.testing.assert_allclose(scored, seq.logprobs, atol=1e-5)


# --- several clients in one pass ------------------------------------------------------------


def _gradient(i, lp):
    return np.linspace(-1, 1, lp.size).astype(np.float32).reshape(lp.shape) * (i + 1)


def test_clients_trained_together_get_their_own_gradients():
    batches = [make_batch([5, 17, 9], seed=1), make_batch([12, 3], seed=2), make_batch([30, 7], 3)]
    apart = [make_engine(seed) for seed in (1, 2, 3)]
    together = [make_engine(seed) for seed in (1, 2, 3)]
    want = []
    for engine, batch in zip(apart, batches, strict=True):
        fp = engine.forward(batch, grad=True)
        want.append(fp.logprobs)
        fp.backward([_gradient(i, lp) for i, lp in enumerate(fp.logprobs)])
    got: list[dict] = [{}, {}, {}]

    def recording(c):
        def gradient(i, lp):
            got[c][i] = lp
            return _gradient(i, lp)

        return gradient

    jobs = [
        TrainJob(e, b, recording(c)) for c, (e, b) in enumerate(zip(together, batches, strict=True))
    ]
    run_together(jobs)
    for job in jobs:
        assert job.future.result() is None
    for a, b in zip(want, got, strict=True):
        assert sorted(b) == list(range(len(a)))  # every datum scored once
        for i, x in enumerate(a):
            np.testing.assert_allclose(x, b[i], atol=1e-5)
    for e1, e2 in zip(apart, together, strict=True):
        for key, p in e1.params.items():
            assert float(p.grad.abs().sum()) > 0
            np.testing.assert_allclose(e2.params[key].grad.numpy(), p.grad.numpy(), atol=1e-5)


def test_a_failing_loss_fails_its_client_only_and_leaves_its_gradients():
    engines = [make_engine(seed) for seed in (1, 2)]
    # Several buckets: the failure comes after an earlier bucket's backward has run.
    batches = [make_batch([60, 4, 33, 2, 17], seed=1), make_batch([9], seed=2)]
    before = {k: p.grad.clone() for k, p in engines[0].params.items()}

    def broken(i, lp):
        if i == 3:
            raise ValueError("bad loss input")
        return _gradient(i, lp)

    jobs = [TrainJob(engines[0], batches[0], broken), TrainJob(engines[1], batches[1], _gradient)]
    run_together(jobs)
    with pytest.raises(ValueError, match="bad loss input"):
        jobs[0].future.result()
    jobs[1].future.result()
    for key, p in engines[0].params.items():
        assert torch.equal(p.grad, before[key])
    assert all(float(p.grad.abs().sum()) > 0 for p in engines[1].params.values())


# --- threads ---------------------------------------------------------------------------------


def test_threads_leave_the_cores_other_processes_use(monkeypatch):
    cores = threads.cores()
    monkeypatch.delenv(threads.ENV, raising=False)
    busy = {"jiffies": 0}
    monkeypatch.setattr(threads, "_busy_jiffies", lambda cpus: busy["jiffies"])
    pool = threads.Threads()

    def others(n_cores: float) -> int:
        """``now()`` after a one-second window in which others kept ``n_cores`` busy."""
        pool._mark = (time.monotonic() - 1.0, 0, time.process_time())
        busy["jiffies"] = int(n_cores * pool._hz)
        return pool.now()

    previous = torch.get_num_threads()
    try:
        assert others(0) == cores
        assert others(cores) == 1 and torch.get_num_threads() == 1  # never zero
        if cores > 2:
            assert others(1) == cores - 1
        monkeypatch.setenv(threads.ENV, "1")
        assert others(0) == 1
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("raw", ["0", "two", "-3"])
def test_a_bad_threads_setting_is_refused_when_the_backend_starts(monkeypatch, raw):
    from tinkerkit.backends.local.engine import LocalFactory
    from tinkerkit.errors import ConfigError

    monkeypatch.setenv(threads.ENV, raw)
    with pytest.raises(ConfigError, match=f"TINKERKIT_THREADS='{raw}'"):
        LocalFactory()
