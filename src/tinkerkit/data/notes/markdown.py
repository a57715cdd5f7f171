"""Direct extraction: Markdown notes → sections → one question/answer pair per section.

Unlike a ``re.split(r"\\n## ", text)`` one-liner, this parser

* splits at ATX headings of every depth (``#`` to ``######``, up to 3 spaces of indent,
  a space or the end of the line after the hashes, optional closing hashes), and keeps
  the path of headings above each section ("Pebble > Syntax > Comments");
* skips fenced code blocks (````` ``` ````` and ``~~~``, closed by a fence of the same
  character at least as long): a ``# comment`` inside one is code, not a heading;
* reads front matter (``---`` on the first line, ``key: value`` lines, ``---`` or
  ``...`` to close) into ``Section.metadata`` instead of treating it as text;
* drops sections whose body is empty (a heading directly followed by a sub-heading).

Setext headings (a line underlined with ``===``/``---``) are not recognised: notes apps
write ATX headings, and ``---`` is far more often a horizontal rule.

Question wording (see :func:`section_question`): ``What do my notes say about <last
heading> (<context>)?`` where the context is the front matter ``title`` (when the
headings do not already start with it) followed by the parent headings. The answer is
the section body, trimmed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tinkerkit.data.notes.errors import NotesDecodeError, NotesNotFoundError
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

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_FRONT_MATTER_KEY = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_ .-]*?)\s*:\s*(.*)$")


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
    metadata: dict[str, str] = field(default_factory=dict)
    """The note's front matter, e.g. ``{"title": "Pebble"}``."""

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
        return self.metadata.get("title") or Path(self.file).stem


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_front_matter(text: str) -> tuple[dict[str, str], str, int]:
    """Split ``text`` into (front matter, the rest, number of lines the front matter used).

    Only flat ``key: value`` lines are read (quotes around values are removed); comments,
    list items and nested blocks are ignored, so no YAML library is needed. Text that does
    not start with a closed ``---`` block has no front matter.

    Example:
        >>> parse_front_matter("---\\ntitle: Pebble\\n---\\n# Intro\\n")
        ({'title': 'Pebble'}, '# Intro\\n', 3)
    """
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text, 0
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        return {}, text, 0  # an unclosed "---" is a horizontal rule, not front matter
    metadata: dict[str, str] = {}
    for raw in lines[1:end]:
        if raw[:1] in (" ", "\t", "#", "-"):
            continue  # nested value, comment or list item: beyond "key: value"
        match = _FRONT_MATTER_KEY.match(raw.strip())
        if match:
            metadata[match.group(1).strip()] = _unquote(match.group(2))
    return metadata, "\n".join(lines[end + 1 :]), end + 1


def _heading(line: str) -> tuple[int, str] | None:
    match = _HEADING.match(line)
    if not match:
        return None
    title = _CLOSING_HASHES.sub("", match.group(2) or "").strip()
    return len(match.group(1)), title or "(untitled)"


def extract_sections(text: str, source: str = "<text>") -> list[Section]:
    """Split Markdown ``text`` into sections at headings of any depth.

    ``source`` names the text in ``Section.file`` (and so in every error and report).
    Sections with an empty body are left out.

    Example:
        >>> [s.heading_path for s in extract_sections("# Town\\n## History\\nOld.\\n")]
        ['Town > History']
    """
    text = text.replace("\r\n", "\n").lstrip("\ufeff")
    metadata, rest, offset = parse_front_matter(text)
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    current_level, current_line = 0, offset + 1
    body: list[str] = []
    fence: str | None = None

    def flush() -> None:
        content = "\n".join(body).strip()
        if content:
            path = tuple(title for _, title in stack)
            line = current_line
            if current_level == 0:  # no heading: point at the first line of text
                line += next(i for i, text in enumerate(body) if text.strip())
            sections.append(Section(path, current_level, content, source, line, metadata))
        body.clear()

    for number, line in enumerate(rest.split("\n"), start=offset + 1):
        fence_match = _FENCE.match(line)
        if fence is not None:
            # Inside a code block only a closing fence matters; headings are just code.
            if (
                fence_match
                and fence_match.group(1).startswith(fence)
                and not fence_match.group(2).strip()
            ):
                fence = None
            body.append(line)
            continue
        if fence_match and not (fence_match.group(1)[0] == "`" and "`" in fence_match.group(2)):
            fence = fence_match.group(1)
            body.append(line)
            continue
        heading = _heading(line)
        if heading is None:
            body.append(line)
            continue
        flush()
        level, title = heading
        stack = [(lvl, t) for lvl, t in stack if lvl < level] + [(level, title)]
        current_level, current_line = level, number
    # An unclosed fence runs to the end of the file (as in CommonMark); keep it as text.
    flush()
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
    doc_title = section.metadata.get("title", "").strip()
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
