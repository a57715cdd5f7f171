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


def test_sft_trains_on_a_jsonl_of_image_chats(tk_home, tmp_path):
    """``tk.sft.train`` on chats whose images are files next to the JSONL: the loss falls,
    resuming the finished run finds the same data, and a picture replaced under its name
    is another dataset."""
    import json

    import numpy as np

    import tinkerkit as tk
    from tests.images import SHAPES, shape_png
    from tinkerkit.errors import ConfigMismatchError

    rng = np.random.default_rng(0)
    lines = []
    for i in range(12):
        shape = list(SHAPES)[i % 3]
        (tmp_path / f"{i}.png").write_bytes(shape_png(shape, rng))
        user = [{"type": "image", "image": f"{i}.png"}, {"type": "text", "text": "Shape?"}]
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": shape}]
        lines.append(json.dumps({"messages": messages}))
    data = tmp_path / "chats.jsonl"
    data.write_text("\n".join(lines) + "\n")
    config = tk.sft.Config(
        model="tinkerkit/tiny-vl",
        data=str(data),
        epochs=6,
        batch_size=6,
        learning_rate=1e-2,
        rank=8,
        log_dir=str(tmp_path / "run"),
    )
    service = tk.connect("mock")
    result = tk.sft.train(config, service=service)
    first, last = result.metrics[0]["loss"], result.final_loss
    assert last < 0.2 * first, (first, last)
    resume = config.model_copy(update={"resume": True})
    assert tk.sft.train(resume, service=service).final_loss == last  # nothing left to do
    (tmp_path / "0.png").write_bytes(shape_png("square", rng))  # another picture, same name
    with pytest.raises(ConfigMismatchError, match="data differs from the saved run"):
        tk.sft.train(resume, service=service)
