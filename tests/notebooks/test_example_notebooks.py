"""Every notebook in examples/notebooks/ runs offline in a real Jupyter kernel, and each
cell shows its figure: the datum view highlights trained tokens, the loss falls, the
reward rises, held-out preference accuracy rises, the export is a PEFT adapter.

One kernel per notebook, run in the background from collection on (tests/conftest.py):
a kernel start and ``import tinkerkit`` cost a few seconds, the training more.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.notebooks.kernel import NOTEBOOKS, html_of, run_notebook, text_of

NUMBER = r"(-?\d+(?:\.\d+)?)"


def _pair(text: str, pattern: str) -> tuple[float, float]:
    match = re.search(pattern, text)
    assert match, f"no {pattern!r} in:\n{text}"
    return float(match.group(1)), float(match.group(2))


def _cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_every_notebook_has_a_test():
    names = {path.stem for path in NOTEBOOKS.glob("*.ipynb")}
    tested = {"quickstart", "rl", "dpo", "export"}
    assert names <= tested, f"notebooks without a test: {sorted(names - tested)}"


def test_quickstart(tmp_path: Path) -> None:
    nb, _ = run_notebook("quickstart", tmp_path)
    _, datums, train, train_async, sample = _cells(nb)
    # The datum renders as HTML: the trained tokens highlighted, every token's weight shown.
    view = html_of(datums)
    assert "tinkerkit-datum" in view and "trained" in view
    assert re.search(r'data-weight="1"[^>]*background:rgba', view), view[:2000]
    assert 'title="token' in view and "weight 0" in view
    # SFT in a cell: the loss falls, and the result shows its steps, final loss and curve.
    first, last = _pair(text_of(train), rf"loss {NUMBER} → {NUMBER}")
    assert last < first / 2, (first, last)
    result = html_of(train)
    assert "SFT result" in result and "final loss" in result and "<svg" in result
    shown = _pair(result, rf"steps</th><td[^>]*>{NUMBER}</td>.*final loss</th><td[^>]*>{NUMBER}<")
    assert shown[0] == 24 and abs(shown[1] - last) < 1e-3, shown
    # The same loop awaited in the kernel's event loop.
    assert re.search(r"async run: 6 steps, final loss \d", text_of(train_async)), text_of(
        train_async
    )
    assert "What is 2 plus 3? →" in text_of(sample)


def test_rl(tmp_path: Path) -> None:
    _, train, transcripts = _cells(run_notebook("rl", tmp_path)[0])
    first, last = _pair(text_of(train), rf"first 5 steps {NUMBER} → last 5 steps {NUMBER}")
    assert last > first and last >= 0.5, (first, last)
    result = html_of(train)
    assert "RL result" in result and "mean reward" in result and "<svg" in result
    assert "reward" in text_of(transcripts)


def test_dpo(tmp_path: Path) -> None:
    pytest.importorskip("torch")  # DPO is a custom loss, run on torch
    _, train = _cells(run_notebook("dpo", tmp_path)[0])
    out = text_of(train)
    accuracy = _pair(out, rf"accuracy {NUMBER} → {NUMBER}")
    margin = _pair(out, rf"margin {NUMBER} → {NUMBER}")
    assert accuracy[1] > accuracy[0] and accuracy[1] >= 0.75, accuracy
    assert margin[1] > margin[0] and margin[1] > 0, margin
    result = html_of(train)
    assert "DPO result" in result and "held-out accuracy" in result and "<svg" in result


def test_export(tmp_path: Path) -> None:
    pytest.importorskip("torch")  # the local backend: mock adapters do not export
    nb, folder = run_notebook("export", tmp_path)
    train, export = _cells(nb)
    assert "SFT result" in html_of(train)
    out = text_of(export)
    assert "files: ['adapter_config.json', 'adapter_model.safetensors']" in out, out
    assert "LoRA rank 8 on tinkerkit/tiny" in out, out
    assert (folder / "adapter" / "adapter_model.safetensors").stat().st_size > 0
