"""Runs: the user's calculation (:class:`Run`) and stored results (:class:`ResultRun`).

A user subclasses :class:`Run` and writes ``run(self, A=0, B=...)``; the
signature defines the parameters and their defaults. A run's parameters are
packed into one canonical JSON document that the store keeps: ``values``, the
public parameters (which define the id) as sorted ``[name, tree]`` pairs;
``private``, the ones whose names start with ``_`` (passed to ``run`` but not
part of the id); ``arrays``, the content of array parameters by digest;
``custom_id``, true when the class overrides ``generate_id``; and ``origin``,
the file the parameters were imported from while they are not trusted.

Trust: values that came from another file stay data. Parameters whose
document has an ``origin`` are decoded without importing anything (functions
and classes they name stay :class:`~runstore.encoding.FunctionRef` /
:class:`~runstore.encoding.ObjectRef`), even when the run's class is here, and
such a run whose parameters name code is not computed
(:class:`~runstore.errors.UntrustedCodeError`); adding the run with one's own
code replaces the document, vouching for the parameters.
"""

from __future__ import annotations

import base64
import hashlib
import html
import inspect
import itertools
import json
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from .encoding import (
    FunctionRef,
    Indexed,
    ObjectRef,
    canonical_json,
    check_name,
    decode,
    encode,
    indexed,
    short_repr,
)
from .errors import (DecodingError, ParameterError, RunError, RunNotFound, RunstoreError,
                     UntrustedCodeError)
from .identity import RunIds, encode_parameters, run_id, run_id_of_pairs, type_name
from .interfaces import IRun, implementer
from .lazy import LazyArray, ResultArrays
from .results import encode_result
from .schema import RunState
from .store import Completion, RunRow
from .summary import shown_short, summary

if TYPE_CHECKING:
    from .batch import Batch

__all__ = ["Run", "ResultRun", "convert_run_to_newstyle"]

_UNSET = object()
_DONE, _FAILED = RunState.DONE, RunState.FAILED


_SIGNATURES: dict[type, tuple[dict[str, Any], bool]] = {}
_FINGERPRINTS: dict[type, str] = {}
#: The parameter names of each run class's signature, in its order.
_ORDERS: dict[type, list[str]] = {}


def signature_defaults(cls: type[Run]) -> tuple[dict[str, Any], bool]:
    """The parameters of ``cls.run`` with their defaults, and whether it takes ``**kwargs``."""
    found = _SIGNATURES.get(cls)
    if found is None:
        found = _SIGNATURES[cls] = _signature_defaults(cls)
    return found


def _signature_defaults(cls: type[Run]) -> tuple[dict[str, Any], bool]:
    sig = inspect.signature(cls.run)
    defaults: dict[str, Any] = {}
    var_kw = False
    for name, p in list(sig.parameters.items())[1:]:  # skip self
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            defaults[name] = None if p.default is p.empty else p.default
    return defaults, var_kw


def _signature_order(cls: type[Run]) -> list[str]:
    """The parameter names of ``cls.run`` in the order of its signature (kept per class)."""
    order = _ORDERS.get(cls)
    if order is None:
        order = _ORDERS[cls] = list(signature_defaults(cls)[0])
    return order


def _in_signature_order(cls: type[Run], public: dict[str, Any]) -> dict[str, Any]:
    """The parameters in the order of the signature of ``cls.run``, then the others.

    Most often they are in that order already (the document sorts them by
    name, and signatures often do too): then they are returned as they are.
    """
    order = _signature_order(cls)
    if list(public) == order:
        return public
    return {**{k: public[k] for k in order if k in public}, **public}


def code_fingerprint(cls: type[Run]) -> str:
    """A digest of the run class's source (or bytecode), to notice code changes."""
    found = _FINGERPRINTS.get(cls)
    if found is None:
        try:
            text = inspect.getsource(cls).encode()
        except (OSError, TypeError):
            code = cls.run.__code__
            text = code.co_code + repr(code.co_consts).encode()
        found = _FINGERPRINTS[cls] = hashlib.blake2b(text, digest_size=8).hexdigest()
    return found


