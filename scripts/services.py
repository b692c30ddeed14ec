#!/usr/bin/env python3
"""Start and stop the real Kafka (KRaft, single node) and Redis that tests and the demo use.

Every machine starts fresh and has no Docker, so this fetches what it needs from package
registries: the broker's jars from Maven Central (scripts/kafka/pom.xml) and Debian's
redis-server. Stdlib only, so it runs before the venv exists.

    python scripts/services.py up|down|status [kafka|redis]
    python scripts/services.py run -- CMD...   # up, run CMD, stop what this started

Importable: ``ensure_up()`` returns the addresses and what it started; ``stop_started()``
stops only services whose pid files this script wrote. Anything already answering on the
port is reused and never stopped. See docs/CONTRACTS.md for WARDEN_KAFKA_PORT and
WARDEN_REDIS_PORT.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KAFKA_POM = REPO / "scripts" / "kafka" / "pom.xml"
KAFKA_LOG4J = REPO / "scripts" / "kafka" / "log4j2.yaml"
KAFKA_LIBS = REPO / ".cache" / "kafka" / "libs"
KAFKA_RUN = REPO / ".run" / "kafka"
REDIS_RUN = REPO / ".run" / "redis"
HOST = "127.0.0.1"
SERVICES = ("kafka", "redis")

KAFKA_JVM_OPTS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 30.0


class ServiceError(RuntimeError):
    """A service could not be fetched, started or stopped; the message says why."""


def log(msg: str) -> None:
    print(f"[services] {msg}", file=sys.stderr, flush=True)


def kafka_port() -> int:
    return int(os.environ.get("WARDEN_KAFKA_PORT", "9092"))


def redis_port() -> int:
    return int(os.environ.get("WARDEN_REDIS_PORT", "6379"))


def kafka_bootstrap() -> str:
    return f"{HOST}:{kafka_port()}"


def redis_url() -> str:
    return f"redis://{HOST}:{redis_port()}/0"


# ---------------------------------------------------------------- processes


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; reaps it first if it is our own exited child (no zombies)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _our_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process still runs ``marker``; a stale file is removed."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if _alive(pid) and marker in _cmdline(pid):
        return pid
    pidfile.unlink(missing_ok=True)
    return None


def _terminate(pid: int, name: str) -> None:
    """SIGTERM, wait up to STOP_DEADLINE_S, then SIGKILL."""
    started = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = started + STOP_DEADLINE_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            log(f"{name}: stopped pid {pid} in {time.monotonic() - started:.1f}s")
            return
        time.sleep(0.1)
    log(f"{name}: pid {pid} ignored SIGTERM for {STOP_DEADLINE_S:.0f}s; sending SIGKILL")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid):
        time.sleep(0.05)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


def _run(cmd: Sequence[str], what: str, **kwargs: object) -> None:
    """Run ``cmd`` quietly; on failure raise with its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-4000:]
        raise ServiceError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{out}")


_apt_updated = False


def _apt_install(package: str) -> None:
    """Install a Debian package without starting its service (we start our own)."""
    global _apt_updated
    if os.geteuid() != 0:
        raise ServiceError(
            f"{package} is missing and installing it needs root: apt-get install {package}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = False
    if not policy.exists():
        policy.write_text(
            "#!/bin/sh\n# services.py: do not start services during install\nexit 101\n"
        )
        policy.chmod(0o755)
        added_policy = True
    try:
        started = time.monotonic()
        if not _apt_updated:
            _run(["apt-get", "update", "-q"], "apt-get update", env=env)
            _apt_updated = True
        _run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
            f"apt-get install {package}",
            env=env,
            stdin=subprocess.DEVNULL,
        )
        log(f"installed {package} with apt-get in {time.monotonic() - started:.1f}s")
    finally:
        if added_policy:
            policy.unlink(missing_ok=True)


def _need_command(command: str, package: str) -> str:
    path = shutil.which(command)
    if path is None:
        _apt_install(package)
        path = shutil.which(command)
    if path is None:
        raise ServiceError(f"{command} still not found after installing {package}")
    return path


# ---------------------------------------------------------------- kafka wire checks


def _kafka_request(port: int, api_key: int, api_version: int, body: bytes, timeout: float) -> bytes:
    """One request/response on the Kafka wire protocol (request header v1, response header v0)."""
    client_id = b"warden-services"
    header = struct.pack(">hhih", api_key, api_version, 1, len(client_id)) + client_id
    payload = header + body
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        data = _recv_exact(sock, size)
    if struct.unpack(">i", data[:4])[0] != 1:
        raise ServiceError("Kafka response has the wrong correlation id")
    return data[4:]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return bytes(buf)


