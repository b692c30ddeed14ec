"""Fast construction of frozen values (detectors/values.py): the same values, still frozen."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from detectors import account, decisions, device, events, messages, policy, reporters
from detectors.values import constructor, fast_init

FAST_MODULES = (account, decisions, device, events, messages, policy, reporters)
FAST_CLASSES = sorted(
    {cls for module in FAST_MODULES for cls in vars(module).values()
     if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__},
    key=lambda cls: cls.__qualname__)


@dataclasses.dataclass(frozen=True, slots=True)
class Plain:
    """What the dataclass machinery generates, to compare against."""

    name: str
    count: int = 1
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = dataclasses.field(default_factory=dict)
    hidden: bool = dataclasses.field(default=False, compare=False)


Fast = fast_init(dataclasses.dataclass(frozen=True, slots=True)(
    type("Fast", (), {"__annotations__": dict(Plain.__annotations__),
                      "count": 1, "tags": (), "extra": dataclasses.field(default_factory=dict),
                      "hidden": dataclasses.field(default=False, compare=False)})))


@pytest.mark.parametrize("cls", FAST_CLASSES, ids=lambda cls: cls.__qualname__)
def test_every_frozen_value_of_the_core_gets_the_fast_init_with_the_dataclass_signature(cls):
    assert cls.__init__.__code__.co_filename == "<string>"
    assert "_set_" in " ".join(cls.__init__.__code__.co_names)
    generated = dataclasses.dataclass(frozen=True, slots=True)(
        type(cls.__name__, (), {"__annotations__": cls.__annotations__,
                                **{f.name: f for f in dataclasses.fields(cls)}}))
    assert inspect.signature(cls.__init__) == inspect.signature(generated.__init__)


def test_fast_init_builds_what_the_dataclass_init_builds():
    cases = [((), {"name": "a"}), (("a", 2), {}), (("a",), {"tags": ("x",), "count": 3}),
             (("a", 2, ("x",), {"k": 1}, True), {})]
    for args, kwargs in cases:
        fast, plain = Fast(*args, **kwargs), Plain(*args, **kwargs)
        assert [getattr(fast, f.name) for f in dataclasses.fields(Fast)] == \
               [getattr(plain, f.name) for f in dataclasses.fields(Plain)]
        assert fast == Fast(*args, **kwargs) and fast != Fast("other")
        assert dataclasses.replace(fast, count=9).count == 9


def test_default_factories_give_each_value_its_own():
    assert Fast("a").extra == {} and Fast("a").extra is not Fast("b").extra


def test_fast_values_stay_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Fast("a").count = 2  # type: ignore[misc]


def test_fast_init_refuses_what_it_cannot_copy():
    with pytest.raises(TypeError):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast("a", nope=1)  # type: ignore[call-arg]


def test_constructor_and_init_agree_on_value_and_hash():
    make = constructor(messages.LiftDue)
    built = messages.LiftDue("m", 5, "acct")
    assert make("m", 5, "acct") == built and hash(make("m", 5, "acct")) == hash(built)
