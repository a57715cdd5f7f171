"""Test kit for code that uses tinkerkit or tinker: fixtures, fault injection, tiny data.

With tinkerkit installed, pytest picks up the fixtures automatically:

    def test_my_training_loop(tk_training_client):
        fb = tk_training_client.forward_backward(my_datums, "cross_entropy")
        assert fb.result().metrics["loss:sum"] > 0

Fault injection makes chosen requests fail like a server error, to test retries:

    service = tk.connect("mock", faults=[FailNth(2, kind="forward_backward")])
"""

from tinkerkit.backends.faults import FailEvery, FailNth
from tinkerkit.testing.data import prompt_completion_datum

__all__ = ["FailEvery", "FailNth", "prompt_completion_datum"]
