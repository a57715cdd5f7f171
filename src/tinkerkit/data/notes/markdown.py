"""Direct extraction: Markdown notes → sections → one question/answer pair per section.

The Markdown is read by markdown-it-py (CommonMark) and the front matter by
python-frontmatter, so that

* sections split at ATX headings of every depth (``#`` to ``######``) and keep the path
  of headings above them ("Pebble > Syntax > Comments");
* code blocks stay intact: a ``# comment`` inside a fenced or indented block is code, as
  is a ``#`` line inside an HTML block (``<!-- ... -->``, or ``<div>`` up to the next blank
  line), just as a Markdown renderer shows them; headings in quotes and lists do not split;
* front matter (a ``---`` block of YAML on the first line) goes to ``Section.metadata``
  instead of into the text;
* sections whose body is empty (a heading directly followed by a sub-heading) are dropped.

Setext headings (a line underlined with ``===``/``---``) are not recognised: notes apps
write ATX headings, and ``---`` is far more often a horizontal rule.

Question wording (see :func:`section_question`): ``What do my notes say about <last
heading> (<context>)?`` where the context is the front matter ``title`` (when the
headings do not already start with it) followed by the parent headings. The answer is
the section body, trimmed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import frontmatter
import yaml
from markdown_it import MarkdownIt

from tinkerkit.data.notes.errors import (
    NotesDecodeError,
    NotesFrontMatterError,
    NotesNotFoundError,
)
from tinkerkit.data.notes.qa import QAPair

__all__ = [
    "Section",
    "extract_qa",
    "extract_sections",
    "find_note_files",
    "iter_notes",
    "load_notes",
    "parse_front_matter",
    "section_question",
]

NOTE_SUFFIXES = (".md", ".markdown")


@dataclass(frozen=True)
class Section:
    """One heading and the text under it (up to the next heading of any depth)."""

    path: tuple[str, ...]
    """Headings from the outermost down to this one; ``()`` for text before any heading."""
    level: int
    """Heading depth, 1-6 (0 for text before the first heading)."""
    body: str
    """The text under the heading, trimmed; code blocks kept verbatim."""
    file: str
    """Where the text came from: a file path, or the ``source`` given for raw text."""
    line: int
    """1-based line of the heading in the file (of the first body line for level 0)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The note's front matter as YAML reads it, e.g. ``{"title": "Pebble", "tags": ["a"]}``."""

    @property
    def heading_path(self) -> str:
        """The headings joined with `` > ``, e.g. ``"Pebble > History > Founding"``."""
        return " > ".join(self.path)

    @property
    def source(self) -> str:
        """``file:line: heading path``, the form editors and compilers use for locations."""
        return f"{self.file}:{self.line}: {self.heading_path or '(top)'}"

    @property
    def title(self) -> str:
        """The section's own heading (the front matter title or file name at level 0)."""
        if self.path:
            return self.path[-1]
        return str(self.metadata.get("title") or Path(self.file).stem)


def parse_front_matter(text: str, source: str = "<text>") -> tuple[dict[str, Any], str, int]:
    """Split ``text`` into (front matter, the rest, number of lines the front matter used).

    Front matter is a YAML mapping between a ``---`` first line and the next ``---`` line.
    Text without a closed block, or whose block is not a mapping, has no front matter.

    Example:
        >>> parse_front_matter("---\\ntitle: Pebble\\n---\\n# Intro\\n")
        ({'title': 'Pebble'}, '# Intro\\n', 3)
    """
    handler = frontmatter.YAMLHandler()
    if not handler.detect(text):
        return {}, text, 0
    try:
        block, rest = handler.split(text)
    except ValueError:
        return {}, text, 0  # an unclosed "---" is a horizontal rule, not front matter
    try:
        data = handler.load(block)
    except yaml.YAMLError as exc:
        # The context mark is where the broken construct starts, e.g. an unclosed "[".
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = text.count("\n", 0, text.find(block)) + 1 + (mark.line if mark else 0)
        raise NotesFrontMatterError(
            f"{source}:{line}: the front matter (the block between the first two '---' "
            f"lines) is not valid YAML: {getattr(exc, 'problem', None) or exc}. Fix it, "
            "or begin the note with something else if that '---' is a horizontal rule."
        ) from exc
    if data is not None and not isinstance(data, dict):
        return {}, text, 0
    if text[len(text) - len(rest) - 1] != "\n":
        rest = rest.partition("\n")[2]  # what follows the closing "---" on its line
    metadata = {str(key): value for key, value in (data or {}).items()}
    return metadata, rest, text.count("\n", 0, len(text) - len(rest))


# CommonMark without setext headings ("Title" over "---"); see the module docstring.
_MARKDOWN = MarkdownIt("commonmark").disable("lheading")


