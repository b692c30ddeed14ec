"""Fast construction of frozen, slotted dataclasses for the replay hot path.

A frozen dataclass's `__init__` sets each field through `object.__setattr__`
(a full attribute lookup per field) to get past its own `__setattr__`; that
was a tenth of a replay's time. `constructor(cls)` gives a function that
builds the same value (same type, fields, equality and hash) by writing the
slots through their descriptors: about half the cost. Every field must be
passed (no defaults), and the class must have no `__post_init__` (asserted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def constructor(cls: type[T]) -> Callable[..., T]:
    """`cls(*values)` with every field given positionally, without `__init__`."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    assert "__slots__" in cls.__dict__ and not hasattr(cls, "__post_init__"), cls
    assert all(f.init for f in fields(cls)), cls  # type: ignore[arg-type]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    namespace.update({f"_set_{n}": cls.__dict__[n].__set__ for n in names})
    body = "".join(f"    _set_{n}(value, {n})\n" for n in names)
    source = f"def make({', '.join(names)}):\n    value = _new(_cls)\n{body}    return value\n"
    exec(source, namespace)  # unrolled, as dataclasses generate __init__
    make: Callable[..., T] = namespace["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make
