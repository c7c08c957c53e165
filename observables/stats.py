"""Statistics of Monte Carlo time series: the Gamma method with automatic windowing.

Reference: U. Wolff, "Monte Carlo errors with less errors", Comput. Phys. Commun. 156 (2004) 143
[hep-lat/0306017]; erratum Comput. Phys. Commun. 176 (2007) 383.  Below "Wolff" means that paper.

Conventions (see PHYSICS.md, Statistics):

* a series x_1..x_N of N measurements, taken every ``every`` = k updates (sweeps / trajectories /
  proposals) of the Markov chain;
* autocorrelation function (Wolff sect. 3, mean-subtracted, normalised by the number of pairs)
      Gamma(t) = 1/(N - t) sum_{i=1}^{N-t} (x_i - xbar)(x_{i+t} - xbar),   rho(t) = Gamma(t) / Gamma(0);
* integrated autocorrelation time  tau_int = 1/2 + sum_{t>=1} rho(t), so an uncorrelated chain has
  tau_int = 1/2, the error of the mean is  sigma^2 = Gamma(0) 2 tau_int / N  and N_eff = N / (2 tau_int).
  tau_int is measured in units of MEASUREMENTS; ``Estimate.tau_int_updates = every * tau_int``.

Public API: ``Estimate``, ``ShortChainWarning``, ``gamma_method``, ``gamma_method_derived``,
``autocorrelation``, ``jackknife``, ``stationarity``, ``weighted_mean`` and the older
``binned_mean_error``.  Only numpy is needed at run time.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

#: a chain shorter than SHORT_CHAIN_FACTOR * tau_int measurements is flagged (Wolff: N >> tau_int;
#: with fewer than ~50 tau_int the window, tau_int and the error itself are poorly determined).
SHORT_CHAIN_FACTOR = 50.0
#: sticky chains (``min_block``): fewer blocks than this, each twice the longest stay, is unreliable
RELIABLE_BLOCKS = 100
#: ... and so is an error whose blocking estimate exceeds the Gamma method's by this factor
BLOCKED_FACTOR = 1.5


class ShortChainWarning(UserWarning):
    """The chain is shorter than ~50 tau_int: the error estimate (and tau_int) are unreliable."""


# ----------------------------------------------------------------------------------------------
# the result record
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """Gamma-method estimate of a (primary or derived) expectation value.

    value:          the estimate (mean of the series, or f(means) for a derived quantity)
    error:          sigma = sqrt(Gamma(0) 2 tau_int / N), tau_int bias-corrected (see ``gamma_method``)
    tau_int:        integrated autocorrelation time in units of MEASUREMENTS (1/2 for independent data)
    tau_int_error:  its statistical error, Madras-Sokal approximation (Wolff eq. 42)
    window:         the summation window W_opt (in measurements) chosen by the automatic windowing
    n:              number of measurements N
    every:          measurement interval k, in updates; tau_int_updates = k * tau_int
    name:           optional label (the Derived name for derived quantities)
    """

    value: float
    error: float
    tau_int: float
    tau_int_error: float
    window: int
    n: int
    every: int = 1
    name: str = ""
    n_blocks: int = 0  # > 0: the error is at least the blocking error over this many blocks (``_estimate``)
    blocked: bool = False  # the blocking error was the larger one and is the one reported

    @property
    def n_eff(self) -> float:
        """Effective number of independent measurements, N_eff = N / (2 tau_int)."""
        return self.n / (2.0 * self.tau_int)

    @property
    def tau_int_updates(self) -> float:
        """tau_int in units of Markov-chain updates: every * tau_int."""
        return self.every * self.tau_int

    @property
    def error_error(self) -> float:
        """Statistical error of the error, sigma * sqrt((W + 1/2) / N) (Wolff, as in UWerr/pyerrors)."""
        return self.error * math.sqrt((self.window + 0.5) / self.n)

    @property
    def short(self) -> bool:
        """True when the chain is shorter than ~50 tau_int (N < 50 tau_int): errors are unreliable."""
        return self.n < SHORT_CHAIN_FACTOR * self.tau_int

    @property
    def unreliable(self) -> bool:
        """True for a sticky chain (``min_block``): fewer than RELIABLE_BLOCKS blocks longer than
        its longest stay, or an error dominated by the blocking term (1.5 x the Gamma error's)."""
        return self.n_blocks > 0 and (self.n_blocks < RELIABLE_BLOCKS or self.blocked)

    def as_dict(self) -> dict:
        """Plain-Python dict (JSON serialisable) of the fields and the derived properties."""
        d = asdict(self)
        d.update(n_eff=self.n_eff, tau_int_updates=self.tau_int_updates,
                 error_error=self.error_error, short=self.short, unreliable=self.unreliable)
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}

    def __str__(self) -> str:
        """One line: ``value ± error [tau_int = t(dt), N_eff = n]``; error to 2 significant digits."""
        val, err = format_value_error(self.value, self.error)
        tau = _format_paren(self.tau_int, self.tau_int_error)
        neff = f"{self.n_eff:.0f}" if self.n_eff >= 10 else f"{self.n_eff:.1f}"
        return f"{val} ± {err} [tau_int = {tau}, N_eff = {neff}]"


