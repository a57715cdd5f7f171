"""Notes → training data: Markdown notes become question/answer chats for SFT.

Two ways to get pairs:

* direct extraction (:mod:`.markdown`): one pair per section, at any heading depth;
* generation (:mod:`.generate`): a model writes pairs about each document, with robust
  parsing, retries and an on-disk cache (:mod:`.cache`).

Example::

    from tinkerkit.data.notes import notes_to_chats, examples_dir
    report = notes_to_chats(examples_dir(), "train.jsonl")
    print(report.summary())
"""

from __future__ import annotations

from pathlib import Path

from tinkerkit.data.notes.cache import NotesCache, default_cache_dir
from tinkerkit.data.notes.errors import (
    GenerationError,
    GeneratorUnavailableError,
    NotesConfigError,
    NotesDecodeError,
    NotesError,
    NotesFrontMatterError,
    NotesNotFoundError,
    QAParseError,
)
from tinkerkit.data.notes.generate import (
    AnthropicGenerator,
    GeneratedPairs,
    GenerationFailure,
    Generator,
    SamplingClientGenerator,
    build_qa_prompt,
    generate_qa,
    generator_identity,
)
from tinkerkit.data.notes.markdown import (
    Section,
    extract_qa,
    extract_sections,
    find_note_files,
    load_notes,
    parse_front_matter,
    section_question,
)
from tinkerkit.data.notes.output import atomic_writer, write_chat_jsonl
from tinkerkit.data.notes.parse import parse_qa_output
from tinkerkit.data.notes.pipeline import (
    NotesReport,
    notes_to_chats,
    sampling_generator,
    split_documents,
)
from tinkerkit.data.notes.qa import QAPair, dedupe_pairs, question_key

__all__ = [
    "AnthropicGenerator",
    "GeneratedPairs",
    "GenerationError",
    "GenerationFailure",
    "Generator",
    "GeneratorUnavailableError",
    "NotesCache",
    "NotesConfigError",
    "NotesDecodeError",
    "NotesError",
    "NotesFrontMatterError",
    "NotesNotFoundError",
    "NotesReport",
    "QAPair",
    "QAParseError",
    "SamplingClientGenerator",
    "Section",
    "atomic_writer",
    "build_qa_prompt",
    "dedupe_pairs",
    "default_cache_dir",
    "examples_dir",
    "extract_qa",
    "extract_sections",
    "find_note_files",
    "generate_qa",
    "generator_identity",
    "load_notes",
    "notes_to_chats",
    "parse_front_matter",
    "parse_qa_output",
    "question_key",
    "sampling_generator",
    "section_question",
    "split_documents",
    "write_chat_jsonl",
]


def examples_dir() -> Path:
    """The folder of example notes shipped with tinkerkit (a fictional language, Pebble).

    Example:
        >>> len(extract_qa(examples_dir())) >= 10
        True
    """
    return Path(__file__).parent / "examples"
