"""The decision core and the serving model import no I/O (STYLE habit 7)."""

from autoscaler.tools.check_layers import violations


def test_pure_packages_import_no_io() -> None:
    """autoscaler.policy and autoscaler.serving never reach asyncio, aiohttp, kube or time."""
    assert violations() == []
