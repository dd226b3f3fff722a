"""``autoscaler explain NAMESPACE/NAME``: why a lease has the replicas it has (see ``leases.py``)."""

from autoscaler.commands.leases import add_explain_arguments as add_arguments
from autoscaler.commands.leases import run_explain as run

__all__ = ["add_arguments", "run"]
