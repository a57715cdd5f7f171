"""Typed errors. Every message says what is wrong and what to do about it.

Errors that stand for a failed *request* also subclass the official
``tinker.RequestFailedError`` (category ``User``), so code that catches the
service's exception catches ours on every backend::

    try:
        training.forward_backward(data, "cross_entropy").result()
    except tinker.RequestFailedError as e:   # or tk.errors.InvalidDatumError
        print(e)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import httpx
from tinker import APIStatusError, BadRequestError, NotFoundError, RequestFailedError, types
from tinker.types import RequestErrorCategory
from tinker.types.optimizer import OptimParamsBase

__all__ = [
    "APIKeyRefusedError",
    "AgeEncryptionError",
    "BackendNotConfiguredError",
    "BackendUnavailableError",
    "BatchTooLargeError",
    "ChatFormatError",
    "CheckpointError",
    "CheckpointExistsError",
    "CheckpointExpiredError",
    "CheckpointGoneError",
    "CheckpointNotFoundError",
    "ConfigError",
    "ConfigMismatchError",
    "ContextLengthError",
    "DataError",
    "DatumCheckError",
    "InjectedFaultError",
    "InvalidDatumError",
    "InvalidImageError",
    "InvalidPromptError",
    "InvalidTinkerPathError",
    "LossCheckError",
    "MissingAPIKeyError",
    "NothingToResumeError",
    "OptimizerParamsError",
    "OptimizerStateMismatchError",
    "PortInUseError",
    "RequestError",
    "RequestLimitError",
    "RestRequestError",
    "RewardLoadError",
    "RunExistsError",
    "RunLogError",
    "SamplerNotFoundError",
    "SandboxError",
    "ServerUnreachableError",
    "ServiceStatusError",
    "SessionNotFoundError",
    "TinkerkitError",
    "TinkerkitWarning",
    "TokenOutOfVocabularyError",
    "UnknownBackendError",
    "UnknownLossError",
    "UnknownModelError",
    "UnknownOptimizerError",
    "UnretrievedFailureWarning",
    "UntrainedStepWarning",
    "WrongCheckpointKindError",
]


class TinkerkitError(Exception):
    """Base class of every tinkerkit error."""


class TinkerkitWarning(UserWarning):
    """Base class of tinkerkit's warnings: something ran, but probably not as you meant."""


class UnretrievedFailureWarning(TinkerkitWarning):
    """A request failed and its result was never retrieved from the service (asyncio's
    "exception was never retrieved"): its client went away before the SDK fetched it."""


class UntrainedStepWarning(TinkerkitWarning):
    """``optim_step`` ran with no gradient because the ``forward_backward`` before it
    failed: the service knows, and says so in the user's process (``tk.connect``) or in
    its log (``tinkerkit serve``), naming the failed request and its error."""


class RequestError(TinkerkitError, RequestFailedError):
    """A request the (offline) service refused; its future fails, the client stays usable."""

    def __init__(
        self,
        message: str,
        request_id: str = "offline",
        category: RequestErrorCategory = RequestErrorCategory.User,
    ) -> None:
        RequestFailedError.__init__(self, message, request_id, category)

    def __str__(self) -> str:
        return self.message


class ConfigError(TinkerkitError, ValueError):
    """A training loop's Config refused its settings: names the field, its
    value, and what to set instead. A ``ValueError``, so ``except ValueError`` catches it."""


# --- connecting -------------------------------------------------------------------------


class BackendNotConfiguredError(TinkerkitError):
    """``tk.connect()`` could not tell which backend to use."""

    def __init__(self) -> None:
        super().__init__(
            "No backend selected. Pass one to tk.connect(...), e.g. tk.connect('mock'), "
            "or set TINKERKIT_BACKEND to one of 'tinker', 'mock', 'local', "
            "or set TINKER_API_KEY to use the real Tinker service."
        )


class UnknownBackendError(TinkerkitError):
    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name = name
        super().__init__(f"Unknown backend {name!r}. Use one of: {', '.join(sorted(available))}.")


class MissingAPIKeyError(TinkerkitError):
    def __init__(self) -> None:
        super().__init__(
            "The 'tinker' backend needs an API key: set TINKER_API_KEY (from the Tinker "
            "console) or pass api_key=... to tk.connect('tinker', ...). To run offline "
            "without a key, use tk.connect('mock') or tk.connect('local')."
        )


