"""Errors of REST calls, with the SDK classes the service's HTTP answers become.

The SDK raises a ``tinker.APIStatusError`` subclass for a refused REST call (404 →
``tinker.NotFoundError``, 400 → ``tinker.BadRequestError``). The offline ``RestClient``
raises tinkerkit errors that *are* those classes, and ``tinkerkit serve`` answers each
with its ``status_code``, so ``except tinker.NotFoundError`` holds on every backend,
direct or served.
"""

from __future__ import annotations

from tinker import BadRequestError, NotFoundError

from tinkerkit.errors import CheckpointNotFoundError, TinkerkitError, _offline_response


class RestRequestError(TinkerkitError, BadRequestError):
    """A REST request the service refuses with HTTP 400 (``tinker.BadRequestError``):
    a TTL out of bounds, a malformed path in a request body, publishing twice, ..."""

    def __init__(self, message: str) -> None:
        BadRequestError.__init__(
            self, message, response=_offline_response(400, message), body={"detail": message}
        )

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.message,))


class CheckpointGoneError(CheckpointNotFoundError):
    """A checkpoint past its TTL: gone, as on the service (HTTP 404)."""

    def __init__(self, path: str, expired_at: str) -> None:
        self.path = path
        self.where = ""
        self.expired_at = expired_at
        message = (
            f"Checkpoint {path} expired at {expired_at} (its ttl_seconds ran out) and is gone. "
            "Save a new one; pass ttl_seconds=None to keep checkpoints indefinitely."
        )
        NotFoundError.__init__(
            self, message, response=_offline_response(404, message), body={"detail": message}
        )

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.path, self.expired_at))


class SessionNotFoundError(TinkerkitError, NotFoundError):
    """No such session on this backend (HTTP 404)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        message = (
            f"Session {session_id!r} not found on this backend. List sessions with "
            "rest_client.list_sessions(); a session is recorded when its first training "
            "run or sampler is created, under TINKERKIT_HOME."
        )
        NotFoundError.__init__(
            self, message, response=_offline_response(404, message), body={"detail": message}
        )

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.session_id,))


class SamplerNotFoundError(TinkerkitError, NotFoundError):
    """No such sampler (sampling session) on this backend (HTTP 404)."""

    def __init__(self, sampler_id: str) -> None:
        self.sampler_id = sampler_id
        message = (
            f"Sampler {sampler_id!r} not found on this backend. A session's samplers are "
            "listed by rest_client.get_session(session_id).sampler_ids."
        )
        NotFoundError.__init__(
            self, message, response=_offline_response(404, message), body={"detail": message}
        )

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.sampler_id,))
