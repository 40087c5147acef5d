"""The command line's exit codes, and its one-line report of a failure. Internal module.

Every failure of ``runstore`` ends the same way: one line on standard error,
``runstore: error: <what was wrong and what to do>``, and an exit code that
says which kind of failure it was (:class:`ExitCode`, listed in
``docs/cli.rst``). :class:`Commands`, the command group's class, catches
what ends a command: click's usage errors, :class:`Failure` (raised by the
commands), runstore's errors and any other exception; :func:`classify` maps
an exception to its code, and :func:`one_line` folds a message into one line.
"""

from __future__ import annotations

import enum
import re
import sys
from typing import Any, NoReturn

import click

from . import errors
from .errors import RunstoreError

__all__ = ["ExitCode", "PREFIX", "Commands", "Failure", "fail", "classify", "one_line",
           "os_error"]

#: How every error line of the command line starts.
PREFIX = "runstore: error: "


class ExitCode(enum.IntEnum):
    """What a ``runstore`` command's exit status means."""

    #: The command did what was asked.
    OK = 0
    #: The command ran and found problems (``check``, ``import-batchpy``), or
    #: failed for a reason none of the codes below names.
    FAILED = 1
    #: The command line is wrong: an unknown command or option, a missing or
    #: bad argument, a filter that names nothing.
    USAGE = 2
    #: What was named is not there: no such file or folder, no store found
    #: (or several), no such batch or run.
    NOT_FOUND = 3
    #: The file is not a runstore store, or it is damaged.
    DAMAGED = 4
    #: Refused to keep data safe: a bundle to be changed, pickles or code not
    #: trusted, a store another host writes or on a network filesystem.
    REFUSED = 5
    #: The store's schema is older (``runstore upgrade``) or newer
    #: (``pip install -U runstore``) than this runstore's.
    VERSION = 6
    #: A package, a module or a run class cannot be imported.
    UNAVAILABLE = 7
    #: A file cannot be read or written: a missing folder, no permission, a
    #: full disk.
    OS_ERROR = 8
    #: A bug in runstore (an exception it did not expect).
    INTERNAL = 70
    #: Interrupted (Ctrl-C).
    INTERRUPTED = 130


# Checked in order: the first class an error is an instance of decides.
_CODES: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (errors.SchemaTooNewError, ExitCode.VERSION),
    (errors.SchemaOutdatedError, ExitCode.VERSION),
    (errors.RunNotFound, ExitCode.NOT_FOUND),
    (errors.BatchNotFound, ExitCode.NOT_FOUND),
    (FileNotFoundError, ExitCode.NOT_FOUND),  # also StoreNotFoundError
    (errors.PickleRefusedError, ExitCode.REFUSED),
    (errors.NotAStoreError, ExitCode.DAMAGED),
    (errors.DecodingError, ExitCode.DAMAGED),
    (errors.StoreUnreadableError, ExitCode.DAMAGED),
    (errors.ArrayFileError, ExitCode.DAMAGED),
    (errors.ReadOnlyStoreError, ExitCode.REFUSED),
    (errors.NetworkFilesystemError, ExitCode.REFUSED),
    (errors.OtherHostWritingError, ExitCode.REFUSED),
    (errors.BundleRepairError, ExitCode.REFUSED),
    (errors.BatchpyPickleRefusedError, ExitCode.REFUSED),
    (errors.UntrustedCodeError, ExitCode.REFUSED),
    (errors.CustomIdRefusedError, ExitCode.REFUSED),
    (errors.QueryError, ExitCode.USAGE),
    (errors.BatchNameError, ExitCode.USAGE),
    (errors.StoreOptionError, ExitCode.USAGE),
    (errors.OptionalDependencyError, ExitCode.UNAVAILABLE),
    (errors.MissingFilterError, ExitCode.UNAVAILABLE),
    (errors.StorageFullError, ExitCode.OS_ERROR),
    (errors.StoreLogUnreadableError, ExitCode.OS_ERROR),
    (errors.RunstoreError, ExitCode.FAILED),
    (ImportError, ExitCode.UNAVAILABLE),
    (OSError, ExitCode.OS_ERROR),
)


def classify(exc: BaseException) -> ExitCode:
    """The exit code for an exception that ends a command."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return ExitCode.INTERNAL


def one_line(message: str) -> str:
    """``message`` on one line: line breaks and the indentation after them become a space."""
    return re.sub(r"\s*\n\s*", " ", message.strip())


class Failure(click.ClickException):
    """A failure the command line reports in one line, with its exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = int(code)


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> NoReturn:
    """Print ``runstore: error: message`` on stderr and exit with ``code``."""
    click.echo(PREFIX + one_line(message), err=True)
    sys.exit(int(code))


class Commands(click.Group):
    """runstore's command group: every failure ends as one line on stderr and an exit code."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            found = super().main(args, prog_name or "runstore", complete_var,
                                 standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `runstore` alone: its help
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "runstore"
            fail(f"{exc.format_message()} (see '{where} --help')", ExitCode.USAGE)
        except (click.exceptions.Abort, KeyboardInterrupt):
            fail("interrupted", ExitCode.INTERRUPTED)
        except click.ClickException as exc:
            fail(exc.format_message(), ExitCode(exc.exit_code) if exc.exit_code in
                 ExitCode.__members__.values() else ExitCode.FAILED)
        except Exception as exc:  # noqa: BLE001 - every failure ends as one line
            fail(*_reported(exc))
        sys.exit(found if isinstance(found, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; Ctrl-C ends it as one line, with what the command said about it.

        (click would print an empty line first.) A command that was computing
        raises KeyboardInterrupt with what it kept (see ``runstore worker``).
        """
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise Failure(str(exc) or "interrupted", ExitCode.INTERRUPTED) from None


def _reported(exc: Exception) -> tuple[str, ExitCode]:
    """What to say about an exception that ended a command, and the exit code."""
    import os

    code = classify(exc)
    if code is ExitCode.INTERNAL or os.environ.get("RUNSTORE_TRACEBACK"):
        import traceback

        if os.environ.get("RUNSTORE_TRACEBACK"):
            traceback.print_exc()
        if code is ExitCode.INTERNAL:
            return (f"internal error: {type(exc).__name__}: {exc}. This is a bug in "
                    "runstore: please report it with the command you ran "
                    "(RUNSTORE_TRACEBACK=1 prints the traceback)", code)
    if isinstance(exc, OSError) and not isinstance(exc, RunstoreError):
        return os_error(exc), code
    if isinstance(exc, ImportError) and not isinstance(exc, RunstoreError):
        return (f"cannot import {exc.name or 'a module'}: {exc}. Check the name, and that "
                "it can be imported from here (its folder on PYTHONPATH)", code)
    return str(exc), code


def os_error(exc: OSError, doing: str = "use") -> str:
    """An OSError in words: which file, what is wrong, what to do."""
    import os

    name = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename is not None:
        folder = os.path.dirname(str(exc.filename))
        if folder and not os.path.isdir(folder):
            return (f"cannot {doing} {name}: the folder {folder} does not exist; create it "
                    "first, or give another path")
    return f"cannot {doing} {name}: {reason}; check the path and its permissions"
