"""Typed errors of the notes pipeline; each one is a :class:`tinkerkit.errors.TinkerkitError`.

They live here, next to the code that raises them, so that ``tinkerkit.errors`` stays
about the service API.
"""

from __future__ import annotations

from tinkerkit.errors import TinkerkitError

__all__ = [
    "GenerationError",
    "GeneratorUnavailableError",
    "NotesConfigError",
    "NotesDecodeError",
    "NotesError",
    "NotesFrontMatterError",
    "NotesNotFoundError",
    "QAParseError",
]


class NotesError(TinkerkitError):
    """Base class of every error raised while turning notes into training data."""


class NotesConfigError(NotesError, ValueError):
    """An option of the notes pipeline has an impossible value (the message names it)."""


class NotesNotFoundError(NotesError, FileNotFoundError):
    """The notes path does not exist, or a folder holds no Markdown files."""


class NotesDecodeError(NotesError, ValueError):
    """A note file is not valid UTF-8."""


class NotesFrontMatterError(NotesError, ValueError):
    """A note's front matter is not valid YAML (the message gives the file and line)."""


class QAParseError(NotesError, ValueError):
    """A generator's reply holds no usable question/answer pairs (the message says why)."""


class GenerationError(NotesError):
    """A generator could not produce text for one prompt (network, quota, bad prompt).

    ``generate_qa`` records it as a failure of that document and goes on with the next.
    """


class GeneratorUnavailableError(NotesError):
    """A generator cannot be built here: a missing optional package or API key."""
