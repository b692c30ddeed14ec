"""Settings from the environment (docs/CONTRACTS.md "Configuration"): parsing, errors, secrets."""

from __future__ import annotations

import ssl

import faust
import pytest
from faust.types.auth import AuthProtocol, SASLMechanism

from streams.settings import Settings, SettingsError

EVERY_VARIABLE = {
    "WARDEN_KAFKA_BOOTSTRAP": "k1:9093,k2:9093",
    "WARDEN_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "WARDEN_KAFKA_SASL_MECHANISM": "scram-sha-512",
    "WARDEN_KAFKA_SASL_USERNAME": "svc",
    "WARDEN_KAFKA_SASL_PASSWORD": "kafka-secret",
    "WARDEN_KAFKA_SSL_CAFILE": "/etc/ca.pem",
    "WARDEN_KAFKA_SSL_CERTFILE": "/etc/cert.pem",
    "WARDEN_KAFKA_SSL_KEYFILE": "/etc/key.pem",
    "WARDEN_REDIS_URL": "rediss://user:redis-secret@cache:6380/2",
    "WARDEN_REDIS_PASSWORD": "redis-password",
    "WARDEN_REDIS_PREFIX": "wp",
    "WARDEN_APP_ID": "warden-eu",
    "WARDEN_TOPIC_PREFIX": "eu.",
    "WARDEN_PARTITIONS": "12",
    "WARDEN_WEB_PORT": "7000",
    "WARDEN_WEB_HOST": "0.0.0.0",
    "WARDEN_OPERATOR_TOKEN": "op-token",
    "WARDEN_PROTECT_READS": "yes",
    "WARDEN_POLICY": "/etc/warden/policy.toml",
    "WARDEN_IDLE_ADVANCE": "off",
    "WARDEN_IDLE_GRACE_MS": "1500",
    "WARDEN_PROJECTION_BATCH": "250",
    "WARDEN_LOG_LEVEL": "debug",
    "WARDEN_DATA_DIR": "/var/lib/warden",
    "WARDEN_HOP_WAIT_MS": "2500",
    "WARDEN_SWEEP_INTERVAL_S": "2.5",
    "WARDEN_ALIGN_SKEW_MS": "50",
}


def test_defaults_point_at_localhost():
    s = Settings.from_env({})
    assert s.kafka_bootstrap == "localhost:9092"
    assert s.redis_url == "redis://localhost:6379/0"
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("PLAINTEXT", None)
    assert (s.redis_prefix, s.app_id, s.topic_prefix, s.partitions, s.web_port) == (
        "warden", "warden", "", 4, 6066)
    assert s.operator_token is None and s.policy_path is None and s.idle_advance is True
    assert s.align_skew_ms is None  # (the fetch rule: off)
    assert Settings.from_env({"WARDEN_ALIGN_SKEW_MS": "off"}).align_skew_ms is None
    assert s.faust_credentials() is None and s.ssl_context() is None


def test_every_warden_variable_is_parsed():
    s = Settings.from_env(EVERY_VARIABLE)
    assert s == Settings(
        kafka_bootstrap="k1:9093,k2:9093", kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="svc",
        kafka_sasl_password="kafka-secret", kafka_ssl_cafile="/etc/ca.pem",
        kafka_ssl_certfile="/etc/cert.pem", kafka_ssl_keyfile="/etc/key.pem",
        redis_url="rediss://user:redis-secret@cache:6380/2", redis_password="redis-password",
        redis_prefix="wp", app_id="warden-eu", topic_prefix="eu.", partitions=12,
        web_port=7000, web_host="0.0.0.0", operator_token="op-token", protect_reads=True,
        policy_path="/etc/warden/policy.toml", idle_advance=False, idle_grace_ms=1500,
        projection_batch=250, log_level="debug", data_dir="/var/lib/warden", hop_wait_ms=2500,
        sweep_interval_s=2.5, align_skew_ms=50)


def test_derived_names_carry_the_prefixes():
    s = Settings.from_env(EVERY_VARIABLE)
    assert s.topics.decisions == "eu.account-decisions"
    assert s.topics.input("moderation-commands") == "eu.moderation-commands"
    assert s.topics.account_inbox == "eu.warden-eu-account-inbox"
    assert s.broker_url == "kafka://k1:9093;kafka://k2:9093"


def test_overrides_win_over_the_environment():
    s = Settings.from_env({"WARDEN_PARTITIONS": "8"}, partitions=3, web_port=0)
    assert (s.partitions, s.web_port) == (3, 0)


