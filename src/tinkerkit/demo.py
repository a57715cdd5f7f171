"""``tinkerkit demo``: the whole pipeline offline — notes → chats → SFT → answers → plot.

1. the Markdown notes shipped in ``tinkerkit/demo_notes`` become chat JSONL
   (``tinkerkit notes``' extraction);
2. ``tk.sft.train`` fine-tunes ``tinkerkit/tiny`` on them with a live progress bar;
3. greedy answers to the notes' questions, before and after training, are compared
   with the notes (exact matches are counted);
4. the loss curve is written as a PNG, the adapter exported as a PEFT folder (local
   backend), and every path printed.

The built-in model is tiny and random-init: it memorises what it saw and does not
generalise, and the output says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinkerkit.connect import connect
from tinkerkit.data.notes import QAPair, extract_qa, notes_to_chats
from tinkerkit.protocols import SamplingClientLike, ServiceClientLike
from tinkerkit.text import sample_text
from tinkerkit.train import sft

NOTES_DIR = Path(__file__).parent / "demo_notes"
UNSEEN_QUESTION = "Who built the lighthouse?"


@dataclass
class DemoResult:
    correct_before: int
    correct_after: int
    total: int
    first_loss: float
    last_loss: float
    sampler_path: str
    state_path: str
    out_dir: Path
    plot_path: Path | None
    adapter_dir: Path | None
    seconds: float


def _answers(sampler: SamplingClientLike, questions: list[str]) -> list[str]:
    return [sample_text(sampler, q, max_tokens=48, temperature=0.0)[0].text for q in questions]


def _score(answers: list[str], pairs: list[QAPair]) -> int:
    return sum(a == p.answer.strip() for a, p in zip(answers, pairs, strict=True))


def run_demo(
    backend: str = "local",
    out_dir: str | Path = "tinkerkit-demo",
    steps: int = 150,
    learning_rate: float = 1e-2,
    seed: int = 0,
    latency: float = 0.0,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo, print what happens and where it went; return the numbers.

    Example:
        >>> result = run_demo("mock", out_dir="/tmp/demo")
        >>> result.correct_after > result.correct_before
        True
    """
    start = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    service = connect(backend, latency=latency) if latency else connect(backend)
    echo(f"tinkerkit demo · backend={backend} · model=tinkerkit/tiny · output in {out}/\n")

    chats_path = out / "train.jsonl"
    report = notes_to_chats(NOTES_DIR, chats_path, mode="extract")
    pairs = extract_qa(NOTES_DIR)
    echo(f"1. notes → chats: {report.summary().splitlines()[0]}")

    base = service.create_sampling_client(base_model="tinkerkit/tiny").result()
    questions = [p.question for p in pairs]
    before = _answers(base, questions)

    echo(f"2. fine-tuning on {len(pairs)} chats ({steps} full-batch steps, LoRA rank 32):")
    run_dir = out / "run"
    config = sft.Config(
        data=chats_path,
        epochs=steps,
        batch_size=len(pairs),
        learning_rate=learning_rate,
        rank=32,
        seed=seed,
        log_dir=run_dir,
        save_every=50,
        save_each_epoch=False,
    )
    result = _fresh_run(config, service)
    losses = [m["loss"] for m in result.metrics if "loss" in m]

    sampler = service.create_sampling_client(model_path=result.sampler_path).result()
    after = _answers(sampler, questions)
    correct_before, correct_after = _score(before, pairs), _score(after, pairs)

    echo(
        f"\n3. answers to the notes' questions (loss per token {losses[0]:.2f} → {losses[-1]:.4f}):"
    )
    for pair, b, a in zip(pairs, before, after, strict=True):
        mark = "✓" if a == pair.answer.strip() else "✗"
        echo(f"   {pair.question}\n      before: {b[:40]!r}\n      after:  {a!r} {mark}")
    echo(
        f"\n   exact answers: {correct_before}/{len(pairs)} before training, "
        f"{correct_after}/{len(pairs)} after."
    )
    unseen = sample_text(sampler, UNSEEN_QUESTION, max_tokens=48, temperature=0.0)[0].text
    echo(
        f"   Not in the notes — {UNSEEN_QUESTION!r} → {unseen!r}\n"
        "   The tiny random-init model memorised the notes; it does not generalise. "
        "Point --backend tinker at a real model for that."
    )

    plot_path = _plot(run_dir, echo)
    adapter_dir = _export_adapter(backend, result.state_path, out, service, echo)
    echo("\n4. where everything went:")
    echo(f"   chats:            {chats_path}")
    echo(f"   metrics:          {run_dir / 'metrics.jsonl'}")
    echo(f"   checkpoints:      {run_dir / 'checkpoints.jsonl'}")
    if plot_path:
        echo(f"   loss curve:       {plot_path}")
    echo(f"   sampler weights:  {result.sampler_path}")
    if adapter_dir:
        echo(
            f"   PEFT adapter:     {adapter_dir}  (load with peft.PeftModel over `tinkerkit models export-base tinkerkit/tiny`)"
        )
    echo(f"   training state:   {result.state_path}")
    echo(
        f"   try it:           tinkerkit sample --backend {backend} --checkpoint {result.sampler_path} --prompt {questions[0]!r}"
    )
    return DemoResult(
        correct_before,
        correct_after,
        len(pairs),
        losses[0],
        losses[-1],
        result.sampler_path,
        result.state_path,
        out,
        plot_path,
        adapter_dir,
        time.monotonic() - start,
    )


def _fresh_run(config: sft.Config, service: ServiceClientLike) -> sft.Result:
    """Each demo run starts over: an old run's files in the same folder are moved aside."""
    log_dir = Path(config.log_dir)
    if log_dir.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        log_dir.rename(log_dir.with_name(f"{log_dir.name}-{stamp}"))
    return sft.train(config, service=service)


def _plot(run_dir: Path, echo: Callable[[str], None]) -> Path | None:
    try:
        from tinkerkit.train.plots import plot_metrics

        return plot_metrics(run_dir)
    except ImportError:
        echo("\n   (no loss plot: pip install 'tinkerkit[plot]' for matplotlib)")
        return None


def _export_adapter(
    backend: str,
    state_path: str,
    out: Path,
    service: ServiceClientLike,
    echo: Callable[[str], None],
) -> Path | None:
    """The trained adapter as a PEFT folder (the local model is a real transformers model;
    the mock's numpy model is not, so there is nothing to export it to).

    The Tinker way, which every backend shares: the training state is loaded and saved
    as external weights, and those are downloaded (a sampler path cannot be)."""
    if backend != "local":
        echo(
            "\n   (PEFT export: run with --backend local; the mock model is not a transformers model)"
        )
        return None
    import shutil

    from tinkerkit.export import export

    target = out / "adapter"
    if target.exists():
        shutil.rmtree(target)
    training = service.create_training_client_from_state(state_path).result()
    external = training.save_weights_external("demo-adapter").result().path
    return export(
        external,
        target,
        format="peft",
        base_model="tinkerkit/tiny",
        service=service,
        progress=False,
    )
