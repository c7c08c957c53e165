"""Sticky learned chains: their diagnostics, and errors that are either honest or flagged.

The model chain: independence Metropolis-Hastings for the target N(0, 1) from the proposal
N(0, s2), observable x^2 (exact <x^2> = 1). For s2 < 1/2 the weights w = p / q have infinite
variance: the chain sticks for long in the tails and a chain of 5000 is often biased."""
import warnings

import numpy as np
import pytest

from observables.proposal_diagnostics import block_floor, longest_stay, proposal_diagnostics, unreliable_reason
from observables.stats import gamma_method


def independence_chain(s2: float, n: int, seed: int):
    """x^2 series and the diagnostics learned-mh stores (log_p, log_q, proposal, accept)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0.0, np.sqrt(s2), n)
    log_u = np.log(rng.random(n))
    log_w = -y ** 2 / 2 + y ** 2 / (2 * s2)
    idx = np.empty(n, dtype=np.int64)
    cur = 0
    for i in range(n):
        if log_u[i] < log_w[i] - log_w[cur]:
            cur = i
        idx[i] = cur
    x = y[idx]
    accept = np.r_[1.0, (np.diff(idx) != 0).astype(float)]
    return x ** 2, {"log_p": -x ** 2 / 2, "log_q": -x ** 2 / (2 * s2), "proposal": idx.astype(float),
                    "accept": accept}


def sticky_estimate(s2: float, seed: int, n: int = 5000):
    x2, diag_series = independence_chain(s2, n, seed)
    diag = proposal_diagnostics(diag_series, "learned-mh")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = gamma_method(x2, min_block=block_floor(diag))
    return est, (est.value - 1.0) / est.error, unreliable_reason(est, diag), diag


def test_longest_stay_counts_runs_of_one_proposal_and_ignores_local_moves():
    assert longest_stay(np.array([0, 0, 3, 3, 3, 5, -1, -1, -1, -1, 7])) == 3
    assert longest_stay(np.array([-1, -1])) == 0


def test_diagnostics_of_a_chain_match_those_of_its_proposals():
    _, diag_series = independence_chain(2.0, 20000, seed=1)
    diag = proposal_diagnostics(diag_series, "learned-mh")
    exact_ess = np.sqrt(2.0 * 2.0 - 1.0) / 2.0  # (E_q w)^2 / E_q w^2 for N(0,1) from N(0,2)
    assert diag["proposal_ess"] == pytest.approx(exact_ess, abs=0.03)
    assert diag["acceptance"] == pytest.approx(diag_series["accept"].mean())
    assert "warning" not in diag


@pytest.mark.parametrize("s2", [0.4, 0.5])
def test_a_sticky_chain_has_an_error_covering_the_truth_or_is_flagged_unreliable(s2):
    results = [sticky_estimate(s2, seed) for seed in range(20)]
    for seed, (_, z, reason, _) in enumerate(results):
        assert abs(z) < 4 or reason is not None, (seed, z)
    assert sum(r[2] is not None for r in results) >= 15  # the heavy tail is seen in most chains


@pytest.mark.parametrize("s2", [0.8, 1.5])
def test_a_healthy_independence_chain_is_neither_flagged_nor_off(s2):
    for seed in range(10):
        _, z, reason, _ = sticky_estimate(s2, seed)
        assert reason is None and abs(z) < 4, (seed, z, reason)


def test_the_error_of_a_sticky_chain_is_at_least_its_blocking_error():
    x2, diag_series = independence_chain(0.45, 5000, seed=3)
    floor = block_floor(proposal_diagnostics(diag_series, "learned-mh"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain, floored = gamma_method(x2), gamma_method(x2, min_block=floor)
    blocks = x2[: len(x2) // floor * floor].reshape(-1, floor).mean(axis=1)
    assert floored.error >= max(plain.error, blocks.std(ddof=1) / np.sqrt(len(blocks))) - 1e-15


def test_a_density_free_model_gets_no_weights_and_no_heavy_tail_warning():
    n = 50
    diag = proposal_diagnostics({"log_p": np.zeros(n), "log_q": np.full(n, np.nan), "proposal": np.arange(n),
                                 "accept": np.ones(n)}, "model-samples")
    assert "proposal_ess" not in diag and "warning" not in diag and "no density" in diag["note"]
