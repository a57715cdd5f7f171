"""The README's Python snippet runs as written, offline, and shows what it claims: the
loss falls and the sample is the learned answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def _snippet(section: str) -> str:
    match = re.search(rf"## {section}\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert match, f"no python block under '## {section}' in README.md"
    return match.group(1)


def test_python_api_snippet_learns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # it writes chats.jsonl and runs/a where it runs
    exec(compile(_snippet("Python API"), "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    first, last = map(float, re.findall(r"^loss (\d+\.\d+) -> (\d+\.\d+)$", out, re.M)[0])
    assert last < first / 10, (first, last)
    assert out.rstrip().splitlines()[-1] == "Pebble is the lighthouse cat of Marrowby."