class ServerUnreachableError(TinkerkitError, ConnectionError):
    """Nothing answers at the base URL (the SDK would retry it silently for minutes)."""

    def __init__(self, url: str, reason: str, *, service: bool = False) -> None:
        self.url = url
        check = (
            "Check the network connection"
            if service
            else "Check the URL and that the server is running (e.g. `tinkerkit serve`), "
            "unset TINKER_BASE_URL to use the Tinker service"
        )
        super().__init__(
            f"No Tinker server answers at {url} ({reason}). {check}, or run offline: "
            "--backend mock on the command line, tk.connect('mock') in Python."
        )


class APIKeyRefusedError(TinkerkitError, PermissionError):
    """The server at the base URL answered 401: the API key is wrong or missing."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(
            f"The server at {url} refused the API key (HTTP 401). Set TINKER_API_KEY (or "
            "pass api_key=...) to the key it expects: for `tinkerkit serve`, the key it "
            "printed, or the one in its TINKERKIT_SERVE_API_KEY / --api-key-file."
        )


class PortInUseError(TinkerkitError, OSError):
    """``tinkerkit serve`` could not bind its address (the port is taken, or not allowed)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"tinkerkit serve cannot listen on {host}:{port} ({reason}). Stop whatever holds "
            "the port, or pick another with --port (0 picks a free one)."
        )


class HomeNotWritableError(TinkerkitError, OSError):
    """``TINKERKIT_HOME`` cannot be written: offline runs and checkpoints have nowhere to go."""


class BackendUnavailableError(TinkerkitError, ImportError):
    """An offline backend whose extra is not installed (``local`` needs torch and peft)."""

    def __init__(self, name: str, cause: ImportError) -> None:
        super().__init__(
            f"The {name!r} backend needs packages that are not installed ({cause}). "
            f"Install them with: pip install 'tinkerkit[{name}]'"
        )


# --- data ------------------------------------------------------------------------------


class SandboxError(TinkerkitError, RuntimeError):
    """The code-reward sandbox itself could not be set up (not something the sandboxed
    code did): no fork, no temporary folder, a missing interpreter."""


