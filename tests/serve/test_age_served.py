"""The cookbook's ``weights.download`` of a training checkpoint, unmodified, through serve.

It loads the checkpoint into a new run, exports it encrypted to a key it generates
(``save_weights_external(age_encryption_recipients=...)``), downloads the ``.age`` files
from their signed URLs, decrypts them with pyrage and deletes the export.
"""

from __future__ import annotations

import httpx
import pytest
import tinker

pytest.importorskip("pyrage")
cookbook_weights = pytest.importorskip("tinker_cookbook.weights")

MODEL = "tinkerkit/tiny"


def test_cookbook_download_of_a_training_checkpoint(official, server, tmp_path, monkeypatch):
    monkeypatch.setenv("TINKER_BASE_URL", server.base_url)
    monkeypatch.setenv("TINKER_API_KEY", server.api_key)
    training = official.create_lora_training_client(base_model=MODEL).result()
    state = training.save_state("for-download").result().path
    plain = training.save_weights_external("plain").result().path

    out = cookbook_weights.download(tinker_path=state, output_dir=str(tmp_path / "adapter"))

    rest = tinker.RestClient(base_url=server.base_url, api_key=server.api_key)
    urls = rest.get_external_weights_urls(plain).result().urls
    downloaded = {p.name: p.read_bytes() for p in (tmp_path / "adapter").iterdir()}
    assert out == str(tmp_path / "adapter")
    assert downloaded == {name: httpx.get(url).content for name, url in urls.items()}
    # The temporary encrypted export is deleted again; the run's own checkpoints stay.
    exports = [
        c
        for run in rest.list_training_runs(limit=100).result().training_runs
        for c in rest.list_checkpoints(run.training_run_id).result().checkpoints
        if c.checkpoint_type == "external" and c.tinker_path != plain
    ]
    assert exports == []
