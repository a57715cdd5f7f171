"""What every ``tinkerkit`` subcommand shares: error reporting and backend options.

Its own module so that subcommands living in other modules (``cli_rl``, ``cli_export``,
``cli_serve``) import it without importing ``cli`` itself (which imports them).

Every failure a user can cause ends as one line on stderr, ``error: ...``, naming what
is wrong and what to do: exit 2 for a bad command line (click's usage errors), 1 for
everything else (our typed errors, files that cannot be read or written, a full disk).
Nothing here imports tinker, torch or numpy: ``tinkerkit --help`` stays fast.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from tinkerkit.cli_options import LATENCY, config_options
from tinkerkit.paths import describe_os_error as describe_os_error
from tinkerkit.train.run_options import RunOptions


def one_line(text: str) -> str:
    """``text`` with its lines joined, so an error is exactly one line of stderr.

    Example:
        >>> one_line("2 bad records in a.jsonl:\\n  a.jsonl:1: ...")
        '2 bad records in a.jsonl: a.jsonl:1: ...'
    """
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def printable(text: str) -> str:
    """``text`` with its control characters escaped as Python writes them (line breaks
    and tabs kept): what a model sampled, visible on a terminal.

    Example:
        >>> printable("a\x17\x08b\n")
        'a\\x17\\x08b\n'
    """
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def echo_run(result: Any, config: RunOptions) -> None:
    """A finished loop's paths: its state and sampler checkpoints, the external copy and
    the exported adapter when there are ones, and its logs."""
    click.echo(f"state:   {result.state_path}")
    click.echo(f"sampler: {result.sampler_path}")
    if result.external_path is not None:
        click.echo(f"external: {result.external_path}")
    if config.export_final is not None and not result.already_finished:
        click.echo(f"exported: {config.export_final} (PEFT adapter)")
    click.echo(f"logs:    {result.log_dir}/metrics.jsonl, {result.log_dir}/checkpoints.jsonl")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


def run_command(fn: Callable[[], Any]) -> Any:
    """Run a command; our typed errors become one clear line and exit code 1 (a
    ``ConfigError`` is a usage error, exit code 2, naming the options).

    Example:
        >>> run_command(lambda: tk.connect("nope"))   # error: Unknown backend 'nope'. ...
    """
    from tinkerkit.errors import ConfigError, TinkerkitError  # here: keeps --help fast

    try:
        return fn()
    except ConfigError as exc:
        ctx = click.get_current_context(silent=True)
        raise click.UsageError(_in_flags(str(exc), ctx), ctx) from None
    except TinkerkitError as exc:
        fail(str(exc))
    except ImportError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(describe_os_error(exc))
    except Exception as exc:
        _quiet_in_flight_failures()
        if _is_sdk_error(exc, "AuthenticationError"):
            fail(
                "the Tinker service refused the API key (401): set TINKER_API_KEY to a valid "
                "key, or pass --backend mock|local to run offline"
            )
        if _is_sdk_error(exc, "APIConnectionError"):  # the network went after connecting
            fail(
                f"cannot reach the Tinker service ({exc}): check the network connection, "
                "or pass --backend mock|local to run offline"
            )
        from tinkerkit.errors import service_message

        message = service_message(exc)
        if message is None:
            raise
        fail(message)


def _quiet_in_flight_failures() -> None:
    """Once a command fails, the requests it had in flight (pipelined saves, a group's
    other samples) fail too, unretrieved or refused as the process exits: the one error
    line has said why."""
    import logging
    import warnings

    from tinkerkit.errors import UnretrievedFailureWarning

    warnings.filterwarnings("ignore", category=UnretrievedFailureWarning)
    logging.getLogger("tinkerkit.server").setLevel(logging.ERROR)


def _in_flags(message: str, ctx: click.Context | None) -> str:
    """A config's message in the command line's words: ``Config.kl_coef`` → ``'--kl-coef'``."""
    flags = {p.name: p.opts[0] for p in ctx.command.params if p.opts} if ctx else {}
    return re.sub(
        r"\b\w*Config\.(\w+)",
        lambda m: f"'{flags[m[1]]}'" if m[1] in flags else m[0],
        message,
    )


def _is_sdk_error(exc: BaseException, name: str) -> bool:
    """An instance of the SDK's exception ``tinker.<name>`` (looked up only if tinker is
    loaded: --help stays light)."""
    tinker = sys.modules.get("tinker")
    return tinker is not None and isinstance(exc, getattr(tinker, name))


class TinkerkitGroup(click.Group):
    """The ``tinkerkit`` group: click's usage errors as one ``error:`` line (the
    command, the option, the value, where to look), and a full disk or an unwritable
    path anywhere as one line instead of a traceback."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `tinkerkit`: the help
                exc.show()
                sys.exit(exc.exit_code)
            fail(_usage_message(exc), exc.exit_code)
        except click.Abort:
            fail(self._aborted(list(sys.argv[1:] if args is None else args)), 1)
        except OSError as exc:
            fail(describe_os_error(exc))
        sys.exit(code if isinstance(code, int) else 0)

    def _aborted(self, args: list[str]) -> str:
        """What Ctrl-C says: for a loop command, the command that continues its run."""
        command = self.commands.get(args[0]) if args else None
        if command is None or not any(p.name == "resume" for p in command.params):
            return "aborted"
        again = [a for a in args if a not in ("--resume", "--overwrite")] + ["--resume"]
        return (
            "interrupted; the run keeps its committed checkpoints. Continue it with: "
            f"tinkerkit {shlex.join(again)}"
        )

    def invoke(self, ctx: click.Context) -> Any:
        # A command's return value is not an exit code (click's own rule): only a
        # ``ctx.exit(n)`` reaches ``main`` as an int.
        super().invoke(ctx)
        return None


