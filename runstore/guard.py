"""Guards on SQLite files runstore did not write: time bounds, read-only SQL. Internal module.

A file from elsewhere (a bundle, a store opened read-only, the source of an
import) may be hostile: its views may hang, its tables may be views, its SQL
may try to attach or create files. runstore reads only its own tables from
such files (never their views or triggers), bounds the time of every query
with SQLite's progress handler, and lets ``runstore sql`` only read, with
SQLite's authorizer.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from .errors import NotAStoreError, QueryTimeoutError

__all__ = ["DEFAULT_QUERY_TIME_LIMIT", "query_time_limit", "bound_queries",
           "raise_if_timed_out", "refuse_shadowed_tables", "read_only_authorizer"]

#: Seconds a single query on a foreign file may take (``RUNSTORE_QUERY_TIME_LIMIT``).
DEFAULT_QUERY_TIME_LIMIT = 30.0
#: SQLite virtual-machine steps between two looks at the clock.
_STEPS = 10_000


def query_time_limit() -> float:
    """The limit in seconds: ``RUNSTORE_QUERY_TIME_LIMIT`` if set, else the default."""
    text = os.environ.get("RUNSTORE_QUERY_TIME_LIMIT")
    if not text:
        return DEFAULT_QUERY_TIME_LIMIT
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_QUERY_TIME_LIMIT
    return value if value > 0 else DEFAULT_QUERY_TIME_LIMIT


class _Clock:
    """When the current statement started; tells SQLite to stop it past the limit."""

    def __init__(self, limit: Callable[[], float]) -> None:
        self.limit = limit
        self.started = time.monotonic()

    def statement(self, sql: str) -> None:
        # Statements of trigger programs are reported as "-- TRIGGER ..."
        # comments: they belong to the statement that fired them.
        if not sql.startswith("--"):
            self.started = time.monotonic()

    def progress(self) -> int:
        return int(time.monotonic() - self.started > self.limit())


def bound_queries(dbapi_conn: sqlite3.Connection, limit: Callable[[], float]) -> None:
    """Stop any statement on this connection that runs longer than ``limit()`` seconds.

    SQLite then fails it with "interrupted"; :func:`raise_if_timed_out` turns
    that into :class:`~runstore.errors.QueryTimeoutError`.
    """
    clock = _Clock(limit)
    dbapi_conn.set_trace_callback(clock.statement)
    dbapi_conn.set_progress_handler(clock.progress, _STEPS)


def raise_if_timed_out(exc: BaseException, path: str, limit: float) -> None:
    """Raise :class:`QueryTimeoutError` if ``exc`` is a statement the time bound stopped."""
    if "interrupted" in str(getattr(exc, "orig", exc)):
        raise QueryTimeoutError(path, limit) from exc


def refuse_shadowed_tables(dbapi_conn: sqlite3.Connection, path: str,
                           tables: Iterable[str]) -> None:
    """Refuse a file in which a name of runstore's tables is a view, trigger or virtual table.

    runstore reads its tables by name; in a file it did not write, that name
    might be a view (of a query that never ends) or a virtual table.
    """
    names = sorted({name.lower() for name in tables})
    cursor = dbapi_conn.execute(
        "SELECT name, type, sql FROM sqlite_master WHERE lower(name) IN "
        f"({','.join('?' * len(names))})", names)
    try:
        found = cursor.fetchall()
    finally:
        cursor.close()
    for name, kind, sql in found:
        virtual = kind == "table" and str(sql or "").lstrip().upper().startswith(
            "CREATE VIRTUAL")
        if kind != "table" or virtual:
            _shadowed(path, name, "a virtual table" if virtual else f"a {kind}")


def _shadowed(path: str, name: str, found: str) -> NoReturn:
    raise NotAStoreError(path, f"its {name!r} is {found}, not a table, so the file was "
                         "changed outside runstore (runstore reads its own tables, never "
                         "views or other SQL objects, from files it did not write)")


#: Pragmas that only report; those in the first set take a table, index or number.
_READ_PRAGMAS_WITH_ARGUMENT = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check"})
_READ_PRAGMAS = _READ_PRAGMAS_WITH_ARGUMENT | frozenset({
    "database_list", "collation_list", "function_list", "module_list", "pragma_list",
    "compile_options", "application_id", "user_version", "schema_version", "page_count",
    "page_size", "freelist_count", "encoding", "data_version", "journal_mode"})
#: What a read-only query may do; everything else (ATTACH, DETACH, writes, schema
#: changes, ANALYZE, VACUUM ...) is denied.
_ALLOWED = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                      sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_PRAGMA})
#: Functions a query may not call, even where SQLite would let it.
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit",
                               "fts3_tokenizer"})


def read_only_authorizer(action: int, arg1: Any, arg2: Any, database: Any,
                         trigger: Any) -> int:
    """SQLite authorizer for user SQL on a store: it may read, and nothing else."""
    if action not in _ALLOWED:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA:
        name = str(arg1).lower()
        if name not in _READ_PRAGMAS or (
                arg2 is not None and name not in _READ_PRAGMAS_WITH_ARGUMENT):
            return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK
