"""Client fixtures every conformance target shares (offline, served, real service).

Each target's conftest provides ``target``, ``service`` and ``tokenizer`` and imports these.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def make_client(service, target):
    def make(rank: int = 8, seed: int = 0):
        return service.create_lora_training_client(
            base_model=target.model, rank=rank, seed=seed
        ).result()

    return make


@pytest.fixture
def training(make_client):
    return make_client()
