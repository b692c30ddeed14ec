"""Secrets never reach a log line or a response, even at debug level (issue #6, Security): a
worker with an operator token and a Redis password (its own redis-server with requirepass),
asked with the right token, wrong ones and none, fed an input whose id tries to forge a log
line. Its whole log and its /health and /metrics bodies contain none of the secrets, and no
line starts with the forged text."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid

import orjson
from harness import TopicReader, free_port, produce, running_worker, wait_for
from redis import Redis

TOKEN = f"op-token-{uuid.uuid4().hex}"
REDIS_PASSWORD = f"redis-pw-{uuid.uuid4().hex}"
WRONG_TOKEN = f"guess-{uuid.uuid4().hex}"
FORGED = "[ERROR] forged by an input"


def _pings(port: int) -> bool:
    try:
        return bool(Redis(port=port, password=REDIS_PASSWORD, socket_timeout=0.5).ping())
    except Exception:  # not up yet
        return False


def test_tokens_and_passwords_never_appear_in_logs_or_responses(tmp_path, kafka_bootstrap):
    binary = shutil.which("redis-server")
    assert binary, "redis-server is installed by scripts/services.py"
    port = free_port()
    redis_proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--requirepass", REDIS_PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uid = uuid.uuid4().hex[:10]
    env = {"WARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "WARDEN_REDIS_URL": f"redis://127.0.0.1:{port}/0",
           "WARDEN_REDIS_PASSWORD": REDIS_PASSWORD, "WARDEN_OPERATOR_TOKEN": TOKEN,
           "WARDEN_PROTECT_READS": "true", "WARDEN_LOG_LEVEL": "debug",
           "WARDEN_TOPIC_PREFIX": f"{uid}-", "WARDEN_APP_ID": f"w{uid}",
           "WARDEN_REDIS_PREFIX": f"w{uid}", "WARDEN_PARTITIONS": "1",
           "WARDEN_IDLE_ADVANCE": "false"}
    try:
        wait_for(lambda: _pings(port), timeout=20, what="private redis-server with a password")
        with running_worker(tmp_path, env) as worker:
            account = f"x\n{FORGED}\x1b[2J-{uid}"
            signal = {"event_id": f"emu-{uid}", "ts": 1_767_225_600_000, "account_id": account,
                      "device_id": f"d\r\n{FORGED}", "emulator": True}
            asyncio.run(produce(kafka_bootstrap, f"{uid}-", [("device-signals", signal)]))
            reader = TopicReader(kafka_bootstrap, f"{uid}-account-decisions", 1)
            decision = orjson.loads(asyncio.run(reader.read_until(bool, timeout=60))[0])
            assert decision["account_id"] == account

            command = {"account_id": f"op-{uid}", "actor": "op-1", "action": "restrict",
                       "scopes": ["report"], "duration_ms": 3_600_000}
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert worker.http("/commands", method="POST", body=command)[0] == 401
            assert worker.http("/commands", method="POST", body=command,
                               headers={"Authorization": f"Bearer {WRONG_TOKEN}"})[0] == 403
            assert worker.http("/commands", method="POST", body=command,
                               headers={**bearer, "Origin": "http://evil.example"})[0] == 403
            assert worker.http("/commands", method="POST", body=command, headers=bearer)[0] == 202
            assert worker.http(f"/accounts/op-{uid}")[0] == 401
            assert worker.http(f"/accounts/op-{uid}", headers={
                "Authorization": f"Bearer {WRONG_TOKEN}"})[0] == 403
            wait_for(lambda: worker.http(f"/accounts/op-{uid}", headers=bearer)[1].get("status")
                     == "restricted", timeout=30, what="the operator's restriction projected")
            bodies = [worker.http("/health")[1], worker.http("/metrics")[1],
                      worker.http(f"/accounts/op-{uid}", headers=bearer)[1]]
            log = worker.log_path.read_text(errors="replace")
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
    shown = log + "".join(b.decode(errors="replace") if isinstance(b, bytes)
                          else orjson.dumps(b).decode() for b in bodies)
    for secret in (TOKEN, REDIS_PASSWORD, WRONG_TOKEN):
        assert secret not in shown, f"a secret reached the log or a response: {secret[:8]}…"
    assert len(log.splitlines()) > 50, "debug logging was on"
    assert not [line for line in log.splitlines() if line.startswith(FORGED)]