def _usage_message(exc: click.ClickException) -> str:
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return message
    return f"{ctx.command_path}: {message} (see '{ctx.command_path} --help')"


def backend_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--backend``, ``--model``, ``--seed``, ``--latency``: shared by the loop commands."""
    fn = click.option(
        "--latency",
        default=0.0,
        show_default=True,
        type=LATENCY,
        help="Simulated round trip per request (offline backends), seconds.",
    )(fn)
    fn = config_options(RunOptions, ["model", "seed"])(fn)  # defaults: RunOptions's
    fn = click.option(
        "--backend",
        default=None,
        help="tinker, mock or local (default: TINKERKIT_BACKEND, else tinker if "
        "TINKER_API_KEY is set, else mock).",
    )(fn)
    return fn


OFFLINE_NOTICE = (
    "note: no --backend, TINKERKIT_BACKEND or TINKER_API_KEY: running offline on the mock "
    "backend (pass --backend local or tinker to choose another)"
)
"""What a command says on stderr when nothing chose a backend and it runs on ``mock``."""


def connect_backend(backend: str | None, latency: float) -> Any:
    """``tk.connect`` for a command: its errors give command-line advice (the option
    to pass), not Python advice. With nothing choosing a backend (no option, no
    ``TINKERKIT_BACKEND``, no ``TINKER_API_KEY``) a command runs offline on ``mock``,
    saying so on stderr (``tk.connect()`` in Python refuses instead: a script should say
    where it trains)."""
    from tinkerkit.connect import connect
    from tinkerkit.errors import BackendNotConfiguredError, MissingAPIKeyError

    try:
        if latency and (backend or "") != "tinker":
            return connect(backend, latency=latency)
        return connect(backend)
    except BackendNotConfiguredError:
        click.echo(OFFLINE_NOTICE, err=True)
        return connect("mock", latency=latency)
    except MissingAPIKeyError:
        raise click.UsageError(
            "--backend tinker needs an API key: set TINKER_API_KEY (from the Tinker "
            "console), or pass --backend mock or --backend local to run offline"
        ) from None


# Short names used throughout the commands.
_run = run_command
_connect = connect_backend
