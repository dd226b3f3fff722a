"""``autoscaler status``: a table of leases like ``kubectl get hpa`` (see ``leases.py``)."""

from autoscaler.commands.leases import add_arguments, run

__all__ = ["add_arguments", "run"]