def _decimals(error: float) -> int:
    """Number of decimals that show `error` with 2 significant digits (negative: round to 10^-d)."""
    rounded = float(f"{error:.2g}")  # 0.0996 -> 0.1, so the digit count follows the rounded error
    return 1 - math.floor(math.log10(rounded))


def format_value_error(value: float, error: float) -> tuple[str, str]:
    """Strings for value and error: error with 2 significant digits, value rounded to the same place."""
    if not (math.isfinite(value) and math.isfinite(error)) or error <= 0:
        return f"{value:.6g}", f"{error:.2g}"
    d = _decimals(error)
    if d > 0:
        return f"{value:.{d}f}", f"{error:.{d}f}"
    return f"{round(value, d):.0f}", f"{round(error, d):.0f}"


def _format_paren(value: float, error: float) -> str:
    """Compact physics notation 4.52(31): error with 2 significant digits in the last places."""
    if not (math.isfinite(value) and math.isfinite(error)) or error <= 0:
        return f"{value:.3g}"
    d = _decimals(error)
    if d > 0:
        return f"{value:.{d}f}({round(error * 10**d):d})"
    v, e = format_value_error(value, error)
    return f"{v}({e})"


# ----------------------------------------------------------------------------------------------
# autocorrelation function and automatic windowing
# ----------------------------------------------------------------------------------------------
def _as_series(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-d series of measurements, got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"need at least 2 measurements, got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("series contains NaN or inf")
    return x


def _gamma_of_fluctuations(delta: np.ndarray, max_lag: int) -> np.ndarray:
    """Gamma(t) = 1/(N-t) sum_i delta_i delta_{i+t}, t = 0..max_lag, by zero-padded FFT (O(N log N)).

    Zero padding to length >= N + max_lag + 1 makes the circular correlation equal the linear one.
    """
    n = len(delta)
    size = 1 << int(n + max_lag + 1 - 1).bit_length()  # next power of two >= N + max_lag + 1
    spectrum = np.fft.rfft(delta, size)
    acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, size)[: max_lag + 1]
    return acf / (n - np.arange(max_lag + 1))


def _gamma_of_replicas(delta: np.ndarray, replicas: Sequence[int], max_lag: int) -> np.ndarray:
    """Gamma(t) of R replicas (Wolff 2004, sec. 3.3; as pyerrors): the lag-t products summed over
    all replicas, divided by the number of such pairs, sum_r max(N_r - t, 0). delta holds the
    replicas one after another, each with its own mean subtracted."""
    total, pairs = np.zeros(max_lag + 1), np.zeros(max_lag + 1)
    for part in np.split(delta, np.cumsum(replicas)[:-1]):
        lags = min(max_lag, len(part) - 1)
        total[:lags + 1] += _gamma_of_fluctuations(part, lags) * (len(part) - np.arange(lags + 1))
        pairs[:lags + 1] += len(part) - np.arange(lags + 1)
    return total / np.maximum(pairs, 1.0)