def kafka_api_versions(port: int | None = None, timeout: float = 2.0) -> dict[int, tuple[int, int]]:
    """ApiVersions v0: {api_key: (min_version, max_version)} as the broker reports them."""
    body = _kafka_request(port or kafka_port(), 18, 0, b"", timeout)
    error, count = struct.unpack(">hi", body[:6])
    if error:
        raise ServiceError(f"ApiVersions error code {error}")
    entries = struct.iter_unpack(">hhh", body[6 : 6 + 6 * count])
    return {key: (lo, hi) for key, lo, hi in entries}


def kafka_broker_count(port: int | None = None, timeout: float = 2.0) -> int:
    """Brokers in a Metadata v4 answer: >0 once the broker is registered and unfenced."""
    body = _kafka_request(port or kafka_port(), 3, 4, struct.pack(">ib", 0, 0), timeout)
    _throttle_ms, brokers = struct.unpack(">ii", body[:8])
    return brokers


def kafka_answers(port: int | None = None) -> bool:
    try:
        return kafka_broker_count(port) > 0
    except (OSError, ServiceError, struct.error):
        return False


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- kafka


def _kafka_pidfile() -> Path:
    return KAFKA_RUN / "kafka.pid"


def fetch_kafka() -> None:
    """Copy the broker's jars from Maven Central into .cache/kafka/libs (once)."""
    if any(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
        return
    mvn = _need_command("mvn", "maven")
    _need_command("java", "openjdk-17-jre-headless")
    started = time.monotonic()
    partial = KAFKA_LIBS.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    goal = ["dependency:copy-dependencies", f"-DoutputDirectory={partial}"]
    _run([mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(KAFKA_POM), *goal],
         "fetching Kafka jars with Maven", stdin=subprocess.DEVNULL)  # fmt: skip
    partial.rename(KAFKA_LIBS)
    log(
        f"kafka: fetched {len(list(KAFKA_LIBS.glob('*.jar')))} jars in "
        f"{time.monotonic() - started:.1f}s"
    )


def _kafka_config(port: int) -> Path:
    return _write_kafka_config(KAFKA_RUN, port)


def _write_kafka_config(run_dir: Path, port: int) -> Path:
    """server.properties for a single KRaft node on ``port`` (controller on port + 1), its log
    dir under ``run_dir``/data."""
    data = run_dir / "data"
    controller = port + 1
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",  # topics come from preflight, with the right partitions
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        "default.replication.factor": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "24",
        "delete.topic.enable": "true",
    }
    config = run_dir / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return config


def _java_cmd(main: str, *args: str) -> list[str]:
    log4j = f"-Dlog4j2.configurationFile={KAFKA_LOG4J}"
    return ["java", *KAFKA_JVM_OPTS, log4j, "-cp", f"{KAFKA_LIBS}/*", main, *args]


