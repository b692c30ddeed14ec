"""Fast construction of frozen, slotted dataclasses for the replay hot path.

A frozen dataclass's `__init__` sets each field with `object.__setattr__`
(a slow, generic call per field) to get past its own `__setattr__`; for the
events decoded from every input line that was a tenth of a replay.
`constructor(cls)` gives a function that builds the same value (same type,
fields, equality and hash) about four times cheaper: it fills an instance of
a plain twin class with the same slots (ordinary, specialised attribute
stores), then moves it to `cls` by `__class__` assignment, which CPython
allows exactly when the two layouts are the same. Every field must be passed
(no defaults run), and the class must have no `__post_init__` (asserted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def constructor(cls: type[T]) -> Callable[..., T]:
    """`cls(*values)` with every field given positionally, without `__init__`."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    slots = cls.__dict__.get("__slots__")
    assert tuple(slots or ()) == tuple(names) and cls.__bases__ == (object,), cls
    assert not hasattr(cls, "__post_init__") and all(f.init for f in fields(cls)), cls  # type: ignore[arg-type]
    twin = type(f"{cls.__name__}Fields", (), {"__slots__": tuple(names)})
    namespace: dict[str, Any] = {"_new": object.__new__, "_twin": twin, "_cls": cls}
    body = "".join(f"    value.{n} = {n}\n" for n in names)
    source = (f"def make({', '.join(names)}):\n    value = _new(_twin)\n{body}"
              "    value.__class__ = _cls\n    return value\n")
    exec(source, namespace)  # unrolled, as dataclasses generate __init__
    make: Callable[..., T] = namespace["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make
