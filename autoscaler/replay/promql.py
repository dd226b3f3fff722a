"""Prometheus's ``rate()`` on scraped counter samples, vectorised over series.

Why: the policies in a replay must see what they would see in a cluster. A counter scraped every 15 s
and read through ``rate(x[1m])`` lags the truth, is noisy with few samples, and is *extrapolated* to
the window's edges (which over-reads a counter that starts inside the window). This is a line-by-line
restatement of ``extrapolatedRate`` in Prometheus's ``promql/functions.go`` (v2.x/v3.x) for counters
without resets, on many series at once: rows are series, columns are samples (NaN = no sample).

The window is left-open ``(end - range, end]`` as in Prometheus 3.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def extrapolated_rate(times: FloatArray, values: FloatArray, range_end: float | FloatArray,
                      range_s: float) -> FloatArray:
    """Per-second ``rate()`` of each row's counter samples; NaN where a row has fewer than 2 samples.

    ``times``/``values`` have shape ``[S, K]`` with samples in increasing time along K and NaN
    padding (anywhere); samples outside ``(range_end - range_s, range_end]`` are ignored.
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    end = np.broadcast_to(np.asarray(range_end, dtype=np.float64), t.shape[:1])
    inside = np.isfinite(t) & np.isfinite(v) & (t > (end - range_s)[:, None]) & (t <= end[:, None])
    i_first = np.argmin(np.where(inside, t, np.inf), axis=1)
    i_last = np.argmax(np.where(inside, t, -np.inf), axis=1)
    rows = np.arange(t.shape[0])
    return rate_from_ends(t[rows, i_first], t[rows, i_last], inside.sum(axis=1), v[rows, i_first], v[rows, i_last],
                          end, range_s)


def rate_from_ends(t_first: FloatArray, t_last: FloatArray, n: npt.NDArray[np.int64], v_first: FloatArray,
                   v_last: FloatArray, range_end: float | FloatArray, range_s: float) -> FloatArray:
    """``extrapolatedRate`` from each series' first and last sample in the window and the number ``n`` of samples
    there; NaN where ``n < 2``. Values may carry a leading axis: counters scraped at the same instants share the
    times (``v_first`` ``[C, S]`` with ``t_first`` ``[S]``)."""
    end = np.asarray(range_end, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = v_last - v_first
        to_start = t_first - (end - range_s)
        to_end = end - t_last
        sampled = t_last - t_first
        avg_between = sampled / (n - 1)
        # a counter cannot extrapolate below zero: cap the start at where it would reach zero
        to_zero = sampled * (v_first / result)
        cap = (result > 0) & (v_first >= 0) & (to_zero < to_start)
        to_start = np.where(cap, to_zero, to_start)
        threshold = avg_between * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, avg_between / 2)
        interval = interval + np.where(to_end < threshold, to_end, avg_between / 2)
        out: FloatArray = result * (interval / sampled) / range_s
    return np.where(n >= 2, out, np.nan)
