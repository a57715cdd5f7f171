"""Every test runs with TINKERKIT_HOME in a temporary folder (the plugin's tk_home)."""

import pytest

# make_client / training: shared by the conformance suite and its served run.
pytest_plugins = ["tests.conformance.clients"]


@pytest.fixture(autouse=True)
def _isolated_home(tk_home):
    return tk_home
