"""The question/answer pair every notes pipeline produces, and de-duplication of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["QAPair", "dedupe_pairs", "question_key"]


@dataclass(frozen=True)
class QAPair:
    """A question, its answer, and where the answer came from (for reports, not training)."""

    question: str
    answer: str
    source: str = ""
    """``file:line: heading path`` for extracted pairs; the document's source for generated ones."""

    def to_messages(self, system_prompt: str | None = None) -> list[dict[str, str]]:
        """The pair as a chat: ``[system?], user question, assistant answer``.

        Example:
            >>> QAPair("Who made Pebble?", "Ada Quill.").to_messages()
            [{'role': 'user', 'content': 'Who made Pebble?'}, {'role': 'assistant', 'content': 'Ada Quill.'}]
        """
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": self.question})
        messages.append({"role": "assistant", "content": self.answer})
        return messages


def question_key(question: str) -> str:
    """What makes two questions the same: case and runs of whitespace are ignored.

    Example:
        >>> question_key("  Who made   Pebble?") == question_key("who made pebble?")
        True
    """
    return " ".join(question.split()).casefold()


def dedupe_pairs(pairs: Iterable[QAPair], merge: bool = False) -> tuple[list[QAPair], int]:
    """Drop (or, with ``merge=True``, combine) pairs whose question was already seen.

    Returns the kept pairs in first-seen order and how many pairs were dropped or merged.
    Merging joins distinct answers with a blank line: extracted sections that share a
    heading both hold things the notes say, so neither answer should be lost.

    Example:
        >>> kept, dropped = dedupe_pairs([QAPair("Q?", "a"), QAPair("q?", "b")])
        >>> len(kept), dropped
        (1, 1)
    """
    kept: dict[str, QAPair] = {}
    duplicates = 0
    for pair in pairs:
        key = question_key(pair.question)
        first = kept.get(key)
        if first is None:
            kept[key] = pair
            continue
        duplicates += 1
        if merge and pair.answer.strip() not in first.answer:
            kept[key] = QAPair(first.question, f"{first.answer}\n\n{pair.answer}", first.source)
    return list(kept.values()), duplicates
