"""Issue 8 beyond the shared traces: synthetic traffic shapes, seeded, replayed side by side, one summary row each.

Usage: python benchmarks/generalization.py [--out DIR] [--shared] [--halves] [--variants] [--only NAME,...] [--json]
       [--plot PNG]

Writes the synthetic traces (CSV, the shared traces' format) to DIR (default: a temporary directory), replays
each through hpa, keda, kpa, default and oracle with the default replay settings, and prints one row per trace:
`default`'s figures as ratios, which of issue 8's checks it meets, and whether the oracle (perfect foresight)
itself reaches half of hpa's violations, i.e. whether that check is feasible at all on the trace.
`--shared` adds the shared traces (../shared/traces) to the table; `--halves` adds each shared trace's first and
second half as traces of their own (`_A`, `_B`, each rescaled on its own: held-out segments). `--variants` (eleventh
session) adds five traces rebuilt from the two 1-s Azure traces, none of them used to choose a parameter: each
played backwards (`azure_code_rev`, `azure_conv_rev`: the same bursts in another order), the two added second by
second (`code_plus_conv`: one endpoint serving both), and each one's first half spliced to the other one's second
(`conv_then_code`, `code_then_conv`: the traffic changes character mid-trace). `--plot` draws every
policy's violations and GPU-seconds relative to hpa per trace, with the region issue 8 asks for shaded.

The shapes (none of them was used to choose a parameter):
  flash       Poisson 5 req/s with a 20-minute flash crowd at 5x (tokens)
  ramp        Poisson ramp 2 -> 30 -> 2 req/s over an hour (tokens)
  onoff       5 req/s with 30-s bursts at 40 req/s every 5 minutes (tokens)
  gammaburst  three hours of a compressed day, each second's rate Gamma-distributed (CV^2 = 4) (tokens)
  diurnal60   two days at 60-s buckets, a daily sinusoid whose level steps up 40 % on day two
  square      50 <-> 300 req/s every 10 minutes at 5-s buckets (tokens)
  burstyweek  seven days of 1-s buckets: a daily cycle (weekend at 60 %) times per-second Gamma bursts (tokens)
  shortbursts an hour of random bursts shorter than a pod's start-up: on ~Exp(120 s) at a level ~Exp(mean 5 req/s),
              off ~Exp(300 s) (twelfth session; tokens)
  surges      an hour of a 0.2 req/s trickle with four 5-minute surges of +20 req/s at random times (they may
              overlap; twelfth session; tokens)
  hourly      six hours of 5 req/s with +35 req/s for the first five minutes of every hour: a batch job on a schedule
              (sixteenth session; tokens; used to build the recurring-load forecast, so not held out)
  hourlyjit   the same with each burst starting 0-6 minutes late and lasting 3-8 minutes (sixteenth session; tokens)
  minutenoise a day at 60-s buckets: a daily cycle times independent per-minute noise (lognormal, sigma 0.8) and
              rare heavy bursts (1 % of minutes, Pareto), as a low-volume API's per-minute counts (eighteenth session)
  drift       an hour of 1-s Poisson arrivals around 3.3 req/s whose rate drifts as a random walk (eighteenth
              session; tokens)
  window      an hour: 20 minutes of nothing, 20 of Poisson 10 req/s, 20 of nothing; traffic that starts on a
              one-replica lease and stops, as a batch job's window (twentieth session; tokens; the shape the
              backlog rule of that session was found on, so not held out)
  steady      an hour of Poisson 10 req/s (twentieth session; tokens)
  outage      the same with nothing for five minutes at half-time, the load back at once after (twentieth session;
              tokens)
  stepup      an hour of Poisson arrivals stepping from 3 to 10 req/s at half-time (twentieth session; tokens)
  sawtooth    a rate climbing from 2 to 20 req/s over ten minutes and falling back at once, six times (twentieth
              session; tokens)
  twolevel    a rate switching between 5 and 20 req/s after 30 s + Exp(300 s) at each level (twentieth session;
              tokens)
  bucket10    an hour at 10-s buckets: a 30-minute sinusoid times lognormal noise (sigma 0.3) per bucket (twentieth
              session)

Opt-in (`--only codeweek,convweek`; not in the default set, ~7 min each): a week resampled from a shared Azure
trace, each 10-minute block a random 10-minute block of the real trace (its per-second arrivals and token sums),
each request kept with a daily-cycle probability (0.25 at night to 1 at midday; weekends at 80 % of the swing).
Real burst structure over a week with a daily cycle, as the week-long Azure 2024 traces would have:
  codeweek    from azure_code_2023_1s.csv
  convweek    from azure_conv_2023_1s.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.config import load_policy
from autoscaler.replay.policies import ReplaySettings
from autoscaler.replay.report import criteria, frontier_ratio
from autoscaler.replay.run import replay
from autoscaler.replay.workload import DEFAULT_SERVING
from autoscaler.sandbox.load import load_trace

POLICIES = ("hpa", "keda", "kpa", "default", "oracle")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"


def _write(path: Path, counts: np.ndarray, rng: np.random.Generator, bucket: int = 1, tokens: bool = True) -> None:
    """A trace file: integer arrivals per bucket, with summed prompt / output tokens (Gamma per request)."""
    lines = [f"# synthetic trace {path.stem} (benchmarks/generalization.py, seeded)", f"# bucket_seconds={bucket}",
             "t_seconds,requests" + (",prompt_tokens,output_tokens" if tokens else "")]
    if tokens and counts.size > 100_000:  # a week of seconds: the sum of c Gamma(k, s) draws is one Gamma(c k, s)
        c = counts.astype(np.int64)
        p = np.where(c > 0, rng.gamma(np.maximum(2.0 * c, 1e-9), 500.0), 0).astype(np.int64)
        o = np.where(c > 0, rng.gamma(np.maximum(1.0 * c, 1e-9), 200.0), 0).astype(np.int64)
        lines += [f"{i * bucket},{a},{b},{d}" for i, (a, b, d) in enumerate(zip(c, p, o, strict=True))]
        path.write_text("\n".join(lines) + "\n")
        return
    for i, c in enumerate(counts.astype(np.int64)):
        if tokens:
            prompt = int(rng.gamma(2.0, 500.0, size=c).sum()) if c else 0
            output = int(rng.gamma(1.0, 200.0, size=c).sum()) if c else 0
            lines.append(f"{i * bucket},{c},{prompt},{output}")
        else:
            lines.append(f"{i * bucket},{c}")
    path.write_text("\n".join(lines) + "\n")


def _flash(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    t = np.arange(3600)
    return rng.poisson(np.where((t > 1200) & (t < 2400), 25.0, 5.0)), 1, True


def _ramp(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    return rng.poisson(np.interp(np.arange(3600), [0, 1800, 3600], [2.0, 30.0, 2.0])), 1, True


def _onoff(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    return rng.poisson(5.0 + 35.0 * ((np.arange(3600) % 300) < 30)), 1, True


def _gammaburst(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    t = np.arange(3 * 3600)
    base = 10.0 + 8.0 * np.sin(2 * np.pi * t / t.size)
    return rng.poisson(rng.gamma(0.25, base / 0.25)), 1, True


def _diurnal60(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    t = np.arange(2 * 1440)
    lam = 60.0 * (100.0 + 70.0 * np.sin(2 * np.pi * t / 1440 - 1.5)) * np.where(t > 1440, 1.4, 1.0)
    return rng.poisson(lam), 60, False


def _square(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    t = np.arange(720) * 5
    return rng.poisson(5 * np.where((t // 600) % 2 == 0, 50.0, 300.0)), 5, True


def _burstyweek(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    t = np.arange(7 * 86400)
    day = (t // 86400) % 7
    level = 5.0 + 4.0 * np.sin(2 * np.pi * t / 86400 - 1.5)
    level = level * np.where(day >= 5, 0.6, 1.0)
    return rng.poisson(rng.gamma(0.5, level / 0.5)), 1, True


def _shortbursts(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    lam = np.zeros(3600)
    t = 0
    while t < lam.size:
        on, off = int(rng.exponential(120.0)), int(rng.exponential(300.0))
        lam[t:t + on] = rng.gamma(1.0, 5.0)
        t += on + off
    return rng.poisson(lam), 1, True


def _hourly(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    t = np.arange(6 * 3600)
    return rng.poisson(5.0 + 35.0 * ((t % 3600) < 300)), 1, True


def _hourlyjit(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    lam = np.full(6 * 3600, 5.0)
    for hour in range(6):
        start = hour * 3600 + int(rng.integers(0, 360))
        lam[start:start + int(rng.integers(180, 480))] += 35.0
    return rng.poisson(lam), 1, True


def _surges(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    lam = np.full(3600, 0.2)
    for start in rng.choice(3300, 4, replace=False):
        lam[start:start + 300] += 20.0
    return rng.poisson(lam), 1, True


def _minutenoise(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    t = np.arange(1440)
    level = 16.0 + 14.0 * np.sin(2 * np.pi * (t / 1440 - 0.3))  # requests a minute
    noise = rng.lognormal(-0.32, 0.8, t.size)  # mean 1
    bursts = (rng.random(t.size) < 0.01) * rng.pareto(1.5, t.size) * 60.0
    return rng.poisson(level * noise + bursts), 60, False


def _drift(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    walk = np.exp(np.cumsum(rng.normal(0.0, 0.02, 3600)))
    return rng.poisson(3.3 * walk / walk.mean()), 1, True


def _window(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    lam = np.zeros(3600)
    lam[1200:2400] = 10.0
    return rng.poisson(lam), 1, True


def _steady(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    return rng.poisson(np.full(3600, 10.0)), 1, True


def _outage(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    lam = np.full(3600, 10.0)
    lam[1800:2100] = 0.0
    return rng.poisson(lam), 1, True


def _stepup(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    return rng.poisson(np.where(np.arange(3600) < 1800, 3.0, 10.0)), 1, True


def _sawtooth(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    t = np.arange(3600)
    return rng.poisson(2.0 + 18.0 * (t % 600) / 600), 1, True


def _twolevel(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    lam = np.empty(3600)
    i, level = 0, 5.0
    while i < lam.size:
        n = 30 + int(rng.exponential(300.0))
        lam[i:i + n] = level
        i, level = i + n, 25.0 - level
    return rng.poisson(lam), 1, True


def _bucket10(rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    k = np.arange(360)
    return rng.poisson(10.0 * (10.0 + 5.0 * np.sin(2 * np.pi * k / 180)) * rng.lognormal(0.0, 0.3, k.size)), 10, False


SHAPES: dict[str, Callable[[np.random.Generator], tuple[np.ndarray, int, bool]]] = {
    "flash": _flash, "ramp": _ramp, "onoff": _onoff, "gammaburst": _gammaburst, "diurnal60": _diurnal60,
    "square": _square, "burstyweek": _burstyweek, "shortbursts": _shortbursts, "surges": _surges,
    "hourly": _hourly, "hourlyjit": _hourlyjit, "minutenoise": _minutenoise, "drift": _drift,
    "window": _window, "steady": _steady, "outage": _outage, "stepup": _stepup, "sawtooth": _sawtooth,
    "twolevel": _twolevel, "bucket10": _bucket10,
}
RESAMPLED = {"codeweek": "azure_code_2023_1s.csv", "convweek": "azure_conv_2023_1s.csv"}
"""Opt-in shapes: a week resampled from a shared 1-s trace (see the module's docstring)."""


def _write_resampled(path: Path, src: Path, rng: np.random.Generator, block: int = 600, days: int = 7) -> None:
    """A week of ``src``'s real 10-minute blocks, thinned request by request to a daily cycle (tokens with them)."""
    trace = load_trace(src)
    if trace.bucket_s != 1 or trace.prompt_tokens is None or trace.output_tokens is None:
        raise ValueError(f"{src}: resampling needs 1-s buckets with token columns")
    req = trace.requests.astype(np.int64)
    tok = np.column_stack([trace.prompt_tokens, trace.output_tokens])
    n_blocks = days * 86400 // block
    starts = rng.integers(0, req.size - block, size=n_blocks)
    idx = (starts[:, None] + np.arange(block)[None, :]).ravel()
    t = np.arange(idx.size)
    swing = np.where((t // 86400) % 7 >= 5, 0.8, 1.0)
    keep = 0.625 - 0.375 * swing * np.cos(2 * np.pi * (t % 86400) / 86400)
    counts = rng.binomial(req[idx], keep)
    share = np.where(req[idx] > 0, counts / np.maximum(req[idx], 1), 0.0)
    kept_tok = (tok[idx] * share[:, None]).astype(np.int64)
    lines = [f"# synthetic trace {path.stem} (benchmarks/generalization.py, seeded): {block}-s blocks of {src.name} "
             "over a week, thinned to a daily cycle", "# bucket_seconds=1",
             "t_seconds,requests,prompt_tokens,output_tokens"]
    lines += [f"{i},{c},{p},{o}" for i, (c, (p, o)) in enumerate(zip(counts, kept_tok, strict=True))]
    path.write_text("\n".join(lines) + "\n")


def write_traces(out: Path, names: list[str], seed: int = 42) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])  # by name: a subset gives the same traces
        path = out / f"{name}.csv"
        if name in RESAMPLED:
            _write_resampled(path, SHARED / RESAMPLED[name], rng)
        else:
            counts, bucket, tokens = SHAPES[name](rng)
            _write(path, counts, rng, bucket, tokens)
        paths.append(path)
    return paths


def _read_rows(src: Path) -> tuple[list[str], float, list[list[str]]]:
    """A trace's header lines, its bucket (the step of ``t_seconds``) and each row's fields after ``t_seconds``."""
    lines = src.read_text().splitlines()
    head = [x for x in lines if x.startswith("#") or x.startswith("t_seconds")]
    rows = [x.split(",") for x in lines if x and x[0].isdigit()]
    bucket = float(rows[1][0]) - float(rows[0][0]) if len(rows) > 1 else 1.0
    return head, bucket, [r[1:] for r in rows]


def _write_rows(path: Path, head: list[str], rows: list[list[str]], bucket: float = 1.0) -> Path:
    """A trace file: the header lines, then the rows with ``t_seconds`` counted from 0."""
    path.write_text("\n".join([*head, *(",".join([f"{i * bucket:g}", *r]) for i, r in enumerate(rows))]) + "\n")
    return path


def write_halves(src: Path, out: Path) -> list[Path]:
    """The first and the second half of a trace, each a trace file of its own (header kept, time from 0)."""
    head, bucket, rows = _read_rows(src)
    mid = len(rows) // 2
    return [_write_rows(out / f"{src.stem}_{tag}.csv", head, part, bucket)
            for tag, part in (("A", rows[:mid]), ("B", rows[mid:]))]


def write_variants(out: Path) -> list[Path]:
    """Held-out traces rebuilt from the two 1-s Azure traces (reversed, summed, spliced; see the module doc)."""
    head, _, code = _read_rows(SHARED / "azure_code_2023_1s.csv")
    _, _, conv = _read_rows(SHARED / "azure_conv_2023_1s.csv")
    n = min(len(code), len(conv))
    summed = [[str(int(a) + int(b)) for a, b in zip(x, y, strict=True)] for x, y in zip(code[:n], conv[:n], strict=True)]
    variants = {
        "azure_code_rev": code[::-1], "azure_conv_rev": conv[::-1], "code_plus_conv": summed,
        "conv_then_code": conv[:len(conv) // 2] + code[len(code) // 2:],
        "code_then_conv": code[:len(code) // 2] + conv[len(conv) // 2:],
    }
    return [_write_rows(out / f"{name}.csv", head, rows) for name, rows in variants.items()]


def summary_row(name: str, s: dict[str, dict[str, Any]], frontier: dict[str, Any] | None = None) -> dict[str, Any]:
    """`default` against the baselines and the oracle, the checks met, and whether any schedule could meet them
    all (``frontier``: :meth:`ReplayResult.checks_frontier`)."""
    d, h, o = s["default"], s["hpa"], s["oracle"]
    checks = criteria(s)
    return {
        "trace": name, "viol": d["sloViolationFraction"], "hpaViol": h["sloViolationFraction"],
        "kpaViol": s["kpa"]["sloViolationFraction"], "oracleViol": o["sloViolationFraction"],
        "violVsHpa": d["sloViolationFraction"] / max(h["sloViolationFraction"], 1e-12),
        "gpuVsHpa": d["gpuSeconds"] / h["gpuSeconds"], "gpuVsKpa": d["gpuSeconds"] / s["kpa"]["gpuSeconds"],
        "gpuVsOracle": d["gpuSeconds"] / o["gpuSeconds"],
        "met": [name for name, ok, _ in checks if ok], "missed": [name for name, ok, _ in checks if ok is False],
        "checksFrontier": frontier,
        "relative": {name: (p["gpuSeconds"] / h["gpuSeconds"],
                            p["sloViolationFraction"] / max(h["sloViolationFraction"], 1e-12))
                     for name, p in s.items()},
    }


def feasibility(frontier: dict[str, Any] | None) -> str:
    """The table's last column: can any schedule (knowing the future) meet every check, and at what cost."""
    if frontier is None:
        return "-"
    if frontier["cheapestGpuSecondsUpper"] is None:
        return "**no** (violations)"
    word = {True: "yes", False: "**no**", None: "unclear"}[frontier["feasible"]]
    return f"{word} ({'<= ' if frontier['feasible'] else ''}{frontier_ratio(frontier):.2f}x)"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """One panel: x = GPU-seconds / hpa's, y = violations / hpa's, a marker per policy per trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=90)
    ax.axvspan(0, 1.0, ymax=0.5 / 2.0, color="tab:green", alpha=0.12, label="issue 8: <= hpa GPU, <= 0.5x violations")
    style = {"default": ("o", "tab:blue"), "keda": ("s", "tab:orange"), "kpa": ("^", "tab:red"),
             "oracle": ("*", "tab:gray")}
    for name, (marker, color) in style.items():
        pts = [(r["relative"][name], r["trace"]) for r in rows if name in r["relative"]]
        ax.scatter([x for (x, _), _ in pts], [min(y, 1.95) for (_, y), _ in pts], marker=marker, color=color,
                   s=70 if name == "default" else 40, label=name, zorder=3)
        if name == "default":
            for (x, y), trace in pts:
                ax.annotate(trace.split("_20")[0].split("_mlarge")[0], (x, min(y, 1.95)), fontsize=8,
                            xytext=(4, 3), textcoords="offset points")
    ax.scatter([1.0], [1.0], marker="x", color="black", s=60, label="hpa (queue time)", zorder=3)
    ax.set_xlim(0, max(1.6, max(r["relative"]["default"][0] for r in rows) + 0.1))
    ax.set_ylim(0, 2.0)
    ax.set_xlabel("GPU-seconds / hpa's")
    ax.set_ylabel("SLO-violation fraction / hpa's (capped at 1.95)")
    ax.set_title("default vs the baselines, per trace (benchmarks/generalization.py)")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="where to write the traces (default: a temp dir)")
    ap.add_argument("--only", default=",".join(SHAPES), help="comma-separated shapes")
    ap.add_argument("--shared", action="store_true", help="also replay the shared traces")
    ap.add_argument("--halves", action="store_true", help="also replay each shared trace's halves (held out)")
    ap.add_argument("--variants", action="store_true",
                    help="also replay five traces rebuilt from the Azure traces (reversed, summed, spliced)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", type=Path, default=None, help="write the summary plot (PNG) here")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(SHAPES) - set(RESAMPLED))
    if unknown:
        print(f"unknown shapes {unknown} (known: {', '.join([*SHAPES, *RESAMPLED])})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        traces = write_traces(args.out or Path(tmp), names)
        if args.variants:
            traces = write_variants(args.out or Path(tmp)) + traces
        if args.halves:
            out = args.out or Path(tmp)
            traces = [h for src in sorted(SHARED.glob("*.csv")) for h in write_halves(src, out)] + traces
        if args.shared:
            traces = sorted(SHARED.glob("*.csv")) + traces
        settings = ReplaySettings(serving=DEFAULT_SERVING, max_replicas=40)
        rows = []
        for trace in traces:
            t0 = time.perf_counter()
            res = replay(trace, POLICIES, settings, load_policy(), peak_replicas=20, frontier_always=True)
            rows.append(summary_row(trace.stem, res.summaries, res.checks_frontier()))
            print(f"{trace.stem}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.plot:
        plot(rows, args.plot)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| trace | default viol | hpa / kpa / oracle viol | viol/hpa | GPU/hpa | GPU/kpa | GPU/oracle | "
          "missed checks | any schedule meets all? |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['trace']} | {r['viol']:.4f} | {r['hpaViol']:.4f} / {r['kpaViol']:.4f} / {r['oracleViol']:.4f} | "
              f"{r['violVsHpa']:.2f} | {r['gpuVsHpa']:.2f} | {r['gpuVsKpa']:.2f} | {r['gpuVsOracle']:.2f} | "
              f"{', '.join(r['missed']) or '-'} | {feasibility(r['checksFrontier'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
