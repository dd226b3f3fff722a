"""The seam between the sandbox's control plane and its data plane.

The kubelet stand-in (:mod:`autoscaler.sandbox.controllers`) calls a :class:`PodHooks` as pods go
through their lives; the data plane (simulated Triton replicas, metrics endpoints, load) implements it.
Each hook gets a copy of the full pod object (metadata, spec, status). Hooks are awaited in order for
one pod (running, then ready, then terminating, then deleted); ``pod_terminating`` and ``pod_deleted``
come only for pods that got ``pod_running``. A hook that raises or hangs is logged and never stops the
controllers.
"""

from __future__ import annotations

from typing import Any, Protocol


class PodHooks(Protocol):
    async def pod_running(self, pod: dict[str, Any]) -> None:
        """The pod's containers started (phase Running, not Ready yet: the model is loading)."""

    async def pod_ready(self, pod: dict[str, Any]) -> None:
        """The pod became Ready: it starts receiving traffic."""

    async def pod_terminating(self, pod: dict[str, Any]) -> None:
        """The pod got a deletionTimestamp: it stops receiving traffic."""

    async def pod_deleted(self, pod: dict[str, Any]) -> None:
        """The pod is gone from the API: stop its metrics endpoint."""


class NoHooks:
    """Hooks that do nothing (a control plane without a data plane)."""

    async def pod_running(self, pod: dict[str, Any]) -> None:
        return None

    async def pod_ready(self, pod: dict[str, Any]) -> None:
        return None

    async def pod_terminating(self, pod: dict[str, Any]) -> None:
        return None

    async def pod_deleted(self, pod: dict[str, Any]) -> None:
        return None
