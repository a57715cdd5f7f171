"""LLM-generated Q&A: a document → a prompt → a generator → parsed, filtered pairs.

:func:`generate_qa` never lets one bad document stop a run: unparseable replies are
retried with a corrective note, then recorded in ``.failures`` of the returned list.
The generators themselves live in :mod:`.generators` and are re-exported here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import tinker

from tinkerkit.data.notes.cache import NotesCache
from tinkerkit.data.notes.errors import GenerationError, NotesConfigError, QAParseError
from tinkerkit.data.notes.generators import (
    AnthropicGenerator,
    Generator,
    SamplingClientGenerator,
    generator_identity,
)
from tinkerkit.data.notes.parse import parse_qa_output
from tinkerkit.data.notes.qa import QAPair, dedupe_pairs

__all__ = [
    "AnthropicGenerator",
    "GeneratedPairs",
    "GenerationFailure",
    "Generator",
    "SamplingClientGenerator",
    "build_qa_prompt",
    "generate_qa",
    "generator_identity",
]

logger = logging.getLogger("tinkerkit")

# Errors that concern one request, not the program: retry, then record and move on.
# Anything else (a bug, a missing package, Ctrl-C) propagates.
RECOVERABLE_ERRORS: tuple[type[BaseException], ...] = (
    GenerationError,
    tinker.TinkerError,
    TimeoutError,
    ConnectionError,
)


# The guide's prompt, corrected: answers must come from the document (no "inferential"
# questions a model would answer from its own knowledge), questions must stand alone
# (the fine-tuned model never sees the document), and the reply must be JSON only.
_PROMPT = """\
Write {num_pairs} question-answer pairs that test knowledge of the document below.

Rules:
- Every answer must be stated in the document. Do not add facts from elsewhere.
- Each question must make sense on its own, without the document: name the subject \
instead of writing "the document", "the text" or "this section".
- Cover different parts of the document and do not repeat a question.
- Keep each answer to one to three sentences.

Reply with only a JSON array and no other text, in this form:
[{{"question": "...", "answer": "..."}}]

Document{title}:
<document>
{document}
</document>"""

_RETRY_NOTE = """

Attempt {attempt} of {attempts}: your previous reply could not be used ({reason}). Reply \
with only the JSON array of objects with "question" and "answer" strings."""


def build_qa_prompt(document: str, num_pairs: int = 10, title: str | None = None) -> str:
    """The instruction sent to the generator for one document.

    Example:
        >>> print(build_qa_prompt("Pebble was created in 2011.", 3).splitlines()[0])
        Write 3 question-answer pairs that test knowledge of the document below.
    """
    return _PROMPT.format(
        num_pairs=num_pairs,
        title=f" ({title})" if title else "",
        document=document.strip(),
    )


@dataclass(frozen=True)
class GenerationFailure:
    """A document that yielded no pairs after every attempt."""

    source: str
    attempts: int
    reason: str
    """Why the last attempt failed."""
    last_output: str = ""
    """The start of the last reply (up to 200 characters), to see what the model wrote."""

    def __str__(self) -> str:
        return f"{self.source}: {self.reason} (after {self.attempts} attempt(s))"


class GeneratedPairs(list[QAPair]):
    """The pairs :func:`generate_qa` produced (a plain list of them) and how it went."""

    def __init__(self, pairs: list[QAPair] | None = None) -> None:
        super().__init__(pairs or [])
        self.failures: list[GenerationFailure] = []
        self.generator_calls = 0
        self.cache_hits = 0
        self.filtered = 0
        """Parsed pairs dropped by the length filters or as duplicates."""


def generate_qa(
    document: str,
    generator: Generator,
    num_pairs: int = 10,
    retries: int = 2,
    min_answer_chars: int = 1,
    max_answer_chars: int = 2000,
    cache: NotesCache | None = None,
    *,
    source: str = "<document>",
    title: str | None = None,
) -> GeneratedPairs:
    """Ask ``generator`` for ``num_pairs`` Q&A pairs about ``document`` and parse them.

    A reply that yields no usable pair (no JSON, no "question"/"answer" items, all answers
    outside ``[min_answer_chars, max_answer_chars]``), or a request that fails with a
    recoverable error, is retried up to ``retries`` times with a note saying what was
    wrong; then the document is recorded in ``.failures`` and an empty list is returned.
    Questions are de-duplicated ignoring case and whitespace. With ``cache``, replies are
    stored by (generator identity, prompt) and re-runs read them instead of generating.

    Example:
        >>> pairs = generate_qa(text, SamplingClientGenerator(sc, max_tokens=64, seed=0))
        >>> len(pairs), [str(f) for f in pairs.failures]
        (0, ["<document>: no JSON array or object in the reply (it begins '?F??...') (after 3 attempt(s))"])
    """
    if num_pairs < 1:
        raise NotesConfigError(f"num_pairs must be at least 1, got {num_pairs}.")
    if retries < 0:
        raise NotesConfigError(f"retries must be 0 or more, got {retries}.")
    identity = generator_identity(generator)
    base_prompt = build_qa_prompt(document, num_pairs, title)
    result = GeneratedPairs()
    attempts = retries + 1
    reason, raw = "", ""
    for attempt in range(1, attempts + 1):
        # Retries change the prompt, so a seeded sampler does not repeat its reply and
        # each attempt has its own cache entry.
        prompt = base_prompt
        if attempt > 1:
            prompt += _RETRY_NOTE.format(attempt=attempt, attempts=attempts, reason=reason)
        cached = cache.get(identity, prompt) if cache is not None else None
        if cached is not None:
            result.cache_hits += 1
            raw = cached
        else:
            result.generator_calls += 1
            try:
                raw = generator.generate(prompt)
            except RECOVERABLE_ERRORS as exc:
                reason, raw = f"the generator failed: {exc}", ""
                continue  # errors are not cached: the next run should try again
            if cache is not None:
                cache.put(identity, prompt, raw)
        try:
            parsed = parse_qa_output(raw)
        except QAParseError as exc:
            reason = str(exc)
            continue
        kept = [
            QAPair(q, a, source)
            for q, a in parsed
            if min_answer_chars <= len(a) <= max_answer_chars
        ]
        unique, _ = dedupe_pairs(kept)
        result.filtered += len(parsed) - len(unique)
        if unique:
            result.extend(unique)
            return result
        reason = (
            f"all {len(parsed)} answer(s) are shorter than {min_answer_chars} or longer than "
            f"{max_answer_chars} characters"
        )
    failure = GenerationFailure(source, attempts, reason, raw[:200])
    result.failures.append(failure)
    # info, not warning: the failure is in the result, and the CLI prints it from there.
    logger.info("No Q&A pairs generated for %s", failure)
    return result
