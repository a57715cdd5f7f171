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


def pytest_collection_modifyitems(config, items):
    """The cookbook recipes' tests go last, and their one ``tinkerkit run`` starts now, in
    the background (tests/cookbook/session.py): its minutes overlap the rest of the suite."""
    cookbook = [item for item in items if "tests/cookbook/" in item.nodeid]
    if not cookbook:
        return
    items[:] = [item for item in items if "tests/cookbook/" not in item.nodeid] + cookbook
    from tests.cookbook import session

    if session.available():
        session.start()


def pytest_sessionfinish(session, exitstatus):
    from tests.cookbook import session as cookbook_session

    cookbook_session.stop()
