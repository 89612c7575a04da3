"""Dataset rows as JSON: an exact round trip for any row `datasets` yields, and a stable key per training example.

The replay bank holds dataset rows and is saved in every checkpoint; a row with a datetime, bytes, Decimal, tuple or
numpy value must come back as it was, or a resumed run trains on different data. Plain JSON values pass through;
the others become `{"__vcrl_type__": name, ...}` objects.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import hashlib
import json
from typing import Any

TAG = "__vcrl_type__"
_TIME_TYPES = {"datetime": datetime.datetime, "date": datetime.date, "time": datetime.time}


def encode(value: Any, path: str = "row") -> Any:
    """`value` as plain JSON values; `path` names the value in errors (e.g. `row['answer'][2]`)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        if TAG in value:
            raise ValueError(f"{path} has a key {TAG!r}, which VCRL reserves to store rows in checkpoints.")
        return {_str_key(k, path): encode(v, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list):
        return [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, (bytes, bytearray)):
        return {TAG: type(value).__name__, "base64": base64.b64encode(value).decode()}
    for name, time_type in _TIME_TYPES.items():  # datetime before date: a datetime is a date
        if type(value) is time_type:
            return {TAG: name, "iso": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {TAG: "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "text": str(value)}
    if type(value).__module__ == "numpy":
        if hasattr(value, "shape") and value.shape != ():
            return {TAG: "ndarray", "dtype": str(value.dtype), "items": encode(value.tolist(), path)}
        return {TAG: "numpy_scalar", "dtype": str(value.dtype), "value": encode(value.item(), path)}
    raise TypeError(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which VCRL cannot store in a checkpoint "
        f"(allowed: JSON values, tuples, bytes, datetime/date/time/timedelta, Decimal, numpy arrays and scalars)."
    )


def decode(value: Any) -> Any:
    """The inverse of `encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(TAG)
    if kind is None:
        return {k: decode(v) for k, v in value.items()}
    if kind == "tuple":
        return tuple(decode(v) for v in value["items"])
    if kind in ("bytes", "bytearray"):
        data = base64.b64decode(value["base64"])
        return data if kind == "bytes" else bytearray(data)
    if kind in _TIME_TYPES:
        return _TIME_TYPES[kind].fromisoformat(value["iso"])
    if kind == "timedelta":
        return datetime.timedelta(seconds=value["seconds"])
    if kind == "decimal":
        return decimal.Decimal(value["text"])
    import numpy as np  # only rows that held numpy values need it

    if kind == "ndarray":
        return np.array(decode(value["items"]), dtype=value["dtype"])
    if kind == "numpy_scalar":
        return np.dtype(value["dtype"]).type(decode(value["value"]))
    raise ValueError(f"Unknown stored row value type {kind!r}.")


def row_key(row: dict[str, Any]) -> str:
    """Stable key of a training example: a hash of the whole row, so rows that share a prompt but differ in any
    other column (e.g. the answer) stay distinct, and a dataset needs no particular column."""
    text = json.dumps(encode(row), sort_keys=True, ensure_ascii=False, allow_nan=True)
    return hashlib.sha1(text.encode()).hexdigest()


def _str_key(key: Any, path: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"{path} has a non-string key {key!r}; VCRL stores rows as JSON objects.")
    return key
