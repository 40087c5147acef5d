"""The command line's exit codes, and its one-line report of a failure. Internal module.

Every failure of ``runstore`` ends the same way: one line on standard error,
``runstore: error: <what was wrong and what to do>``, and an exit code that
says which kind of failure it was (:class:`ExitCode`, listed in
``docs/cli.rst``). :func:`classify` maps an exception to that code;
:func:`one_line` folds its message into one line.
"""

from __future__ import annotations

import enum
import re

from . import errors

__all__ = ["ExitCode", "PREFIX", "classify", "one_line"]

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
    (FileNotFoundError, ExitCode.NOT_FOUND),  # also discovery's StoreNotFoundError
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
