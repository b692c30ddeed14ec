"""Redis stops answering mid-run (frozen with SIGSTOP for 20 s, like a network partition): the
worker keeps consuming, reports unhealthy, retries with backoff, and once Redis answers again
every decision of the log is in the read model. Uses its own redis-server on a free port, so
other tests are unaffected."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
import uuid

import orjson
import pytest
from drain import metrics_text
from harness import TopicReader, free_port, produce, running_worker, wait_for
from redis import Redis

from projections.rebuild import current_namespace
from projections.redis_view import RedisView
from projections.view import InMemoryView
from streams import simulate

OUTAGE_S = 20


def start_redis(port: int, tmp_path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is installed by scripts/services.py"
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _pings(port), timeout=20, what="private redis-server")
    return proc


def _pings(port: int) -> bool:
    try:
        return bool(Redis(port=port, socket_timeout=0.5).ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


@pytest.mark.integration
def test_a_redis_outage_is_reported_and_caught_up_without_losing_a_decision(
        tmp_path, kafka_bootstrap, redis_url):
    port = free_port()
    redis_proc = start_redis(port, tmp_path)
    uid = uuid.uuid4().hex[:10]
    url = f"redis://127.0.0.1:{port}/0"
    env = {"WARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap, "WARDEN_REDIS_URL": url,
           "WARDEN_TOPIC_PREFIX": f"{uid}-", "WARDEN_APP_ID": f"w{uid}",
           "WARDEN_REDIS_PREFIX": f"w{uid}", "WARDEN_PARTITIONS": "2",
           "WARDEN_IDLE_ADVANCE": "false"}
    workload = list(simulate.generate(accounts=200, events=3000, seed=31, days=3))
    half = len(workload) // 2
    try:
        with running_worker(tmp_path, env) as worker:
            asyncio.run(produce(kafka_bootstrap, f"{uid}-", workload[:half], rate=500))
            redis_proc.send_signal(signal.SIGSTOP)
            down_at = time.monotonic()
            # Traffic keeps coming while Redis is down; the worker must not crash.
            asyncio.run(produce(kafka_bootstrap, f"{uid}-", workload[half:], rate=500))
            wait_for(lambda: worker.http("/health")[0] == 503, timeout=30,
                     what="/health reporting the outage")
            status, body = worker.http("/health")
            assert body["redis"] is False and body["redis_error"]
            remaining = OUTAGE_S - (time.monotonic() - down_at)
            if remaining > 0:
                wait_for(lambda: time.monotonic() - down_at >= OUTAGE_S, timeout=OUTAGE_S + 5,
                         what="the outage window")
            assert worker.proc is not None and worker.proc.poll() is None, "worker crashed"
            redis_proc.send_signal(signal.SIGCONT)
            wait_for(lambda: worker.http("/health")[0] == 200, timeout=60,
                     what="/health healthy again")
            reader = TopicReader(kafka_bootstrap, f"{uid}-account-decisions", 2)
            values = asyncio.run(reader.read_until(lambda v: False, timeout=60, quiet_s=8))
            decisions = [orjson.loads(v) for v in values]
            assert len(decisions) > 20

            async def digests() -> tuple[str, str]:
                from redis.asyncio import Redis as AsyncRedis

                client = AsyncRedis.from_url(url)
                try:
                    expected = InMemoryView()
                    await expected.apply(decisions)
                    want = await expected.digest()
                    got = ""
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        namespace = await current_namespace(client, f"w{uid}")
                        got = await RedisView(client, f"w{uid}", namespace).digest()
                        if got == want:
                            break
                        await asyncio.sleep(0.5)
                    return got, want
                finally:
                    await client.aclose()

            got, want = asyncio.run(digests())
            assert got == want, "a decision of the log is missing from Redis after the outage"
            assert "warden_projection_errors_total" in metrics_text(worker)
    finally:
        redis_proc.send_signal(signal.SIGCONT)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
