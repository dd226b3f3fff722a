"""Persisting the stabilisation state across restarts, with no API write when nothing matters changed.

The HPA keeps its recommendation history in memory, so a restarted controller forgets that load was
high a minute ago and may scale down early; Knative has the same gap. We persist the part of the state
that can change a future decision, in the annotation ``inference-autoscaler.io/state``:

* recommendations *different from the current replica count*: on a restart without state the core
  records the current count as a fresh recommendation, which already holds scale-downs below it for a
  full window, so only recommendations above (down window) or below (up window) the current count add
  information; we keep the highest above and the lowest below, each with the newest timestamp on its
  side (a conservative envelope of what the windows could return);
* scale events inside the longest policy period (the rate limits).

Timestamps are quantised: a value's newest timestamp is written again only when it advanced by at
least ``granularity_s``. On restore, timestamps are moved *forward* by ``granularity_s`` (capped at
now), which bounds the real newest timestamp from above: a restored window can only last longer than
the lost one, never shorter. A steady lease (all recommendations equal to its replica count) has
nothing to persist, so it costs no writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from autoscaler.policy.predictive import (
    PredictiveParams,
    PredictiveState,
    fit_season,
    unpack,
)
from autoscaler.policy.types import Behavior, DecisionState, Recommendation, ScaleEvent

VERSION = 1


@dataclass(frozen=True, slots=True)
class Persisted:
    """The compact form: newest timestamp per recommended value, and recent scale events."""

    recommendations: tuple[tuple[int, float], ...]  # (replicas, newest timestamp), sorted by replicas
    events: tuple[tuple[float, int], ...]

    def to_annotation(self) -> str:
        return json.dumps({"v": VERSION, "r": [[v, round(t, 1)] for v, t in self.recommendations],
                           "e": [[round(t, 1), c] for t, c in self.events]}, separators=(",", ":"))


EMPTY = Persisted((), ())


def _windows(b: Behavior) -> tuple[float, float, float]:
    if b.legacy:
        return 0.0, float(b.legacy_downscale_window_s), 0.0
    assert b.scale_up is not None and b.scale_down is not None
    longest = max([p.period_s for p in b.scale_up.policies + b.scale_down.policies], default=0)
    return float(b.scale_up.stabilization_window_s), float(b.scale_down.stabilization_window_s), float(longest)


def significant(state: DecisionState, current: int, behavior: Behavior, now: float) -> Persisted:
    """The part of ``state`` that a restart would otherwise lose, in its most compact conservative form.

    Above the current count only the highest value matters for the scale-down window, and below it
    only the lowest for the scale-up window; each is kept with the *newest* timestamp of any value on
    its side, which over-approximates every window the full history could produce.
    """
    up_w, down_w, longest = _windows(behavior)
    above = [r for r in state.recommendations or () if r.replicas > current and r.timestamp > now - down_w]
    below = [r for r in state.recommendations or () if r.replicas < current and r.timestamp > now - up_w]
    recs: list[tuple[int, float]] = []
    if below:
        recs.append((min(r.replicas for r in below), max(r.timestamp for r in below)))
    if above:
        recs.append((max(r.replicas for r in above), max(r.timestamp for r in above)))
    events = tuple((e.timestamp, e.change) for e in state.scale_events if e.timestamp > now - longest)
    return Persisted(tuple(recs), events)


def needs_write(new: Persisted, old: Persisted, granularity_s: float) -> bool:
    """True when the persisted form would change materially."""
    if new.events != old.events:
        return True
    if [v for v, _ in new.recommendations] != [v for v, _ in old.recommendations]:
        return True
    return any(t - ot >= granularity_s for (_, t), (_, ot) in zip(new.recommendations, old.recommendations,
                                                                  strict=True))


def _document(text: str | None, version: int) -> dict[str, Any] | None:
    """An annotation's JSON object if it is one of ``version``, else None (absent, unreadable, foreign)."""
    if not text:
        return None
    try:
        doc: Any = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("v") == version else None


def parse(text: str | None) -> Persisted | None:
    """Read the annotation; ``None`` if absent or unreadable (then the core starts fresh)."""
    doc = _document(text, VERSION)
    if doc is None:
        return None
    try:
        recs = tuple(sorted((int(v), float(t)) for v, t in doc.get("r", [])))
        events = tuple((float(t), int(c)) for t, c in doc.get("e", []))
    except (ValueError, TypeError):
        return None
    return Persisted(recs, events)


def restore(p: Persisted, current: int, now: float, granularity_s: float) -> DecisionState:
    """A state to resume from: persisted values (timestamps pushed forward) plus the current count now."""
    recs = [Recommendation(min(now, t + granularity_s), v) for v, t in p.recommendations]
    recs.append(Recommendation(now, current))
    return DecisionState(tuple(recs), tuple(ScaleEvent(t, c) for t, c in p.events))


