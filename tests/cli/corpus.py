"""Malformed inputs for the CLI table test, written into a folder, and a tree snapshot
to prove a failed command left nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHAT = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
PAIR = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
PROMPT = {"prompt": "2+2?", "answer": "4"}
DEEP = "[" * 100_000 + "]" * 100_000
BIG_CELL = 200 * 1024  # over csv's default 128 KiB field limit


def _jsonl(path: Path, *records: object) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def write_corpus(folder: Path) -> Path:
    """Every input file a row of the table can name, under ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    _jsonl(folder / "chats.jsonl", CHAT, CHAT)
    _jsonl(folder / "pairs.jsonl", PAIR, PAIR)
    _jsonl(folder / "prompts.jsonl", PROMPT, PROMPT)
    (folder / "deep.jsonl").write_text('{"messages": ' + DEEP + "}\n")
    (folder / "deep.json").write_text('[{"messages": ' + DEEP + "}]")
    # A 200 KiB cell whose JSON is cut short: the error names the line and column.
    cell = json.dumps([{"role": "user", "content": "x" * BIG_CELL}])[:-2]
    (folder / "bigcell.csv").write_text(f'messages\n"{cell.replace(chr(34), chr(34) * 2)}"\n')
    (folder / "surrogate.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "a\\ud800"}, '
        '{"role": "assistant", "content": "b"}]}\n'
    )
    (folder / "surrogate_pairs.jsonl").write_text(
        '{"prompt": "q", "chosen": "\\udfff", "rejected": "no"}\n'
    )
    (folder / "binary.md").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (folder / "binary.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    os.mkfifo(folder / "fifo.jsonl")
    (folder / "a_file").write_text("not a folder\n")
    (folder / "notes.md").write_text("# Pebble\n\n## What is it?\n\nA language.\n")
    (folder / "reward.py").write_text("def score(prompt, completion, **fields):\n    return 0.0\n")
    _messages(folder / "msgs")
    _logs(folder / "logs")
    return folder


def _messages(folder: Path) -> None:
    """``sample --messages`` files, one per way a prompt file can be wrong."""
    folder.mkdir()
    user = {"role": "user", "content": "hi"}
    files: dict[str, object] = {
        "dict.json": user,
        "strings.json": ["hi", "there"],
        "role.json": [{"role": "robot", "content": "hi"}],
        "no_content.json": [{"role": "user"}],
        "number.json": [{"role": "user", "content": 42}],
        "empty.json": [],
        "extra.json": [{**user, "name": "x"}],
        "null.json": None,
        "nested.json": [[user]],
    }
    for name, obj in files.items():
        (folder / name).write_text(json.dumps(obj))
    (folder / "malformed.json").write_text('[{"role": "user", "content": "hi"')
    (folder / "deep.json").write_text(DEEP)
    (folder / "latin1.json").write_bytes(
        '[{"role": "user", "content": "caf\xe9"}]'.encode("latin-1")
    )
    (folder / "surrogate.json").write_text('[{"role": "user", "content": "\\ud800"}]')


def _logs(folder: Path) -> None:
    """Log folders for ``plot``: a bad line, a loss row without a step, no loss rows,
    no metrics at all."""
    for name in ("bad_line", "no_step", "empty", "no_loss"):
        (folder / name).mkdir(parents=True)
    row = {"step": 1, "loss": 2.0, "lr": 0.1}
    (folder / "bad_line" / "metrics.jsonl").write_text(f'{{"st\n{json.dumps(row)}\n')
    _jsonl(folder / "no_step" / "metrics.jsonl", row, {"loss": 1.5, "lr": 0.1})
    _jsonl(folder / "no_loss" / "metrics.jsonl", {"step": 1, "reward": 0.5})


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with what it is (folder, file hash, or other kind)."""
    tree: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            key = str(path.relative_to(root))
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                tree[key] = "other"
            elif path.is_dir():
                tree[key] = "dir"
            else:
                tree[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree
