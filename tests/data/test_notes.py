"""Notes → training data: Markdown extraction, robust generation, cache, JSONL output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinkerkit.data.notes import (
    AnthropicGenerator,
    GenerationError,
    GeneratorUnavailableError,
    NotesCache,
    NotesConfigError,
    NotesFrontMatterError,
    NotesNotFoundError,
    QAPair,
    QAParseError,
    SamplingClientGenerator,
    dedupe_pairs,
    examples_dir,
    extract_qa,
    extract_sections,
    find_note_files,
    generate_qa,
    load_notes,
    notes_to_chats,
    parse_front_matter,
    parse_qa_output,
    write_chat_jsonl,
)

GOOD = '[{"question": "Who created Pebble?", "answer": "Ada Quill."}]'


class FakeGenerator:
    """Returns canned replies in order (the last one repeats) and counts calls."""

    def __init__(self, *replies: str, identity: str = "fake") -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []
        self.identity = identity

    @property
    def calls(self) -> int:
        return len(self.prompts)

    def generate(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.replies[min(len(self.prompts), len(self.replies)) - 1]


# --- markdown extraction -------------------------------------------------------------

NESTED = """\
# Town
Intro to the town.
## History
### Founding
Founded in 1820.
#### Founders
Two millers.
##### Mill
A water mill.
###### Wheel
Oak wheel. ###
## Geography
Hills.
#not-a-heading
    # indented code, not a heading
