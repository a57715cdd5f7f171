"""What every training loop shares before its ``Run`` exists (``train/run.py``):

- ``RunOptions``: the settings every loop's config has (model, rank, seed, log folder,
  resume/overwrite, checkpoint cadence and retention, logging);
- ``start_run``: check the log folder (``rundir.inspect_run``: refuse an
  existing run without ``resume``/``overwrite``, read a resumed run's records, spot a
  finished one) before any client exists;
- ``open_prepared_session``: the service (the one given, else the face's default), a
  fresh or restored LoRA training client, and the run's inputs prepared with the
  model's tokenizer;
- ``public_config``: a config as ``run.json`` records it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tinkerkit._defaults import service_or_default
from tinkerkit.data.storage import display_url, is_url
from tinkerkit.models.client_tokenizer import known_tokenizer, same_tokenizer
from tinkerkit.protocols import ServiceClientLike, Tokenizer, TrainingClientLike
from tinkerkit.train.run_options import RunOptions as RunOptions
from tinkerkit.train.rundir import RunDir, inspect_run


@dataclass
class RunResult:
    """Where a finished run left its weights, and what it logged."""

    state_path: str
    sampler_path: str
    log_dir: Path
    steps: int
    metrics: list[dict[str, Any]]
    """``metrics.jsonl``'s rows: one per step, plus evaluation rows."""
    samples: list[dict[str, Any]] = field(default_factory=list)
    """``samples.jsonl``'s rows: sample previews and RL transcripts."""
    already_finished: bool = False
    """``resume`` found the run finished: this is its recorded result, nothing was trained."""
    external_path: str | None = None
    """``final`` saved externally (``export_final``): a downloadable ``tinker://`` path."""

    def _repr_html_(self) -> str:
        """In a notebook: the steps, final loss (and rewards, held-out figures) and curves."""
        from tinkerkit.train.display import result_html

        kind = {"sft": "SFT", "rl": "RL", "preference": "DPO"}.get(
            type(self).__module__.rsplit(".", 1)[-1], "Training"
        )
        return result_html(
            kind,
            steps=self.steps,
            log_dir=self.log_dir,
            sampler_path=self.sampler_path,
            metrics=self.metrics,
        )


def start_run(options: RunOptions, identity: Mapping[str, Any]) -> RunDir:
    """Check the log folder; call before any client is created.

    ``identity``: what defines the run as far as it is known without a tokenizer.

    Example:
        >>> run = start_run(config, {"model": config.model, "seed": config.seed})
        >>> run.finished
        False
    """
    return inspect_run(
        options.log_dir, resume=options.resume, overwrite=options.overwrite, identity=identity
    )


Prepared = TypeVar("Prepared")


def open_prepared_session(
    service: ServiceClientLike | None,
    options: RunOptions,
    run: RunDir,
    prepare: Callable[[Any], Prepared],
    init_state: str | None = None,
) -> tuple[ServiceClientLike, TrainingClientLike, Tokenizer, Prepared]:
    """``open_training_client`` with the run's inputs prepared by ``prepare(tokenizer)``
    (datums built and checked): before the client exists where tinkerkit knows the base
    model's tokenizer (``models.known_tokenizer``), so input the tokenizer refuses leaves
    no run behind; again with the training client's tokenizer if it gives other ids.

    ``service`` None: the face's default, ``tk.connect()`` (the environment's backend).
    Returns (service, training client, tokenizer, prepared)."""
    service = service_or_default(service)
    fresh = not init_state and run.resume_from is None
    known = known_tokenizer(options.model) if fresh else None
    prepared = prepare(known) if known is not None else None
    training = open_training_client(service, options, run, init_state)
    tokenizer = training.get_tokenizer()
    if prepared is None or not same_tokenizer(known, tokenizer):
        prepared = prepare(tokenizer)
    return service, training, tokenizer, prepared


def open_training_client(
    service: ServiceClientLike, options: RunOptions, run: RunDir, init_state: str | None = None
) -> TrainingClientLike:
    """A training client for this run: fresh (starting from ``init_state``, a
    ``tinker://.../weights/`` checkpoint, when given), or restored (weights and Adam
    state) from the run's last checkpoint when ``run`` resumes."""
    if run.resume_from is not None:
        return service.create_training_client_from_state_with_optimizer(
            run.resume_from.state_path
        ).result()
    if init_state:
        return service.create_training_client_from_state(init_state).result()
    return service.create_lora_training_client(
        base_model=options.model, rank=options.rank, seed=options.seed
    ).result()


def public_config(config: Any) -> dict[str, Any]:
    """A config as JSON-safe values: no callbacks, in-memory data summarised, paths as str."""
    # dict(config), not model_dump: that copies every field, and callbacks or rewards may
    # hold clients.
    out: dict[str, Any] = {}
    for key, value in dict(config).items():
        if key == "callbacks" or callable(value):
            continue
        if (
            isinstance(value, list | tuple)
            and value
            and not isinstance(value[0], str | int | float)
        ):
            value = f"<{len(value)} records in memory>"
        if isinstance(value, str) and is_url(value) and not value.startswith("sqlite:"):
            value = display_url(value)  # a signed URL's signature is a secret
        out[key] = str(value) if isinstance(value, Path) else value
    return out
