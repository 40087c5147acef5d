"""The store's tables (SQLAlchemy 2 models) and run states. Internal module.

Tables:

``batches``
    One row per batch name.
``runs``
    One row per run: an integer ``key`` (what the other tables refer to), the
    40-hex ``id``, its run type, state, canonical parameters, encoded
    result, the side file holding its arrays, its error if it failed, its lease
    while it runs, its provenance, and the files its parameters and result
    were imported from while they are not trusted (``parameters_origin``,
    ``result_origin``).
``entries``
    The runs of each batch, in insertion order (``position``, from 0 without
    gaps); a run id can sit in several batches, once in each. Columns ``v0``
    to ``v15`` (:data:`SLOTS`) hold copies of numeric parameters: each
    batch gives up to 16 of its parameter names a slot (``batch_columns.slot``),
    and an entry's slot holds that parameter's ``num`` in ``parameters`` (NULL
    where the run has no number under that name). Each slot is indexed with
    the batch, so a query on numbers reads one row per run, as on a table with
    a column per parameter (see ``runstore.slots``).
``parameters``
    One row per run and parameter, typed for indexed queries: ``kind``,
    ``num`` (numbers, indexed; declared without a type, so that floats stay
    REAL and ints INTEGER), ``text`` (strings) and ``canonical`` (every
    value, indexed; strings compare equal through it).
``parameter_counts``
    How many runs hold each parameter value: one row per name and canonical
    value, with its typed columns and ``runs``. Kept as runs are added and
    deleted; queries read it to find their most selective condition without
    counting the runs (it decides only the order of a query's conditions,
    never what matches).
``result_values``
    The same for the scalar values of each result (nested keys dotted).
``batch_columns``
    The parameter names and scalar result keys of each batch, with the kinds
    of value each holds in the batch: the columns of the batch's SQL view and
    their types; and the slot of ``entries`` that holds a parameter's numbers.
``fftw_wisdom``
    FFTW wisdom (what planning FFTs learned), per kind of machine, shared by
    the processes that compute the store's runs.

The schema is versioned by Alembic; :data:`SCHEMA_REVISION` is the head
revision this library writes, checked against the migrations by the tests.
"""

from __future__ import annotations

import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["SCHEMA_REVISION", "RunState", "Base", "Batch", "Run", "Entry",
           "APPLICATION_ID", "RUNSTORE_TABLES", "SLOTS", "SYNCHRONOUS",
           "Parameter", "ParameterCount", "ResultValue", "BatchColumn", "FftwWisdom", "Number"]

#: The Alembic revision of the schema this version of runstore reads and writes.
SCHEMA_REVISION = "0007"

#: How many parameters of a batch have a column in ``entries`` (``v0`` ...).
SLOTS = 16

#: ``PRAGMA application_id`` of every file runstore writes (stores and
#: bundles): "RunS" in ASCII. A SQLite file with another non-zero id belongs to
#: another application and is refused unchanged; id 0 is accepted only for
#: files of earlier runstore versions (see :data:`RUNSTORE_TABLES`).
APPLICATION_ID = 0x52756E53

#: The tables a file without the marker must have to be taken for a store of
#: an earlier runstore version (it must also record a known schema revision).
RUNSTORE_TABLES = ("runs", "entries", "batches", "parameters", "alembic_version")

#: The ``PRAGMA synchronous`` levels a store can be opened with (``Store(...,
#: synchronous=...)``); the first is the default.
SYNCHRONOUS = ("normal", "full", "extra")


class RunState(str, enum.Enum):
    """The states of a run.

    PENDING -> RUNNING -> DONE | FAILED; FAILED -> PENDING on retry; a RUNNING
    run whose lease expired (or whose worker died) -> PENDING.
    """

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Number(sa.types.UserDefinedType[Any]):
    """A column declared without a type, holding ints and floats as they are.

    A column without a declared type has no affinity in SQLite, so every
    value keeps its storage class: ``0.0`` stays REAL and ``3`` INTEGER
    (a NUMERIC column would turn ``0.0`` into the integer ``0``). SQLite
    compares INTEGER and REAL values by their numeric value, in queries and
    in indexes alike.
    """

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return ""


class Base(DeclarativeBase):
    pass


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, unique=True)
    created_at: Mapped[float] = mapped_column(sa.Float)


class Run(Base):
    __tablename__ = "runs"

    key: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(40), unique=True)
    run_type: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(
        sa.Enum(*(s.value for s in RunState), name="run_state",
                native_enum=False, create_constraint=True, length=8),
        default=RunState.PENDING.value,
    )
    parameters: Mapped[str] = mapped_column(sa.Text)
    result: Mapped[str | None] = mapped_column(sa.Text)
    array_file: Mapped[str | None] = mapped_column(sa.Text)
    error_type: Mapped[str | None] = mapped_column(sa.Text)
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    traceback: Mapped[str | None] = mapped_column(sa.Text)
    owner: Mapped[str | None] = mapped_column(sa.Text)
    lease_expires: Mapped[float | None] = mapped_column(sa.Float)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    started_at: Mapped[float | None] = mapped_column(sa.Float)
    finished_at: Mapped[float | None] = mapped_column(sa.Float)
    runtime: Mapped[float | None] = mapped_column(sa.Float)
    host: Mapped[str | None] = mapped_column(sa.Text)
    pid: Mapped[int | None] = mapped_column(sa.Integer)
    runstore_version: Mapped[str | None] = mapped_column(sa.Text)
    python_version: Mapped[str | None] = mapped_column(sa.Text)
    code_fingerprint: Mapped[str | None] = mapped_column(sa.Text)
    #: The file the parameters (result) were imported from, while not trusted;
    #: NULL for values this store's own code produced, or that the user trusted.
    parameters_origin: Mapped[str | None] = mapped_column(sa.Text)
    result_origin: Mapped[str | None] = mapped_column(sa.Text)

    # Only RUNNING runs are looked up by state (to recover them), so only they
    # are indexed: a full state index would be rewritten at every transition.
    __table_args__ = (
        sa.Index("ix_runs_running", "owner", sqlite_where=sa.text("state = 'running'")),
        # Finds at once whether a store holds untrusted parameters (usually not).
        sa.Index("ix_runs_foreign_parameters", "key",
                 sqlite_where=sa.text("parameters_origin IS NOT NULL")),
    )


