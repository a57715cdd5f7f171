"""Every test runs with TINKERKIT_HOME in a temporary folder (the plugin's tk_home), and
offline: the Hugging Face hub is never contacted (real tokenizers come from the packaged
vocabularies of ``tinkerkit[tokenizers]``, see tests/models)."""

import os
import shutil
import tempfile
import uuid
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
    """Background runs that overlap the rest of the suite: the cookbook recipes' one
    ``tinkerkit run`` (tests/cookbook/session.py) and the example notebooks' kernels
    (tests/notebooks/kernel.py). Alone, both start now and their tests go last. Under
    xdist (``-n 2``, files kept whole on one worker) every worker collects everything,
    so nothing starts here: the cookbook's tests go first and its worker starts the run
    on first use while the other worker runs the rest, and the notebooks run in their
    tests."""
    cookbook = [item for item in items if "tests/cookbook/" in item.nodeid]
    rest = [item for item in items if "tests/cookbook/" not in item.nodeid]
    if hasattr(config, "workerinput"):  # an xdist worker
        items[:] = cookbook + rest
        from tests.cookbook import session

        if cookbook and session.available():  # the first worker here starts it
            session.start(config.workerinput["testrunuid"])
        return
    notebooks = [item for item in rest if "tests/notebooks/" in item.nodeid]
    names = {item.name.removeprefix("test_") for item in notebooks}
    names &= {path.stem for path in NOTEBOOKS.glob("*.ipynb")}
    if names:
        from tests.notebooks import kernel

        root = Path(tempfile.mkdtemp(prefix="tinkerkit-notebooks-"))
        _cleanup.append(root)
        kernel.start_in_background(sorted(names), root)
    items[:] = [item for item in rest if item not in notebooks] + notebooks + cookbook
    from tests.cookbook import session

    if cookbook and session.available():
        session.start()


def pytest_configure(config):
    """Under xdist, the controller names the run (``--testrunuid``): the workers share the
    cookbook run's folder by that name, and the controller removes it at the end."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        config.option.testrunuid = config.option.testrunuid or uuid.uuid4().hex


def pytest_sessionfinish(session, exitstatus):
    from tests.cookbook import session as cookbook_session

    if hasattr(session.config, "workerinput"):
        return  # the controller stops the shared run, once every worker is done
    cookbook_session.stop(getattr(session.config.option, "testrunuid", None))
    for root in _cleanup:
        shutil.rmtree(root, ignore_errors=True)
