"""The predictive decision's sentence (status annotation, Events, ``autoscaler leases``), from real decisions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from autoscaler.controller import predictive_message
from autoscaler.policy.predictive import (
    PredictiveDecision,
    PredictiveObservation,
    PredictiveParams,
    PredictiveReason,
    PredictiveState,
    decide_predictive,
    replicas_needed,
)


def _obs(now: float, rate: float, current: int, queue_us: float = 0.0) -> PredictiveObservation:
    return PredictiveObservation(now=now, current_replicas=current, ready_replicas=current, starting_replicas=0,
                                 min_replicas=1, max_replicas=40, request_rate_rps=rate, service_time_s=0.25,
                                 slots_per_replica=8, startup_s=120.0, queue_time_us=queue_us, pending_requests=0.0)


def _run(params: PredictiveParams, rates: list[tuple[float, float]], current: int,
         queue_us: float = 0.0) -> PredictiveDecision:
    state, d = PredictiveState(), None
    for t, r in rates:
        d = decide_predictive(_obs(t, r, current, queue_us), state, params)
        state = d.state
    assert d is not None
    return d


def test_message_says_the_rate_the_target_and_a_spike_hold() -> None:
    p = PredictiveParams(seasonal=False, reactive_floor_factor=0.0, trend_window_s=0.0)
    big = replicas_needed(300.0, 0.25, 8, p, 1000)
    spikes = [(float(t), (300.0 if t < 900 else 40.0) if int(t // 30) % 2 == 0 else 0.0)
              for t in np.arange(0.0, 2105.0, 5.0)]
    d = _run(p, spikes, big)
    assert d.reason == PredictiveReason.SPIKE_HOLD
    msg = predictive_message(d, p)
    assert msg.startswith("predictive: 40.0 req/s now, ")
    assert f"arrivals come in spikes (roughness {d.details['roughness']:.2f}): not below {d.desired_replicas}, " \
           "0.7 x the largest target of the last 1800s" in msg
    assert "calibration" not in msg


def test_message_names_the_calibration_and_reads_missing_details_as_zero() -> None:
    p = PredictiveParams(seasonal=False, reactive_floor_factor=0.0, calibration_window_s=600.0)
    d = _run(p, [(float(t), 100.0) for t in np.arange(0.0, 3000.0, 5.0)], 4, queue_us=30000.0)
    assert d.reason == PredictiveReason.CALIBRATED
    assert f"demand x{d.details['headroom']:.2f} (calibration)" in predictive_message(d, p)
    bare = replace(d, reason=PredictiveReason.SPIKE_HOLD, details={})
    assert predictive_message(bare, p).startswith("predictive: 0.0 req/s now, 0.0 req/s expected in 0s")