class DataError(TinkerkitError, ValueError):
    """Bad training data: names the file, line and field, and says what is wrong.

    With ``errors="collect"`` one ``DataError`` reports every bad line at once; each is
    in ``problems`` as ``(line, field, message)``.
    """

    def __init__(
        self,
        path: str,
        line: int | None,
        field: str | None,
        message: str,
        problems: list[tuple[int | None, str | None, str]] | None = None,
        *,
        unit: str = "line",
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.unit = unit
        """What ``line`` counts: a file's ``"line"``, a table's ``"row"``."""
        self.problems = problems or [(line, field, message)]
        if problems and len(problems) > 1:
            shown = "\n".join(
                f"  {_where(path, ln, fd, unit)}: {msg}" for ln, fd, msg in problems[:20]
            )
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            text = f"{len(problems)} bad records in {path}:\n{shown}{more}"
        else:
            text = f"{_where(path, line, field, unit)}: {message}"
        super().__init__(text)


class DatumCheckError(TinkerkitError, ValueError):
    """``check_datums`` found problems; ``problems`` lists ``(index, message)``."""

    def __init__(self, problems: list[tuple[int, str]], total: int) -> None:
        self.problems = problems
        lines = "\n".join(f"  {message}" for _, message in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} of {total} datums are invalid:\n{lines}{more}")


class ChatFormatError(TinkerkitError, ValueError):
    """A conversation that cannot become a training datum as asked."""


def _where(path: str, line: int | None, field: str | None, unit: str = "line") -> str:
    if line is None:
        place = path
    else:
        place = f"{path}:{line}" if unit == "line" else f"{path}, {unit} {line}"
    return f"{place}: field '{field}'" if field else place


# --- models and requests --------------------------------------------------------------


class UnknownModelError(RequestError):
    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.model_name = name
        self.available = sorted(available)
        super().__init__(
            f"Unknown base model {name!r}. Available models: {', '.join(self.available)}."
        )


class ModelMappingError(TinkerkitError, ValueError):
    """A ``models=`` / ``TINKERKIT_MODELS`` / ``--model`` entry that is not ``NAME=PATH``
    with PATH a model folder, a tokenizer folder or a ``tokenizer.json``."""


class UnknownLossError(RequestError):
    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.loss_name = name
        super().__init__(
            f"Unknown loss function {name!r}. Built-in losses: {', '.join(sorted(available))}. "
            "For any other loss (DPO, Bradley-Terry, ...) use "
            "training_client.forward_backward_custom(data, loss_fn) or tk.losses."
        )


class InvalidDatumError(RequestError):
    """A datum is malformed: missing ``loss_fn_inputs`` key, wrong length, bad dtype."""

    def __init__(self, index: int, problem: str, hint: str = "") -> None:
        self.index = index
        self.problem = problem
        message = f"data[{index}]: {problem}"
        if hint:
            message += f" {hint}"
        super().__init__(message)


class TokenOutOfVocabularyError(InvalidDatumError):
    def __init__(self, index: int, field: str, token: int, vocab_size: int) -> None:
        self.token = token
        self.vocab_size = vocab_size
        super().__init__(
            index,
            f"{field} contains token id {token}, outside the vocabulary [0, {vocab_size}).",
            "Tokenize with this model's tokenizer (training_client.get_tokenizer()).",
        )


class ContextLengthError(InvalidDatumError):
    def __init__(self, index: int, length: int, max_length: int) -> None:
        self.length = length
        self.max_length = max_length
        super().__init__(
            index,
            f"sequence of {length} tokens is longer than the model's context of "
            f"{max_length} tokens.",
            "Truncate it (e.g. tk.data.chat_datum(..., max_length=...)) or split it.",
        )


class InvalidPromptError(RequestError):
    """A sampling request that cannot run: wrong prompt type, empty prompt, bad option."""


class InvalidImageError(RequestError):
    """An image the model cannot take: not png/jpeg, a wrong ``expected_tokens``, an image
    for a text-only model (``tinkerkit.rules.images``)."""


class AgeEncryptionError(RequestError):
    """``save_weights_external(age_encryption_recipients=...)`` refused: a malformed or
    unsupported recipient, more than ten of them, or ``pyrage`` not installed."""


class LossCheckError(TinkerkitError):
    """A custom loss whose gradient is missing, not finite, or disagrees with its values."""


class InjectedFaultError(RequestError):
    """Raised by fault injection (``tinkerkit.testing``): a simulated server failure."""

    def __init__(self, kind: str, index: int) -> None:
        super().__init__(
            f"Injected fault: request #{index} ({kind}) failed as a simulated server error; "
            "it was not applied. Retry it.",
            category=RequestErrorCategory.Server,
        )


# --- checkpoints ----------------------------------------------------------------------


class CheckpointError(RequestError):
    """Base class for checkpoint problems."""


class InvalidTinkerPathError(TinkerkitError, ValueError):
    """Not a ``tinker://<run>/<kind>/<name>`` path (the SDK raises ``ValueError`` for these)."""

    def __init__(self, path: str, expected: str = "") -> None:
        self.path = path
        self.expected = expected
        kinds = expected or "weights, sampler_weights or external_weights"
        super().__init__(
            f"Invalid tinker path {path!r}. Expected tinker://<run_id>/<kind>/<name> "
            f"with kind {kinds}."
        )

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.path, self.expected))


class ServiceStatusError(TinkerkitError):
    """Base of the errors the service answers with an HTTP status, which the SDK raises as
    ``tinker.APIStatusError`` subclasses: each subclass is also the SDK's class for its
    status (``tinker.NotFoundError``, ``tinker.BadRequestError``), with the response the
    service would send, so ``except tinker.NotFoundError`` holds offline and served."""

    status: int = 400

    def _answer(self, message: str, *args: object) -> None:
        """Initialise as the SDK's status error; ``args`` rebuild the error when unpickled."""
        request = httpx.Request("POST", "http://tinkerkit.offline/api/v1")
        response = httpx.Response(self.status, request=request, json={"detail": message})
        APIStatusError.__init__(self, message, response=response, body={"detail": message})  # type: ignore[arg-type]
        self._init_args = args

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return (type(self), self._init_args)


class CheckpointNotFoundError(ServiceStatusError, NotFoundError):
    """No checkpoint (or run) at that path: HTTP 404 on the service, ``tinker.NotFoundError``."""

    status = 404

    def __init__(self, path: str, where: str = "") -> None:
        self.path = path
        self.where = where
        detail = f" (looked in {where})" if where else ""
        self._answer(
            f"Checkpoint {path} does not exist{detail}. List what exists with "
            "tk.rest_client(...).list_checkpoints(run_id). Offline checkpoints live "
            "under TINKERKIT_HOME: check it points at the same folder as the run that saved it.",
            path,
            where,
        )


class CheckpointGoneError(CheckpointNotFoundError):
    """A checkpoint past its TTL: gone, as on the service (HTTP 404)."""

    def __init__(self, path: str, expired_at: str) -> None:
        self.path = path
        self.where = ""
        self.expired_at = expired_at
        self._answer(
            f"Checkpoint {path} expired at {expired_at} (its ttl_seconds ran out) and is gone. "
            "Save a new one; pass ttl_seconds=None to keep checkpoints indefinitely.",
            path,
            expired_at,
        )


