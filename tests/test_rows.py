"""trl_vcrl.rows: rows stored as JSON come back exactly, and every training example has its own stable key."""

import datetime
import decimal
import json

import numpy as np
import pytest

from trl_vcrl import row_key
from trl_vcrl.rows import TAG, decode, encode


def through_json(value):
    return decode(json.loads(json.dumps(encode(value))))


ODD_VALUES = {
    "datetime": datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=datetime.UTC),
    "naive datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
    "date": datetime.date(2024, 1, 2),
    "time": datetime.time(12, 30, 1, 5),
    "timedelta": datetime.timedelta(days=1, microseconds=3),
    "bytes": b"\x00\xff\x10",
    "bytearray": bytearray(b"ab"),
    "decimal": decimal.Decimal("12345678901234567890.000001"),
    "tuple": (1, "a", (2.5, None)),
    "empty tuple": (),
    "int16 array": np.arange(6, dtype=np.int16).reshape(2, 3),
    "float32 array": np.array([0.1, -2.5], dtype=np.float32),
    "bool array": np.array([True, False]),
    "float32 scalar": np.float32(0.1),
    "int64 scalar": np.int64(-7),
    "bool scalar": np.bool_(True),
    "str array": np.array(["x", "yz"]),
}


@pytest.mark.parametrize("name", ODD_VALUES)
def test_round_trip_keeps_value_and_type(name):
    value = ODD_VALUES[name]
    back = through_json({"prompt": "q", "value": value, "nested": [{"inner": value}]})
    for got in (back["value"], back["nested"][0]["inner"]):
        assert type(got) is type(value)
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and got.shape == value.shape and np.array_equal(got, value)
        else:
            assert got == value
            if isinstance(value, datetime.datetime):
                assert got.tzinfo == value.tzinfo


def test_plain_json_passes_through_unchanged():
    row = {"prompt": [{"role": "user", "content": "2+2?"}], "answer": "4", "score": 0.5, "ok": True, "none": None}
    assert encode(row) == row and through_json(row) == row


@pytest.mark.parametrize(
    "row, error, message",
    [
        ({"tags": {"a"}}, TypeError, r"row\['tags'\] is a builtins.set, which VCRL cannot store in a checkpoint"),
        ({"x": [1, object()]}, TypeError, r"row\['x'\]\[1\] is a builtins.object"),
        ({"x": {1: "a"}}, TypeError, r"row\['x'\] has a non-string key 1"),
        ({"x": {TAG: "tuple"}}, ValueError, r"row\['x'\] has a key '__vcrl_type__', which VCRL reserves"),
    ],
)
def test_unstorable_values_name_their_path(row, error, message):
    with pytest.raises(error, match=message):
        encode(row)


def test_key_is_the_whole_row():
    base = {"prompt": "What is 2 + 2?", "answer": "4"}
    assert row_key(base) == row_key({"answer": "4", "prompt": "What is 2 + 2?"})  # column order does not matter
    assert row_key(base) != row_key({**base, "answer": "5"})  # same prompt, another example
    assert row_key({"question": "no prompt column", "when": datetime.date(2024, 1, 1)})  # any columns work
    assert row_key({"x": (1, 2)}) != row_key({"x": [1, 2]})
    assert row_key({"x": np.float32(0.5)}) != row_key({"x": 0.5})
    assert len(row_key(base)) == 40 and row_key(base) == row_key(dict(base))