class Entry(Base):
    __tablename__ = "entries"

    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"), primary_key=True)
    position: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    run_key: Mapped[int] = mapped_column(sa.ForeignKey("runs.key"))
    # The slots (SLOTS of them): numeric parameters copied from ``parameters``.
    v0: Mapped[Any] = mapped_column(Number(), nullable=True)
    v1: Mapped[Any] = mapped_column(Number(), nullable=True)
    v2: Mapped[Any] = mapped_column(Number(), nullable=True)
    v3: Mapped[Any] = mapped_column(Number(), nullable=True)
    v4: Mapped[Any] = mapped_column(Number(), nullable=True)
    v5: Mapped[Any] = mapped_column(Number(), nullable=True)
    v6: Mapped[Any] = mapped_column(Number(), nullable=True)
    v7: Mapped[Any] = mapped_column(Number(), nullable=True)
    v8: Mapped[Any] = mapped_column(Number(), nullable=True)
    v9: Mapped[Any] = mapped_column(Number(), nullable=True)
    v10: Mapped[Any] = mapped_column(Number(), nullable=True)
    v11: Mapped[Any] = mapped_column(Number(), nullable=True)
    v12: Mapped[Any] = mapped_column(Number(), nullable=True)
    v13: Mapped[Any] = mapped_column(Number(), nullable=True)
    v14: Mapped[Any] = mapped_column(Number(), nullable=True)
    v15: Mapped[Any] = mapped_column(Number(), nullable=True)

    __table_args__ = (
        sa.UniqueConstraint("batch_id", "run_key", name="uq_entries_batch_run"),
        # One per slot, over the entries whose slot holds a number.
        *(sa.Index(f"ix_entries_v{i}", "batch_id", f"v{i}",
                   sqlite_where=sa.text(f"v{i} IS NOT NULL")) for i in range(SLOTS)),
    )


class TypedValue:
    """The typed columns of a parameter or result value (see runstore.encoding.indexed)."""

    kind: Mapped[str] = mapped_column(sa.String(10))
    num: Mapped[Any] = mapped_column(Number(), nullable=True)
    text: Mapped[str | None] = mapped_column(sa.Text)
    canonical: Mapped[str] = mapped_column(sa.Text)


class Parameter(TypedValue, Base):
    __tablename__ = "parameters"

    run_key: Mapped[int] = mapped_column(sa.ForeignKey("runs.key"), primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)

    __table_args__ = (
        # Two partial indexes split the values: numbers by value, everything
        # else (strings, booleans, None, structured) by canonical form. Each
        # predicate implies the condition of exactly one of them.
        sa.Index("ix_parameters_num", "name", "num", "run_key",
                 sqlite_where=sa.text("num IS NOT NULL")),
        sa.Index("ix_parameters_canonical", "name", "canonical", "run_key",
                 sqlite_where=sa.text("num IS NULL")),
        {"sqlite_with_rowid": False},
    )


class ParameterCount(TypedValue, Base):
    __tablename__ = "parameter_counts"

    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    canonical: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    #: The number of runs whose parameter ``name`` has this value.
    runs: Mapped[int] = mapped_column(sa.Integer)

    __table_args__ = (
        # Covering (with the primary key's canonical): SQLite answers a
        # count from the index alone, and prefers it to the primary key.
        sa.Index("ix_parameter_counts_num", "name", "num", "runs",
                 sqlite_where=sa.text("num IS NOT NULL")),
        {"sqlite_with_rowid": False},
    )


class ResultValue(TypedValue, Base):
    __tablename__ = "result_values"

    run_key: Mapped[int] = mapped_column(sa.ForeignKey("runs.key"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)

    __table_args__ = (
        sa.Index("ix_result_values_num", "key", "num", "run_key"),
        {"sqlite_with_rowid": False},
    )


class BatchColumn(Base):
    __tablename__ = "batch_columns"

    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batches.id"), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(10), primary_key=True)  # or "result"
    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    #: The kinds of value the column holds in the batch (``kind`` of the
    #: typed rows: "float,int" ...), sorted and joined with commas: they
    #: decide the column's SQL type in the view (runstore.views.column_type).
    kinds: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    #: The column ``v<slot>`` of ``entries`` holding this parameter's numbers
    #: in the batch, or NULL (results, parameters without numbers, and
    #: parameters beyond the batch's first :data:`SLOTS` with numbers).
    slot: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)

    __table_args__ = ({"sqlite_with_rowid": False},)



class FftwWisdom(Base):
    __tablename__ = "fftw_wisdom"

    machine: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    wisdom: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[float] = mapped_column(sa.Float)
