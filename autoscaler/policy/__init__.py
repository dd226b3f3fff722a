"""The pure decision core: no I/O, no clock, no asyncio. Time and state come in as arguments.

``decide(snapshot, state)`` reproduces the Kubernetes HPA exactly when configured like it
(``hpa.py``, ``replicas.py``, ``behavior.py``); ``snapshot_json`` is the ``autoscaler decide``
contract; ``decide_many`` (``batch.py``) decides many leases at once on numpy arrays, equal to ``decide``.
"""

from autoscaler.policy.batch import BatchInput, BatchOutput, StateArrays, build_batch, decide_batch, decide_many
from autoscaler.policy.behavior import record_scale_event
from autoscaler.policy.hpa import decide, state_without_event
from autoscaler.policy.types import (
    Behavior,
    Decision,
    DecisionState,
    MetricInput,
    MetricResult,
    MetricType,
    Pod,
    PodPhase,
    PodSample,
    Reason,
    Recommendation,
    ScaleEvent,
    ScalingPolicy,
    ScalingRules,
    Snapshot,
    Target,
    TargetType,
    Tolerances,
    to_milli,
)

__all__ = [
    "BatchInput", "BatchOutput", "Behavior", "Decision", "DecisionState", "MetricInput", "MetricResult", "MetricType",
    "Pod", "PodPhase", "PodSample", "Reason", "Recommendation", "ScaleEvent", "ScalingPolicy", "ScalingRules",
    "Snapshot", "StateArrays", "Target", "TargetType", "Tolerances", "build_batch", "decide", "decide_batch",
    "decide_many", "record_scale_event", "state_without_event", "to_milli",
]
