"""The soak benchmark, short: random faults for ~20 s under sine load, zero invariant violations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_short_soak_has_no_violations_and_flat_memory() -> None:
    """`benchmarks/soak.py` for 0.35 min: faults injected, load served, no violation, RSS growth small."""
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = await mod.soak(0.35, seed=3)
    assert out["violations"] == []
    assert out["faultsTotal"] >= 2 and out["servedFraction"] > 0.95
    assert out["controllerRssGrowthMB"] < 20
    zero = out["scaleToZero"]  # the min-replicas 0 lease went to zero in a silence and was woken by a burst
    assert zero["toZero"] >= 1 and zero["woken"] >= 1 and zero["servedFraction"] > 0, zero