# ------------------------------------------------------------------------------ the predictive algorithm
#
# Annotation ``inference-autoscaler.io/predictive-state``: what the predictive policy learns slowly and a
# restart would otherwise lose, the **daily season** (one mean demand per ``seasonBucketSeconds``, up to
# ``seasonHistoryPeriods`` days, three significant digits, and the open bucket), the last service time and the
# headroom the queue-time calibration learnt (it takes a calibration window or more to learn again).
# It is written when a season bucket closes (every 10 min by default), never in between.
#
# The fast-moving part (the burst envelope, recent targets, the backlog samples) is not persisted: after a
# restart the policy holds scale-downs until it has a full burst window of fresh history (the cold-start
# rule in ``decide_predictive``), so a lost envelope cannot cause an early scale-down; scale-ups work at once.

PREDICTIVE_VERSION = 1


@dataclass(frozen=True, slots=True)
class PredictivePersisted:
    season: bytes
    """Mean demand per completed bucket, oldest first, ending at ``season_end`` (packed as
    :attr:`PredictiveState.season`: the state's own bytes, not a copy)."""
    season_end: float
    season_bucket_s: float
    bucket: tuple[float, int]
    """(mean, samples) of the open bucket."""
    service_time_s: float | None
    headroom: float = 1.0
    """The calibration's demand factor (1: none learnt)."""

    @property
    def season_buckets(self) -> int:
        return len(self.season) // 8

    def to_annotation(self) -> str:
        doc: dict[str, Any] = {"v": PREDICTIVE_VERSION, "b": self.season_bucket_s, "end": self.season_end,
                               "m": [float(f"{m:.3g}") for m in unpack(self.season)],
                               "open": [float(f"{self.bucket[0]:.3g}"), self.bucket[1]]}
        if self.service_time_s is not None:
            doc["svc"] = float(f"{self.service_time_s:.3g}")
        if self.headroom > 1.0:
            doc["h"] = float(f"{self.headroom:.3g}")
        return json.dumps(doc, separators=(",", ":"))


def predictive_significant(state: PredictiveState, params: PredictiveParams) -> PredictivePersisted | None:
    """The persisted form of ``state`` (None while no season bucket has been started)."""
    if not params.seasonal or state.season_bucket_end is None:
        return None
    mean = state.bucket_sum / state.bucket_n if state.bucket_n else 0.0
    return PredictivePersisted(state.season, state.season_bucket_end, params.season_bucket_s, (mean, state.bucket_n),
                               state.service_time_s, state.headroom)


def predictive_needs_write(new: PredictivePersisted | None, old: PredictivePersisted | None) -> bool:
    """A season bucket closed since ``old`` was written (or nothing was written yet)."""
    if new is None:
        return False
    return old is None or new.season_end != old.season_end or new.season_bucket_s != old.season_bucket_s


def parse_predictive(text: str | None) -> PredictivePersisted | None:
    """Read the annotation; ``None`` if absent or unreadable (the policy then learns from scratch)."""
    doc = _document(text, PREDICTIVE_VERSION)
    if doc is None:
        return None
    try:
        mean, n = doc.get("open", [0.0, 0])
        svc = doc.get("svc")
        season = np.array([float(m) for m in doc["m"]], dtype=np.float64)
        out = PredictivePersisted(season.tobytes(), float(doc["end"]), float(doc["b"]),
                                  (float(mean), int(n)), None if svc is None else float(svc), float(doc.get("h", 1.0)))
    except (ValueError, TypeError, KeyError):
        return None
    if not (math.isfinite(out.headroom) and out.headroom >= 1.0):
        return None
    values = [out.bucket[0], out.season_end, out.season_bucket_s]
    if any(not math.isfinite(v) or v < 0 for v in values) or out.bucket[1] < 0 or out.season_bucket_s <= 0:
        return None
    if not (np.isfinite(season).all() and (season >= 0).all()):
        return None
    if out.service_time_s is not None and not (math.isfinite(out.service_time_s) and out.service_time_s > 0):
        return None
    return out


def restore_predictive(p: PredictivePersisted, params: PredictiveParams) -> PredictiveState:
    """A state to resume from: the season (refitted; dropped if the bucket size changed) and the service
    time, and the calibration's headroom (its share of queued readings set between its thresholds: held until
    fresh readings move it). The envelope starts empty and ``since`` unset, so the cold-start hold applies."""
    state = PredictiveState(service_time_s=p.service_time_s)
    if p.headroom > 1.0:
        state = replace(state, headroom=p.headroom,
                        over_share=(params.calibration_grow_share + params.calibration_relax_share) / 2)
    if not params.seasonal or p.season_bucket_s != params.season_bucket_s:
        return state
    per = max(1, round(params.season_period_s / params.season_bucket_s))
    season = p.season[-8 * per * params.season_history_periods:]
    values = unpack(season)
    fit = fit_season(values, per, params.season_harmonics) if values.size >= per else ()
    return replace(state, season=season, season_bucket_end=p.season_end, bucket_sum=p.bucket[0] * p.bucket[1],
                   bucket_n=p.bucket[1], season_fit=fit)