class SessionNotFoundError(ServiceStatusError, NotFoundError):
    """No such session on this backend (HTTP 404)."""

    status = 404

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self._answer(
            f"Session {session_id!r} not found on this backend. List sessions with "
            "rest_client.list_sessions(); a session is recorded when its first training "
            "run or sampler is created, under TINKERKIT_HOME.",
            session_id,
        )


class SamplerNotFoundError(ServiceStatusError, NotFoundError):
    """No such sampler (sampling session) on this backend (HTTP 404)."""

    status = 404

    def __init__(self, sampler_id: str) -> None:
        self.sampler_id = sampler_id
        self._answer(
            f"Sampler {sampler_id!r} not found on this backend. A session's samplers are "
            "listed by rest_client.get_session(session_id).sampler_ids.",
            sampler_id,
        )


class RestRequestError(ServiceStatusError, BadRequestError):
    """A REST request the service refuses with HTTP 400 (``tinker.BadRequestError``):
    a TTL out of bounds, a malformed path in a request body, publishing twice, ..."""

    def __init__(self, message: str) -> None:
        self._answer(message, message)


class RequestLimitError(ServiceStatusError, BadRequestError, ValueError):
    """A request argument the service refuses with HTTP 400 (``tinker.BadRequestError``)
    before any work: over a limit (``num_samples``, LoRA ``rank``, datums or tokens per
    request, body bytes) or nonsense on every backend (``temperature`` NaN, negative
    ``max_tokens``). Names the field, the value and the limit. Also a ``ValueError``:
    the SDK raises one for the values it cannot even send (NaN, infinity)."""

    def __init__(self, field: str, value: object, limit: str, hint: str = "") -> None:
        self.field = field
        self.value = value
        self.limit = limit
        shown = value if isinstance(value, str) else repr(value)
        message = f"{field} = {shown} is out of range: {limit}."
        if hint:
            message += f" {hint}"
        self._answer(message, field, value, limit, hint)


class BatchTooLargeError(RequestLimitError):
    """More ``model_input`` tokens in one ``forward``/``forward_backward`` request than the
    limit (HTTP 400 on the service, ``tinker.BadRequestError``)."""

    def __init__(self, num_tokens: int, max_tokens: int) -> None:
        self.num_tokens = num_tokens
        self.max_tokens = max_tokens
        super().__init__(
            "tokens in the batch",
            num_tokens,
            f"one request takes at most {max_tokens:,} tokens (MAX_TOKENS_PER_REQUEST)",
            "Split the data into smaller forward_backward calls (gradients accumulate "
            "until optim_step).",
        )
        self._init_args = (num_tokens, max_tokens)


class WrongCheckpointKindError(ServiceStatusError, BadRequestError):
    """A checkpoint of the wrong kind for the call (HTTP 400 on the service): ``load_state``
    takes ``weights`` paths, a sampling client ``sampler_weights`` paths."""

    def __init__(self, path: str, call: str, expected: str) -> None:
        self.path = path
        self.call = call
        self.expected = expected
        self._answer(
            f"{call} takes a tinker://<run>/{expected}/<name> path, got {path}. "
            + (
                "Save one with training_client.save_weights_for_sampler(name)."
                if expected == "sampler_weights"
                else "Save one with training_client.save_state(name)."
            ),
            path,
            call,
            expected,
        )


class CheckpointExistsError(CheckpointError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"Checkpoint {path} already exists; names must be unique within a run. Choose "
            "another name, or pass overwrite=True to save_state."
        )


class CheckpointExpiredError(CheckpointError):
    def __init__(self, path: str, expired_at: str) -> None:
        self.path = path
        super().__init__(
            f"Checkpoint {path} expired at {expired_at} (its ttl_seconds ran out). Save a new "
            "one; pass ttl_seconds=None to keep checkpoints indefinitely."
        )


class ConfigMismatchError(TinkerkitError):
    """A resumed or loaded run would silently change its configuration."""

    def __init__(self, field: str, saved: object, requested: object, where: str = "") -> None:
        self.field = field
        self.saved = saved
        self.requested = requested
        origin = f" in {where}" if where else ""
        super().__init__(
            f"{field} differs from the saved run{origin}: saved {saved!r}, requested "
            f"{requested!r}. Use the saved value, or start a new run."
        )


# --- training runs (LOG_DIR) -----------------------------------------------------------