def replica_fluctuations(x: np.ndarray, replicas: Sequence[int] | None) -> np.ndarray:
    """x minus its mean, or with replicas (lengths, in order) minus each replica's own mean."""
    if replicas is None:
        return x - x.mean()
    return np.concatenate([p - p.mean() for p in np.split(x, np.cumsum(replicas)[:-1])])


def _check_replicas(replicas: Sequence[int] | None, n: int) -> list[int] | None:
    if replicas is None:
        return None
    replicas = [int(r) for r in replicas]
    if sum(replicas) != n or min(replicas) < 2:
        raise ValueError(f"replica lengths {replicas} must be >= 2 and add up to the {n} measurements")
    return replicas


def _max_window(n: int) -> int:
    """Largest window considered, N/2 - 1 (as pyerrors; UWerr uses N/2), at least 1."""
    return max(1, n // 2 - 1)


def autocorrelation(x, max_lag: int | None = None) -> np.ndarray:
    """Normalised autocorrelation function rho(t) = Gamma(t)/Gamma(0), t = 0..max_lag (default N/2).

    Gamma(t) = 1/(N - t) sum_{i=1}^{N-t} (x_i - xbar)(x_{i+t} - xbar)  (as in Wolff), via FFT.
    A constant series gives rho = (1, 0, 0, ...).
    """
    x = _as_series(x)
    max_lag = len(x) // 2 if max_lag is None else int(min(max_lag, len(x) - 1))
    gamma = _gamma_of_fluctuations(x - x.mean(), max_lag)
    rho = np.zeros(max_lag + 1)
    rho[0] = 1.0
    if gamma[0] > 10 * np.finfo(float).tiny:
        rho[1:] = gamma[1:] / gamma[0]
    return rho


@dataclass(frozen=True)
class _Window:
    """Result of the automatic windowing of one series of fluctuations."""

    error: float
    tau_int: float
    tau_int_error: float
    window: int
    windowing_failed: bool


def _windowing_condition(tau_int_w: np.ndarray, n: int, S: float) -> np.ndarray:
    """g(W) = exp(-W/tau(W)) - tau(W)/sqrt(W N),  W = 1, 2, ...   (Wolff, automatic windowing).

    tau(W) = S / ln((2 tau_int(W) + 1) / (2 tau_int(W) - 1)) is the exponential time that an exponential
    rho with that tau_int would have, scaled by S (Wolff's S_tau, default 1.5-2).  If tau_int(W) <= 1/2
    (rho summed to <= 0: no autocorrelation visible) tau(W) -> 0+, g(W) < 0 and the window closes there.
    W_opt minimises the sum of the systematic (truncation, ~exp(-W/tau)) and statistical (~sqrt(W/N))
    errors of tau_int; g(W) is its derivative, so W_opt = the first W with g(W) < 0.
    """
    w = np.arange(1, len(tau_int_w) + 1, dtype=np.float64)
    g = np.full(len(w), -1.0)
    ok = tau_int_w > 0.5
    tau = S / np.log((2 * tau_int_w[ok] + 1) / (2 * tau_int_w[ok] - 1))
    g[ok] = np.exp(-w[ok] / tau) - tau / np.sqrt(w[ok] * n)
    return g


def _gamma_analysis(delta: np.ndarray, S: float, replicas: Sequence[int] | None = None) -> _Window:
    """Gamma method for fluctuations delta_i (mean already subtracted) of N measurements.

    1. Gamma(t) by FFT for t = 0..W_max (W_max = N/2 - 1).
    2. tau_int(W) = 1/2 + sum_{t=1}^{W} rho(t);  W_opt = first W with g(W) < 0 (``_windowing_condition``);
       S = 0 means "assume no autocorrelation": W_opt = 0, tau_int = 1/2.
    3. Bias correction (Wolff eq. 49): the subtraction of the sample mean biases Gamma(t) by -C/N with
       C = Gamma(0) 2 tau_int(W); corrected, C(W) -> C(W) (1 + (2W + 1)/N), and we report
           tau_int = tau_int(W_opt) (1 + (2 W_opt + 1)/N),   sigma^2 = Gamma(0) 2 tau_int / N.
    4. Madras-Sokal error (Wolff eq. 42):  sigma^2(tau_int) = 4/N (W + 1/2 - tau_int) tau_int^2.
    A constant series (Gamma(0) == 0) gives error 0, tau_int 1/2, W 0 without warnings.
    """
    n = len(delta)
    if replicas is None or len(replicas) == 1:
        w_max = _max_window(n)
        gamma = _gamma_of_fluctuations(delta, w_max)
    else:  # the window range of the longest replica, as pyerrors
        w_max = _max_window(max(replicas))
        gamma = _gamma_of_replicas(delta, replicas, w_max)
    if gamma[0] <= 10 * np.finfo(float).tiny * max(1.0, n):
        return _Window(0.0, 0.5, 0.0, 0, False)
    if S == 0:
        return _Window(math.sqrt(gamma[0] / (n - 1)), 0.5, 0.0, 0, False)
    rho = gamma / gamma[0]
    tau_int_w = 0.5 + np.cumsum(rho[1:])  # tau_int(W) for W = 1..w_max
    below = np.flatnonzero(_windowing_condition(tau_int_w, n, S) < 0)
    failed = len(below) == 0
    window = w_max if failed else int(below[0]) + 1
    tau_int = max(float(tau_int_w[window - 1]), 0.5) * (1 + (2 * window + 1) / n)
    tau_int_error = 2 * tau_int * math.sqrt(max(window + 0.5 - tau_int, 0.0) / n)
    error = math.sqrt(gamma[0] * 2 * tau_int / n)
    return _Window(error, tau_int, tau_int_error, window, failed)


def _warn_if_short(est: Estimate, failed: bool, what: str, stacklevel: int = 3) -> None:
    """ShortChainWarning when N < 50 tau_int or when no window W < N/2 satisfied g(W) < 0."""
    if not (est.short or failed):
        return
    detail = "; the automatic windowing found no W_opt < N/2" if failed else ""
    warnings.warn(f"{what}: N = {est.n} measurements vs {SHORT_CHAIN_FACTOR:g} tau_int = "
                  f"{SHORT_CHAIN_FACTOR * est.tau_int:.0f} (tau_int = {est.tau_int:.3g}){detail}; "
                  "error and tau_int are unreliable, run longer", ShortChainWarning, stacklevel=stacklevel)


def blocking_error(delta: np.ndarray, block: int, replicas: Sequence[int] | None = None) -> tuple[float, int]:
    """(error of the mean, number of blocks) from the means of consecutive blocks of ``block``
    measurements (the incomplete last block dropped): sigma^2 = var(block means) / n_blocks. With
    replicas (lengths, delta about each replica's own mean) the blocks of every replica are pooled."""
    parts = [delta] if replicas is None else np.split(delta, np.cumsum(replicas)[:-1])
    means = [p[:len(p) // block * block].reshape(-1, block).mean(axis=1) for p in parts]
    means = np.concatenate(means) if means else np.zeros(0)
    n_blocks = len(means)
    if n_blocks < 2:
        return math.inf, n_blocks
    return float(np.std(means, ddof=1) / math.sqrt(n_blocks)), n_blocks


def _estimate(value: float, delta: np.ndarray, S: float, every: int, name: str = "",
              warn: bool = True, stacklevel: int = 4, min_block: int = 0,
              replicas: Sequence[int] | None = None) -> Estimate:
    """The Gamma-method estimate; with ``min_block`` > 0 (a sticky chain: twice its longest stay,
    in measurements) the error is the larger of the Gamma error and the blocking error with
    blocks of ``min_block`` measurements, and tau_int the one that error implies."""
    if S < 0:
        raise ValueError(f"S must be >= 0, got {S}")
    if int(every) != every or every < 1:
        raise ValueError(f"every must be a positive integer, got {every}")
    res = _gamma_analysis(delta, S, replicas)
    error, tau_int, n_blocks, blocked = res.error, res.tau_int, 0, False
    if min_block > 1:
        block_error, n_blocks = blocking_error(delta, int(min_block), replicas)
        n_blocks = max(n_blocks, 1)
        blocked = block_error > BLOCKED_FACTOR * res.error
        if block_error > res.error:
            gamma0 = float(np.mean(delta ** 2))
            error = block_error if math.isfinite(block_error) else math.inf
            tau_int = len(delta) * error ** 2 / (2 * gamma0) if gamma0 > 0 else res.tau_int
    est = Estimate(value=float(value), error=error, tau_int=tau_int,
                   tau_int_error=res.tau_int_error, window=res.window, n=len(delta),
                   every=int(every), name=name, n_blocks=n_blocks, blocked=blocked)
    if warn:
        _warn_if_short(est, res.windowing_failed, name or "gamma_method", stacklevel)
    return est


def gamma_method(x, S: float = 2.0, every: int = 1, name: str = "", min_block: int = 0,
                 replicas: Sequence[int] | None = None) -> Estimate:
    """Mean of one Markov-chain series x (N,) with the Gamma-method error (Wolff, automatic windowing).

    value = xbar;  error^2 = Gamma(0) 2 tau_int / N  with the bias-corrected tau_int of the optimal
    window (details in ``_gamma_analysis``).  S is Wolff's S_tau (S = 0: treat the data as
    uncorrelated).  ``every`` = number of updates between measurements, only used for
    ``Estimate.tau_int_updates``.  Issues a ``ShortChainWarning`` when N < 50 tau_int.

    Compared with pyerrors 2.x (``pe.Obs([x], ['ens']).gamma_method(S=S)``): same Gamma(t), window
    range and windowing condition, so value, error and W_opt agree; pyerrors additionally divides
    its reported tau_int by (1 + 1/N) (and multiplies Gamma(0) by the same factor for the error) and
    evaluates the Madras-Sokal error with the uncorrected tau_int(W): differences of O(1/N) and O(W/N).

    min_block > 0 (a sticky chain, e.g. an independence sampler's: twice its longest run of
    rejections, in measurements): the error is at least the blocking error with blocks that
    long; ``Estimate.unreliable`` says when that dominates or the chain holds few such blocks.

    replicas: the lengths of R replicas (independent chains of one setup) that x holds one after
    another: the value is the mean of all N measurements, Gamma(t) sums the lag-t products of each
    replica about its own mean over all replicas (``_gamma_of_replicas``), as in Wolff sec. 3.3
    and pyerrors' Obs([x_1, ..., x_R], ["ens|r1", ...]).
    """
    x = _as_series(x)
    replicas = _check_replicas(replicas, len(x))
    return _estimate(x.mean(), replica_fluctuations(x, replicas), S, every, name, min_block=min_block,
                     replicas=replicas)


# ----------------------------------------------------------------------------------------------
# derived quantities
# ----------------------------------------------------------------------------------------------
def _primaries(series, inputs: Sequence[str] | None = None) -> list[np.ndarray]:
    """The primary series as a list of equally long 1-d arrays (dict: in `inputs` order or insertion order)."""
    if isinstance(series, Mapping):
        keys = list(series) if inputs is None else list(inputs)
        missing = [k for k in keys if k not in series]
        if missing:
            raise KeyError(f"missing primary series: {missing}")
        arrays = [_as_series(series[k]) for k in keys]
    else:
        arrays = [_as_series(a) for a in series]
    if not arrays:
        raise ValueError("need at least one primary series")
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"primary series have different lengths: {[len(a) for a in arrays]}")
    return arrays


def _gradient(f: Callable[..., float], means: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central differences df/dA_a = (f(A + h_a e_a) - f(A - h_a e_a)) / (2 h_a); 0 where h_a == 0."""
    grad = np.zeros(len(means))
    for a, h in enumerate(steps):
        if h == 0:
            continue
        up, down = means.copy(), means.copy()
        up[a] += h
        down[a] -= h
        grad[a] = (float(f(*up)) - float(f(*down))) / (2 * h)
    return grad


def _derivative_steps(arrays: list[np.ndarray], rel_step: float) -> np.ndarray:
    """h_a = rel_step * (naive error of primary a) = rel_step * std(a) / sqrt(N).

    Steps relative to the statistical error probe f exactly on the scale on which the linearisation
    matters; a constant primary (std 0) contributes no fluctuations, its derivative is not needed.
    """
    n = len(arrays[0])
    return np.array([rel_step * np.std(a) / math.sqrt(n) for a in arrays])


def gamma_method_derived(derived, series: Mapping[str, np.ndarray], S: float = 2.0, every: int = 1,
                         rel_step: float = 1e-2, min_block: int = 0,
                         replicas: Sequence[int] | None = None) -> Estimate:
    """Gamma-method estimate of F = f(<a_1>, <a_2>, ...) for a ``Derived`` record (name, inputs, f).

    Linearised error propagation (Wolff, derived quantities): with the means abar_a and the
    gradient f_a = df/dA_a at abar (central differences, steps ``rel_step`` x the naive error of a),
    the fluctuations of the primaries are projected onto the gradient,
        delta_F,i = sum_a f_a (a_{a,i} - abar_a),
    and the single-series Gamma method (automatic windowing, bias correction) runs on delta_F:
    error^2 = Gamma_F(0) 2 tau_int,F / N.  value = f(abar_1, abar_2, ...).

    Bias: F(abar) has a bias O(tau_int / N), far below the error for N >> tau_int.  Wolff's
    bias-corrected value needs R >= 2 replica and is not applied here (single chain);
    ``jackknife`` offers the same functions with blocked resampling as a cross-check.
    """
    arrays = _primaries(series, derived.inputs)
    means = np.array([a.mean() for a in arrays])
    value = float(derived.f(*means))
    grad = _gradient(derived.f, means, _derivative_steps(arrays, rel_step))
    replicas = _check_replicas(replicas, len(arrays[0]))
    delta = np.zeros(len(arrays[0]))
    for g, a in zip(grad, arrays):
        if g != 0:
            delta += g * replica_fluctuations(a, replicas)
    return _estimate(value, delta, S, every, name=derived.name, min_block=min_block, replicas=replicas)


# ----------------------------------------------------------------------------------------------
# blocked jackknife
# ----------------------------------------------------------------------------------------------
def _default_block_size(arrays: list[np.ndarray], S: float = 2.0) -> int:
    """B = ceil(10 max_a tau_int,a) (>= 2 tau_int as required; the blocking bias of the variance is
    ~ -2 sum_t t rho(t) / (2 tau_int B), about 10% of sigma^2 for B = 10 tau_exp), capped at N/10 so at
    least 10 blocks remain (then the error is unreliable and a ShortChainWarning is issued)."""
    n = len(arrays[0])
    tau = max(_gamma_analysis(a - a.mean(), S).tau_int for a in arrays)
    block = max(1, math.ceil(10 * tau))
    if block > n // 10:
        warnings.warn(f"jackknife: 10 tau_int = {10 * tau:.0f} > N/10 = {n // 10}; blocks capped, "
                      "the error is underestimated", ShortChainWarning, stacklevel=3)
        block = max(1, n // 10)
    return block


def jackknife(f, series, block_size: int | None = None) -> tuple[float, float]:
    """Blocked jackknife of F = f(<a_1>, <a_2>, ...) -> (value, error).

    f: a callable taking the means positionally (in the order of the list, or of the dict's keys), or a
    ``Derived`` record (its ``inputs`` pick the series from the dict).  The first n_b * B measurements
    are cut into n_b blocks of B; the leftover (< B) stays in every jackknife sample.  With S the total
    sum, S_b the sum over block b:
        abar^(b) = (S - S_b) / (N - B),    F_b = f(abar^(b)),
        error^2 = (n_b - 1)/n_b sum_b (F_b - mean_b F_b)^2,
        value = f(abar) with all N measurements (for linear f exactly the plain mean).
    Blocks must be longer than the autocorrelation: B defaults to ceil(10 tau_int) from the Gamma
    method of the primaries (see ``_default_block_size``).
    """
    func = getattr(f, "f", f)
    inputs = getattr(f, "inputs", None)
    arrays = _primaries(series, inputs)
    n = len(arrays[0])
    block = _default_block_size(arrays) if block_size is None else int(block_size)
    n_blocks = n // block
    if block < 1 or n_blocks < 2:
        raise ValueError(f"need block_size >= 1 and at least 2 blocks, got B = {block}, N = {n}")
    value = float(func(*[a.mean() for a in arrays]))
    jk_means = []
    for a in arrays:
        sums = a[: n_blocks * block].reshape(n_blocks, block).sum(axis=1)
        jk_means.append((a.sum() - sums) / (n - block))
    samples = np.array([float(func(*args)) for args in zip(*jk_means)])
    error = math.sqrt((n_blocks - 1) / n_blocks * np.sum((samples - samples.mean()) ** 2))
    return value, error


# ----------------------------------------------------------------------------------------------
# stationarity check
# ----------------------------------------------------------------------------------------------
def stationarity(x, S: float = 2.0, threshold: float = 3.0) -> tuple[float, bool]:
    """Compare the means of the first and second half of a chain -> (z, flagged).

    z = (xbar_1 - xbar_2) / sqrt(sigma_1^2 + sigma_2^2), each sigma from the Gamma method of its half
    (no ShortChainWarning for the halves); flagged = |z| > threshold (3).  A drift (thermalisation not
    discarded, a sampler that does not mix) makes the halves disagree.  Equal constant halves give z = 0.
    """
    x = _as_series(x)
    if len(x) < 4:
        raise ValueError(f"need at least 4 measurements, got {len(x)}")
    half = len(x) // 2
    first, second = x[:half], x[len(x) - half:]
    e1 = _estimate(first.mean(), first - first.mean(), S, 1, warn=False)
    e2 = _estimate(second.mean(), second - second.mean(), S, 1, warn=False)
    diff = e1.value - e2.value
    sigma = math.hypot(e1.error, e2.error)
    if sigma == 0:
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        z = diff / sigma
    return z, bool(abs(z) > threshold)


# ----------------------------------------------------------------------------------------------
# reweighted (importance-weighted) samples
# ----------------------------------------------------------------------------------------------
def weighted_mean(x, log_w) -> tuple[float, float, float]:
    """Self-normalised importance-sampling mean of independent samples -> (value, error, ESS/N).

    w_i = exp(log_w_i - max_j log_w_j) (the constant cancels; no overflow), and
        value = sum_i w_i x_i / sum_i w_i,
        error^2 = N/(N-1) sum_i w_i^2 (x_i - value)^2 / (sum_i w_i)^2     (delta method for the ratio
                  estimator; N/(N-1) makes equal weights give exactly std(x, ddof=1)/sqrt(N)),
        ESS = (sum_i w_i)^2 / sum_i w_i^2, reported as ESS/N in (0, 1].
    The samples must be independent (e.g. direct samples of a flow); for Markov chains use the Gamma
    method on the numerator and denominator series (ratio via ``gamma_method_derived``).
    """
    x = _as_series(x)
    log_w = np.asarray(log_w, dtype=np.float64)
    if log_w.shape != x.shape:
        raise ValueError(f"x and log_w have different shapes: {x.shape}, {log_w.shape}")
    if np.any(np.isnan(log_w)) or np.any(log_w == np.inf) or np.all(log_w == -np.inf):
        raise ValueError("log_w must be finite or -inf, with at least one finite entry")
    n = len(x)
    w = np.exp(log_w - log_w.max())
    sum_w, sum_w2 = w.sum(), np.sum(w**2)
    value = float(np.sum(w * x) / sum_w)
    error = math.sqrt(n / (n - 1) * np.sum(w**2 * (x - value) ** 2) / sum_w**2)
    return value, error, float(sum_w**2 / sum_w2 / n)


# ----------------------------------------------------------------------------------------------
# simple binning (kept for existing callers)
# ----------------------------------------------------------------------------------------------
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
