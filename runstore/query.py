"""``get_runs_with`` conditions, translated to one indexed SQL query. Internal module.

A condition is ``name=value`` or ``name__op=value`` with ``op`` one of
:data:`OPERATORS`. Values are encoded canonically, so the query compares what
the store indexes:

- equality of numbers is numeric: an int matches ints and floats equal to it;
  a float matches numbers within numpy's ``isclose`` defaults
  (``|stored - value| <= 1e-8 + 1e-5 * |value|``); NaN matches NaN;
- strings compare as text, booleans only with booleans, ``None`` only with
  ``None``; lists, tuples, dicts, arrays, callables and objects compare exactly
  by their canonical encoding;
- ``__ne`` is the exact complement of equality among the runs that have the
  parameter; ``__lt``, ``__le``, ``__gt``, ``__ge`` order numbers or strings
  (other stored values never match them); ``__in`` takes a list of values.

Parameter names are bound as SQL parameters, never pasted into SQL.
"""

from __future__ import annotations

import ast
import functools
import math
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple, Union

import numpy as np
import sqlalchemy as sa

from .encoding import FunctionRef, Indexed, Tree, encode, indexed, indexed_number, short_repr
from .errors import QueryError, RunstoreError
from .slots import SLOTS_JSON, slots_of
from .slots import parse as parse_slots

if TYPE_CHECKING:
    from .store import Store

__all__ = ["OPERATORS", "RESULT_PREFIX", "RTOL", "ATOL", "Query", "Condition", "parse_filter",
           "filter_conditions", "Word"]

#: The prefix of conditions on scalar results: ``result__val__ge=3``.
RESULT_PREFIX = "result__"
#: The operators a condition may use: ``name__op=value``.
OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in")
#: Relative and absolute tolerance of float equality (numpy.isclose defaults).
RTOL, ATOL = 1e-5, 1e-8

_ORDER = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_INT64 = 2**63


#: What a predicate on ``num`` alone that no NULL satisfies is made of (Condition.on_slot).
_SLOT_SAFE = re.compile(r"p\.num|BETWEEN|AND|OR|IN|<=|>=|=|<|>|\?|,|\(|\)|\s")
#: The alias of the row a predicate reads, as Condition.predicate makes it first.
_ALIAS = re.compile(r"\bp\.")

