"""bench/values.py compares like with like: both ways give the same values and bytes."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

from detectors import codec

_PATH = Path(__file__).resolve().parents[2] / "bench" / "values.py"
_spec = importlib.util.spec_from_file_location("bench_values", _PATH)
assert _spec is not None and _spec.loader is not None
values = importlib.util.module_from_spec(_spec)
sys.modules["bench_values"] = values
_spec.loader.exec_module(values)


def fields_of(value):
    return [getattr(value, f.name) for f in dataclasses.fields(value)]


def test_the_generic_and_the_unrolled_codec_agree_on_the_benched_message():
    raw = codec.encode_message(values.USE)
    assert values.generic_encode(values.USE) == raw
    assert fields_of(values.generic_decode(raw)) == fields_of(codec.decode_message(raw))


def test_the_generated_init_builds_the_same_fields_as_the_fast_one():
    assert fields_of(values.Generated(*values.FIELDS)) == fields_of(values.USE)
    assert values.Generated.__init__ is not type(values.USE).__init__
