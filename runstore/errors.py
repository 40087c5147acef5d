"""The errors runstore raises: one hierarchy under :class:`RunstoreError`.

Each error also inherits the built-in exception a caller would naturally catch
(an encoding problem is a ``TypeError``, a bad key a ``ValueError`` ...), keeps
the offending data as attributes, and says in its message what was found, what
was expected, and what to do next.
"""

from __future__ import annotations

__all__ = [
    "RunstoreError",
    "EncodingError",
    "DecodingError",
    "ReservedNameError",
    "UnresolvedReferenceError",
    "OptionalDependencyError",
]


class RunstoreError(Exception):
    """Base class of every error raised by runstore."""


class EncodingError(RunstoreError, TypeError):
    """A value cannot be encoded canonically, so it cannot define a run id.

    Attributes
    ----------
    path : str
        Where the value sits, e.g. ``"parameter 'B'[2]"`` or ``"result 'x'"``.
    value_type : str
        The qualified name of the value's type.
    reason : str
        Why the value cannot be encoded.
    hint : str
        What to do instead.
    """

    def __init__(self, path: str, value_type: str, reason: str, hint: str) -> None:
        self.path = path
        self.value_type = value_type
        self.reason = reason
        self.hint = hint
        super().__init__(
            f"cannot encode {path} of type {value_type}: {reason}. {hint}"
        )


class DecodingError(RunstoreError, ValueError):
    """Stored encoded data is not a valid canonical encoding.

    Attributes
    ----------
    path : str
        Where in the encoded tree the problem is.
    found : str
        A short description of what was found there.
    """

    def __init__(self, path: str, found: str) -> None:
        self.path = path
        self.found = found
        super().__init__(
            f"invalid encoded value at {path}: found {found}. The stored data was "
            "not written by runstore or is damaged; run `runstore check` on the "
            "store to find the affected runs."
        )


class ReservedNameError(RunstoreError, ValueError):
    """A container key would shadow a method or attribute of its class.

    Attributes
    ----------
    name : str
        The rejected key.
    owner : str
        The name of the container class.
    """

    def __init__(self, name: str, owner: str) -> None:
        self.name = name
        self.owner = owner
        super().__init__(
            f"{name!r} cannot be a key of a {owner}: it is the name of one of its "
            f"methods or attributes. Choose another name, or use a plain dict."
        )


class UnresolvedReferenceError(RunstoreError, TypeError):
    """A reference decoded from a store was used as if it were the real thing.

    Loading from a store never imports code, so a callable or an object of a
    user-defined class comes back as a reference that only names it.

    Attributes
    ----------
    name : str
        The qualified name the reference points to.
    """

    def __init__(self, name: str, action: str) -> None:
        self.name = name
        super().__init__(
            f"cannot {action} {name!r}: it was loaded as a reference, and runstore "
            f"never imports code named in a store by itself. Call .resolve() on it "
            f"to import {name!r} explicitly, or decode with import_code=True if you "
            f"trust the store."
        )


class OptionalDependencyError(RunstoreError, ImportError):
    """A feature needs a package that is not installed.

    Attributes
    ----------
    package : str
        The missing package.
    extra : str
        The runstore extra that installs it.
    """

    def __init__(self, package: str, extra: str, feature: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the package {package!r}, which is not installed. "
            f"Install it with: pip install {package}  (or: pip install "
            f"'runstore[{extra}]')",
            name=package,
        )