#: Encodings of parameter values met in one add call: (name, id(value)) ->
#: (value, canonical JSON of the pair ``[name, value]``, (name, indexed form),
#: whether it holds arrays).
Memo = dict[tuple[str, int], tuple[Any, str, tuple[str, Indexed], bool]]


def pack(cls: type[Run], given: Mapping[str, Any], memo: Memo | None = None
         ) -> tuple[str, str, dict[str, Indexed]]:
    """Return the id, the parameters document and the indexed forms of a run.

    With a ``memo`` (shared by the runs of one factorial design), each
    parameter value is encoded once, and a run's canonical text is assembled
    from the texts of its values: the same text, so the same id.
    """
    return Packer(cls, memo)(given)


class Packer:
    """:func:`pack` for many runs of one class, the work per class done once.

    The class's run type, signature and id function are looked up once, each
    parameter name is checked once, and the hashed text's beginning, which
    names the run type, is hashed once (:class:`~runstore.identity.RunIds`).
    """

    def __init__(self, cls: type[Run], memo: Memo | None = None) -> None:
        self.cls = cls
        self.defaults, self.var_kw = signature_defaults(cls)
        self.memo = memo if cls.generate_id is Run.generate_id else None
        self.run_id = RunIds(type_name(cls))
        #: The parameter names checked already (and known to the class).
        self.names: set[str] = set()
        #: The sorted names of a run given no names beyond the defaults.
        self.order = sorted(self.defaults)

    def __call__(self, given: Mapping[str, Any]) -> tuple[str, str, dict[str, Indexed]]:
        names = self.names
        for name in given:
            if type(name) is not str or name not in names:
                self._check(given)
                break
        merged = {**self.defaults, **given}
        if self.memo is not None:
            order = self.order if len(merged) == len(self.order) else sorted(merged)
            fast = self._memoized(self.memo, merged, order)
            if fast is not None:
                return fast
        return _pack_general(self.cls, merged)

    def factorial(self, levels: Mapping[str, Sequence[Any]]
                  ) -> Iterator[tuple[str, str, dict[str, Indexed]]] | None:
        """What this packer gives for every combination of the levels, in the
        order of ``itertools.product`` (the last parameter varying fastest).

        Each level is encoded once and each run's text assembled from the
        texts of its levels, as :meth:`__call__` does with its memo, without
        a dict per run. None when this way does not apply (custom ids,
        private or array parameters, no runs, or a name or value that is
        refused: then each run is packed in turn, which raises the same error
        at the same run as ever).
        """
        memo = self.memo
        if memo is None or not all(levels.values()):
            return None
        try:
            self._check(levels)
            constant = {name: value for name, value in self.defaults.items()
                        if name not in levels}
            order = sorted([*levels, *constant])
            if any(name.startswith("_") for name in order):
                return None
            choices = [[self._level(memo, name, value) for value in values]
                       for name, values in levels.items()]
            choices += [[self._level(memo, name, value)] for name, value in constant.items()]
        except Exception:  # noqa: BLE001 (run by run, the same error is raised where it was)
            return None
        if any(level[3] for values in choices for level in values):
            return None  # array contents go into the document: the general path
        given_order = [*levels, *constant]
        positions = [given_order.index(name) for name in order]
        pick = None if positions == list(range(len(order))) else itemgetter(*positions)
        return self._combinations(choices, pick)

    def _level(self, memo: Memo, name: str, value: Any
               ) -> tuple[Any, str, tuple[str, Indexed], bool]:
        """The memo's entry of one parameter value (made if new)."""
        known = memo.get((name, id(value)))
        if known is None:
            arrays: dict[str, np.ndarray] = {}
            tree = encode(value, f"parameter {name!r}", arrays)
            known = memo[(name, id(value))] = (
                value, f"[{canonical_json(name)},{canonical_json(tree)}]",
                (name, indexed(tree)), bool(arrays))
        return known

    def _combinations(self, choices: list[list[tuple[Any, str, tuple[str, Indexed], bool]]],
                      pick: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None
                      ) -> Iterator[tuple[str, str, dict[str, Indexed]]]:
        run_id = self.run_id
        for combo in itertools.product(*choices):
            ordered = combo if pick is None else pick(combo)
            pairs = "[" + ",".join([level[1] for level in ordered]) + "]"
            yield (run_id(pairs), f'{{"values":{pairs}}}',
                   dict([level[2] for level in ordered]))

    def _check(self, given: Mapping[str, Any]) -> None:
        """Check the names of a run (the first time they are met)."""
        for name in given:
            check_name(name, f"the parameter name {short_repr(name)}")
        unknown = [name for name in given if name not in self.defaults and not self.var_kw]
        if unknown:
            raise ParameterError(type_name(self.cls), unknown, list(self.defaults))
        self.names.update(given)

    def _memoized(self, memo: Memo, merged: dict[str, Any], order: list[str]
                  ) -> tuple[str, str, dict[str, Indexed]] | None:
        """The common case of :func:`pack`, or None when it does not apply."""
        parts: list[str] = []
        forms: dict[str, Indexed] = {}
        for name in order:
            if name.startswith("_"):
                return None  # private parameters go into the document: the general path
            value = merged[name]
            known = memo.get((name, id(value))) or self._level(memo, name, value)
            if known[3]:
                return None  # array contents go into the document: the general path
            parts.append(known[1])
            forms[name] = known[2][1]
        pairs = "[" + ",".join(parts) + "]"
        return self.run_id(pairs), f'{{"values":{pairs}}}', forms


