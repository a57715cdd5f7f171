"""The conformance suite, run through the official SDK against ``tinkerkit serve`` (mock).

Every test function of tests/conformance is imported here; the fixtures in this
folder's conftest swap the backend for ``tinker.ServiceClient`` → HTTP → mock.
"""

# --- the two conformance tests whose offline expectations differ by design when served ---
from pathlib import Path
from urllib.parse import urlparse

import httpx

import tinkerkit as tk
from tests.conformance.test_age_weights import *  # noqa: F403
from tests.conformance.test_builtin_losses import *  # noqa: F403
from tests.conformance.test_checkpoints import *  # noqa: F403
from tests.conformance.test_client_surface import *  # noqa: F403
from tests.conformance.test_errors import *  # noqa: F403
from tests.conformance.test_optimizers import *  # noqa: F403
from tests.conformance.test_rest import *  # noqa: F403
from tests.conformance.test_sampling import *  # noqa: F403
from tests.conformance.test_sampling_parity import *  # noqa: F403
from tests.conformance.test_training import *  # noqa: F403


def test_external_weights_urls_point_at_peft_files(service, training, target):  # type: ignore[no-redef]
    """Served: the URLs are signed http URLs on the server (offline: file:// paths)."""
    path = training.save_weights_external("ext-served").result().path
    assert "/external_weights/" in path
    urls = tk.rest_client(service).get_external_weights_urls(path).result()
    assert set(urls.urls) == {"adapter_model.safetensors", "adapter_config.json"}
    for url in urls.urls.values():
        assert urlparse(url).scheme == "http" and "/files/" in url
        response = httpx.get(url)
        assert response.status_code == 200 and len(response.content) > 0
        assert Path(urlparse(url).path).name in url