def test_a_sasl_protocol_defaults_to_plain_and_requires_a_username():
    s = Settings.from_env({"WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                           "WARDEN_KAFKA_SASL_USERNAME": "svc"})
    assert s.kafka_sasl_mechanism == "PLAIN"
    with pytest.raises(SettingsError, match="WARDEN_KAFKA_SASL_USERNAME"):
        Settings.from_env({"WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})


@pytest.mark.parametrize(("variable", "value"), [
    ("WARDEN_KAFKA_SECURITY_PROTOCOL", "TLS"),
    ("WARDEN_KAFKA_SASL_MECHANISM", "GSSAPI"),
    ("WARDEN_PARTITIONS", "four"),
    ("WARDEN_PARTITIONS", "0"),
    ("WARDEN_WEB_PORT", "-1"),
    ("WARDEN_IDLE_GRACE_MS", "1.5"),
    ("WARDEN_PROJECTION_BATCH", "0"),
    ("WARDEN_IDLE_ADVANCE", "maybe"),
    ("WARDEN_PROTECT_READS", "2"),
    ("WARDEN_SWEEP_INTERVAL_S", "0"),
    ("WARDEN_SWEEP_INTERVAL_S", "nan"),
    ("WARDEN_SWEEP_INTERVAL_S", "soon"),
    ("WARDEN_ALIGN_SKEW_MS", "-1"),
])
def test_an_invalid_value_raises_an_error_naming_the_variable(variable, value):
    env = {"WARDEN_KAFKA_SASL_USERNAME": "svc", variable: value}
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(env)


def test_empty_values_mean_the_default():
    s = Settings.from_env({"WARDEN_PARTITIONS": "", "WARDEN_IDLE_ADVANCE": "",
                           "WARDEN_OPERATOR_TOKEN": "", "WARDEN_POLICY": ""})
    assert (s.partitions, s.idle_advance, s.operator_token, s.policy_path) == (4, True, None, None)


def test_redacted_masks_every_secret_and_the_redis_url_credentials():
    shown = Settings.from_env(EVERY_VARIABLE).redacted()
    assert shown["kafka_sasl_password"] == "***"
    assert shown["operator_token"] == "***"
    assert shown["redis_password"] == "***"
    assert shown["redis_url"] == "rediss://***@cache:6380/2"
    assert shown["kafka_sasl_username"] == "svc" and shown["partitions"] == 12
    text = str(shown)
    for secret in ("kafka-secret", "op-token", "redis-secret", "redis-password"):
        assert secret not in text


def test_redacted_leaves_a_url_without_credentials_and_unset_secrets_alone():
    shown = Settings.from_env({}).redacted()
    assert shown["redis_url"] == "redis://localhost:6379/0"
    assert shown["operator_token"] is None and shown["kafka_sasl_password"] is None


def test_repr_never_shows_secrets():
    text = repr(Settings.from_env(EVERY_VARIABLE))
    for secret in ("kafka-secret", "op-token", "redis-secret", "redis-password"):
        assert secret not in text


def test_aiokafka_options_for_plaintext():
    assert Settings.from_env({"WARDEN_KAFKA_BOOTSTRAP": "k:1"}).aiokafka_options() == {
        "bootstrap_servers": "k:1", "security_protocol": "PLAINTEXT"}


def test_aiokafka_options_carry_sasl_credentials_and_the_ssl_context():
    options = Settings.from_env({
        "WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "WARDEN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "WARDEN_KAFKA_SASL_USERNAME": "svc",
        "WARDEN_KAFKA_SASL_PASSWORD": "pw"}).aiokafka_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SCRAM-SHA-256", "svc", "pw")
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_aiokafka_options_for_sasl_plaintext_have_no_ssl_context():
    options = Settings.from_env({"WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                 "WARDEN_KAFKA_SASL_USERNAME": "svc"}).aiokafka_options()
    assert options["sasl_mechanism"] == "PLAIN" and "ssl_context" not in options


def test_aiokafka_options_for_ssl_have_a_context_and_no_sasl():
    options = Settings.from_env({"WARDEN_KAFKA_SECURITY_PROTOCOL": "SSL"}).aiokafka_options()
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in options


def test_faust_credentials_for_ssl():
    creds = Settings.from_env({"WARDEN_KAFKA_SECURITY_PROTOCOL": "SSL"}).faust_credentials()
    assert isinstance(creds, faust.SSLCredentials)
    assert creds.protocol == AuthProtocol.SSL
    assert isinstance(creds.context, ssl.SSLContext)


def test_faust_credentials_for_sasl_plaintext():
    creds = Settings.from_env({"WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                               "WARDEN_KAFKA_SASL_USERNAME": "svc",
                               "WARDEN_KAFKA_SASL_PASSWORD": "pw"}).faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol == AuthProtocol.SASL_PLAINTEXT
    assert creds.mechanism == SASLMechanism.PLAIN
    assert (creds.username, creds.password, creds.ssl_context) == ("svc", "pw", None)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_faust_credentials_for_sasl_ssl(mechanism):
    creds = Settings.from_env({"WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                               "WARDEN_KAFKA_SASL_MECHANISM": mechanism,
                               "WARDEN_KAFKA_SASL_USERNAME": "svc",
                               "WARDEN_KAFKA_SASL_PASSWORD": "pw"}).faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol == AuthProtocol.SASL_SSL
    assert creds.mechanism == SASLMechanism(mechanism)
    assert isinstance(creds.ssl_context, ssl.SSLContext)


def test_redis_password_reaches_the_redis_options():
    assert Settings.from_env({}).redis_options() == {}
    assert Settings.from_env({"WARDEN_REDIS_PASSWORD": "pw"}).redis_options() == {"password": "pw"}