def _pack_general(cls: type[Run], merged: dict[str, Any]
                  ) -> tuple[str, str, dict[str, Indexed]]:
    """:func:`pack` of any run: private and array parameters, custom ids."""
    public = {k: v for k, v in merged.items() if not k.startswith("_")}
    private = {k: v for k, v in merged.items() if k.startswith("_")}
    arrays: dict[str, np.ndarray] = {}
    encoded = encode_parameters(public, arrays)
    pairs = canonical_json([[k, encoded[k]] for k in sorted(encoded)])
    if cls.generate_id is Run.generate_id:
        rid = run_id_of_pairs(type_name(cls), pairs)
    else:
        rid = cls.__new__(cls).generate_id(public)
        if not (isinstance(rid, str) and len(rid) == 40
                and all(c in "0123456789abcdef" for c in rid)):
            raise RunError(f"{type_name(cls)}.generate_id returned {rid!r}; it must "
                           "return 40 lowercase hexadecimal digits")
    custom_id = cls.generate_id is not Run.generate_id
    if not private and not arrays and not custom_id:  # the common case: one serialization
        forms = {name: indexed(tree) for name, tree in encoded.items()}
        return rid, f'{{"values":{pairs}}}', forms
    document: dict[str, Any] = {"values": [[k, encoded[k]] for k in sorted(encoded)]}
    if custom_id:  # `check` cannot recompute such an id from the stored values
        document["custom_id"] = True
    if private:
        document["private"] = [[k, encode(v, f"parameter {k!r}", arrays)]
                               for k, v in sorted(private.items())]
    if arrays:
        document["arrays"] = array_documents(arrays)
    forms = {name: indexed(tree) for name, tree in encoded.items()}
    return rid, canonical_json(document), forms


