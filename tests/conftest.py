"""Every test runs with TINKERKIT_HOME in a temporary folder (the plugin's tk_home), and
offline: the Hugging Face hub is never contacted (real tokenizers come from the packaged
vocabularies of ``tinkerkit[tokenizers]``, see tests/models)."""

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

# make_client / training: shared by the conformance suite and its served run.
pytest_plugins = ["tests.conformance.clients"]


@pytest.fixture(autouse=True)
def _isolated_home(tk_home):
    return tk_home