_FILTER = re.compile(r"^\s*([^\s<>=!]+?)\s*(>=|<=|!=|==|=|>|<)\s*(.*?)\s*$", re.S)
_SYMBOLS = {"=": "eq", "==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


class Word(str):
    """A bare word in a filter (``max`` in ``operator=max``): not a Python literal."""


def parse_filter(text: str) -> tuple[str, str, Any]:
    """Read a command-line filter such as ``'A>=3'`` or ``operator=max``.

    Returns ``(name, operator, value)``. The value is a Python literal
    (``3``, ``2.5``, ``'text'``, ``[2, 5, 8]``, ``None``, ``True``); anything
    else is a bare word, returned as a :class:`Word` (the caller decides
    whether it names a function or is a string). ``name__op=value`` works as in
    :meth:`~runstore.Batch.get_runs_with`.
    """
    match = _FILTER.match(text)
    if not match or not match.group(3) or match.group(3)[0] in "<>=!":
        raise QueryError(
            f"cannot read the filter {text!r}: write NAME OP VALUE with OP one of "
            "=, !=, <, <=, >, >= (e.g. 'A>=3', operator=max, 'B=[2, 5, 8]', "
            "'label=\"text\"'), or NAME__in=[...]")
    name, symbol, raw = match.groups()
    op = _SYMBOLS[symbol]
    base, _, suffix = name.rpartition("__")
    if symbol == "=" and base and suffix in OPERATORS:
        name, op = base, suffix
    if not (_is_text(name) and _is_text(raw)):
        raise QueryError(f"cannot read the filter {short_repr(text)}: it is not valid "
                         "Unicode text (a lone surrogate: was it typed in another encoding?)")
    try:
        value = ast.literal_eval(raw)
    except (MemoryError, RecursionError):
        raise QueryError(f"cannot read the value of the filter {short_repr(text)}: it "
                         "is nested too deeply") from None
    except (ValueError, SyntaxError, TypeError) as exc:
        if _NUMBER.fullmatch(raw) or raw[0] in "[({'\"":  # meant as a literal
            raise QueryError(f"cannot read the value of the filter {short_repr(text)} as "
                             f"a Python literal ({short_repr(str(exc))}); for text, quote "
                             "it: 'label=\"text\"'") from None
        value = Word(raw)
    return name, op, value


def filter_conditions(store: Store, filters: Iterable[str]) -> dict[str, Any]:
    """``get_runs_with`` conditions from filters as ``runstore runs`` takes them.

    Each filter is read by :func:`parse_filter`. A name that is a scalar
    result of some run and no run's parameter is a condition on the result
    (``'val>20'``); a bare word is a function's name where the store holds
    functions under that parameter (``operator=max``), else a string.
    """
    found: dict[str, Any] = {}
    for text in filters:
        name, op, value = parse_filter(text)
        if not name.startswith(RESULT_PREFIX) and store.names_a_result(name):
            name = RESULT_PREFIX + name  # a scalar result, not a parameter
        if isinstance(value, Word):
            if store.holds_callables(name):
                value = FunctionRef(value if "." in value else f"builtins.{value}")
            else:
                value = str(value)
        if op in ("eq", "in"):  # (__ne of such a value is every run with the name)
            _refuse_other_kinds(store, text, name, op, value)
        found[name if op == "eq" else f"{name}__{op}"] = value
    return found


#: Kinds of value that can compare equal (an int equals a float).
_KIND_GROUP = {"int": "number", "float": "number"}
_KIND_WORDS = {"int": "an int", "float": "a float", "text": "a string", "bool": "a boolean",
               "null": "None", "structured": "a list, tuple, dict or object"}
_KINDS_HELD = {"int": "int", "float": "float", "text": "string", "bool": "boolean",
               "null": "None", "structured": "structured"}


def _refuse_other_kinds(store: Store, text: str, name: str, op: str, value: Any) -> None:
    """Refuse a filter whose value is of no kind its column holds: it could match nothing.

    ``'f=1,5'`` reads as the tuple ``(1, 5)``, which no float equals: said,
    instead of listing no runs.
    """
    source, bare = (("result", name[len(RESULT_PREFIX):]) if name.startswith(RESULT_PREFIX)
                    else ("parameter", name))
    held = store.value_kinds(bare, source)
    if not held:
        return  # an unknown name: the query says so, naming the known ones
    members = list(value) if op == "in" and isinstance(value, (list, tuple, set, frozenset)
                                                       ) else [value]
    if not members:
        return  # an empty __in matches nothing, as asked
    try:
        kinds = {indexed(encode(member, "a filter value")).kind for member in members}
    except RunstoreError:
        return  # the query reports values it cannot compare
    if {_KIND_GROUP.get(k, k) for k in kinds} & {_KIND_GROUP.get(k, k) for k in held}:
        return
    shown = (f"a {type(value).__name__}" if kinds == {"structured"} and op == "eq"
             else ", ".join(sorted(_KIND_WORDS.get(k, k) for k in kinds)))
    hint = ""
    if (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value)
            and held & {"int", "float"}):
        hint = f"; for a decimal number write it with a point: {value[0]}.{value[1]}"
    elif kinds == {"text"} and held & {"int", "float"} and _NUMBER.fullmatch(str(value)):
        hint = f"; a number is written without quotes: {bare}={value}"
    elif kinds & {"int", "float"} and held == {"text"}:
        hint = f"; for text, quote it: '{bare}=\"{value}\"'"
    raise QueryError(
        f"the filter {short_repr(text)} can match no run: its value is {shown}, and "
        f"{bare} holds {' and '.join(sorted(_KINDS_HELD.get(k, k) for k in held))} values"
        f"{hint}")


_NUMBER = re.compile(r"[-+]?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9_]+)?")


def _is_text(value: str) -> bool:
    """Whether UTF-8 can encode the string (no lone surrogates)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _OnSlot(NamedTuple):
    """A condition tested on an entry's slot (:meth:`Condition.on_slot`)."""

    #: The predicate over the slot column, and its arguments.
    sql: str
    args: tuple[Any, ...]
    #: The slot column (``e.v3``).
    column: str
    #: The predicate as a test that does not drive (``+e.v3``: SQLite may
    #: not use the slot's index for it).
    tested: str


