"""Which slots a lease's Events announce (``LeaseRuntime.slots_news``): new or moved learnt and estimated figures,
and each afresh after the other, as a rollout's pods are estimated and then learnt."""

from __future__ import annotations

from autoscaler.controller import LeaseRuntime


def test_estimated_then_learnt_then_a_rollout_announces_each_once() -> None:
    rt = LeaseRuntime()
    assert rt.slots_news(8, "kv-cache", None) == "SlotsEstimated"
    assert rt.slots_news(9, "kv-cache", None) is None  # within a quarter of the 8 announced
    assert rt.slots_news(12, "kv-cache", None) == "SlotsEstimated"
    assert rt.slots_news(6, "learnt", 6) == "SlotsLearned"  # saturated: the batch the pods run
    assert rt.slots_news(6, "learnt", 6) is None and rt.slots_news(7, "learnt", 7) is None
    assert rt.slots_news(4, "annotation", 6) is None  # stated: nothing learnt or estimated to announce
    # a rollout: the old pods' batches are forgotten; the new pods are estimated (even at the figure estimated
    # before), then learnt (even at the figure learnt before)
    assert rt.slots_news(12, "kv-cache", None) == "SlotsEstimated"
    assert rt.slots_news(6, "learnt", 6) == "SlotsLearned"
