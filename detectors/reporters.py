"""The reporter role of an account: credibility and penalties (SPEC "Report weighting",
"Reporter penalties").

A report's weight is fixed when it arrives, on the reporter's partition, from
this record and whether the reporter is currently restricted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from detectors.config import Policy
from detectors.values import fast_init


@fast_init
@dataclass(frozen=True, slots=True)
class ReporterRecord:
    upheld: int = 0
    overturned: int = 0
    overturned_at: tuple[int, ...] = ()  # within the overturn horizon
    strike: int = 0
    muted_until: int | None = None


def credibility(record: ReporterRecord) -> float:
    """Laplace-smoothed share of upheld reports: 0.5 with no history."""
    return (record.upheld + 1) / (record.upheld + record.overturned + 2)


def weight(record: ReporterRecord, *, restricted: bool, now_ms: int) -> float:
    if restricted:
        return 0.0
    if record.muted_until is not None and now_ms < record.muted_until:
        return 0.0
    return credibility(record)


def judge(record: ReporterRecord, count: int, *, upheld: bool, ts: int,
          policy: Policy) -> tuple[ReporterRecord, tuple[int, ...]]:
    """Count reports upheld or overturned; return the strikes this earns.

    An overturned report was upheld first (it contributed to the restriction
    that was overturned), so it moves from one column to the other.
    """
    if upheld:
        return replace(record, upheld=record.upheld + count), ()
    p = policy.reporters
    horizon = ts - p.overturn_horizon_ms
    recent = tuple(t for t in record.overturned_at if t > horizon)
    before = len(recent)
    recent = recent + (ts,) * count
    strikes = tuple(
        record.strike + i for i, _ in enumerate(
            (n for n in range(before + 1, len(recent) + 1) if n % p.strike_every == 0), start=1)
    )
    strike = strikes[-1] if strikes else record.strike
    muted_until = record.muted_until
    if strikes and strike >= p.mute_from_strike:
        muted_until = ts + p.mute_ms
    return ReporterRecord(
        upheld=max(0, record.upheld - count), overturned=record.overturned + count,
        overturned_at=recent, strike=strike, muted_until=muted_until,
    ), strikes


def expire(record: ReporterRecord, *, now_ms: int, policy: Policy) -> ReporterRecord:
    if not record.overturned_at and record.muted_until is None:
        return record  # nothing that can expire (most accounts)
    horizon = now_ms - policy.reporters.overturn_horizon_ms
    recent = tuple(t for t in record.overturned_at if t > horizon)
    muted = record.muted_until if record.muted_until is not None and record.muted_until > now_ms else None
    if recent == record.overturned_at and muted == record.muted_until:
        return record
    return replace(record, overturned_at=recent, muted_until=muted)
