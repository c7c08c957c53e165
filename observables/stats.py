"""Statistics of Monte Carlo time series."""
from __future__ import annotations

import numpy as np


def binned_mean_error(x: np.ndarray, n_bins: int = 20) -> tuple[float, float]:
    """Mean of a Markov-chain series and its error from n_bins equal consecutive bins.

    error^2 = sum_b (xbar_b - xbar)^2 / (n_bins (n_bins - 1)); it accounts for autocorrelation when each bin is much longer than tau_int.
    A leftover shorter than a bin at the end of the series is dropped.
    """
    x = np.asarray(x, dtype=np.float64)
    size = len(x) // n_bins
    if size < 1:
        raise ValueError(f"need at least {n_bins} measurements for {n_bins} bins, got {len(x)}")
    bins = x[: size * n_bins].reshape(n_bins, size).mean(axis=1)
    return float(bins.mean()), float(bins.std(ddof=1) / np.sqrt(n_bins))
