"""The policy file: load, validate, hash.

A policy file overrides any subset of `policy.default.toml`; unknown keys,
wrong types and out-of-range values are errors that name the key, because a
typo in a threshold silently restricting (or freeing) thousands of accounts is
the worst failure mode. `version` is a short hash of the effective policy,
stamped on every decision (SPEC "Triggers and their default policy").
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from detectors.events import REPORT_REASONS, SCOPES

DEFAULT_POLICY_PATH = Path(__file__).with_name("policy.default.toml")


class PolicyError(ValueError):
    """An invalid policy file; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class FriendAddBurstPolicy:
    short_count: int
    short_window_ms: int
    long_count: int
    long_window_ms: int
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoomCreationBurstPolicy:
    open_count: int
    open_window_ms: int
    any_count: int
    any_window_ms: int
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReportFloodPolicy:
    threshold: float
    window_ms: int
    reporter_once_per_ms: int
    room_cap: int
    room_window_ms: int
    taint_reasons: tuple[str, ...]
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScopesOnlyPolicy:
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TaintedDevicePolicy:
    horizon_ms: int
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BanEvasionPolicy:
    min_level: int


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    quiet_base_ms: int
    indefinite_from_level: int
    level_horizon_ms: int
    extend_step_ms: int
    appeal_cooldown_ms: int


@dataclass(frozen=True, slots=True)
class ReportersPolicy:
    strike_every: int
    overturn_horizon_ms: int
    mute_ms: int
    mute_from_strike: int
    restrict_at_strike: int


@dataclass(frozen=True, slots=True)
class StatePolicy:
    dedupe_horizon_ms: int
    dedupe_ids_kept: int  # per account, at least (streams/records.py `AccountRecord`)
    max_devices_per_account: int
    max_accounts_per_device: int
    history_cap: int


@dataclass(frozen=True, slots=True)
class Policy:
    home_country: str
    friend_add_burst: FriendAddBurstPolicy
    room_creation_burst: RoomCreationBurstPolicy
    report_flood: ReportFloodPolicy
    emulator: ScopesOnlyPolicy
    virtual_number: ScopesOnlyPolicy
    tainted_device: TaintedDevicePolicy
    ban_evasion: BanEvasionPolicy
    lifecycle: LifecyclePolicy
    reporters: ReportersPolicy
    state: StatePolicy
    version: str

    def quiet_ms(self, level: int) -> int | None:
        """Quiet period of a restriction at `level`; None = indefinite."""
        if level >= self.lifecycle.indefinite_from_level:
            return None
        return self.lifecycle.quiet_base_ms * 2 ** (max(level, 1) - 1)


_SECTIONS: dict[str, type] = {
    "friend_add_burst": FriendAddBurstPolicy,
    "room_creation_burst": RoomCreationBurstPolicy,
    "report_flood": ReportFloodPolicy,
    "emulator": ScopesOnlyPolicy,
    "virtual_number": ScopesOnlyPolicy,
    "tainted_device": TaintedDevicePolicy,
    "ban_evasion": BanEvasionPolicy,
    "lifecycle": LifecyclePolicy,
    "reporters": ReportersPolicy,
    "state": StatePolicy,
}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path} is not valid TOML: {exc}") from exc


def _merge(defaults: dict[str, Any], overrides: dict[str, Any], where: str = "") -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in overrides.items():
        name = f"{where}{key}"
        if key not in defaults:
            raise PolicyError(f"unknown policy key {name!r}")
        default = defaults[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise PolicyError(f"policy key {name!r} must be a table")
            merged[key] = _merge(default, value, f"{name}.")
        else:
            merged[key] = _check_value(name, default, value)
    return merged


def _check_value(name: str, default: object, value: object) -> object:
    if isinstance(default, bool) or isinstance(value, bool):
        raise PolicyError(f"policy key {name!r} has an unexpected boolean")
    if isinstance(default, float):
        if not isinstance(value, int | float) or value <= 0:
            raise PolicyError(f"policy key {name!r} must be a positive number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if not isinstance(value, int) or value <= 0:
            raise PolicyError(f"policy key {name!r} must be a positive integer, got {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str) or not value:
            raise PolicyError(f"policy key {name!r} must be a non-empty string")
        return value
    if isinstance(default, list):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"policy key {name!r} must be a non-empty list of strings")
        allowed = REPORT_REASONS if name.endswith("taint_reasons") else SCOPES
        for item in value:
            if item not in allowed:
                raise PolicyError(f"policy key {name!r}: {item!r} is not one of {', '.join(allowed)}")
        return value
    raise PolicyError(f"policy key {name!r} has an unsupported type")  # pragma: no cover


def _build(effective: dict[str, Any]) -> Policy:
    country = effective["home_country"]
    if len(country) != 2 or not country.isascii() or not country.isupper():
        raise PolicyError("policy key 'home_country' must be ISO 3166 alpha-2, e.g. 'KR'")
    if effective["report_flood"]["room_cap"] < 1:  # pragma: no cover - positivity checked
        raise PolicyError("policy key 'report_flood.room_cap' must be >= 1")
    canonical = orjson.dumps(effective, option=orjson.OPT_SORT_KEYS)
    version = hashlib.sha256(canonical).hexdigest()[:8]
    sections = {}
    for name, cls in _SECTIONS.items():
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in effective[name].items()}
        sections[name] = cls(**values)
    return Policy(home_country=country, version=version, **sections)


def load_policy(path: str | Path | None = None) -> Policy:
    """The default policy, overridden by the TOML file at `path` if given."""
    defaults = _read_toml(DEFAULT_POLICY_PATH)
    overrides = _read_toml(Path(path)) if path is not None else {}
    return _build(_merge(defaults, overrides))


def policy_from_mapping(overrides: dict[str, Any]) -> Policy:
    """Like `load_policy`, from an in-memory mapping (tests, back-testing)."""
    return _build(_merge(_read_toml(DEFAULT_POLICY_PATH), overrides))


DEFAULT_POLICY = load_policy()
