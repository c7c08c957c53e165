"""Exact results of PHYSICS.md that the tests compare against (derived here, independently of the package)."""
from __future__ import annotations

import numpy as np
from scipy.special import ive


def u1_plaquette_torus(beta: float, volume: int, n_max: int = 40) -> float:
    """<cos theta_P> on an L0 x L1 torus: sum_n I_n' I_n^(V-1) / sum_n I_n^V (character expansion)."""
    n = np.arange(-n_max, n_max + 1)
    i_n = ive(n, beta)  # the common factor exp(-beta) cancels in the ratio
    di_n = 0.5 * (ive(n - 1, beta) + ive(n + 1, beta))
    return float((di_n * i_n ** (volume - 1)).sum() / (i_n**volume).sum())


def ring_link_cos(coupling: float, n_links: int, n_max: int = 40) -> float:
    """<cos(theta_{i+1} - theta_i)> of a closed ring of O(2) rotors with weight exp(K sum cos):
    Z = (2 pi)^N sum_n I_n(K)^N, the same character expansion as U(1) on a torus."""
    return u1_plaquette_torus(coupling, n_links, n_max)


def free_field_phi2(shape: tuple[int, ...], A: float, B: float) -> float:
    """<phi_x^2> for S = sum_x [-A sum_mu phi_x phi_{x+mu} + B phi_x^2]:
    (1/V) sum_p 1 / (2 (B - A sum_mu cos p_mu)), p_mu = 2 pi n / L_mu."""
    grids = np.meshgrid(*[2 * np.pi * np.arange(n) / n for n in shape], indexing="ij")
    kernel = B - A * sum(np.cos(p) for p in grids)
    return float(np.mean(1.0 / (2.0 * kernel)))
