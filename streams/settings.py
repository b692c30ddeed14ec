"""Configuration from environment variables (docs/CONTRACTS.md), defaults on localhost.

Secrets (SASL password, operator token, Redis password) are kept out of
`repr` so they never reach a log line.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from streams.topics import TopicNames


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable."""


def _number(env: Mapping[str, str], name: str, default: Any, parse: Callable[[str], Any],
            what: str) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {what}, got {raw!r}") from None


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    value: int = _number(env, name, default, int, "an integer")
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _optional_int(env: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    """An integer, or None when unset, empty or "off"."""
    if env.get(name, "").lower() in ("", "off"):
        return None
    return _int(env, name, 0, minimum=minimum)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value: float = _number(env, name, default, float, "a number of seconds")
    if not value > 0:  # (also NaN)
        raise SettingsError(f"{name} must be > 0, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "localhost:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    redis_url: str = field(default="redis://localhost:6379/0", repr=False)
    redis_password: str | None = field(default=None, repr=False)
    redis_prefix: str = "warden"
    app_id: str = "warden"
    topic_prefix: str = ""
    partitions: int = 4
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    operator_token: str | None = field(default=None, repr=False)
    protect_reads: bool = False
    policy_path: str | None = None
    idle_advance: bool = True
    idle_grace_ms: int = 2000
    align_ms: int = 100
    align_skew_ms: int | None = None  # None: the fetch rule is off (streams/alignment.py)
    stall_s: int = 30
    max_in_flight: int = 5000
    hop_wait_ms: int = 10_000
    tick_interval_s: float = 1.0
    sweep_interval_s: float = 30.0
    projection_batch: int = 500
    log_level: str = "info"
    data_dir: str = ".run/worker"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        protocol = env.get("WARDEN_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise SettingsError(
                f"WARDEN_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}")
        mechanism = env.get("WARDEN_KAFKA_SASL_MECHANISM") or None
        if protocol.startswith("SASL") and mechanism is None:
            mechanism = "PLAIN"
        if mechanism is not None and mechanism.upper() not in SASL_MECHANISMS:
            raise SettingsError(
                f"WARDEN_KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}")
        values: dict[str, Any] = {
            "kafka_bootstrap": env.get("WARDEN_KAFKA_BOOTSTRAP", cls.kafka_bootstrap),
            "kafka_security_protocol": protocol,
            "kafka_sasl_mechanism": mechanism.upper() if mechanism else None,
            "kafka_sasl_username": env.get("WARDEN_KAFKA_SASL_USERNAME") or None,
            "kafka_sasl_password": env.get("WARDEN_KAFKA_SASL_PASSWORD") or None,
            "kafka_ssl_cafile": env.get("WARDEN_KAFKA_SSL_CAFILE") or None,
            "kafka_ssl_certfile": env.get("WARDEN_KAFKA_SSL_CERTFILE") or None,
            "kafka_ssl_keyfile": env.get("WARDEN_KAFKA_SSL_KEYFILE") or None,
            "redis_url": env.get("WARDEN_REDIS_URL", cls.redis_url),
            "redis_password": env.get("WARDEN_REDIS_PASSWORD") or None,
            "redis_prefix": env.get("WARDEN_REDIS_PREFIX", cls.redis_prefix),
            "app_id": env.get("WARDEN_APP_ID", cls.app_id),
            "topic_prefix": env.get("WARDEN_TOPIC_PREFIX", cls.topic_prefix),
            "partitions": _int(env, "WARDEN_PARTITIONS", cls.partitions, minimum=1),
            "web_port": _int(env, "WARDEN_WEB_PORT", cls.web_port, minimum=0),
            "web_host": env.get("WARDEN_WEB_HOST", cls.web_host),
            "operator_token": env.get("WARDEN_OPERATOR_TOKEN") or None,
            "protect_reads": _bool(env, "WARDEN_PROTECT_READS", cls.protect_reads),
            "policy_path": env.get("WARDEN_POLICY") or None,
            "idle_advance": _bool(env, "WARDEN_IDLE_ADVANCE", cls.idle_advance),
            "idle_grace_ms": _int(env, "WARDEN_IDLE_GRACE_MS", cls.idle_grace_ms),
            "align_ms": _int(env, "WARDEN_ALIGN_MS", cls.align_ms, minimum=0),
            "align_skew_ms": _optional_int(env, "WARDEN_ALIGN_SKEW_MS", minimum=0),
            "stall_s": _int(env, "WARDEN_STALL_S", cls.stall_s, minimum=1),
            "max_in_flight": _int(env, "WARDEN_MAX_IN_FLIGHT", cls.max_in_flight, minimum=1),
            "hop_wait_ms": _int(env, "WARDEN_HOP_WAIT_MS", cls.hop_wait_ms, minimum=0),
            "sweep_interval_s": _seconds(env, "WARDEN_SWEEP_INTERVAL_S", cls.sweep_interval_s),
            "projection_batch": _int(env, "WARDEN_PROJECTION_BATCH", cls.projection_batch, minimum=1),
            "log_level": env.get("WARDEN_LOG_LEVEL", cls.log_level),
            "data_dir": env.get("WARDEN_DATA_DIR", cls.data_dir),
        }
        if values["kafka_security_protocol"].startswith("SASL") and not values["kafka_sasl_username"]:
            raise SettingsError("WARDEN_KAFKA_SASL_USERNAME is required with a SASL protocol")
        values.update(overrides)
        return cls(**values)

    # --- derived -----------------------------------------------------------
    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix, self.app_id)

    @property
    def broker_url(self) -> str:
        return ";".join(f"kafka://{host.strip()}" for host in self.kafka_bootstrap.split(","))

    def ssl_context(self) -> ssl.SSLContext | None:
        if "SSL" not in self.kafka_security_protocol:
            return None
        context = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile:
            context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        return context

    def faust_credentials(self) -> Any:
        """faust broker_credentials for the configured protocol (None for PLAINTEXT)."""
        import faust

        protocol = self.kafka_security_protocol
        if protocol == "PLAINTEXT":
            return None
        if protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context())
        mechanism = self.kafka_sasl_mechanism or "PLAIN"
        if mechanism == "PLAIN":
            return faust.SASLCredentials(
                username=self.kafka_sasl_username, password=self.kafka_sasl_password,
                ssl_context=self.ssl_context())
        return faust.SASLCredentials(
            username=self.kafka_sasl_username, password=self.kafka_sasl_password,
            mechanism=mechanism, ssl_context=self.ssl_context())

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (tools, tests, simulate --to-kafka)."""
        options: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap,
                                   "security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            options.update(sasl_mechanism=self.kafka_sasl_mechanism,
                           sasl_plain_username=self.kafka_sasl_username,
                           sasl_plain_password=self.kafka_sasl_password)
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        return options

    def redis_options(self) -> dict[str, Any]:
        """Keyword arguments for redis.asyncio.from_url (TLS via rediss:// URLs)."""
        options: dict[str, Any] = {}
        if self.redis_password:
            options["password"] = self.redis_password
        return options

    def redacted(self) -> dict[str, Any]:
        """Every setting, secrets masked: safe to log or show."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if not f.repr and value:
                value = _redact_url(value) if f.name == "redis_url" else "***"
            out[f.name] = value
        return out


def _redact_url(url: str) -> str:
    """Credentials masked: user:password@ in the authority, and a password= query parameter
    (redis-py accepts both)."""
    scheme, sep, rest = url.partition("://")
    path, query_sep, query = rest.partition("?")
    if "@" in path:  # the last @ ends the userinfo: a password may contain @
        path = f"***@{path.rsplit('@', 1)[1]}"
    if query:
        query = "&".join(f"{param.split('=', 1)[0]}=***"
                         if param.split("=", 1)[0].lower() == "password" else param
                         for param in query.split("&"))
    return f"{scheme}{sep}{path}{query_sep}{query}"
