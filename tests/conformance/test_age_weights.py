"""age-encrypted external weights: ``save_weights_external(age_encryption_recipients=...)``.

Every file is stored as ``<file>.age``, encrypted to the recipients; decrypted with the
identity, it is byte for byte the unencrypted export of the same weights.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import tinker

import tinkerkit as tk

pyrage = pytest.importorskip("pyrage")


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _read(url: str) -> bytes:
    """Offline URLs are file:// paths; served and service ones are signed http(s) URLs."""
    if urlparse(url).scheme == "file":
        return Path(urlparse(url).path).read_bytes()
    response = httpx.get(url, follow_redirects=True, timeout=60)
    response.raise_for_status()
    return response.content


def _files(service, path: str) -> dict[str, bytes]:
    urls = tk.rest_client(service).get_external_weights_urls(path).result().urls
    return {name: _read(url) for name, url in urls.items()}


def test_encrypted_export_decrypts_to_the_plain_export(service, training):
    identity = pyrage.x25519.Identity.generate()
    plain = training.save_weights_external(_name("plain")).result().path
    sealed = training.save_weights_external(
        _name("sealed"), age_encryption_recipients=[str(identity.to_public())]
    ).result()
    assert "/external_weights/" in sealed.path
    plain_files = _files(service, plain)
    sealed_files = _files(service, sealed.path)
    assert set(sealed_files) == {f"{name}.age" for name in plain_files}
    for name, data in sealed_files.items():
        assert data.startswith(b"age-encryption.org/v1\n")
        assert pyrage.decrypt(data, [identity]) == plain_files[name.removesuffix(".age")]


def test_every_recipient_can_decrypt(service, training):
    alice, bob = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    recipients = [str(alice.to_public()), str(bob.to_public())]
    path = (
        training.save_weights_external(_name("two"), age_encryption_recipients=recipients)
        .result()
        .path
    )
    for data in _files(service, path).values():
        assert pyrage.decrypt(data, [alice]) == pyrage.decrypt(data, [bob])
        with pytest.raises(pyrage.DecryptError):
            pyrage.decrypt(data, [pyrage.x25519.Identity.generate()])


def test_malformed_recipient_is_refused_naming_it(training, target):
    good = str(pyrage.x25519.Identity.generate().to_public())
    with pytest.raises((tinker.RequestFailedError, tinker.APIStatusError)) as info:
        training.save_weights_external(
            _name("bad"), age_encryption_recipients=[good, "age1notakey"]
        ).result()
    if target.backend != "tinker":
        assert "age1notakey" in str(info.value)
    # The client keeps working after the refusal.
    assert training.save_weights_external(_name("after")).result().path


def test_more_than_ten_recipients_are_refused(training, target):
    recipients = [str(pyrage.x25519.Identity.generate().to_public()) for _ in range(11)]
    with pytest.raises((tinker.RequestFailedError, tinker.APIStatusError)) as info:
        training.save_weights_external(_name("many"), age_encryption_recipients=recipients).result()
    if target.backend != "tinker":
        assert "at most 10" in str(info.value)
