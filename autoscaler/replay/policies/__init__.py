"""Replay policies: one small interface, one registry, one module per algorithm.

Why a registry: the replay compares many policies on the same simulated cluster, and the project's
own ``default`` policy changes over time (issue 8 replaces the HPA core with a predictive policy).
A policy is anything with a ``name``, a decision ``interval_s`` and ``decide(view) -> replicas``; it
sees only a :class:`~autoscaler.replay.sim.ClusterView` (pods as the API server shows them, metrics as
Prometheus would answer at that instant: scraped every 15 s, ``rate()`` over 1 m with extrapolation,
recording rules evaluated every 5 s), never the trace.

Adding an algorithm is one module in this package::

    # autoscaler/replay/policies/predictive.py
    from autoscaler.replay.policies import PolicyContext, register_algorithm

    @register_algorithm("predictive")          # the cluster policy's `autoscaling.algorithm` value
    def make(ctx: PolicyContext) -> ReplayPolicy:
        return MyPolicy(ctx)

Modules here are imported on first use, so nothing else needs editing. ``default`` resolves to the
algorithm the cluster policy (``--config``, default the shipped ``config/policy.yaml``) names;
:func:`register_policy` adds a named baseline (``hpa``, ``keda``, ``kpa``...) instead. Any simulated policy's
name with ``+zero`` (``default+zero``) replays it under the controller's scale-to-zero layer
(:mod:`autoscaler.replay.policies.zero`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from autoscaler.config import ClusterPolicy
from autoscaler.serving import ServingConfig

if TYPE_CHECKING:
    from autoscaler.replay.sim import ClusterView


@dataclass(frozen=True)
class ReplaySettings:
    """The simulated cluster's fixed settings, shared by every policy of one replay."""

    serving: ServingConfig
    target_queue_time_us: float = 10000.0
    startup_s: float = 120.0
    scrape_interval_s: float = 15.0
    rate_window_s: float = 60.0
    rule_interval_s: float = 5.0
    """Evaluation interval of the queue-time recording rule (``config/rules/queue-time.rules.yaml``)."""
    min_replicas: int = 1
    max_replicas: int = 40
    termination_grace_s: float = 30.0
    initial_replicas: int | None = None
    """Ready replicas at t=0 (None: what the first minute of the trace needs at the target)."""
    seed: int = 0


@dataclass(frozen=True)
class PolicyContext:
    """What a policy factory gets: the replay settings and the cluster policy (ConfigMap)."""

    settings: ReplaySettings
    cluster_policy: ClusterPolicy = field(default_factory=ClusterPolicy)
    options: dict[str, float] = field(default_factory=dict)
    """Free-form per-policy knobs (e.g. ``--policy-option kpa.targetUtilization=0.7``)."""


class ReplayPolicy(Protocol):
    """A scaling policy under replay. ``decide`` is called every ``interval_s`` seconds of trace time."""

    name: str
    interval_s: float

    def decide(self, view: ClusterView) -> int:
        """The desired replica count (the simulator clamps it to the replay's bounds)."""
        ...


PolicyFactory = Callable[[PolicyContext], ReplayPolicy]

ZERO = "+zero"
"""A simulated policy's name with this suffix replays it under the scale-to-zero layer."""

_POLICIES: dict[str, PolicyFactory] = {}
_ALGORITHMS: dict[str, PolicyFactory] = {}
_loaded = False


def register_policy(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Register a named policy (selectable with ``--policies NAME``)."""

    def deco(factory: PolicyFactory) -> PolicyFactory:
        _POLICIES[name] = factory
        return factory

    return deco


def register_algorithm(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Register a decision algorithm that the cluster policy's ``autoscaling.algorithm`` can name;
    ``default`` resolves to it."""

    def deco(factory: PolicyFactory) -> PolicyFactory:
        _ALGORITHMS[name] = factory
        return factory

    return deco


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    _loaded = True


def policy_names() -> list[str]:
    """Every name ``--policies`` accepts (``default`` and ``oracle`` included)."""
    _load()
    return sorted({*_POLICIES, "default", "oracle"})


def is_policy_name(name: str) -> bool:
    """Whether ``--policies`` accepts ``name``: a policy's name, or a simulated policy's with ``+zero`` (the
    scale-to-zero layer on top, :mod:`autoscaler.replay.policies.zero`)."""
    base = name.removesuffix(ZERO)
    return base in policy_names() and (base == name or base != "oracle")


def make_policy(name: str, ctx: PolicyContext) -> ReplayPolicy:
    """Build a policy by name; ``default`` is the cluster policy's algorithm; ``NAME+zero`` is NAME under the
    scale-to-zero layer."""
    _load()
    if name.endswith(ZERO) and is_policy_name(name):
        from autoscaler.replay.policies.zero import with_zero  # imports the simulator, which imports this module
        return with_zero(make_policy(name.removesuffix(ZERO), ctx), name, ctx)
    if name == "default":
        algo = ctx.cluster_policy.autoscaling.algorithm
        factory = _ALGORITHMS.get(algo)
        if factory is None:
            raise ValueError(f"the cluster policy names algorithm {algo!r}, which has no replay implementation "
                             f"(known: {', '.join(sorted(_ALGORITHMS))})")
        policy = factory(ctx)
        policy.name = "default"
        return policy
    factory = _POLICIES.get(name)
    if factory is None:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(policy_names())})")
    return factory(ctx)


__all__ = [
    "ZERO", "PolicyContext", "PolicyFactory", "ReplayPolicy", "ReplaySettings", "is_policy_name", "make_policy",
    "policy_names", "register_algorithm", "register_policy",
]