def extract_sections(text: str, source: str = "<text>") -> list[Section]:
    """Split Markdown ``text`` into sections at headings of any depth.

    ``source`` names the text in ``Section.file`` (and so in every error and report).
    Sections with an empty body are left out.

    Example:
        >>> [s.heading_path for s in extract_sections("# Town\\n## History\\nOld.\\n")]
        ['Town > History']
    """
    text = text.replace("\r\n", "\n").lstrip("\ufeff")
    metadata, rest, offset = parse_front_matter(text, source)
    lines = rest.split("\n")
    tokens = _MARKDOWN.parse(rest)
    # (line index, level, title) of each top-level heading; quotes and lists nest deeper.
    headings = [
        (token.map[0], int(token.tag[1:]), tokens[i + 1].content.strip() or "(untitled)")
        for i, token in enumerate(tokens)
        if token.type == "heading_open" and token.level == 0 and token.map
    ]
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    ends = [start for start, _, _ in headings] + [len(lines)]
    for (start, level, title), end in zip([(-1, 0, ""), *headings], ends, strict=True):
        if level:
            stack = [(lvl, t) for lvl, t in stack if lvl < level] + [(level, title)]
        body = lines[start + 1 : end]
        content = "\n".join(body).strip()
        if not content:
            continue
        line = start  # the heading's index; for level 0 the first line of text
        if not level:
            line = next(i for i, row in enumerate(body) if row.strip())
        path = tuple(t for _, t in stack)
        sections.append(Section(path, level, content, source, offset + line + 1, metadata))
    return sections


def find_note_files(path: str | Path) -> list[Path]:
    """The Markdown files at ``path``: the file itself, or every ``*.md``/``*.markdown``
    below a folder (recursively, skipping hidden entries such as ``.obsidian``), sorted
    by their path relative to the folder so that runs are deterministic.

    Example:
        >>> [p.name for p in find_note_files(examples_dir())][:1]
        ['community.md']
    """
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise NotesNotFoundError(
            f"{root}: no such file or folder. Pass a Markdown file or a folder of notes."
        )
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in NOTE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    if not files:
        raise NotesNotFoundError(
            f"{root}: no .md or .markdown files in this folder or below it. "
            "Point at the folder that holds your notes."
        )
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise NotesDecodeError(
            f"{path}:{line}: not valid UTF-8 (byte {exc.start}). Re-save the note as UTF-8."
        ) from exc


def iter_notes(path: str | Path) -> Iterator[tuple[Path, list[Section]]]:
    """Each note file under ``path`` with its sections, in :func:`find_note_files` order."""
    for file in find_note_files(path):
        yield file, extract_sections(_read(file), source=str(file))


def load_notes(path: str | Path) -> list[Section]:
    """Every non-empty section of the note file or folder at ``path``.

    Example:
        >>> sections = load_notes(examples_dir())
        >>> sections[0].source
        '.../examples/community.md:3: Pebble community > Meetups'
    """
    return [section for _, sections in iter_notes(path) for section in sections]


def section_question(section: Section) -> str:
    """The question a section answers: ``What do my notes say about <heading> (<context>)?``.

    The context (front matter title, then parent headings) tells apart sections that share
    a heading, such as "Pebble > History" and "Gravel > History".

    Example:
        >>> s = Section(("Town", "History", "Founding"), 3, "In 1820.", "town.md", 9)
        >>> section_question(s)
        'What do my notes say about Founding (Town > History)?'
    """
    doc_title = str(section.metadata.get("title") or "").strip()
    context = list(section.path[:-1])
    if doc_title and (not section.path or section.path[0].casefold() != doc_title.casefold()):
        context.insert(0, doc_title)
    if not section.path:
        context = []  # level 0: its title already is the document title
    suffix = f" ({' > '.join(context)})" if context else ""
    return f"What do my notes say about {section.title}{suffix}?"


def _looks_like_path(text: str) -> bool:
    return (
        "\n" not in text
        and not text.lstrip().startswith("#")
        and (text.lower().endswith(NOTE_SUFFIXES) or "/" in text or "\\" in text)
    )


def extract_qa(path_or_text: str | Path, source: str = "<text>") -> list[QAPair]:
    """One :class:`QAPair` per non-empty section of a note file, folder, or Markdown text.

    A ``Path`` is always read from disk; a ``str`` is a path if it names an existing file
    or folder, an error if it looks like a path that does not exist (a typo must not turn
    into an empty dataset), and Markdown text otherwise.

    Example:
        >>> extract_qa("# Pebble\\nA small language.\\n")[0].question
        'What do my notes say about Pebble?'
    """
    if isinstance(path_or_text, Path) or (
        "\n" not in path_or_text and len(path_or_text) < 4096 and Path(path_or_text).exists()
    ):
        sections = load_notes(path_or_text)
    elif _looks_like_path(path_or_text):
        raise NotesNotFoundError(
            f"{path_or_text}: no such file or folder. Check the path; to extract from "
            "Markdown text, pass text that contains a newline."
        )
    else:
        sections = extract_sections(path_or_text, source=source)
    return [QAPair(section_question(s), s.body, s.source) for s in sections]
