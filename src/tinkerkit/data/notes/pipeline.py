"""Notes folder → chat JSONL in one call, with a report the CLI can print.

``tinkerkit notes NOTES_DIR --out train.jsonl [--generate --backend mock]`` is::

    generator = sampling_generator(tk.connect(backend)) if generate else None
    report = notes_to_chats(notes_dir, out, mode="generate" if generate else "extract",
                            generator=generator)
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tinkerkit.data.notes.cache import NotesCache
from tinkerkit.data.notes.errors import NotesConfigError
from tinkerkit.data.notes.generate import (
    GenerationFailure,
    Generator,
    SamplingClientGenerator,
    generate_qa,
)
from tinkerkit.data.notes.markdown import Section, iter_notes, section_question
from tinkerkit.data.notes.output import write_chat_jsonl
from tinkerkit.data.notes.qa import QAPair, dedupe_pairs
from tinkerkit.protocols import ServiceClientLike

__all__ = ["NotesReport", "notes_to_chats", "sampling_generator", "split_documents"]

Mode = Literal["extract", "generate"]


@dataclass
class NotesReport:
    """What :func:`notes_to_chats` read, generated and wrote."""

    mode: str
    notes_path: str
    out_path: str
    files: int = 0
    sections: int = 0
    documents: int = 0
    """Documents sent to the generator (``generate`` mode)."""
    pairs_written: int = 0
    duplicates: int = 0
    """Pairs whose question repeated an earlier one (merged when extracting, else dropped)."""
    filtered: int = 0
    """Generated pairs dropped by the length filters or as duplicates within a document."""
    generator_calls: int = 0
    cache_hits: int = 0
    failures: list[GenerationFailure] = field(default_factory=list)

    @property
    def generation_failures(self) -> int:
        """Documents that yielded no pairs after every retry."""
        return len(self.failures)

    @property
    def ok(self) -> bool:
        """Whether a training file was written (at least one pair)."""
        return self.pairs_written > 0

    def summary(self, max_failures: int = 5) -> str:
        """A few lines for a terminal.

        Example:
            >>> print(report.summary())
            notes → chats (extract): 5 files, 18 sections → 18 pairs written to train.jsonl
        """
        head = f"notes → chats ({self.mode}): {self.files} files, {self.sections} sections"
        if self.mode == "generate":
            head += (
                f", {self.documents} documents ({self.generator_calls} generator calls, "
                f"{self.cache_hits} cache hits)"
            )
        if self.ok:
            head += f" → {self.pairs_written} pairs written to {self.out_path}"
        lines = [head]
        if self.duplicates or self.filtered:
            lines.append(
                f"  {self.duplicates} duplicate questions, {self.filtered} generated pairs "
                "filtered out"
            )
        if self.failures:
            lines.append(f"  {self.generation_failures} documents failed to generate:")
            lines.extend(f"    {failure}" for failure in self.failures[:max_failures])
            if len(self.failures) > max_failures:
                lines.append(f"    ... and {len(self.failures) - max_failures} more")
        if not self.ok:
            lines.append(
                f"  No pairs: {self.out_path} was not written. Check that the notes have "
                "text under their headings, or that the generator is a capable model."
            )
        return "\n".join(lines)


def split_documents(sections: list[Section], max_chars: int = 3000) -> list[tuple[str, str]]:
    """Group one file's sections into documents of at most ``max_chars`` characters
    (a section longer than that stays whole), as (source, text) pairs.

    Example:
        >>> split_documents(load_notes("pebble.md"))[0][0]
        'pebble.md:7'
    """
    chunks: list[list[Section]] = []
    size = 0
    for section in sections:
        length = len(section.heading_path) + len(section.body) + 8
        if chunks and size + length <= max_chars:
            chunks[-1].append(section)
            size += length
        else:
            chunks.append([section])
            size = length
    documents = []
    for index, chunk in enumerate(chunks, start=1):
        parts = [
            f"{'#' * max(s.level, 1)} {s.heading_path}\n\n{s.body}" if s.path else s.body
            for s in chunk
        ]
        source = f"{chunk[0].file}:{chunk[0].line}"
        if len(chunks) > 1:
            source += f" (part {index} of {len(chunks)})"
        documents.append((source, "\n\n".join(parts)))
    return documents


def notes_to_chats(
    notes_path: str | Path,
    out_path: str | Path,
    *,
    mode: Mode = "extract",
    generator: Generator | None = None,
    pairs_per_document: int = 10,
    max_document_chars: int = 3000,
    retries: int = 2,
    min_answer_chars: int = 1,
    max_answer_chars: int = 2000,
    cache: NotesCache | bool = True,
    system_prompt: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> NotesReport:
    """Turn a note file or folder into a chat JSONL training file.

    ``mode="extract"``: one pair per section (question from the heading path, answer the
    section text); duplicate questions are merged. ``mode="generate"``: each file, split
    into documents of up to ``max_document_chars``, goes to ``generator`` for
    ``pairs_per_document`` pairs (see :func:`generate_qa`); failures are recorded in the
    report, not raised; duplicate questions are dropped. ``cache=True`` caches replies
    under ``$TINKERKIT_HOME/cache/notes``. ``progress`` is called with each document's
    source before it is generated. Nothing is written when no pair was produced.

    Example:
        >>> report = notes_to_chats(examples_dir(), "train.jsonl")
        >>> print(report.summary())
    """
    if mode not in ("extract", "generate"):
        raise NotesConfigError(f"mode must be 'extract' or 'generate', got {mode!r}.")
    if mode == "generate" and generator is None:
        raise NotesConfigError(
            "mode='generate' needs a generator, e.g. "
            "generator=sampling_generator(tk.connect('mock')) or AnthropicGenerator()."
        )
    report = NotesReport(mode, str(notes_path), str(out_path))
    store = NotesCache() if cache is True else cache if isinstance(cache, NotesCache) else None
    pairs: list[QAPair] = []
    for _file, sections in iter_notes(notes_path):
        report.files += 1
        report.sections += len(sections)
        if mode == "extract":
            pairs.extend(QAPair(section_question(s), s.body, s.source) for s in sections)
            continue
        assert generator is not None
        title = sections[0].metadata.get("title") if sections else None
        for source, text in split_documents(sections, max_document_chars):
            report.documents += 1
            if progress is not None:
                progress(source)
            generated = generate_qa(
                text,
                generator,
                num_pairs=pairs_per_document,
                retries=retries,
                min_answer_chars=min_answer_chars,
                max_answer_chars=max_answer_chars,
                cache=store,
                source=source,
                title=title,
            )
            pairs.extend(generated)
            report.generator_calls += generated.generator_calls
            report.cache_hits += generated.cache_hits
            report.filtered += generated.filtered
            report.failures.extend(generated.failures)
    unique, report.duplicates = dedupe_pairs(pairs, merge=mode == "extract")
    if unique:
        report.pairs_written = write_chat_jsonl(unique, out_path, system_prompt)
    return report


def sampling_generator(
    service: ServiceClientLike,
    base_model: str = "tinkerkit/tiny",
    model_path: str | None = None,
    **kwargs: Any,
) -> SamplingClientGenerator:
    """A :class:`SamplingClientGenerator` on ``service`` (a ``tk.connect(...)`` client),
    from a base model or a ``tinker://`` sampler checkpoint; ``kwargs`` go to the
    generator (``max_tokens``, ...).

    Example:
        >>> gen = sampling_generator(tk.connect("mock"), max_tokens=64, seed=0)
    """
    if isinstance(service, str):
        raise TypeError(
            f"sampling_generator takes a service client, not a backend name: "
            f"sampling_generator(tk.connect({service!r}), ...)"
        )
    if model_path:
        client = service.create_sampling_client(model_path=model_path).result()
    else:
        client = service.create_sampling_client(base_model=base_model).result()
    return SamplingClientGenerator(client, **kwargs)
