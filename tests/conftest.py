"""Shared fixtures: the real Kafka and Redis that scripts/services.py runs, and unique names.

Tests that use ``kafka_bootstrap`` or ``redis_url`` (or live under tests/integration/) are
marked ``integration`` automatically, so ``pytest -m "not integration"`` needs no services.
If the services cannot start, those tests error; nothing is skipped.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVICE_FIXTURES = frozenset({"kafka_bootstrap", "redis_url"})


def _load_services() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "warden_services", REPO / "scripts" / "services.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


services = _load_services()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    integration_dir = REPO / "tests" / "integration"
    for item in items:
        uses_services = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses_services or integration_dir in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers ("127.0.0.1:PORT") of a real Kafka 4.x broker (started or reused)."""
    info = services.ensure_up(("kafka",))
    _wait_for_group_coordinator(str(info["kafka_bootstrap"]))
    yield str(info["kafka_bootstrap"])
    services.stop_started(info["started"])  # only what this session started


def _wait_for_group_coordinator(bootstrap: str, timeout: float = 60.0) -> None:
    """A freshly formatted broker answers before it can coordinate consumer groups (it still
    creates __consumer_offsets); the first worker then logs GroupCoordinatorNotAvailable at
    ERROR. Tests start once a group's coordinator can be found."""
    import asyncio
    import time

    from aiokafka.admin import AIOKafkaAdminClient

    async def ready() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.list_consumer_group_offsets("warden-tests-warmup")
            return True
        except Exception:  # noqa: BLE001 - not ready yet, whatever the client says
            return False
        finally:
            await admin.close()

    deadline = time.monotonic() + timeout
    while not asyncio.run(ready()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kafka at {bootstrap} coordinates no consumer group after {timeout}s")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL ("redis://127.0.0.1:PORT/0") of a real Redis; use ``unique_id`` for key prefixes."""
    info = services.ensure_up(("redis",))
    yield str(info["redis_url"])
    services.stop_started(info["started"])  # only what this session started


@pytest.fixture
def unique_id() -> str:
    """A short name unique to this test, safe in topic names, app ids and Redis prefixes."""
    return f"t{uuid.uuid4().hex[:12]}"
