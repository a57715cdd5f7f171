"""Every test runs with TINKERKIT_HOME in a temporary folder (the plugin's tk_home), and
offline: the Hugging Face hub is never contacted (real tokenizers come from the packaged
vocabularies of ``tinkerkit[tokenizers]``, see tests/models)."""

import os
import tempfile

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# The SDK's telemetry would post batches to the service on every fatal error; accepted
# and dropped there, but no use in tests.
os.environ.setdefault("TINKER_TELEMETRY", "0")
if not os.environ.get("TINKER_API_KEY"):
    # Offline the SDK speaks plain HTTP on loopback, yet each of its httpx clients loads
    # the whole CA bundle (~35 ms, four per ServiceClient): an empty certificate folder
    # makes that free. With a key the real service's TLS needs the real bundle.
    os.environ.pop("SSL_CERT_FILE", None)
    os.environ["SSL_CERT_DIR"] = tempfile.mkdtemp(prefix="tinkerkit-no-certs-")

# make_client / training: shared by the conformance suite and its served run.
pytest_plugins = ["tests.conformance.clients"]


@pytest.fixture(autouse=True)
def _isolated_home(tk_home):
    return tk_home


@pytest.fixture(autouse=True)
def _release_services():
    """Close what the test connected to (its models let go, its sessions' heartbeats
    stopped), so a long run does not carry every earlier test's models."""
    from tinkerkit.server import inprocess

    before = inprocess.services()
    models = {id(service): set(service.models) for service in before}
    yield
    for service in inprocess.services()[len(before) :]:
        service.close()
    for service in before:  # a shared connection (the conformance suite's): its new models
        for model_id in set(service.models) - models[id(service)]:
            service.unload(model_id)


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
