"""inference-autoscaler: one controller that replaces HPA + Prometheus Adapter for GPU inference servers."""

__version__ = "0.1.0"
ANNOTATION_PREFIX = "inference-autoscaler.io/"
