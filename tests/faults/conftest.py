"""The fault suite (README "Reliability"): real worker processes against real servers, each
fault injected on a server or process that belongs to the test alone.

Every test here is marked ``integration`` (so ``make test-unit`` skips it, ``make test`` and
``make faults`` run it), and tests/integration's helpers (harness, drain) are importable.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
if str(INTEGRATION) not in sys.path:
    sys.path.insert(0, str(INTEGRATION))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def _services() -> ModuleType:
    """scripts/services.py, the module tests/conftest.py loaded (loaded here if it did not)."""
    module = sys.modules.get("warden_services")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "warden_services", HERE.parents[1] / "scripts" / "services.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A broker of this test module's own (PrivateKafka), free to stop and start again."""
    services = _services()
    broker = services.PrivateKafka(tmp_path_factory.mktemp("kafka"), services.free_port_pair())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
