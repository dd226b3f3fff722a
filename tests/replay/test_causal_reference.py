"""The sizing without foresight of `benchmarks/causal_reference.py`: what it asks for, when replicas arrive, and how
long it holds, on hand-made violation tables."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("causal_reference", ROOT / "benchmarks" / "causal_reference.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


NS = np.arange(1, 5, dtype=np.float64)  # fleets of 1-4 replicas


def _table(steps: int, needed: int, until: int | None = None) -> np.ndarray:
    """10 requests a second, all violating with fewer than ``needed`` replicas (before ``until``), none otherwise."""
    V = np.zeros((steps, len(NS)), dtype=np.float32)
    V[:until, : needed - 1] = 10.0
    return V


def test_asks_for_the_fewest_replicas_that_met_the_share_and_gets_them_a_startup_later() -> None:
    cr = _module()
    arrivals = np.full(1000, 10.0)
    v, gpu = cr.past_window(_table(1000, needed=3), NS, arrivals, window_s=300, share=0.05, hold_s=60, startup_s=120)
    # the first decision (t = 5) asks for 3; they are Ready at t = 125: one replica violates until then
    assert v == 125 * 10 / 10_000
    assert gpu == 5 * 1 + 995 * 3  # paid from the ask


def test_keeps_its_largest_ask_for_the_hold() -> None:
    cr = _module()
    arrivals = np.full(600, 10.0)
    V = _table(600, needed=4, until=200)
    # the past 100 s hold more than 5 % violations with fewer than 4 replicas until t = 290; at t = 295 they hold 5 %
    v, gpu = cr.past_window(V, NS, arrivals, window_s=100, share=0.05, hold_s=60, startup_s=120)
    assert v == 125 * 10 / 6000
    assert gpu == 5 + (350 - 5) * 4 + (600 - 350) * 1  # the ask of t = 290 held until t = 350
    _, unheld = cr.past_window(V, NS, arrivals, window_s=100, share=0.05, hold_s=5, startup_s=120)
    assert unheld == 5 + (295 - 5) * 4 + (600 - 295) * 1


def test_a_scale_down_before_the_replicas_asked_for_are_ready_stops_paying_for_them() -> None:
    cr = _module()
    arrivals = np.full(400, 10.0)
    V = _table(400, needed=4, until=10)
    # asks 4 at t = 5 (Ready at 125); from t = 10 on the past holds under 5 % violations once the window passes the
    # first 10 s: a 10-s window asks for 1 again at t = 20, before the 3 asked for are Ready
    v, gpu = cr.past_window(V, NS, arrivals, window_s=10, share=0.05, hold_s=5, startup_s=120)
    assert v == 10 * 10 / 4000  # t < 10, one replica
    assert gpu == 5 + (20 - 5) * 4 + (400 - 20) * 1
