"""What one /metrics scrape costs the controller at N leases, without a cluster: CPU per scrape and peak RSS.

    python benchmarks/scrape_cost.py --leases 10000 [--json]

Builds the controller's Telemetry with N leases' series (two metrics each, a predictive period and rates, as a
predictive lease has) and scrapes it five times as /metrics does (``Telemetry.exposition``); the baseline is what
/metrics did before it wrote the leases' series itself: a collector building a ``GaugeMetricFamily`` sample per
series, rendered by prometheus_client's ``generate_latest``. Each in a fresh process, so that peak RSS is its own.
Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import time
from typing import Any


class _SamplePerSeries:
    """The leases' families as /metrics built them before `f4792e7`: a gauge sample object per series."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        lease = ["namespace", "lease"]
        fams = {k: GaugeMetricFamily(f"autoscaler_lease_{k}", k, labels=lease + extra) for k, extra in
                (("current_replicas", []), ("desired_replicas", ["mode"]), ("metric_value", ["metric"]),
                 ("metric_target", ["metric"]), ("cycle_period_seconds", []), ("request_rate_rps", ["kind"]))}
        for s in self.rows:
            ids = [s.namespace, s.lease]
            fams["current_replicas"].add_metric(ids, s.current)
            fams["desired_replicas"].add_metric([*ids, s.mode], s.desired)
            for name, v, t in s.metrics:
                fams["metric_target"].add_metric([*ids, name], t)
                if v is not None:
                    fams["metric_value"].add_metric([*ids, name], v)
            if s.cycle_period_s is not None:
                fams["cycle_period_seconds"].add_metric(ids, s.cycle_period_s)
            if s.rates is not None:
                fams["request_rate_rps"].add_metric([*ids, "demand"], s.rates[0])
                fams["request_rate_rps"].add_metric([*ids, "sized"], s.rates[1])
        yield from fams.values()


def _measure(leases: int, how: str, out: Any) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from autoscaler.telemetry import LeaseSeries, Telemetry

    rows = [LeaseSeries(f"ns{i % 500}", f"lease-{i}", "enforce", 2, 3,
                        (("queueTime", 12000.0 + i, 10000.0), ("requestStats", 1.0, 2.0)), 600.0, (10.0 + i, 12.0))
            for i in range(leases)]
    t = Telemetry()
    t.watch_leases(lambda: rows)
    baseline = CollectorRegistry()
    baseline.register(_SamplePerSeries(rows))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def scrapes() -> tuple[list[float], int]:
        cpu, size = [], 0
        for _ in range(5):
            c0 = time.process_time()
            body = await t.exposition() if how == "exposition" else generate_latest(baseline)
            cpu.append(time.process_time() - c0)
            size = len(body)
        return cpu, size

    cpu, size = asyncio.run(scrapes())
    out.put({"cpuSeconds": round(min(cpu), 3), "bytes": size, "rssBeforeMB": round(before, 1),
             "rssPeakMB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leases", type=int, default=10000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    res = {}
    for how in ("exposition", "generate_latest"):
        q = ctx.Queue()
        p = ctx.Process(target=_measure, args=(args.leases, how, q))
        p.start()
        res[how] = q.get(timeout=600)
        p.join()
    out = {"leases": args.leases, **res,
           "ratioCpu": round(res["generate_latest"]["cpuSeconds"] / max(1e-9, res["exposition"]["cpuSeconds"]), 1)}
    if args.json:
        print(json.dumps(out))
    else:
        for how in ("exposition", "generate_latest"):
            r = res[how]
            print(f"{how:>16}: {r['cpuSeconds']:.3f} s CPU per scrape, {r['bytes'] / 1e6:.1f} MB, "
                  f"peak RSS {r['rssBeforeMB']:.0f} -> {r['rssPeakMB']:.0f} MB")
        print(f"{'ratio':>16}: generate_latest takes {out['ratioCpu']}x the CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
