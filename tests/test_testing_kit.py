"""The fixtures users get from the pytest plugin."""

from __future__ import annotations

import os

from tinker import types

from tinkerkit.testing import prompt_completion_datum


def test_home_is_isolated(tk_home):
    assert os.environ["TINKERKIT_HOME"] == str(tk_home)
    assert not str(tk_home).startswith(os.path.expanduser("~/.cache"))


def test_training_client_fixture_trains(tk_training_client, tk_home):
    tok = tk_training_client.get_tokenizer()
    data = [prompt_completion_datum(tok, "Q: 1+1?", " 2")]
    first = tk_training_client.forward_backward(data, "cross_entropy")
    tk_training_client.optim_step(types.AdamParams(learning_rate=1e-2))
    second = tk_training_client.forward(data, "cross_entropy")
    assert second.result().metrics["loss:sum"] < first.result().metrics["loss:sum"]
    path = tk_training_client.save_state("fixture").result().path
    run_id = path.split("/")[2]
    assert (tk_home / "runs" / run_id / "weights" / "fixture").is_dir()
