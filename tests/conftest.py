"""Every test runs with TINKERKIT_HOME in a temporary folder (the plugin's tk_home)."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tk_home):
    return tk_home