def array_documents(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """The ``arrays`` entry of a parameters document: array parameters by digest."""
    return {digest: {"dtype": a.dtype.str, "shape": list(a.shape),
                     "data": base64.b64encode(a.tobytes()).decode("ascii")}
            for digest, a in arrays.items()}


def unpack(document: str, import_code: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the public and private parameters from a parameters document.

    A document with an ``origin`` (imported, not trusted) is decoded without
    importing code, whatever ``import_code`` says.
    """
    try:
        data = _parse(document)
        plain = _plain_document(data)
        if plain is not None:  # the common document: no decoding, nothing private
            return plain, {}
        arrays = {
            digest: np.frombuffer(base64.b64decode(spec["data"]), dtype=np.dtype(spec["dtype"])
                                  ).reshape(spec["shape"]).copy()
            for digest, spec in data.get("arrays", {}).items()}
        values, hidden = data["values"], data.get("private", [])
        pairs = [(str(k), v) for k, v in values], [(str(k), v) for k, v in hidden]
        import_code = import_code and data.get("origin") is None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DecodingError("parameters", f"a malformed parameters document ({exc!r})"
                            ) from exc
    # Plain values are their own trees: no decoding, nor its error path's text.
    public = {k: v if v is None or type(v) in _PLAIN_TREES
              else decode(v, arrays, import_code, f"parameter {k!r}") for k, v in pairs[0]}
    private = {k: decode(v, arrays, import_code, f"parameter {k!r}") for k, v in pairs[1]}
    return public, private


#: The types of JSON values that decode as themselves (floats are checked).
_PLAIN_TREES = (bool, int, str)


_DECODER = json.JSONDecoder()


def _parse(document: str) -> Any:
    """``json.loads(document)``, without its search for trailing whitespace in
    the usual case of a document that has none (the store's are canonical)."""
    try:
        data, end = _DECODER.raw_decode(document)
        if end == len(document):
            return data
    except Exception:  # noqa: BLE001 (json.loads says what is wrong, in its words)
        pass
    return json.loads(document)


def _plain_document(data: Any) -> dict[str, Any] | None:
    """The public parameters of a parsed document that holds nothing but plain
    values (``{"values": [[name, value], ...]}``, each value None, a bool, an int
    or a string), or None for any other document, which :func:`unpack` decodes
    in full. What it gives is what decoding gives: these values are their own
    trees."""
    if type(data) is not dict or len(data) != 1:
        return None
    values = data.get("values")
    if type(values) is not list:
        return None
    public: dict[str, Any] = {}
    plain = _PLAIN_TREES
    for pair in values:
        if type(pair) is not list or len(pair) != 2:
            return None
        name, value = pair
        if type(name) is not str or (value is not None and type(value) not in plain):
            return None
        public[name] = value
    return public


def document_origin(document: str) -> str | None:
    """The file a parameters document was imported from, if it is not trusted."""
    if '"origin"' not in document:  # the canonical text of such a document has this key
        return None
    try:
        origin = json.loads(document).get("origin")
    except (ValueError, AttributeError):
        return None
    return None if origin is None else str(origin)


def with_origin(document: str, origin: str | None) -> str:
    """A parameters document marked as imported from ``origin`` (None: trusted)."""
    data = json.loads(document)
    data.pop("origin", None)
    if origin is not None:
        data["origin"] = origin
    return canonical_json(data)


def named_code(value: Any) -> list[str]:
    """The functions and classes a decoded value names without having imported them."""
    if isinstance(value, FunctionRef):
        return [value.name]
    if isinstance(value, ObjectRef):
        return [value.class_name, *named_code(value.state)]
    if isinstance(value, dict):
        return [name for item in value.items() for name in named_code(item)]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [name for item in value for name in named_code(item)]
    if hasattr(value, "__dict__") and not isinstance(value, type):  # containers
        return named_code(vars(value))
    return []


def plain_parameters(cls: type[Run], document: str, forms: Mapping[str, Indexed]
                     ) -> dict[str, Any] | None:
    """The parameters a run's document decodes to, read off their indexed forms.

    For a run just packed in this process: when its document holds only
    public values (no private or array parameters, no custom id, no origin)
    and each of them is plain (None, a bool, a 64-bit int or a string), its
    values are their own trees, so their indexed forms hold them, and this
    gives what :func:`unpack` gives, in the order of the signature, without
    parsing the document. None for any other run.
    """
    if not document.startswith('{"values":'):  # the other keys sort before it
        return None
    order = _signature_order(cls)
    if len(order) != len(forms):
        return None
    public: dict[str, Any] = {}
    for name in order:
        form = forms.get(name)
        if form is None:
            return None
        kind = form.kind
        if kind == "int" and type(form.number) is int:
            public[name] = form.number
        elif kind == "text":
            public[name] = form.text
        elif kind == "bool":
            public[name] = form.canonical == "true"
        elif kind == "null":
            public[name] = None
        else:
            return None
    return public


def _parameters_to_compute(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters to compute a run with; refuse untrusted ones that name code."""
    public, private = run._unpacked()
    origin = document_origin(run._document)
    if origin is not None:
        names = named_code([public, private])
        if names:
            raise UntrustedCodeError(run.id, origin, sorted(set(names)))
    return public, private


@implementer(IRun)
class Run:
    """A calculation: subclass it and write ``run(self, **parameters)``.

    The parameters of ``run`` and their defaults define the run; inside
    ``run``, ``self.parameters`` holds them. Runs are normally made by
    :meth:`runstore.Batch.add_run`; ``Run(A=1)`` makes one without a batch,
    which computes in memory when called. ``index`` is the run's position in
    its batch. Parameters whose names start with ``_`` are passed to ``run``
    but are neither in :attr:`parameters` nor in the id.
    """

    #: The name that identifies the run type in ids; defaults to module.Class.
    __runstore_name__: str | None = None

    index: int | None

    def __init__(self, batch: Batch | None = None, saveresult: bool = True,
                 **parameters: Any) -> None:
        if batch is not None:
            added = batch.add_run(type(self), parameters)
            self._init(batch, added.index, added.id, added._document, None)
        else:
            rid, document, _ = pack(type(self), parameters)
            self._init(None, None, rid, document, None)

    def _init(self, batch: Batch | None, index: int | None, rid: str, document: str,
              state: str | None) -> None:
        self._batch = batch
        self.index = index
        self._id = rid
        self._document = document
        self._values: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._state = state
        self._result: Any = _UNSET

    @classmethod
    def _from_row(cls, batch: Batch | None, index: int, rid: str, document: str,
                  state: str) -> Run:
        run = cls.__new__(cls)
        run._init(batch, index, rid, document, state)
        return run

    # -- what the user writes ---------------------------------------------------------

    def run(self, **parameters: Any) -> Any:
        """Compute and return the result. Override this in a subclass."""
        raise NotImplementedError(
            f"{type(self).__name__} must define run(self, ...) returning the result")

    def generate_id(self, parameters: Mapping[str, Any]) -> str:
        """Return the id of a run of this class with these parameters.

        The default is the canonical run id (see the explanation page). An
        override must return 40 lowercase hexadecimal digits, and must give
        different ids to runs that differ.
        """
        return run_id(type_name(type(self)), encode_parameters(parameters))

    # -- properties -------------------------------------------------------------------

    # The run class is present, so its own code may be imported: for parameters
    # and results that came from another file only if the user trusted them.
    _import_code = True

    def _unpacked(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._values is None:
            public, private = unpack(self._document, import_code=self._import_code)
            if self._import_code:  # the class is here: show its signature's order
                public = _in_signature_order(type(self), public)
            self._values = public, private
        return self._values

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters that define the run."""
        return self._unpacked()[0]

    @property
    def id(self) -> str:
        """The 40-hex run id."""
        return self._id

    @property
    def state(self) -> str:
        """``'pending'``, ``'running'``, ``'done'`` or ``'failed'``."""
        if self._state != RunState.DONE.value and self._batch is not None:
            self._state = self._batch.store.states([self._id]).get(self._id, self._state)
        elif self._batch is None and self._state is None:
            self._state = RunState.PENDING.value
        return self._state or RunState.PENDING.value

    @property
    def done(self) -> bool:
        """Whether a result is stored.

        Setting it to False forgets the result, as :meth:`clear` does;
        setting it to True is refused unless the run is done (compute it:
        call the run, or the batch).
        """
        return self.state == RunState.DONE.value

    @done.setter
    def done(self, value: bool) -> None:
        if not value:
            self.clear()
        elif not self.done:
            raise RunError(
                f"run {self._id} has no result ({self.state}), so it cannot be marked "
                "done: compute it (run() or batch()) to store its result")

    def load(self) -> Any:
        """Return the stored result (arrays loaded); None if the run is not done.

        batchpy's name for :attr:`result`: nothing is computed.
        """
        return self.result

    def _key(self) -> tuple[Any, ...]:
        """What makes two run objects the same run: its batch (store and name) and id."""
        batch = self._batch
        return (None if batch is None else batch._identity(), self._id)

    def __eq__(self, other: object) -> bool:
        """The same run of the same batch (one store, one batch name, one id)."""
        if not isinstance(other, Run):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._id)

    @property
    def result(self) -> Any:
        """The result (arrays loaded), read on first access; None if not done.

        A dict result is a :class:`~runstore.summary.ResultDict`: the same
        dict, printed with its large arrays summarised (dtype, shape, range
        and a few values) instead of in full.
        """
        if self._result is _UNSET:
            if not self.done or self._batch is None:
                return None
            self._result = shown_short(self._batch._load_result(self))
        return self._result

    @property
    def arrays(self) -> Mapping[str, LazyArray]:
        """The arrays of the result by key path (``"field"``, ``"fields/E"``), unread.

        Each is a :class:`~runstore.lazy.LazyArray` with ``shape``, ``dtype``
        and ``ndim``; indexing it reads only what the index touches from the
        side file (``run.arrays["field"][:, 0]`` of a 2 GB array reads one
        column), and ``.read()`` reads it whole, checked against its CRC-32.
        Keys are the names the side file uses: ``/`` joins nested keys, a
        result that is not a mapping is under ``value`` (see the layout in
        the explanation). Empty if the run is not done or has no arrays.
        """
        if not self.done or self._batch is None:
            return ResultArrays({})
        return self._batch._result_arrays(self)

    def _record(self) -> dict[str, Any]:
        if self._batch is None:
            return {}
        return self._batch.store.run_record(self._id)

    @property
    def runtime(self) -> float | None:
        """Seconds the computation took (monotonic clock), or None."""
        return self._record().get("runtime")

    @property
    def filename(self) -> str | None:
        """The HDF5 side file holding the run's arrays; None if it has none."""
        name = self._record().get("array_file")
        if name is None or self._batch is None:
            return None
        return str(self._batch.store.arrays.path(name))

    @property
    def error(self) -> str | None:
        """The traceback of the error, for a failed run."""
        return self._record().get("traceback")

    @property
    def provenance(self) -> dict[str, Any]:
        """Where, when and by what the result was computed."""
        record = self._record()
        keys = ("started_at", "finished_at", "runtime", "host", "pid",
                "runstore_version", "python_version", "code_fingerprint", "attempts")
        return {k: record.get(k) for k in keys}

    # -- actions ------------------------------------------------------------------------

    def __call__(self) -> Any:
        """Compute the result, or load it if already done, and return it."""
        if self._batch is None:
            if self._result is _UNSET:
                public, private = self._unpacked()
                self._result = self.run(**public, **private)
            return self._result
        if not self.done:
            self._batch._execute([self])
        self._state = None
        return self.result

    def clear(self) -> bool:
        """Forget the stored result (or error); the run becomes pending again.

        Returns whether there was a result or error to forget (as batchpy's
        ``clear`` returned whether it deleted a result file).
        """
        forgot = self._result is not _UNSET
        if self._batch is not None:
            forgot = self._batch.store.reset([self._id], [RunState.DONE, RunState.FAILED]) > 0
        self._result = _UNSET
        self._state = None
        return forgot

    def _repr_html_(self) -> str:
        """In Jupyter: the run's state, parameters, result (large arrays summarised) or error."""
        state = self.state
        rows = [("id", _cell(self._id)), ("state", _cell(state))]
        try:
            rows += [(f"parameter {k}", _cell(summary(v))) for k, v in self.parameters.items()]
            if state == RunState.DONE.value:
                rows += _result_rows(self.result)
        except RunstoreError as exc:  # shown, not raised: the table is for looking
            rows.append(("cannot be loaded", _cell(str(exc))))
        if state == RunState.FAILED.value:
            rows += _error_rows(self._record())
        body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
        return f"<p><b>{html.escape(type(self).__name__)}</b></p><table>{body}</table>"

    def __repr__(self) -> str:
        index = "" if self.index is None else f"#{self.index} "
        return f"<{type(self).__name__} {index}{self._id[:12]} {self.state}>"


class ResultRun(Run):
    """A stored run whose class is not defined here: results only.

    Parameters and results load without importing any code: functions come
    back as :class:`~runstore.encoding.FunctionRef`, objects of user classes as
    :class:`~runstore.encoding.ObjectRef`.
    """

    _import_code = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RunError("ResultRuns come from a store: use Batch.add_resultrun(ids)")

    def run(self, **parameters: Any) -> Any:
        raise RunError(
            f"run {self._id} is a ResultRun: its class is not defined here, so it "
            "cannot be computed. Define or import the run class and add the run with "
            "Batch.add_run to compute it.")



def _cell(text: str) -> str:
    """Text for a table cell, escaped; several lines kept as lines."""
    if "\n" in text:
        return f'<pre style="margin: 0">{html.escape(text)}</pre>'
    return html.escape(text)


def _result_rows(result: Any) -> list[tuple[str, str]]:
    """The rows of a result: one per key of a dict, else one; large arrays summarised."""
    if isinstance(result, dict):
        return [(f"result {k}", _cell(summary(v))) for k, v in result.items()]
    return [("result", _cell(summary(result)))]


def _error_rows(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rows of a failed run's error: type and message, and the traceback folded."""
    rows = [("error", _cell(f"{record.get('error_type') or 'error'}: "
                            f"{record.get('error_message') or ''}"))]
    trace = record.get("traceback")
    if trace:
        lines = trace.rstrip().count("\n") + 1
        rows.append(("traceback", f"<details><summary>{lines} lines</summary>"
                                  f'<pre style="margin: 0">{html.escape(trace)}</pre>'
                                  "</details>"))
    return rows


def compute(cls: type[Run], row: RunRow, allow_pickle: bool,
            batch: Batch | None = None, public: dict[str, Any] | None = None
            ) -> Completion:
    """Compute one claimed run and encode its outcome (in any process).

    An exception from ``run`` or from encoding its result becomes a FAILED
    outcome with the error and its traceback; the caller goes on. The result
    is checked fully while it is encoded (see
    :func:`runstore.results.encode_result`), so that everything the store
    writes for it can be written: a bad result fails its own run only. Error
    texts keep characters UTF-8 cannot encode as backslash escapes.

    ``public``, when given, is what the run's document decodes to (see
    :func:`plain_parameters`): the run is computed with it, without decoding.
    """
    run = cls._from_row(batch, row.position, row.id, row.parameters, row.state)
    started_at, t0 = time.time(), time.perf_counter()
    try:
        if public is None:
            public, private = _parameters_to_compute(run)
        else:
            private = {}
            run._values = public, private
        result = run.run(**public, **private)
        runtime = time.perf_counter() - t0
        encoded = encode_result(result, allow_pickle=allow_pickle)
    except Exception as exc:
        return Completion(
            row.id, row.key, _FAILED, error_type=storable_text(type(exc).__qualname__),
            error_message=storable_text(_message(exc)),
            traceback=storable_text(traceback.format_exc()),
            started_at=started_at, finished_at=time.time(),
            runtime=time.perf_counter() - t0, code_fingerprint=code_fingerprint(cls))
    # The side file records the run's type and parameters beside its arrays.
    arrays = bool(encoded.arrays)
    return Completion(
        row.id, row.key, _DONE, result_json=encoded.json, scalars=encoded.scalars,
        arrays=encoded.arrays, started_at=started_at, finished_at=time.time(),
        runtime=runtime, code_fingerprint=code_fingerprint(cls),
        run_type=row.run_type if arrays else None,
        parameters=row.parameters if arrays else None,
        checksums=encoded.checksums if arrays else None)


def _message(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception cannot print itself."""
    try:
        return str(exc)
    except Exception as failed:  # the run's own exception class is broken
        return f"<{type(exc).__qualname__} whose str() raised {type(failed).__qualname__}>"


def storable_text(text: str) -> str:
    """The text with characters UTF-8 cannot encode (lone surrogates) backslash-escaped."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def convert_run_to_newstyle(run: Run) -> Run:
    """batchpy's upgrade of a result file to one that records its parameters.

    runstore stores every run with its parameters, so there is nothing to
    convert: this checks that the run is in its store (``RunNotFound`` if
    not) and returns it. Kept so that batchpy scripts calling it run as
    they are.
    """
    batch = run._batch
    if batch is not None and run.id not in batch.store.states([run.id]):
        raise RunNotFound(run.id, batch.store.path)
    return run