"""


def test_headings_of_every_depth_and_their_paths() -> None:
    sections = extract_sections(NESTED, source="town.md")
    assert [(s.level, s.heading_path) for s in sections] == [
        (1, "Town"),
        (3, "Town > History > Founding"),
        (4, "Town > History > Founding > Founders"),
        (5, "Town > History > Founding > Founders > Mill"),
        (6, "Town > History > Founding > Founders > Mill > Wheel"),
        (2, "Town > Geography"),
    ]
    # "## History" has no text of its own: skipped, but it stays in its children's paths.
    assert sections[4].body == "Oak wheel. ###"  # closing hashes belong to headings only
    assert sections[5].body.startswith("Hills.\n#not-a-heading\n    # indented code")
    assert sections[1].source == "town.md:4: Town > History > Founding"


def test_question_wording_uses_heading_path() -> None:
    pairs = extract_qa(NESTED)
    assert pairs[0].question == "What do my notes say about Town?"
    assert pairs[1].question == "What do my notes say about Founding (Town > History)?"
    assert pairs[1].answer == "Founded in 1820."


def test_front_matter_is_metadata_not_a_section() -> None:
    text = '---\ntitle: "Marrowby"\nauthor: me\ntags:\n  - a\n---\n## Lake\nCold.\n'
    metadata, rest, used = parse_front_matter(text)
    assert metadata == {"title": "Marrowby", "author": "me", "tags": ["a"]}
    assert used == 6 and rest.startswith("## Lake")
    sections = extract_sections(text, source="m.md")
    assert len(sections) == 1
    assert sections[0].metadata["title"] == "Marrowby"
    assert sections[0].line == 7
    assert "title" not in sections[0].body
    # The title gives context to headings that do not repeat it.
    assert extract_qa(text)[0].question == "What do my notes say about Lake (Marrowby)?"


def test_unclosed_front_matter_is_text() -> None:
    sections = extract_sections("---\njust a rule\n# A\nbody\n")
    assert sections[0].body == "---\njust a rule"
    assert sections[0].metadata == {}


def test_front_matter_is_yaml() -> None:
    text = "---\ntitle: 2024\n# a YAML comment, not a heading\n---\n## Plan\nRest.\n"
    [section] = extract_sections(text)
    assert section.metadata == {"title": 2024} and section.line == 5
    assert extract_qa(text)[0].question == "What do my notes say about Plan (2024)?"
    # A "---" block that is not a YAML mapping is text between two rules.
    top, _ = extract_sections("---\nJust a line.\n---\n# A\nbody\n")
    assert top.body == "---\nJust a line.\n---" and top.metadata == {}


def test_broken_front_matter_names_file_and_line() -> None:
    text = "---\ntitle: Pebble\ntags: [a, b\n---\n# A\nbody\n"
    with pytest.raises(NotesFrontMatterError, match=r"^p\.md:3: the front matter .* YAML"):
        extract_sections(text, source="p.md")
    with pytest.raises(NotesFrontMatterError, match=r"^p\.md:3: "):
        extract_sections("---\ntitle: Pebble\nnote: it is: cold\n---\n", source="p.md")


def test_quotes_lists_html_comments_and_setext_do_not_split() -> None:
    text = (
        "# Real\n> # quoted\n- # in a list\n<!--\n# commented out\n-->\n"
        "Underlined\n---\nUnderlined too\n===\n\n    # indented code\n"
    )
    [section] = extract_sections(text)
    assert section.heading_path == "Real"
    assert section.body == text.split("\n", 1)[1].strip()


def test_code_blocks_stay_intact_and_never_become_headings() -> None:
    text = (
        "# Comments\nUse hash:\n\n```pebble\n# not a heading\nlet x = 1\n```\n"
        "## Tilde\n~~~~\n## still code\n~~~\nstill code\n~~~~\nafter\n"
    )
    sections = extract_sections(text)
    assert [s.heading_path for s in sections] == ["Comments", "Comments > Tilde"]
    assert sections[0].body == "Use hash:\n\n```pebble\n# not a heading\nlet x = 1\n```"
    # A shorter fence (~~~) does not close a longer one (~~~~).
    assert sections[1].body == "~~~~\n## still code\n~~~\nstill code\n~~~~\nafter"


def test_unclosed_fence_runs_to_end_of_file() -> None:
    sections = extract_sections("# A\n```\n# code\n")
    assert len(sections) == 1 and sections[0].body == "```\n# code"


def test_folder_recursion_is_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for name in ["b.md", "a/z.markdown", "a/c.md", ".obsidian/x.md", "notes.txt", "A.MD"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\ntext of {name}\n", encoding="utf-8")
    files = [p.relative_to(tmp_path).as_posix() for p in find_note_files(tmp_path)]
    assert files == ["A.MD", "a/c.md", "a/z.markdown", "b.md"]
    assert [s.title for s in load_notes(tmp_path)] == files


def test_missing_paths_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NotesNotFoundError, match=r"no \.md or \.markdown files"):
        find_note_files(tmp_path)
    with pytest.raises(NotesNotFoundError, match="no such file"):
        extract_qa("notes/typo.md")
    with pytest.raises(NotesNotFoundError, match="no such file"):
        load_notes(tmp_path / "missing")


def test_shipped_examples_extract_to_many_pairs() -> None:
    pairs = extract_qa(examples_dir())
    assert len(pairs) >= 10
    comments = next(p for p in pairs if p.question.startswith("What do my notes say about Comm"))
    assert "# not a heading: this is a Pebble comment" in comments.answer
    assert any("Ada Quill" in p.answer for p in pairs)


# --- parsing model output ------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        GOOD,
        f"Sure! Here are the pairs:\n```json\n{GOOD}\n```\nHope this helps.",
        '[{"question": "Who created Pebble?", "answer": "Ada Quill.",},]',
        '{"question": "Who created Pebble?", "answer": "Ada Quill."}',
        '{"pairs": [{"Question": "Who created Pebble?", "Answer": " Ada Quill. "}]}',
        '{"question": "Who created Pebble?", "answer": "Ada Quill."}\n{"question": 1}\n',
    ],
)
def test_parse_accepts_common_reply_shapes(reply: str) -> None:
    assert parse_qa_output(reply) == [("Who created Pebble?", "Ada Quill.")]


def test_parse_salvages_items_from_a_broken_array() -> None:
    reply = '[{"question": "A?", "answer": "a"}, {"question": "B?" "answer": "b"}, {"question": "C?", "answer": "c, ]"}]'
    assert parse_qa_output(reply) == [("A?", "a"), ("C?", "c, ]")]


@pytest.mark.parametrize(
    ("reply", "message"),
    [("", "empty"), ("\x0e\x01 garbage {[", "no JSON"), ('[1, {"q": 2}]', "none of its 2")],
)
def test_parse_rejects_junk(reply: str, message: str) -> None:
    with pytest.raises(QAParseError, match=message):
        parse_qa_output(reply)


# --- generation ----------------------------------------------------------------------


def test_generate_retries_junk_then_succeeds() -> None:
    gen = FakeGenerator("no json here", GOOD)
    pairs = generate_qa("Pebble was created by Ada Quill.", gen, num_pairs=3, source="doc")
    assert pairs == [QAPair("Who created Pebble?", "Ada Quill.", "doc")]
    assert gen.calls == 2 and not pairs.failures
    assert "Write 3 question-answer pairs" in gen.prompts[0]
    assert "Attempt 2 of 3" in gen.prompts[1] and "no JSON" in gen.prompts[1]


def test_generate_gives_up_and_records_failure() -> None:
    gen = FakeGenerator("garbage")
    pairs = generate_qa("doc", gen, retries=2, source="notes/a.md:1")
    assert pairs == [] and gen.calls == 3
    (failure,) = pairs.failures
    assert failure.attempts == 3 and failure.source == "notes/a.md:1"
    assert "no JSON" in failure.reason and failure.last_output == "garbage"


def test_generator_errors_are_recorded_not_raised() -> None:
    class Failing:
        identity = "failing"

        def generate(self, prompt: str) -> str:
            raise GenerationError("quota exceeded")

    pairs = generate_qa("doc", Failing(), retries=1)
    assert pairs == [] and "quota exceeded" in pairs.failures[0].reason


def test_generate_dedupes_and_filters_lengths() -> None:
    reply = json.dumps(
        [
            {"question": "Who created Pebble?", "answer": "Ada Quill."},
            {"question": "  who   created PEBBLE? ", "answer": "Someone else."},
            {"question": "Tiny?", "answer": "x"},
            {"question": "Long?", "answer": "y" * 500},
        ]
    )
    pairs = generate_qa("doc", FakeGenerator(reply), min_answer_chars=2, max_answer_chars=100)
    assert [p.question for p in pairs] == ["Who created Pebble?"]
    assert pairs.filtered == 3
    failed = generate_qa("doc", FakeGenerator(reply), min_answer_chars=1000, retries=0)
    assert failed == [] and "shorter than 1000" in failed.failures[0].reason


def test_cache_hit_on_second_run() -> None:
    cache = NotesCache()
    gen = FakeGenerator("junk", GOOD)
    first = generate_qa("doc", gen, cache=cache)
    assert gen.calls == 2 and first.cache_hits == 0
    second = generate_qa("doc", gen, cache=cache)
    assert gen.calls == 2 and second.cache_hits == 2 and second == first
    # Another generator identity or document is another key.
    assert generate_qa("doc", FakeGenerator(GOOD, identity="other"), cache=cache).cache_hits == 0
    files = list(cache.directory.rglob("*.json"))
    assert len(files) == 3 and str(cache.directory).endswith("cache/notes")
    assert not list(cache.directory.rglob("*.tmp"))


def test_corrupt_cache_entry_is_a_miss(tmp_path: Path) -> None:
    cache = NotesCache(tmp_path)
    cache.put("g", "p", "text")
    next(tmp_path.rglob("*.json")).write_text("{not json", encoding="utf-8")
    assert cache.get("g", "p") is None


def test_mock_sampler_garbage_yields_failures_not_exceptions() -> None:
    import tinkerkit as tk

    svc = tk.connect("mock")
    sc = svc.create_sampling_client(base_model="tinkerkit/tiny").result()
    gen = SamplingClientGenerator(sc, max_tokens=64, seed=0)
    assert gen.identity.startswith("sampling|tinkerkit/tiny|max_tokens=64")
    pairs = generate_qa("Pebble was created by Ada Quill in 2011.", gen, retries=1)
    assert pairs == [] and len(pairs.failures) == 1 and pairs.generator_calls == 2
    # A document too long for the tiny model's context fails the same way.
    too_long = generate_qa("x" * 5000, gen, retries=0)
    assert too_long == [] and "context" in too_long.failures[0].reason


def test_anthropic_generator_without_package_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "anthropic", None)  # makes `import anthropic` fail
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    with pytest.raises(GeneratorUnavailableError, match="pip install anthropic") as info:
        AnthropicGenerator()
    assert "sk-secret" not in str(info.value)


def test_anthropic_generator_with_injected_client() -> None:
    class Block:
        text = GOOD

    class Messages:
        def create(self, **kwargs: object) -> object:
            assert kwargs["model"] == "claude-sonnet-4-20250514"
            return type("Response", (), {"content": [Block()]})()

    client = type("Client", (), {"messages": Messages()})()
    gen = AnthropicGenerator(client=client)
    assert "key" not in repr(gen).lower()
    assert generate_qa("doc", gen)[0].answer == "Ada Quill."


# --- output and the whole pipeline -----------------------------------------------------


def test_write_chat_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "train.jsonl"
    pairs = [QAPair("Q1?", "A1 — é"), QAPair("Q2?", "A2")]
    assert write_chat_jsonl(pairs, out, system_prompt="Be brief.") == 2
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q1?"},
        {"role": "assistant", "content": "A1 — é"},
    ]
    assert [m["role"] for m in rows[1]["messages"]] == ["system", "user", "assistant"]


def test_write_chat_jsonl_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "out" / "train.jsonl"
    out.parent.mkdir()
    out.write_text("old\n", encoding="utf-8")

    def pairs() -> Iterator[QAPair]:
        yield QAPair("Q?", "A")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_chat_jsonl(pairs(), out)
    assert out.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in out.parent.iterdir()] == ["train.jsonl"]


def test_dedupe_merge_keeps_both_answers() -> None:
    kept, dupes = dedupe_pairs(
        [QAPair("Q?", "a"), QAPair("q?", "b"), QAPair("Q?", "a")], merge=True
    )
    assert kept == [QAPair("Q?", "a\n\nb")] and dupes == 2


def test_notes_to_chats_extract(tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    report = notes_to_chats(examples_dir(), out)
    assert report.ok and report.files == 5 and report.pairs_written >= 10
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == report.pairs_written
    for line in lines:
        roles = [m["role"] for m in json.loads(line)["messages"]]
        assert roles == ["user", "assistant"]
    assert f"{report.pairs_written} pairs written" in report.summary()


def test_notes_to_chats_generate_uses_cache_and_reports_failures(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# A\nAda Quill made Pebble.\n", encoding="utf-8")
    (notes / "b.md").write_text("# B\nWendel is a heron.\n", encoding="utf-8")

    class ByDocument(FakeGenerator):
        def generate(self, prompt: str) -> str:
            self.prompts.append(prompt)
            return GOOD if "Ada Quill" in prompt else "I cannot do that."

    gen = ByDocument()  # its reply depends on the document in the prompt
    out = tmp_path / "train.jsonl"
    report = notes_to_chats(notes, out, mode="generate", generator=gen, retries=1)
    assert report.documents == 2 and report.pairs_written == 1
    assert report.generation_failures == 1 and report.generator_calls == 3 == gen.calls
    assert "b.md:1" in report.summary() and "1 documents failed" in report.summary()
    again = notes_to_chats(notes, out, mode="generate", generator=gen, retries=1)
    assert gen.calls == 3 and again.cache_hits == 3 and again.pairs_written == 1


def test_notes_to_chats_writes_nothing_without_pairs(tmp_path: Path) -> None:
    notes = tmp_path / "n.md"
    notes.write_text("# Only a heading\n", encoding="utf-8")
    report = notes_to_chats(notes, tmp_path / "out.jsonl")
    assert not report.ok and not (tmp_path / "out.jsonl").exists()
    assert "was not written" in report.summary()
    with pytest.raises(NotesConfigError, match="needs a generator"):
        notes_to_chats(notes, tmp_path / "out.jsonl", mode="generate")
