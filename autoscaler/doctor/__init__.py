"""``autoscaler doctor``: the TMS / NIM+HPA troubleshooting list as one command, each finding with its fix."""