def _format_kafka(config: Path, run_dir: Path = KAFKA_RUN) -> None:
    """Format the KRaft log dir with a fresh cluster id, unless it already is."""
    if (run_dir / "data" / "meta.properties").exists():
        return
    started = time.monotonic()
    cluster_id = "-"
    while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: a leading '-' reads as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    _run(
        _java_cmd("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                  "-c", str(config)),
        "formatting Kafka storage",
        stdin=subprocess.DEVNULL,
    )
    log(f"kafka: formatted storage (cluster {cluster_id}) in {time.monotonic() - started:.1f}s")


def kafka_up() -> bool:
    """Make a broker answer on WARDEN_KAFKA_PORT; True if this call started it."""
    port = kafka_port()
    if kafka_answers(port):
        log(f"kafka: already answering on {HOST}:{port}")
        return False
    if _port_open(port) and _our_pid(_kafka_pidfile(), "kafka.Kafka") is None:
        raise ServiceError(
            f"{HOST}:{port} is taken by something that does not answer as a "
            "Kafka broker; set WARDEN_KAFKA_PORT to a free port"
        )
    started = time.monotonic()
    _need_command("java", "openjdk-17-jre-headless")
    fetch_kafka()
    KAFKA_RUN.mkdir(parents=True, exist_ok=True)
    pid = _our_pid(_kafka_pidfile(), "kafka.Kafka")
    server_log = KAFKA_RUN / "server.log"
    spawned = pid is None
    if pid is None:
        config = _kafka_config(port)
        _format_kafka(config)
        with open(server_log, "ab") as out:
            proc = subprocess.Popen(
                _java_cmd("kafka.Kafka", str(config)),
                cwd=KAFKA_RUN,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pid = proc.pid
        _kafka_pidfile().write_text(f"{pid}\n")
    deadline = time.monotonic() + START_DEADLINE_S
    while not kafka_answers(port):
        if not _alive(pid):
            _kafka_pidfile().unlink(missing_ok=True)
            raise ServiceError(
                f"Kafka exited during start-up; tail of {server_log}:\n" + _tail(server_log)
            )
        if time.monotonic() > deadline:
            _terminate(pid, "kafka")
            _kafka_pidfile().unlink(missing_ok=True)
            raise ServiceError(
                f"Kafka did not answer on {HOST}:{port} within "
                f"{START_DEADLINE_S:.0f}s; tail of {server_log}:\n" + _tail(server_log)
            )
        time.sleep(0.2)
    log(f"kafka: up on {HOST}:{port} (pid {pid}) in {time.monotonic() - started:.1f}s")
    return spawned


def kafka_down() -> None:
    pid = _our_pid(_kafka_pidfile(), "kafka.Kafka")
    if pid is None:
        log("kafka: nothing of ours running")
        return
    _terminate(pid, "kafka")
    _kafka_pidfile().unlink(missing_ok=True)


class PrivateKafka:
    """A dedicated single-node broker for one test (own port, data dir and KRaft storage) that
    the test may stop and start again; the shared broker on WARDEN_KAFKA_PORT is never touched.

    Same jars, JVM options and configuration as ``kafka_up``; a restart keeps the port and the
    data dir, so clients reconnect to the same cluster with the same topics and offsets.
    """

    def __init__(self, run_dir: Path, port: int) -> None:
        self.run_dir, self.port = Path(run_dir), port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def server_log(self) -> Path:
        return self.run_dir / "server.log"

    def start(self) -> None:
        """Start (formatting storage the first time) and wait until it answers Metadata."""
        if self.proc is not None and self.proc.poll() is None:
            return
        _need_command("java", "openjdk-17-jre-headless")
        fetch_kafka()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = _write_kafka_config(self.run_dir, self.port)
        _format_kafka(config, self.run_dir)
        started = time.monotonic()
        with open(self.server_log, "ab") as out:
            self.proc = subprocess.Popen(_java_cmd("kafka.Kafka", str(config)), cwd=self.run_dir,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = started + START_DEADLINE_S
        while not kafka_answers(self.port):
            if self.proc.poll() is not None:
                raise ServiceError(f"private Kafka on {self.port} exited during start-up:\n"
                                   + _tail(self.server_log))
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"private Kafka did not answer on {self.port}:\n"
                                   + _tail(self.server_log))
            time.sleep(0.2)
        log(f"private kafka: up on {self.bootstrap} (pid {self.proc.pid}) in "
            f"{time.monotonic() - started:.1f}s")

    def stop(self) -> None:
        """Controlled shutdown (SIGTERM, SIGKILL after STOP_DEADLINE_S); only this process."""
        if self.proc is None or self.proc.poll() is not None:
            return
        _terminate(self.proc.pid, f"private kafka {self.port}")
        self.proc.wait(timeout=STOP_DEADLINE_S)


def free_port_pair() -> int:
    """A port p with p + 1 also free (a private broker's listener and its controller)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port < 65535 and not _port_open(port) and not _port_open(port + 1):
            try:
                with socket.socket() as probe:
                    probe.bind((HOST, port + 1))
                return port
            except OSError:
                continue
    raise ServiceError("no two consecutive free ports")


# ---------------------------------------------------------------- redis


def _redis_pidfile() -> Path:
    return REDIS_RUN / "redis.pid"


def redis_ping(port: int | None = None, timeout: float = 1.0) -> bytes:
    """The raw first reply line to PING (b'+PONG' from a usable Redis)."""
    with socket.create_connection((HOST, port or redis_port()), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


def redis_answers(port: int | None = None) -> bool:
    try:
        reply = redis_ping(port)
    except OSError:
        return False
    if reply.startswith(b"-NOAUTH"):
        raise ServiceError(
            f"the Redis on {HOST}:{port or redis_port()} requires a password; "
            "set WARDEN_REDIS_PORT to a free port to get one of ours"
        )
    return reply == b"+PONG"


def redis_up() -> bool:
    """Make a Redis answer on WARDEN_REDIS_PORT; True if this call started it."""
    port = redis_port()
    if redis_answers(port):
        log(f"redis: already answering on {HOST}:{port}")
        return False
    if _port_open(port):
        raise ServiceError(
            f"{HOST}:{port} is taken by something that is not Redis; "
            "set WARDEN_REDIS_PORT to a free port"
        )
    started = time.monotonic()
    server = _need_command("redis-server", "redis-server")
    REDIS_RUN.mkdir(parents=True, exist_ok=True)
    pidfile, logfile = _redis_pidfile(), REDIS_RUN / "redis.log"
    pidfile.unlink(missing_ok=True)
    options = {"bind": HOST, "port": port, "daemonize": "yes", "pidfile": pidfile,
               "logfile": logfile, "dir": REDIS_RUN, "save": "", "appendonly": "no",
               "protected-mode": "yes"}  # fmt: skip
    argv = [server, *(arg for key, value in options.items() for arg in (f"--{key}", str(value)))]
    _run(argv, "starting redis-server", stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30.0
    while not redis_answers(port):
        if time.monotonic() > deadline:
            raise ServiceError(
                f"Redis did not answer on {HOST}:{port} within 30s; tail of "
                f"{logfile}:\n{_tail(logfile)}"
            )
        time.sleep(0.05)
    while _our_pid(pidfile, "redis-server") is None:  # daemonized: pidfile follows the PONG
        if time.monotonic() > deadline:
            raise ServiceError(f"redis-server wrote no pid file {pidfile}")
        time.sleep(0.05)
    log(f"redis: up on {HOST}:{port} in {time.monotonic() - started:.1f}s")
    return True


def redis_down() -> None:
    pid = _our_pid(_redis_pidfile(), "redis-server")
    if pid is None:
        log("redis: nothing of ours running")
        return
    _terminate(pid, "redis")
    _redis_pidfile().unlink(missing_ok=True)


# ---------------------------------------------------------------- API

_UP = {"kafka": kafka_up, "redis": redis_up}
_DOWN = {"kafka": kafka_down, "redis": redis_down}


def ensure_up(services: Iterable[str] = SERVICES) -> dict[str, object]:
    """Start (or reuse) the named services.

    Returns {"kafka_bootstrap": str, "redis_url": str, "started": tuple of the names this
    call started}; pass ``started`` to ``stop_started`` to undo exactly this call.
    """
    started: list[str] = []
    try:
        for name in services:
            if _UP[name]():
                started.append(name)
    except BaseException:
        stop_started(started)
        raise
    return {
        "kafka_bootstrap": kafka_bootstrap(),
        "redis_url": redis_url(),
        "started": tuple(started),
    }


def stop_started(services: Iterable[str] = SERVICES) -> None:
    """Stop the named services if this script started them (pid files); leave others alone."""
    for name in services:
        _DOWN[name]()


def status() -> dict[str, dict[str, object]]:
    return {
        "kafka": {
            "address": kafka_bootstrap(),
            "answering": kafka_answers(),
            "our_pid": _our_pid(_kafka_pidfile(), "kafka.Kafka"),
        },
        "redis": {
            "address": redis_url(),
            "answering": _safe(redis_answers),
            "our_pid": _our_pid(_redis_pidfile(), "redis-server"),
        },
    }


def _safe(check: object) -> object:
    try:
        return check()  # type: ignore[operator]
    except ServiceError as exc:
        return str(exc)


def _run_with_services(cmd: Sequence[str]) -> int:
    """Start services, run ``cmd`` with their addresses in its env, stop what we started."""

    def on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    started: tuple[str, ...] = ()
    try:
        try:
            info = ensure_up()
        except ServiceError as exc:
            log(f"error: {exc}")
            return 1
        started = info["started"]  # type: ignore[assignment]
        env = {
            **os.environ,
            "WARDEN_KAFKA_BOOTSTRAP": str(info["kafka_bootstrap"]),
            "WARDEN_REDIS_URL": str(info["redis_url"]),
        }
        return subprocess.call(list(cmd), env=env)
    finally:
        stop_started(started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "status", "run"))
    parser.add_argument(
        "rest", nargs=argparse.REMAINDER, help="service names (kafka, redis) or, for run, -- CMD..."
    )
    args = parser.parse_args(argv)
    if args.action == "run":
        cmd = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        if not cmd:
            parser.error("run needs a command: run -- CMD...")
        return _run_with_services(cmd)
    names = args.rest or list(SERVICES)
    unknown = set(names) - set(SERVICES)
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    try:
        if args.action == "up":
            started = time.monotonic()
            info = ensure_up(names)
            log(f"ready in {time.monotonic() - started:.1f}s")
            if "kafka" in names:
                print(f"WARDEN_KAFKA_BOOTSTRAP={info['kafka_bootstrap']}")
            if "redis" in names:
                print(f"WARDEN_REDIS_URL={info['redis_url']}")
        elif args.action == "down":
            stop_started(names)
        else:
            for name, fields in status().items():
                if name in names:
                    print(name, " ".join(f"{k}={v}" for k, v in fields.items()))
    except ServiceError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
