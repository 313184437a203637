"""Id columns: factorisation, the shared unit-id type and the rules an id must pass.

Id columns are factorised once (``_Ids``: per-row codes into canonical
distinct values) so that every rule runs on the few distinct ids and is
broadcast back by code. Ids end up in SQL identifiers, file paths and
``experiment/arm`` labels, hence the characters refused here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api import types as ptypes

from .columns import _at

CONTROL = "control"
MAX_ID_LENGTH = 200

# Ids end up in SQL identifiers, file paths and "experiment/arm" labels, so
# anything that could quote, escape or separate is refused. Unicode letters
# are fine. C1 controls (0x80-0x9f) are as invisible as C0 ones.
_ID_PROBLEMS = (
    (r"['\"`]", "contains a quote"),
    (r"[/\\]", "contains a slash"),
    (r"\.", "contains a dot"),
    (r";", "contains a semicolon"),
    (r"[\x00-\x1f\x7f-\x9f]", "contains a control character"),
)
_ANY_ID_PROBLEM = "|".join(pattern for pattern, _ in _ID_PROBLEMS)


def _id_problem(text: str) -> str | None:
    if not text.strip():
        return "is empty"
    if len(text) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    return next((problem for pattern, problem in _ID_PROBLEMS if re.search(pattern, text)), None)


def _id_problems(values: np.ndarray, what: str) -> np.ndarray:
    """Reason per distinct id (object array, None where the id is fine); ``values`` are non-NULL str."""
    # Arrow's regex kernels screen millions of ids in C++; only the few
    # suspects are classified in Python.
    text = pa.array(values, type=pa.large_string())
    suspect = pc.or_(pc.match_substring_regex(text, _ANY_ID_PROBLEM),
                     pc.or_(pc.greater(pc.utf8_length(text), MAX_ID_LENGTH),
                            pc.equal(pc.utf8_trim_whitespace(text), "")))
    reasons = np.full(len(values), None, dtype=object)
    for i in np.flatnonzero(suspect.to_numpy(zero_copy_only=False)):
        value = values[i]
        shown = value if len(value) <= 60 else value[:57] + "..."
        reasons[i] = f"invalid {what} {shown!r}: {_id_problem(value)}"
    return reasons


@dataclass
class _Ids:
    """A factorised id column: ``codes`` (rows,) int32 with -1 for NULL, ``uniques`` canonical.

    Codes index the distinct ids, so 4 bytes hold them; arithmetic that
    combines codes into keys casts to int64 first (or adds them to an int64 key).
    """

    codes: np.ndarray
    uniques: np.ndarray  # int64, or object array of str

    def rows(self, per_unique: np.ndarray, fill=-1) -> np.ndarray:
        """Broadcast a per-unique array to rows; NULL rows get ``fill``."""
        return _at(per_unique, self.codes, fill)

    def text(self, rows: np.ndarray) -> np.ndarray:
        """The ids of ``rows`` as str (object array, None for NULL)."""
        codes = self.codes[rows]
        out = np.full(len(rows), None, dtype=object)
        present = codes >= 0
        out[present] = self.uniques[codes[present]].astype(str).astype(object)
        return out


def _factorize(series: pd.Series) -> tuple[np.ndarray, object]:
    """``pd.factorize(series)`` with int32 codes (-1 for NULL): same codes, same uniques, in the same
    first-seen order.

    An Arrow-backed column is dictionary-encoded by Arrow directly, as pandas
    does it, but its int32 indices are kept instead of being widened to int64:
    at 26.5M outcome rows that is 106 MB less per id column, and no transient
    int64 copy.
    """
    code_type = np.int32 if len(series) < np.iinfo(np.int32).max else np.int64
    if isinstance(series.dtype, pd.ArrowDtype) and not pa.types.is_dictionary(series.dtype.pyarrow_dtype):
        data = series.array.__arrow_array__()  # the column's own ChunkedArray, no copy
        encoded = data.dictionary_encode(null_encoding="mask")
        if encoded.length() == 0:
            return np.empty(0, dtype=code_type), pd.array([], dtype=pd.ArrowDtype(encoded.type.value_type))
        combined = encoded.combine_chunks()
        del encoded
        indices = combined.indices
        if indices.null_count > 0:
            indices = pc.fill_null(indices, -1)
        codes = indices.to_numpy(zero_copy_only=False).astype(code_type, copy=True)
        uniques = pd.arrays.ArrowExtensionArray(combined.dictionary)
        del combined, indices
        # Arrow's allocator keeps the hash table's pages (0.3 GB for 8M outcome rows) for reuse.
        pa.default_memory_pool().release_unused()
        return codes, uniques
    codes, uniques = pd.factorize(series)
    return codes.astype(code_type, copy=False), uniques


def _factorize_text_ids(series: pd.Series) -> _Ids:
    codes, uniques = _factorize(series)
    canonical = np.array([v if isinstance(v, str) else str(v) for v in uniques], dtype=object)
    return _Ids(codes, canonical)


def _factorize_unit_ids(series: pd.Series, table: str) -> tuple[_Ids, str]:
    """Factorise a unit_id column; kind is ``"integer"``, ``"string"`` or ``"empty"``."""
    codes, uniques = _factorize(series)
    dtype = series.dtype
    if len(uniques) == 0:
        return _Ids(codes, np.empty(0, dtype=object)), "empty"
    if ptypes.is_bool_dtype(dtype):
        raise ValueError(f"{table}.unit_id must be BIGINT or VARCHAR, got {dtype}")
    if ptypes.is_integer_dtype(dtype):
        return _Ids(codes, uniques.to_numpy(dtype=np.int64)), "integer"
    if ptypes.is_float_dtype(dtype):
        # An integer column with NULLs read without nullable dtypes arrives as float.
        values = uniques.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values) & (values == np.round(values))):
            raise ValueError(f"{table}.unit_id has non-integer float values; ids must be BIGINT or VARCHAR")
        return _Ids(codes, values.astype(np.int64)), "integer"
    inferred = pd.api.types.infer_dtype(uniques, skipna=True)
    if inferred == "string":
        return _Ids(codes, uniques.to_numpy(dtype=object)), "string"
    if inferred == "integer":
        return _Ids(codes, uniques.to_numpy(dtype=np.int64)), "integer"
    raise ValueError(f"{table}.unit_id must be BIGINT or VARCHAR, got values of type {inferred!r}")


def _unit_ids_of_tables(tables: dict[str, pd.DataFrame], known: dict[str, str] | None = None) -> dict[str, _Ids]:
    """Factorise unit_id in every table and check that they share one type, also with the tables of
    ``known`` (name -> kind of :func:`_factorize_unit_ids`, factorised before)."""
    ids, kinds = {}, dict(known or {})
    for name, frame in tables.items():
        ids[name], kinds[name] = _factorize_unit_ids(frame["unit_id"], name)
    used = {k for k in kinds.values() if k != "empty"}
    if len(used) > 1:
        listed = ", ".join(f"{name}: {kind}" for name, kind in kinds.items())
        raise ValueError(f"unit_id must have the same type in every table, got {listed}")
    dtype = np.int64 if used == {"integer"} else object
    for name in tables:
        if kinds[name] == "empty":
            ids[name].uniques = ids[name].uniques.astype(dtype)
    return ids


def _locate(ids: _Ids, index: pd.Index) -> np.ndarray:
    """Row -> position in ``index`` (-1 for NULL or absent)."""
    return ids.rows(index.get_indexer(ids.uniques))