@dataclass(frozen=True)
class Condition:
    """One condition on one parameter."""

    name: str
    op: str
    value: Any
    #: ``"parameter"``, or ``"result"`` for a scalar result (``result__name``).
    source: str = "parameter"
    #: What was made from the condition once: its predicate's SQL by alias,
    #: its tests by slot.
    _made: dict[Any, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def table(self) -> str:
        """The table of typed rows the condition reads, and its name column."""
        return "parameters" if self.source == "parameter" else "result_values"

    @property
    def column(self) -> str:
        return "name" if self.source == "parameter" else "key"

    @property
    def label(self) -> str:
        """The condition's name as the caller wrote it (``result__`` for results)."""
        return self.name if self.source == "parameter" else f"result__{self.name}"

    def predicate(self, a: str) -> tuple[str, tuple[Any, ...]]:
        """SQL over the parameters row aliased ``a``, with its arguments."""
        made: tuple[str, tuple[Any, ...]] | None = self._made.get(a)
        if made is None:  # made once: a query asks for it for each plan and probe
            if a == "p":
                sql, args = self._predicate()
                made = sql, tuple(args)
            else:
                sql, made_args = self.predicate("p")
                made = _ALIAS.sub(f"{a}.", sql), made_args
            self._made[a] = made
        return made

    def _predicate(self) -> tuple[str, list[Any]]:
        a = "p"
        if self.op == "eq":
            return _equal(a, self._form(self.value))
        if self.op == "ne":
            sql, args = _equal(a, self._form(self.value))
            return f"NOT COALESCE(({sql}), 0)", args
        if self.op == "in":
            return self._in(a)
        return self._order(a)

    def on_slot(self, slot: int | None) -> _OnSlot | None:
        """The predicate over the entry's slot ``slot``, if it decides this condition alone.

        Only predicates on ``num`` alone that no NULL satisfies qualify
        (equalities, ranges and lists of numbers): a slot holds a run's
        ``num``, or NULL where the run has no number under the name. Others
        (text, None, structured values, ``__ne``, ints beyond 64 bits) are
        tested in ``parameters``.
        """
        if slot is None or self.source != "parameter":
            return None
        key = ("slot", slot)
        if key in self._made:
            made: _OnSlot | None = self._made[key]
            return made
        try:
            sql, args = self.predicate("p")
        except RunstoreError:
            return None  # the query reports it
        made = None
        if _slot_safe(sql):
            column = f"e.v{int(slot)}"
            made = _OnSlot(sql.replace("p.num", column), args, column,
                           sql.replace("p.num", "+" + column))
        self._made[key] = made
        return made

    def _form(self, value: Any) -> Indexed:
        form = indexed_number(value)  # the usual values, without the encoding walk
        return form if form is not None else indexed(self._tree(value))

    def _tree(self, value: Any) -> Tree:
        try:
            return encode(value, "the query value")
        except RunstoreError:  # said again, naming the condition (only then: short_repr costs)
            return encode(value, f"the query value of {short_repr(self.name)}")

    def _in(self, a: str) -> tuple[str, list[Any]]:
        # Exact ints and canonical values go into IN lists, which SQLite answers
        # with index lookups; floats (with their tolerance) and the rest are ORed.
        ints: list[Any] = []
        canonicals: list[str] = []
        terms: list[tuple[str, list[Any]]] = []
        for value in self._members():
            form = self._form(value)
            if form.kind == "int" and isinstance(form.number, int) and form.number != -_INT64:
                ints.append(form.number)
            elif form.number is None and form.kind != "int":
                canonicals.append(form.canonical)
            else:
                terms.append(_equal(a, form))
        if ints:
            terms.append((f"{a}.num IN ({','.join('?' * len(ints))})", ints))
        if canonicals:
            terms.append((f"({a}.canonical IN ({','.join('?' * len(canonicals))}) "
                          f"AND {a}.num IS NULL)", canonicals))
        if not terms:
            return "0", []
        return "(" + " OR ".join(sql for sql, _ in terms) + ")", [
            arg for _, args in terms for arg in args]

    def _members(self) -> list[Any]:
        value = self.value
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise QueryError(
                f"{self.name}__in needs a list of values, got {short_repr(value)}; for "
                f"one value use {self.name}={short_repr(value)}")
        return list(value.tolist() if isinstance(value, np.ndarray) else value)

    def _order(self, a: str) -> tuple[str, list[Any]]:
        quick = indexed_number(self.value)
        if quick is not None:
            assert quick.number is not None
            return _numeric_order(a, self.op, quick.number)
        tree = self._tree(self.value)
        form = indexed(tree)
        if form.kind in ("int", "float") and form.number is not None:
            number = tree if isinstance(tree, (int, float)) else form.number
            return _numeric_order(a, self.op, number)
        if form.kind == "text":
            return f"({a}.kind = 'text' AND {a}.text {_ORDER[self.op]} ?)", [form.text]
        raise QueryError(
            f"{self.name}__{self.op}={short_repr(self.value)}: ordering compares numbers "
            f"or strings, not {form.kind} values; use {self.name}=... or "
            f"{self.name}__ne=... for exact matches")


@functools.lru_cache(maxsize=256)  # the same few texts: "p.num = ?", ranges, lists
def _slot_safe(sql: str) -> bool:
    """Whether a predicate reads ``num`` alone and no NULL satisfies it (see on_slot)."""
    return not _SLOT_SAFE.sub("", sql).strip()


def _equal(a: str, form: Indexed) -> tuple[str, list[Any]]:
    # Only int and float values have a number, so numeric tests need no kind
    # check and are answered from the (name, num) index alone.
    kind, number = form.kind, form.number
    if kind == "float" and number is not None and math.isfinite(number):
        tol = ATOL + RTOL * abs(number)
        return f"{a}.num BETWEEN ? AND ?", [number - tol, number + tol]
    if kind == "float" and number is not None:  # an infinity
        return f"({a}.num = ? AND {a}.kind = 'float')", [number]
    if kind == "int" and number == -_INT64:  # the one int64 an int beyond 64 bits rounds to
        # (by canonical, not typeof(num): SQLite propagates the constant of num = ?)
        return f"({a}.num = ? AND NOT ({a}.kind = 'int' AND {a}.canonical != ?))", [
            number, form.canonical]
    if kind == "int" and isinstance(number, int):
        return f"{a}.num = ?", [number]
    if kind == "int":  # beyond 64 bits: stored with an approximate number
        exact = _exact_float(int(form.canonical))
        if exact is None:
            return f"{a}.canonical = ?", [form.canonical]
        return (f"({a}.canonical = ? OR ({a}.num = ? AND {a}.kind = 'float'))",
                [form.canonical, exact])
    # None, bool, text, structured, NaN: exactly by canonical encoding, through
    # the index of values without a number.
    return f"({a}.canonical = ? AND {a}.num IS NULL)", [form.canonical]


def _exact_float(number: int) -> float | None:
    """The float equal to an int, if there is one."""
    try:
        as_float = float(number)
    except OverflowError:
        return None
    return as_float if as_float == number else None


_STRICT = {"gt": "gt", "ge": "gt", "lt": "lt", "le": "lt"}
_LOOSE = {"gt": "ge", "ge": "ge", "lt": "le", "le": "le"}


def _numeric_order(a: str, op: str, value: int | float) -> tuple[str, list[Any]]:
    """``num OP value`` decided exactly, in one range of the (name, num) index.

    ``num`` is exact for floats and 64-bit ints, which SQLite compares
    exactly; ints beyond 64 bits hold their nearest float (or an infinity).
    That float decides, except for such ints whose float equals the bound:
    those are compared exactly by their decimal text.
    """
    if -_INT64 < value < _INT64:
        # Ints beyond 64 bits hold floats of magnitude 2**63 or more, on the
        # same side of this bound as the ints: num decides, from the index alone.
        return f"{a}.num {_ORDER[op]} ?", [value]
    bound: int | float = value
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        # No float or 64-bit int lies strictly between an int and its
        # nearest float, so rounding only moves the boundary onto that float.
        bound = _nearest_float(value)
        op_floats = _LOOSE[op] if (bound > value) == (op in ("gt", "ge")) else _STRICT[op]
        op_floats = op if bound == value else op_floats
    else:
        op_floats = op
    loose, strict = _ORDER[_LOOSE[op_floats]], _ORDER[_STRICT[op_floats]]
    included = "1" if op_floats in ("ge", "le") else "0"
    big_sql, big_args = _big_int_order(f"{a}.canonical", op, value)
    big = f"{a}.kind = 'int' AND typeof({a}.num) = 'real'"
    return (f"({a}.num {loose} ? AND ({a}.num {strict} ? OR (NOT ({big}) AND {included}) "
            f"OR ({big} AND {big_sql})))", [bound, bound, *big_args])


def _nearest_float(number: int) -> float:
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _big_int_order(column: str, op: str, value: int | float) -> tuple[str, list[Any]]:
    """SQL deciding ``int(column) OP value`` exactly for columns holding decimal ints."""
    if isinstance(value, float):
        if math.isinf(value):
            return ("1" if (value > 0) == (op in ("lt", "le")) else "0"), []
        low, high = math.floor(value), math.ceil(value)
    else:
        low = high = value
    # x > v <=> x > floor(v); x >= v <=> x > ceil(v) - 1; < and <= negate those.
    threshold, negate = {"gt": (low, False), "ge": (high - 1, False),
                         "lt": (high - 1, True), "le": (low, True)}[op]
    sql, args = _int_text_greater(column, threshold)
    return (f"NOT ({sql})" if negate else sql), args


def _int_text_greater(column: str, threshold: int) -> tuple[str, list[Any]]:
    """SQL for ``int(column) > threshold``, comparing sign, length and digits."""
    text = str(threshold)
    negative = f"substr({column}, 1, 1) = '-'"
    if threshold >= 0:
        return (f"(NOT {negative} AND (length({column}) > ? OR (length({column}) = ? "
                f"AND {column} > ?)))", [len(text), len(text), text])
    return (f"(NOT {negative} OR length({column}) < ? OR (length({column}) = ? AND "
            f"{column} < ?))", [len(text), len(text), text])


@dataclass(frozen=True)
class _MaybeOperator(Condition):
    """``name__xx=value`` where ``xx`` is no operator: a name, or a typo."""

    base: str = ""
    suffix: str = ""


#: What queries read through: a SQLAlchemy connection, or the sqlite3
#: connection under one (which spares SQLAlchemy's work per statement).
Connection = Union[sa.Connection, sqlite3.Connection]


def _fetch(conn: Connection, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
    if isinstance(conn, sqlite3.Connection):
        return conn.execute(sql, tuple(args)).fetchall()
    return [tuple(row) for row in conn.exec_driver_sql(sql, tuple(args))]


_PRIORITY = {"eq": 0, "in": 1, "lt": 2, "le": 2, "gt": 2, "ge": 2, "ne": 3}
#: The first bound of the counts that find the most selective condition (then doubled).
_FIRST_PROBE = 64
#: The most arguments a probe kept in :class:`Known` may have (``__in`` lists are long).
_KNOWN_ARGUMENTS = 64


class _Probe:
    """Counts the rows one condition matches, up to a bound.

    A condition on a parameter reads ``parameter_counts`` (runs per value):
    up to ``limit`` of its matching values, whose runs are summed. Exact when
    fewer values match; otherwise the sum is a lower bound of at least
    ``limit``. A condition on a result counts its rows through the index, up
    to ``limit`` rows: exact when fewer match, otherwise ``limit``.
    """

    __slots__ = ("condition", "sql", "args", "by_value", "count", "exact")

    def __init__(self, condition: Condition) -> None:
        where, values = condition.predicate("p")
        self.condition = condition
        self.by_value = condition.source == "parameter"
        if self.by_value:  # the values read and their runs, in one value
            # (TOTAL, not SUM: counts a file tampered with cannot overflow.)
            self.sql = ("(SELECT COUNT(*) || ' ' || CAST(TOTAL(runs) AS INTEGER) FROM (SELECT "
                        f"p.runs FROM parameter_counts p WHERE p.name = ? AND {where} LIMIT ?))")
        else:
            self.sql = (f"(SELECT COUNT(*) FROM (SELECT 1 FROM {condition.table} p WHERE "
                        f"p.{condition.column} = ? AND {where} LIMIT ?))")
        #: The arguments, the last one (the bound) set by each round.
        self.args = [condition.name, *values, _FIRST_PROBE]
        self.count, self.exact = 0, False

    def read(self, found: Any, limit: int) -> None:
        """Take what a round with this ``limit`` returned."""
        if self.by_value:
            values, runs = found.split()
            self.count, self.exact = int(runs), int(values) < limit
        else:
            self.count = found
            self.exact = found < limit


class Known:
    """What queries read of a store in one state: counts (by probe) and slots (by batch).

    Kept with a connection that only reads, and valid while its ``PRAGMA
    data_version`` (read in the query's own transaction) is :attr:`version`:
    that number changes when any other connection, of any process, commits
    to the file, so nothing is taken from here that the query's state would
    not give. A query whose values were all counted before then runs one
    statement, not two.
    """

    __slots__ = ("version", "counts", "slots")

    #: Counts kept at most; more, and they are forgotten.
    LIMIT = 4096

    def __init__(self) -> None:
        self.version: Any = None
        self.counts: dict[tuple[Any, ...], Any] = {}
        self.slots: dict[int, dict[str, int]] = {}

    def at(self, version: Any) -> Known:
        """These, for the state ``version``: forgotten if the store changed since."""
        if version != self.version or len(self.counts) > self.LIMIT:
            self.version = version
            self.counts.clear()
            self.slots.clear()
        return self


class Query:
    """Conditions parsed from keyword arguments."""

    def __init__(self, conditions: dict[str, Any]) -> None:
        self.conditions = [self._parse(key, value) for key, value in conditions.items()]
        #: The batch's slots, once :meth:`order` read them.
        self.slots: dict[str, int] | None = None
        self.conditions.sort(key=lambda c: (_PRIORITY[c.op], c.label))

    def rows(self, conn: Connection, batch: int, known: Known | None = None
             ) -> list[tuple[Any, ...]]:
        """The matching runs' rows in batch order, as :meth:`sql` selects them.

        Names are checked only when nothing matches (a condition on a name
        no run has matches nothing): a query that finds runs costs no
        statement beyond the probes of :meth:`order` and itself. With
        ``known`` (what earlier queries read of the store in the state
        ``conn`` reads), counts and slots found there are not read again.
        """
        self._resolve_nested(conn)
        try:
            on_parameters = any(c.source == "parameter" for c in self.conditions)
            matches = self.order(conn, batch if on_parameters else None, known)
            slots = self.slots
            if slots is None:
                slots = self._slots(conn, batch, known) if on_parameters else {}
            sql, args = self.sql(batch, slots)
        except RunstoreError:  # a value that cannot be compared
            self.check_names(conn)  # an unknown name is the error to report first
            raise
        found = _fetch(conn, sql, args) if matches else []
        if not found:
            self.check_names(conn)
        return found

    @staticmethod
    def _slots(conn: Connection, batch: int, known: Known | None) -> dict[str, int]:
        if known is None:
            return slots_of(conn, batch)
        found = known.slots.get(batch)
        if found is None:
            found = known.slots[batch] = slots_of(conn, batch)
        return found

    def _resolve_nested(self, conn: Connection) -> None:
        """Name valid text; a result's ``a__b`` is its key ``a.b`` if no key ``a__b`` is stored."""
        for i, condition in enumerate(self.conditions):
            if not _is_text(condition.name):
                self.check_names(conn)  # raises, saying why
            if condition.source == "result" and "__" in condition.name:
                self.conditions[i] = self._resolve(conn, condition) or condition

    def order(self, conn: Connection, batch: int | None = None,
              known: Known | None = None) -> bool:
        """Put the most selective condition first, whatever order they were written in.

        Each condition's matching runs are counted, up to a bound (see
        :class:`_Probe`): conditions on parameters from the runs stored per
        value, conditions on results through their index. The bound starts
        at 64 and doubles until the smallest count is exact and no bound
        below it is left, so the query is driven by the condition with the
        fewest runs however many that is, and the others are checked per
        run, the most selective first. An equality on a parameter is counted
        exactly in one lookup; a range is read to at most about twice the
        values (or result rows) of the driving condition. Ties keep the
        operator order (equality first) and then the names, so every order
        of writing the conditions gives one plan. Returns False when a
        condition matches no run. With ``batch``, the first round also
        reads the batch's slots (:attr:`slots`, see :mod:`runstore.slots`).
        With ``known``, counts and slots already read in this state of the
        store are taken from there, and those read are kept there.
        """
        if len(self.conditions) < 2:
            return True
        probes = [_Probe(c) for c in self.conditions]
        sql = "SELECT " + ", ".join([probe.sql for probe in probes])
        if batch is not None and known is not None:
            self.slots = known.slots.get(batch)
        limit = _FIRST_PROBE
        while True:
            keys = [(probe.sql, *probe.args) for probe in probes]
            found: Sequence[Any]
            if known is not None and (batch is None or self.slots is not None) and all(
                    key in known.counts for key in keys):
                found = [known.counts[key] for key in keys]  # counted before, in this state
            else:
                args = [arg for key in keys for arg in key[1:]]
                if batch is not None and self.slots is None:
                    (found,) = _fetch(conn, f"{sql}, {SLOTS_JSON}", [*args, batch])
                    self.slots = parse_slots(found[-1])
                    if known is not None:
                        known.slots[batch] = self.slots
                else:
                    (found,) = _fetch(conn, sql, args)
                if known is not None:  # (not counts of long lists: their keys are large)
                    known.counts.update((key, count) for key, count in zip(keys, found)
                                        if len(key) <= _KNOWN_ARGUMENTS)
            for probe, value in zip(probes, found):
                probe.read(value, limit)
            exact = [p.count for p in probes if p.exact]
            if exact and min(exact) <= min([p.count for p in probes if not p.exact],
                                           default=exact[0]):
                break
            limit *= 2
            for probe in probes:
                probe.args[-1] = limit
        rank = {id(p.condition): p.count for p in probes}
        self.conditions.sort(key=lambda c: (rank[id(c)], _PRIORITY[c.op], c.label))
        # No run matches a condition whose rows were counted to none. (A
        # parameter value counted to none is still looked up: the counts
        # only order the conditions.)
        return not any(p.exact and not p.count and not p.by_value for p in probes)

    @staticmethod
    def _parse(key: str, value: Any) -> Condition:
        # Conditions on small immutable values are kept (see _parsed): short
        # strings, 64-bit ints, floats but -0.0 (equal to 0.0, it would be
        # said as 0.0 in messages), booleans and None.
        kind = type(value)
        if len(key) <= 200 and (
                (kind is str and len(value) <= 200) or (kind is int and -_INT64 <= value < _INT64)
                or (kind is float and (value or math.copysign(1.0, value) > 0))
                or kind is bool or value is None):
            return _parsed(key, value)  # made once, with what it makes (Condition._made)
        return _parse(key, value)

    def check_names(self, conn: Connection) -> None:
        """Raise :class:`QueryError` for names no stored run has (resolving nested result keys)."""
        for i, condition in enumerate(self.conditions):
            if not _is_text(condition.name):
                raise QueryError(
                    f"no run has a {condition.source} {short_repr(condition.name)}: it is "
                    "not valid Unicode text (it holds a lone surrogate), and names are")
            found = self._resolve(conn, condition)
            if found is not None:
                self.conditions[i] = found
                continue
            if condition.source == "result":
                known = [r[0] for r in _fetch(
                    conn, "SELECT DISTINCT name FROM batch_columns WHERE source = 'result' "
                    "ORDER BY name", [])]
            else:
                known = [r[0] for r in _fetch(
                    conn, "SELECT DISTINCT name FROM parameters ORDER BY name", [])]
            if isinstance(condition, _MaybeOperator) and self._resolve(
                    conn, replace(condition, name=condition.base)) is not None:
                raise QueryError(
                    f"unknown operator {condition.suffix!r} in {condition.label!r}; use one "
                    f"of {', '.join('__' + op for op in OPERATORS)} (or no suffix for "
                    f"equality)")
            if condition.source == "result":
                raise QueryError(
                    f"no run has a scalar result {condition.name!r}; the result names are "
                    f"{', '.join(map(repr, known)) or 'none (no run has a result yet)'} "
                    "(nested keys are joined with '.': result__stats__mean or "
                    "**{'result__stats.mean': ...})")
            raise QueryError(
                f"no run has a parameter {condition.name!r}; the parameters are "
                f"{', '.join(map(repr, known)) or 'none (the store is empty)'}"
                " (conditions on results are written result__<name>)")
        self.conditions.sort(key=lambda c: (_PRIORITY[c.op], c.label))

    @staticmethod
    def _resolve(conn: Connection, condition: Condition) -> Condition | None:
        """The condition if its name is stored; a result's ``a__b`` may be its key ``a.b``."""
        names = [condition.name]
        if condition.source == "result" and "__" in condition.name:
            names.append(condition.name.replace("__", "."))
        for name in names:
            if _fetch(conn, f"SELECT 1 FROM {condition.table} WHERE {condition.column} = ? "
                      "LIMIT 1", [name]):
                return replace(condition, name=name) if name != condition.name else condition
        return None

    def sql(self, batch: int, slots: dict[str, int] | None = None) -> tuple[str, list[Any]]:
        """The query's SQL and arguments; rows as in :class:`runstore.store.RunRow`.

        ``slots`` gives the batch's parameters copied into ``entries`` (see
        :mod:`runstore.slots`): a condition on numbers of such a parameter
        is tested on the entry's row itself, and drives the query through
        the slot's index when it is the most selective. The others are
        tested by a lookup in ``parameters`` (or ``result_values``) per run.
        """
        select = "SELECT e.position, r.id, r.run_type, r.parameters, r.state, r.key "
        if not self.conditions:
            return (select + "FROM entries e CROSS JOIN runs r WHERE e.batch_id = ? "
                    "AND r.key = e.run_key ORDER BY e.position", [batch])
        first = self.conditions[0]  # see order()
        slots = slots or {}
        on_entry = [c.on_slot(slots.get(c.name)) for c in self.conditions]
        drive = on_entry[0]
        if drive is not None and " OR " not in drive.sql:
            # CROSS JOIN fixes the join order: the slot's index drives. (Not
            # INDEXED BY: a file without that index is still answered.)
            sql = (select + f"FROM entries e CROSS JOIN runs r WHERE e.batch_id = ? AND "
                   f"{drive.column} IS NOT NULL AND {drive.sql}")
            params: list[Any] = [batch, *drive.args]
            key = "e.run_key"
        else:
            where, args = first.predicate("p0")
            sql = (select + f"FROM {first.table} p0 CROSS JOIN entries e CROSS JOIN runs r "
                   f"WHERE p0.{first.column} = ? AND {where} AND e.run_key = p0.run_key "
                   "AND e.batch_id = ?")
            params = [first.name, *args, batch]
            key = "p0.run_key"
        # Tests on the entry's own row first: they cost no lookup.
        for i in range(1, len(self.conditions)):
            slot = on_entry[i]
            if slot is not None:
                # "+" keeps SQLite from driving through this slot's index instead.
                sql += " AND " + slot.tested
                params += slot.args
        for i in range(1, len(self.conditions)):
            if on_entry[i] is None:
                condition = self.conditions[i]
                where, args = condition.predicate(f"p{i}")
                sql += (f" AND EXISTS (SELECT 1 FROM {condition.table} p{i} WHERE p{i}.run_key "
                        f"= {key} AND p{i}.{condition.column} = ? AND {where})")
                params += [condition.name, *args]
        # "+": sorting the hits is cheap; reading the batch in order to spare it is not.
        return sql + " AND r.key = e.run_key ORDER BY +e.position", params


def _parse(key: str, value: Any) -> Condition:
    source = "parameter"
    if key.startswith(RESULT_PREFIX) and len(key) > len(RESULT_PREFIX):
        source, key = "result", key[len(RESULT_PREFIX):]
    name, sep, op = key.rpartition("__")
    if sep and op in OPERATORS:
        return Condition(name, op, value, source)
    if sep and name:
        # Either a name that contains "__", or an unknown operator:
        # check_names tells which, naming the valid ones.
        return _MaybeOperator(key, "eq", value, source, base=name, suffix=op)
    return Condition(key, "eq", value, source)


#: Conditions are immutable, so a query repeating one (a loop over another
#: parameter's values) takes it, its predicate and its slot tests as made
#: before. ``typed``: 1, 1.0 and True are different conditions.
_parsed = functools.lru_cache(maxsize=1024, typed=True)(_parse)
