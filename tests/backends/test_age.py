"""backends/age.py: recipients checked before anything is written, files sealed as .age."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import tinker

import tinkerkit as tk
from tinkerkit.backends import age
from tinkerkit.errors import AgeEncryptionError, RequestError

pyrage = pytest.importorskip("pyrage")


def test_sealed_file_is_named_age_and_decrypts():
    identity = pyrage.x25519.Identity.generate()
    name, data = age.sealer([str(identity.to_public())])("adapter_model.safetensors", b"weights")
    assert name == "adapter_model.safetensors.age"
    assert b"weights" not in data
    assert pyrage.decrypt(data, [identity]) == b"weights"


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_ssh_public_keys_are_recipients(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@host", "-f", str(key)],
        check=True,
    )
    public = key.with_suffix(".pub").read_text().strip()
    _, data = age.sealer([public])("f", b"secret")
    identity = pyrage.ssh.Identity.from_buffer(key.read_bytes())
    assert pyrage.decrypt(data, [identity]) == b"secret"


@pytest.mark.parametrize(
    ("recipients", "message"),
    [
        (["age1notakey"], "age1notakey"),
        (["ssh-ed25519 AAAAnotbase64"], "ssh-ed25519 AAAAnotbase64"),
        (["hello"], "'hello' is not an age recipient"),
        ([42], "is not a string"),
        ([], "empty"),
        ("age1...", "must be a list"),
    ],
)
def test_bad_recipients_are_refused_with_their_name(recipients, message):
    with pytest.raises(AgeEncryptionError, match=message) as info:
        age.sealer(recipients)
    assert isinstance(info.value, RequestError)  # the future fails; the client keeps working


def test_at_most_ten_recipients():
    keys = [str(pyrage.x25519.Identity.generate().to_public()) for _ in range(11)]
    assert age.parse_recipients(keys[:10])
    with pytest.raises(AgeEncryptionError, match="11 recipients; at most 10"):
        age.parse_recipients(keys)


def test_without_pyrage_the_refusal_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrage", None)  # import pyrage → ImportError
    with pytest.raises(AgeEncryptionError, match=r"pip install 'tinkerkit\[age\]'"):
        age.sealer(["age1whatever"])


def test_refused_save_writes_nothing(tk_home):
    training = tk.connect("mock").create_lora_training_client(base_model="tinkerkit/tiny").result()
    with pytest.raises(tinker.RequestFailedError, match="'nope' is not an age recipient"):
        training.save_weights_external("x", age_encryption_recipients=["nope"]).result()
    folder = tk_home / "runs" / training.model_id / "external_weights"
    assert not folder.exists() or not any(folder.iterdir())


def test_no_plaintext_copy_on_disk(tk_home):
    training = tk.connect("mock").create_lora_training_client(base_model="tinkerkit/tiny").result()
    identity = pyrage.x25519.Identity.generate()
    training.save_weights_external("p").result()
    training.save_weights_external(
        "e", age_encryption_recipients=[str(identity.to_public())]
    ).result()
    run = tk_home / "runs" / training.model_id / "external_weights"
    plain = (run / "p" / "adapter_model.safetensors").read_bytes()
    stored = sorted(f.name for f in (run / "e").iterdir())
    assert stored == ["adapter_config.json.age", "adapter_model.safetensors.age", "checkpoint.json"]
    for file in (run / "e").iterdir():
        assert plain not in file.read_bytes()
    assert sorted(p.name for p in run.iterdir()) == ["e", "p"]  # no temporary folder left