class RunExistsError(TinkerkitError):
    """A training loop was pointed at a log folder that already holds a run."""

    def __init__(self, log_dir: str, found: Iterable[str], advice: str) -> None:
        self.log_dir = log_dir
        self.found = sorted(found)
        super().__init__(f"{log_dir} already holds a run ({', '.join(self.found)}); {advice}")


class RunLogError(DataError):
    """A run's own record (``checkpoints.jsonl``, ``run.json``) is damaged: names the file
    and line, and says how to go on."""


class NothingToResumeError(TinkerkitError):
    """``--resume`` (``resume=True``) with no complete checkpoint in the log folder."""

    def __init__(self, log_dir: Path, started: bool = False) -> None:
        if started:
            advice = (
                "it was stopped before its first checkpoint: start it again with --overwrite "
                "(overwrite=True), or choose a new --log-dir"
            )
        else:
            advice = "run without --resume to start fresh"
        # "checkpoints.jsonl" is train.checkpoints.CHECKPOINTS_FILE; errors import nothing
        # above them, so the name is spelled here.
        super().__init__(
            f"--resume was given but {Path(log_dir) / 'checkpoints.jsonl'} has no complete "
            f"checkpoint; {advice}"
        )


class RewardLoadError(TinkerkitError):
    """``--reward`` does not name a callable reward function."""


# --- optimizers (offline backends) -------------------------------------------------------

# name -> (label, config class, what optim_step takes); the names are
# backends.optimizers.ADAMW / DIMUON.
_OPTIMIZERS: dict[str, tuple[str, str, str]] = {
    "adamw": ("AdamW", types.AdamOptimizerConfig.__name__, "types.AdamParams(learning_rate=...)"),
    "dimuon": (
        "Dimuon",
        types.DimuonOptimizerConfig.__name__,
        "types.DimuonParams(learning_rate=...)",
    ),
}


class UnknownOptimizerError(RequestError):
    """A training client was asked for an optimizer the offline service does not have."""

    def __init__(self, config: object, problem: str = "") -> None:
        self.config = config
        detail = f" ({problem})" if problem else ""
        super().__init__(
            f"Unsupported optimizer {config!r}{detail}. Supported optimizers: "
            f"{', '.join(_OPTIMIZERS)}: pass optimizer=types.AdamOptimizerConfig() (the default) "
            "or optimizer=types.DimuonOptimizerConfig()."
        )


class OptimizerParamsError(RequestError):
    """``optim_step`` got the hyperparameters of another optimizer family."""

    def __init__(self, name: str, params: object) -> None:
        self.optimizer = name
        got = type(params).__name__
        if isinstance(params, OptimParamsBase) and not isinstance(params, types.DimuonParams):
            got += f"(type={params.type!r})"
        label, config, takes = _OPTIMIZERS[name]
        other_label, other_config, _ = _OPTIMIZERS["dimuon" if name == "adamw" else "adamw"]
        super().__init__(
            f"This training client was created with the {label} optimizer "
            f"(optimizer={config}()), so optim_step takes {takes}, "
            f"not {got}. The optimizer is fixed at creation: to train with {other_label}, "
            f"create a new training client with optimizer=types.{other_config}()."
        )


class OptimizerStateMismatchError(ConfigMismatchError):
    """Optimizer state of one family loaded into an engine of another."""

    def __init__(self, saved: str, requested: str) -> None:
        self.field, self.saved, self.requested = "optimizer", saved, requested
        label = _OPTIMIZERS[saved][0] if saved in _OPTIMIZERS else repr(saved)
        requested_label = _OPTIMIZERS[requested][0]
        saved_config = _OPTIMIZERS.get(saved, _OPTIMIZERS["adamw"])[1]
        Exception.__init__(
            self,
            f"This optimizer state belongs to {label}, but this training client trains "
            f"with {requested_label} (the optimizer is fixed at creation). Load it into a "
            f"client created with optimizer=types.{saved_config}(), "
            f"or load only the weights (load_state) to continue with {requested_label}.",
        )


def service_message(exc: BaseException) -> str | None:
    """What the service said in a refusal the SDK raised, without the SDK's wrapping
    (request ids, model classes, status codes); None for anything else.

    Example:
        >>> service_message(tinker.RequestFailedError("Request failed: bad datum for "
        ...                                          "self.request_id='r' and expected type x"))
        'bad datum'
    """
    if isinstance(exc, APIStatusError):
        body = exc.body
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            return str(body["detail"])
        return str(exc)
    if isinstance(exc, RequestFailedError):
        text = str(exc)
        found = re.match(r"(?s)^Request failed: (.*?) for self\.request_id=.*$", text)
        return found.group(1) if found else text
    return None
