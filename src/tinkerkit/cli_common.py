"""What every ``tinkerkit`` subcommand shares: error reporting and backend options.

Its own module so that subcommands living in other modules (``cli_rl``, ``cli_export``,
``cli_serve``) import it without importing ``cli`` itself (which imports them).

Every failure a user can cause ends as one line on stderr, ``error: ...``, naming what
is wrong and what to do: exit 2 for a bad command line (click's usage errors), 1 for
everything else (our typed errors, files that cannot be read or written, a full disk).
Nothing here imports tinker, torch or numpy: ``tinkerkit --help`` stays fast.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from tinkerkit.cli_options import NON_NEGATIVE_FLOAT, config_options
from tinkerkit.train.run_options import RunOptions


def one_line(text: str) -> str:
    """``text`` with its lines joined, so an error is exactly one line of stderr.

    Example:
        >>> one_line("2 bad records in a.jsonl:\\n  a.jsonl:1: ...")
        '2 bad records in a.jsonl: a.jsonl:1: ...'
    """
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


_OS_ADVICE = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space or write somewhere else",
    errno.EACCES: "check its permissions, or use another path",
    errno.EPERM: "check its permissions, or use another path",
    errno.EROFS: "write somewhere else",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: use another path",
    errno.ENOENT: "check the path",
    errno.EEXIST: "remove it or use another path",
    errno.ENAMETOOLONG: "use a shorter path",
}


def describe_os_error(exc: OSError) -> str:
    """One sentence for a failed read or write: the path, what went wrong, what to do.

    Example:
        >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device", "runs/a"))
        'runs/a: No space left on device; free some space or write somewhere else'
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f"{os.fsdecode(exc.filename)}: " if exc.filename is not None else ""
    advice = _OS_ADVICE.get(exc.errno or 0)
    return f"{where}{reason}" + (f"; {advice}" if advice else "")


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
        if _is_sdk_auth_error(exc):
            fail(
                "the Tinker service refused the API key (401): set TINKER_API_KEY to a valid "
                "key, or pass --backend mock|local to run offline"
            )
        from tinkerkit.errors import service_message

        message = service_message(exc)
        if message is None:
            raise
        fail(message)


def _in_flags(message: str, ctx: click.Context | None) -> str:
    """A config's message in the command line's words: ``Config.kl_coef`` → ``'--kl-coef'``."""
    flags = {p.name: p.opts[0] for p in ctx.command.params if p.opts} if ctx else {}
    return re.sub(
        r"\b\w*Config\.(\w+)",
        lambda m: f"'{flags[m[1]]}'" if m[1] in flags else m[0],
        message,
    )


def _is_sdk_auth_error(exc: BaseException) -> bool:
    """A ``tinker.AuthenticationError`` (looked up only if tinker is loaded: --help stays
    light)."""
    tinker = sys.modules.get("tinker")
    return tinker is not None and isinstance(exc, tinker.AuthenticationError)


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
            fail("aborted", 1)
        except OSError as exc:
            fail(describe_os_error(exc))
        sys.exit(code if isinstance(code, int) else 0)

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
        type=NON_NEGATIVE_FLOAT,
        help="Simulated round trip per request (offline backends), seconds.",
    )(fn)
    fn = config_options(RunOptions, ["model", "seed"])(fn)  # defaults: RunOptions's
    fn = click.option(
        "--backend",
        default=None,
        help="tinker, mock or local (default: TINKERKIT_BACKEND, else tinker if TINKER_API_KEY is set).",
    )(fn)
    return fn


def connect_backend(backend: str | None, latency: float) -> Any:
    """``tk.connect`` for a command: its errors give command-line advice (the option
    to pass), not Python advice."""
    from tinkerkit.connect import connect
    from tinkerkit.errors import BackendNotConfiguredError, MissingAPIKeyError

    try:
        if latency and (backend or "") != "tinker":
            return connect(backend, latency=latency)
        return connect(backend)
    except BackendNotConfiguredError:
        raise click.UsageError(
            "no backend selected: pass --backend mock (or local, or tinker), or set "
            "TINKERKIT_BACKEND, or set TINKER_API_KEY to use the Tinker service"
        ) from None
    except MissingAPIKeyError:
        raise click.UsageError(
            "--backend tinker needs an API key: set TINKER_API_KEY (from the Tinker "
            "console), or pass --backend mock or --backend local to run offline"
        ) from None


# Short names used throughout the commands.
_run = run_command
_connect = connect_backend
