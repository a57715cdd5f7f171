"""age encryption of exported files: ``save_weights_external(age_encryption_recipients=...)``.

As on the service, every file of the export is encrypted to all the recipients
(filippo.io/age, through ``pyrage``, the Python binding of the Rust ``rage``) and stored
as ``<file>.age``; ``age -d -i IDENTITY`` (or ``pyrage.decrypt``) gives the file back.
Native ``age1...`` keys and SSH public keys (``ssh-ed25519``, ``ssh-rsa``) are accepted,
at most ten. Files are encrypted in memory before anything is written, so no plaintext
copy of an encrypted export ever reaches the disk.

Example:
    >>> from pyrage import decrypt, x25519
    >>> identity = x25519.Identity.generate()
    >>> seal = sealer([str(identity.to_public())])
    >>> name, data = seal("adapter_config.json", b"{}")
    >>> name, decrypt(data, [identity])
    ('adapter_config.json.age', b'{}')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tinkerkit.errors import AgeEncryptionError

AGE_SUFFIX = ".age"
MAX_RECIPIENTS = 10
INSTALL_HINT = "pip install 'tinkerkit[age]'"

Sealer = Callable[[str, bytes], tuple[str, bytes]]
"""(file name, bytes) → (stored name, stored bytes); what ``CheckpointStore.save`` applies."""

# Which pyrage module parses a recipient, by the prefix of its text form. Plugin
# recipients (age1<plugin>1...) would need the plugin's binary, so they are not listed.
_KINDS: tuple[tuple[str, str], ...] = (
    ("age1tagpq1", "tagpq"),
    ("age1tag1", "tag"),
    ("age1", "x25519"),
    ("ssh-ed25519 ", "ssh"),
    ("ssh-rsa ", "ssh"),
)


def _pyrage() -> Any:
    try:
        import pyrage
    except ImportError:
        raise AgeEncryptionError(
            "save_weights_external(age_encryption_recipients=...) encrypts with the pyrage "
            f"package, which is not installed. Install it with: {INSTALL_HINT}"
        ) from None
    return pyrage


def parse_recipients(recipients: Sequence[str]) -> list[Any]:
    """The pyrage recipients for ``recipients``; ``AgeEncryptionError`` naming a bad one.

    Example:
        >>> from pyrage import x25519
        >>> [recipient] = parse_recipients([str(x25519.Identity.generate().to_public())])
    """
    if isinstance(recipients, str) or not isinstance(recipients, Sequence):
        raise AgeEncryptionError(
            "age_encryption_recipients must be a list of recipient strings "
            f"(e.g. ['age1...']), got {recipients!r}."
        )
    if not recipients:
        raise AgeEncryptionError(
            "age_encryption_recipients is empty: give at least one recipient ('age1...' or "
            "an SSH public key), or leave it None to save unencrypted files."
        )
    if len(recipients) > MAX_RECIPIENTS:
        raise AgeEncryptionError(
            f"age_encryption_recipients has {len(recipients)} recipients; at most "
            f"{MAX_RECIPIENTS} are allowed."
        )
    pyrage = _pyrage()
    parsed = []
    for index, text in enumerate(recipients):
        parsed.append(_parse_one(pyrage, index, text))
    return parsed


def _parse_one(pyrage: Any, index: int, text: object) -> Any:
    where = f"age_encryption_recipients[{index}] {text!r}"
    if not isinstance(text, str):
        raise AgeEncryptionError(f"{where} is not a string.")
    stripped = text.strip()
    module = next((mod for prefix, mod in _KINDS if stripped.startswith(prefix)), None)
    if module is None:
        raise AgeEncryptionError(
            f"{where} is not an age recipient: use a native age public key ('age1...', "
            "from age-keygen) or an SSH public key ('ssh-ed25519 ...' or 'ssh-rsa ...')."
        )
    try:
        return getattr(pyrage, module).Recipient.from_str(stripped)
    except Exception as exc:  # pyrage.RecipientError, or a binding's ValueError
        raise AgeEncryptionError(
            f"{where} is not a valid age recipient ({exc}). Copy the public key exactly as "
            "age-keygen (or ssh-keygen) printed it."
        ) from None


def sealer(recipients: Sequence[str]) -> Sealer:
    """A function that encrypts one file's bytes to ``recipients`` and names it ``.age``.

    The recipients are checked here, before any file is written.
    """
    parsed = parse_recipients(recipients)
    pyrage = _pyrage()

    def seal(name: str, data: bytes) -> tuple[str, bytes]:
        try:
            return name + AGE_SUFFIX, bytes(pyrage.encrypt(data, parsed))
        except pyrage.EncryptError as exc:
            raise AgeEncryptionError(f"age encryption of {name!r} failed: {exc}") from None

    return seal


__all__ = ["AGE_SUFFIX", "MAX_RECIPIENTS", "Sealer", "parse_recipients", "sealer"]
