"""`autoscaler record` against a real Prometheus serving backfilled Triton and vLLM counters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoscaler.cli import main
from autoscaler.metrics.localprom import LocalPrometheus, OpenMetricsWriter, backfill
from autoscaler.replay.workload import load_trace

T0 = 1_700_000_000.0  # start of the backfilled data (15 s scrapes for 1 h)
RATE = (2.0, 3.0)  # req/s of the two pods of the lease


@pytest.mark.prometheus
def test_record_writes_the_lease_history_as_a_trace(tmp_path: Path) -> None:
    """Two pods at 2 and 3 req/s for an hour become 300 requests per 60 s bucket; other leases are ignored; a vLLM
    lease is read from vLLM's finished-request counter, every finished_reason (2 req/s: 120 a bucket)."""
    w = OpenMetricsWriter()
    times = T0 + np.arange(0, 3600 + 1, 15.0)
    for pod, rate in zip(("llm-5d9f8-abcde", "llm-5d9f8-fghij"), RATE, strict=True):
        w.add("nv_inference_request_success", {"namespace": "ml", "pod": pod, "model": "m"},
              [(t, (t - T0) * rate) for t in times])
    w.add("nv_inference_request_success", {"namespace": "ml", "pod": "other-5d9f8-zzzzz", "model": "m"},
          [(t, (t - T0) * 100.0) for t in times])
    for reason, rate in (("stop", 1.5), ("length", 0.5)):  # a vLLM lease: every finished_reason counts
        w.add("vllm:request_success_total", {"namespace": "ml", "pod": "chat-7c4b9-qrstu", "model_name": "l",
                                             "engine": "0", "finished_reason": reason},
              [(t, (t - T0) * rate) for t in times])
    src = tmp_path / "data.om"
    w.write(src)
    backfill(src, tmp_path / "tsdb")
    out = tmp_path / "trace.csv"
    with LocalPrometheus(tmp_path / "tsdb") as prom:
        rc = main(["record", "--prometheus", prom.url, "--lease", "ml/llm", "--since", "50m",
                   "--end", str(T0 + 3600 - 120), "--step", "60s", "--out", str(out)])
        vllm = tmp_path / "chat.csv"
        assert main(["record", "--prometheus", prom.url, "--lease", "ml/chat", "--since", "50m",
                     "--end", str(T0 + 3600 - 120), "--step", "60s", "--out", str(vllm)]) == 0
    assert rc == 0
    trace = load_trace(out)
    assert trace.bucket_s == 60.0 and len(trace.requests) == 50
    assert np.all(trace.requests == 300.0)
    chat = load_trace(vllm)
    assert len(chat.requests) == 50 and np.all(chat.requests == 120.0)  # 2 req/s from vLLM's counter
