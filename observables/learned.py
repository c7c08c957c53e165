"""The learned Hamiltonian as an observable (``python -m observables learned-action``).

A trained model q (a flow or an autoregressive model, anything with an exact ``log_q``) defines a
learned effective action H(x) = -ln q(x). For an exact model q = exp(-S) / Z, so

    -ln q(x) = S(x) + ln Z:    slope 1, offset ln Z, R^2 = 1, no residual spread.

``action_fit`` measures how far a model is from that over an ensemble of the target: the least
squares line -ln q = slope * S + offset, its R^2 and the spread (standard deviation) of the residuals.

For the XY model an autoregressive model also gives the conditionals q(x_i | x_<i) of every site,
and these locate vortices (Chinese Phys. Lett. 39 (2022) 120502): at a vortex core the neighbouring
spins point in different directions, the angle there is poorly predicted by its context, and its
conditional surprise -ln q(x_i | x_<i) is large. The map used here ("conditional-probability
difference" map), for configuration n of an ensemble of N, sites i, plaquettes x:

    d_n(i)   = -ln q(x_i | x_<i)[n]  -  (1/N) sum_m -ln q(x_i | x_<i)[m]
               (the surprise of site i relative to its ensemble mean at that site, which removes the
               site-dependent offset of the raster order: the first sites have little context)
    s_n(x)   = d_n(x) + d_n(x + e0) + d_n(x + e1) + d_n(x + e0 + e1)
               (the plaquette with lower-left corner x, the plaquette of ``observables.xy.vorticity``)
    found_n  = the k_n plaquettes of largest s_n, k_n = sum_x |w_n(x)| the number of vortices plus
               antivortices of configuration n (PHYSICS.md vorticity w, ``observables.xy.vorticity``)
    f_n      = |found_n  intersect  {x : w_n(x) != 0}| / k_n

The reported fraction found is the mean of f_n over the configurations with k_n > 0; a random choice
of k_n plaquettes finds k_n / V of them on average, reported as the baseline (mean over the same
configurations). The same score built from the target's exact one-site conditional given all four
neighbours, -ln p(theta_i | neighbours) = -beta |h_i| cos(theta_i - arg h_i) + ln(2 pi I_0(beta |h_i|)),
h_i = sum of exp(i theta_j) over the neighbours j, in place of the model's conditional, is reported as
a reference (what a detector that knows the action achieves with the same scoring).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .xy import vorticity

BATCH = 256  # configurations per model evaluation


# ------------------------------------------------------------------------------------ the fit
@dataclass
class ActionFit:
    """Least-squares fit -ln q = slope * S + offset over n configurations."""

    n: int
    slope: float
    offset: float
    r2: float
    residual_std: float  # standard deviation of the residuals (ddof 0)

    def as_dict(self) -> dict:
        return asdict(self)


def action_fit(action, neg_log_q) -> ActionFit:
    """Fit -ln q(x) = slope * S(x) + offset by least squares over configurations.

    action: S(x) per configuration; neg_log_q: -ln q(x) per configuration (same length, >= 3).
    R^2 = 1 - sum(res^2) / sum((y - mean y)^2) (NaN if -ln q is constant); slope and offset NaN if S
    is constant. An exact model, q = exp(-S)/Z, gives slope 1, offset ln Z, R^2 1 and residual_std 0.
    """
    s = np.asarray(action, dtype=np.float64).ravel()
    y = np.asarray(neg_log_q, dtype=np.float64).ravel()
    if s.shape != y.shape:
        raise ValueError(f"action and -ln q differ in length: {s.size} and {y.size}")
    n = s.size
    if n < 3:
        raise ValueError(f"the fit needs at least 3 configurations, got {n}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(y))):
        raise ValueError("non-finite S or -ln q: the model does not cover the ensemble's configurations")
    ds, dy = s - s.mean(), y - y.mean()
    sxx = float(ds @ ds)
    slope = float(ds @ dy) / sxx if sxx > 0 else math.nan
    offset = float(y.mean() - slope * s.mean())
    res = y - (slope * s + offset)
    syy = float(dy @ dy)
    r2 = 1.0 - float(res @ res) / syy if syy > 0 else math.nan
    return ActionFit(n=n, slope=slope, offset=offset, r2=r2, residual_std=float(np.std(res)))


# ------------------------------------------------------------------------------------ model evaluation
def has_conditionals(model) -> bool:
    """Whether the model gives per-site conditionals log q(x_i | x_<i) (autoregressive models)."""
    return callable(getattr(model, "conditional_log_prob", None))


def model_log_q(model, configs, conditionals: bool = False, batch: int = BATCH):
    """log q(x) of every configuration (N,) in float64 (the model is moved to float64), batched;
    with ``conditionals`` also the per-site log q(x_i | x_<i), (N, V) (autoregressive models only)."""
    import torch

    model = model.to(torch.float64)
    model.eval()
    configs = np.asarray(configs)
    n = len(configs)
    log_q = np.empty(n)
    cond = None
    with torch.no_grad():
        for i in range(0, n, batch):
            x = torch.as_tensor(configs[i:i + batch], dtype=torch.float64)
            if conditionals:
                c = model.conditional_log_prob(x).cpu().numpy()
                if cond is None:
                    cond = np.empty((n, c.shape[1]))
                cond[i:i + batch] = c
                log_q[i:i + batch] = c.sum(axis=1)
            else:
                log_q[i:i + batch] = model.log_q(x).cpu().numpy()
    return (log_q, cond) if conditionals else log_q


# ------------------------------------------------------------------------------------ vortex map
def difference_map(neg_log_cond) -> np.ndarray:
    """d_n(i) = surprise of site i in configuration n minus its ensemble mean at site i.

    neg_log_cond: -ln q(x_i | x_<i) (or any per-site surprise), shape (N, L0, L1); returns the same shape."""
    a = np.asarray(neg_log_cond, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"per-site surprises have shape (N, L0, L1), got {a.shape}")
    return a - a.mean(axis=0, keepdims=True)


def plaquette_score(site_map) -> np.ndarray:
    """s(x) = sum of the site map over the four corners x, x+e0, x+e1, x+e0+e1 of the plaquette
    with lower-left corner x (the plaquette of ``xy.vorticity``), periodic; (N, L0, L1)."""
    d = np.asarray(site_map, dtype=np.float64)
    d0 = np.roll(d, -1, axis=1)
    return d + d0 + np.roll(d, -1, axis=2) + np.roll(d0, -1, axis=2)


@dataclass
class VortexDetection:
    """How well a plaquette score locates the vortices (w != 0) of PHYSICS.md."""

    n_configs: int  # configurations with at least one vortex (the average runs over these)
    n_vortices: int  # vortices + antivortices in them, in all
    fraction_found: float  # mean over those configurations of (true vortex plaquettes in the top k) / k
    pooled_fraction_found: float  # all found / all vortices
    random_baseline: float  # mean of k / V: what a random choice of k plaquettes finds on average

    def as_dict(self) -> dict:
        return asdict(self)


def top_k_mask(score, k) -> np.ndarray:
    """Boolean (N, L0, L1): the k[n] plaquettes of largest score in configuration n (ties by position)."""
    score = np.asarray(score, dtype=np.float64)
    N = score.shape[0]
    flat = score.reshape(N, -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(N)[:, None], order] = np.arange(flat.shape[1])[None, :]
    return (ranks < np.asarray(k).reshape(N, 1)).reshape(score.shape)


def vortex_detection(score, w) -> VortexDetection:
    """Compare a plaquette score (N, L0, L1) with the vorticity w (N, L0, L1): in each configuration
    take the k = sum |w| plaquettes of largest score and count how many carry a vortex or antivortex."""
    score = np.asarray(score, dtype=np.float64)
    w = np.asarray(w)
    if score.shape != w.shape:
        raise ValueError(f"score {score.shape} and vorticity {w.shape} differ in shape")
    true = w != 0
    k = true.reshape(len(w), -1).sum(axis=1)
    found = (top_k_mask(score, k) & true).reshape(len(w), -1).sum(axis=1)
    has = k > 0
    V = w.shape[1] * w.shape[2]
    if not has.any():
        return VortexDetection(0, 0, math.nan, math.nan, math.nan)
    return VortexDetection(n_configs=int(has.sum()), n_vortices=int(k.sum()),
                           fraction_found=float(np.mean(found[has] / k[has])),
                           pooled_fraction_found=float(found.sum() / k.sum()),
                           random_baseline=float(np.mean(k[has] / V)))


def xy_local_surprise(configs, beta: float) -> np.ndarray:
    """-ln p(theta_i | its four neighbours) of the XY target at every site, (N, L0, L1):
    -beta |h| cos(theta_i - arg h) + ln(2 pi I_0(beta |h|)), h = sum_j exp(i theta_j) over neighbours."""
    from scipy.special import i0e

    t = np.asarray(configs, dtype=np.float64)
    z = np.exp(1j * t)
    h = sum(np.roll(z, s, axis=a) for a in (1, 2) for s in (1, -1))
    bh = beta * np.abs(h)
    return -beta * (h * np.conj(z)).real + np.log(2 * math.pi * i0e(bh)) + bh


def xy_vortex_map(configs, neg_log_cond, beta: float) -> dict:
    """The conditional-probability difference map of an XY ensemble and its comparison with the
    vortices (module docstring). neg_log_cond: -ln q(x_i | x_<i) of the model, (N, V) or (N, L0, L1)
    in raster order. Returns {"vorticity", "difference" (d), "score" (s), each (N, L0, L1), "model": VortexDetection,
    "reference": VortexDetection of the target's local conditional}."""
    t = np.asarray(configs, dtype=np.float64)
    surprise = np.asarray(neg_log_cond, dtype=np.float64).reshape(t.shape)
    w = vorticity(t)
    d = difference_map(surprise)
    score = plaquette_score(d)
    ref_score = plaquette_score(difference_map(xy_local_surprise(t, beta)))
    return {"vorticity": w, "difference": d, "score": score, "model": vortex_detection(score, w),
            "reference": vortex_detection(ref_score, w)}


# ------------------------------------------------------------------------------------ the whole observable
def learned_action(configs, theory, model, vortex_map: bool = True, batch: int = BATCH) -> dict:
    """Everything ``python -m observables learned-action`` reports, for configurations of ``theory``
    and a model of the same theory: {"fit": ActionFit, "action", "neg_log_q" (N,), and for XY with
    an autoregressive model (when ``vortex_map``) "vortex": xy_vortex_map(...)}; "vortex_note" says
    why the map was skipped, if it was."""
    configs = np.asarray(configs, dtype=np.float64)
    S = np.asarray(theory.action_batch(configs), dtype=np.float64)
    want_map = vortex_map and theory.name == "xy"
    cond = want_map and has_conditionals(model)
    if cond:
        log_q, lc = model_log_q(model, configs, conditionals=True, batch=batch)
    else:
        log_q = model_log_q(model, configs, batch=batch)
    out = {"fit": action_fit(S, -log_q), "action": S, "neg_log_q": -log_q}
    if cond:
        out["vortex"] = xy_vortex_map(configs, -lc, theory.beta)
    elif want_map:
        out["vortex_note"] = (f"the vortex map needs per-site conditionals (an autoregressive model); "
                              f"{getattr(model, 'name', type(model).__name__)} gives only log q: map skipped")
    return out
