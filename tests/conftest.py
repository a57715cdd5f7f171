"""Every test runs with TINKERKIT_HOME in a temporary folder (the plugin's tk_home), and
offline: the Hugging Face hub is never contacted (real tokenizers come from the packaged
vocabularies of ``tinkerkit[tokenizers]``, see tests/models)."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "examples" / "notebooks"
_cleanup: list[Path] = []  # folders the session's background runs write in

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
    the background (tests/cookbook/session.py): its minutes overlap the rest of the suite.
    The example notebooks' kernels start in the background too (tests/notebooks/kernel.py)
    when their tests are collected, and those tests go second to last."""
    notebooks = {
        item.name.removeprefix("test_")
        for item in items
        if "tests/notebooks/test_example_notebooks.py" in item.nodeid
    }
    names = sorted(notebooks & {path.stem for path in NOTEBOOKS.glob("*.ipynb")})
    if names:
        from tests.notebooks import kernel

        root = Path(tempfile.mkdtemp(prefix="tinkerkit-notebooks-"))
        _cleanup.append(root)
        kernel.start_in_background(names, root)
        late = [item for item in items if "tests/notebooks/" in item.nodeid]
        items[:] = [item for item in items if "tests/notebooks/" not in item.nodeid] + late
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
    for root in _cleanup:
        shutil.rmtree(root, ignore_errors=True)
