"""inference-autoscaler: one controller that replaces HPA + Prometheus Adapter for GPU inference servers."""

__version__ = "0.1.0"
ANNOTATION_PREFIX = "inference-autoscaler.io/"


class CommandError(Exception):
    """A problem the command line reports in one line (``autoscaler <command>: <message>``, exit 1) instead of a
    traceback: a kubeconfig that cannot be read, ..."""
