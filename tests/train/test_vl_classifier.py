"""An image classifier learns on ``local`` (issue 24): the example's SFT run on a tiny
Qwen3-VL names ≥ 90% of held-out pictures (the mock run is checked with the examples,
``tests/test_examples.py``)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "vl_classifier.py"


def test_the_classifier_learns_on_local(tk_home, capsys):
    pytest.importorskip("torch")
    main = runpy.run_path(str(EXAMPLE))["main"]
    accuracy = main("local")
    out = capsys.readouterr().out
    assert accuracy >= 0.9, out
    assert "held-out accuracy 0.00 →" in out  # the untrained model names none of them
