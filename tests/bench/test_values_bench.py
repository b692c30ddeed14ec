"""bench/values.py compares like with like: both ways give the same values and bytes."""

from __future__ import annotations

import dataclasses

from detectors import codec
from bench_loader import load_bench

values = load_bench("values")


def fields_of(value):
    return [getattr(value, f.name) for f in dataclasses.fields(value)]


def test_the_generic_and_the_unrolled_codec_agree_on_the_benched_message():
    raw = codec.encode_message(values.USE)
    assert values.generic_encode(values.USE) == raw
    assert fields_of(values.generic_decode(raw)) == fields_of(codec.decode_message(raw))


def test_the_generated_init_builds_the_same_fields_as_the_fast_one():
    assert fields_of(values.Generated(*values.FIELDS)) == fields_of(values.USE)
    assert values.Generated.__init__ is not type(values.USE).__init__
