"""Plots for ``python -m observables compare --plots DIR`` (matplotlib, an optional extra).

histories.png        Monte Carlo histories of the headline observables, one panel each, all files
histogram.png        histogram of M (phi4), |m| (xy) or Q (u1), overlaid across files
autocorrelation.png  normalized autocorrelation functions rho(t) with the chosen window W marked

and for ``python -m observables learned-action --plots DIR`` (``learned_action_plots``):
learned_action.png, vortex_map.png

``plot_charge_distribution``: P(Q) of U(1) chains (``u1.charge_distribution``) with error bars,
optionally beside an exact distribution.
"""
from __future__ import annotations

import math

from pathlib import Path

import numpy as np

from .stats import autocorrelation

HEADLINE = {"phi4": ("|M|", "S/V"), "xy": ("e", "|m|"), "u1": ("P", "Q")}
HISTOGRAM = {"phi4": "M", "xy": "|m|", "u1": "Q"}


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plots needs matplotlib: pip install -e '.[plot]'") from None
    return plt


def comparison_plots(analyses, folder: Path) -> list[Path]:
    plt = require_matplotlib()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    theory = analyses[0].attrs["theory"]
    labels = [Path(a.path).name for a in analyses]
    names = [n for n in HEADLINE[theory] if all(n in a.series for a in analyses)]
    written = []

    # one panel per file and observable: overlaid histories of several chains hide each other
    fig, axes = plt.subplots(len(names), len(analyses), figsize=(4.5 * len(analyses), 2.4 * len(names)),
                             squeeze=False, sharey="row")
    for row, name in enumerate(names):
        for col, (a, label) in enumerate(zip(analyses, labels)):
            x = a.series[name]
            ax = axes[row, col]
            ax.plot(np.arange(len(x)) * a.settings["every"], x, lw=0.5, color=f"C{col}")
            if row == 0:
                ax.set_title(label, fontsize=9)
            if col == 0:
                ax.set_ylabel(name)
        axes[-1, 0].set_xlabel("update (sweep / trajectory / proposal)")
    fig.suptitle(f"Monte Carlo histories ({theory})")
    written.append(_save(fig, folder / "histories.png", plt))

    name = HISTOGRAM[theory]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    data = [a.series[name] for a in analyses]
    if theory == "u1":
        lo, hi = int(min(d.min() for d in data)), int(max(d.max() for d in data))
        bins = np.arange(lo - 0.5, hi + 1.5)
    else:
        bins = np.linspace(min(d.min() for d in data), max(d.max() for d in data), 61)
    for d, label in zip(data, labels):
        ax.hist(d, bins=bins, density=True, histtype="step", lw=1.5, label=label)
    ax.set_xlabel(name)
    ax.set_ylabel("probability density")
    ax.set_title(f"distribution of {name} ({theory})")
    ax.legend(fontsize=8)
    written.append(_save(fig, folder / "histogram.png", plt))

    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for a, label in zip(analyses, labels):
            est = a.estimates.get(name)
            w = est.window if est is not None else 20
            t_max = max(10, min(len(a.series[name]) // 2, 3 * max(w, 1)))
            rho = autocorrelation(a.series[name], max_lag=t_max)
            tau = f"{est.tau_int:.3g}({est.tau_int_error:.2g})" if est is not None else "?"
            line, = ax.plot(np.arange(len(rho)), rho, lw=1, label=f"{label}: tau_int = {tau}, W = {w}")
            band = rho_error(rho, len(a.series[name]), w)
            ax.fill_between(np.arange(len(rho)), rho - band, rho + band, color=line.get_color(), alpha=0.2, lw=0)
            ax.axvline(w, color=line.get_color(), ls=":", lw=1)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("t (measurements)")
        ax.set_ylabel(f"rho(t) of {name}")
        ax.set_title(f"normalized autocorrelation of {name} (band: error of rho, W: window)", fontsize=9)
        ax.legend(fontsize=8)
    written.append(_save(fig, folder / "autocorrelation.png", plt))
    if theory == "u1" and all("Q" in a.series for a in analyses):
        from .u1 import charge_distribution

        dists = [charge_distribution(a.series["Q"], every=a.settings["every"]) for a in analyses]
        written.append(plot_charge_distribution(dists, folder / "charge_distribution.png", labels=labels,
                                                title="topological charge distribution P(Q)"))
    return written


def rho_error(rho: np.ndarray, n: int, window: int) -> np.ndarray:
    """Error of the normalized autocorrelation rho(t), Wolff 2004 eq. (E.11) in its large-t form:
    sigma_rho(t)^2 ~ (1 + 2 sum_{k=1}^{W} rho(k)^2) / N (the same for every t beyond the decay)."""
    w = int(min(max(window, 1), len(rho) - 1))
    return np.full(len(rho), math.sqrt((1.0 + 2.0 * float(np.sum(rho[1:w + 1] ** 2))) / n))


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learned_action_plots(result: dict, configs, folder: Path, title: str = "") -> list[Path]:
    """Plots of ``python -m observables learned-action --plots DIR`` (result: learned.learned_action):

    learned_action.png  -ln q against S per configuration, with the least-squares line and the
                        exact-model line of slope 1 through the mean
    vortex_map.png      (XY, autoregressive model) one configuration, the one with the most vortices:
                        left the site map d (surprise minus its ensemble mean) with the spins as arrows,
                        right the plaquette score s with the true vortices (+1 o, -1 x) and the top-k
                        plaquettes picked by the score (squares)
    """
    plt = require_matplotlib()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    fit, S, y = result["fit"], result["action"], result["neg_log_q"]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.scatter(S, y, s=6, alpha=0.6, label=f"configurations (N = {fit.n})")
    xs = np.linspace(S.min(), S.max(), 2)
    ax.plot(xs, fit.slope * xs + fit.offset, "r-", lw=1.5,
            label=f"fit: slope {fit.slope:.4g}, offset {fit.offset:.4g}, R^2 {fit.r2:.4g}")
    ax.plot(xs, xs - S.mean() + y.mean(), "k:", lw=1, label="slope 1 (exact model)")
    ax.set_xlabel("S(x)")
    ax.set_ylabel("-ln q(x)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    written.append(_save(fig, folder / "learned_action.png", plt))

    vortex = result.get("vortex")
    if vortex is not None:
        from .learned import top_k_mask

        w, d, score = vortex["vorticity"], vortex["difference"], vortex["score"]
        k = np.abs(w).reshape(len(w), -1).sum(axis=1)
        n = int(np.argmax(k))
        top = top_k_mask(score[n:n + 1], k[n:n + 1])[0]
        t = np.asarray(configs[n], dtype=np.float64)
        L0, L1 = t.shape
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
        im = axes[0].imshow(d[n], origin="lower", cmap="viridis")
        fig.colorbar(im, ax=axes[0], shrink=0.8)
        # axis 0 of the lattice is the image's row (vertical), axis 1 the column (horizontal)
        c1, c0 = np.meshgrid(np.arange(L1), np.arange(L0))
        axes[0].quiver(c1, c0, np.cos(t), np.sin(t), color="w", scale=1.6 * max(L0, L1), width=0.004)
        axes[0].set_title("d = -ln q(x_i | x_<i) minus its ensemble mean", fontsize=9)
        # plaquette with lower-left corner x is drawn at the centre of its four sites
        im = axes[1].imshow(score[n], origin="lower", cmap="magma", extent=(0, L1, 0, L0))
        fig.colorbar(im, ax=axes[1], shrink=0.8)
        for sign, marker, color in ((1, "o", "cyan"), (-1, "x", "lime")):
            r, c = np.nonzero(w[n] == sign)
            ring = marker == "o"
            axes[1].scatter(c + 0.5, r + 0.5, marker=marker, s=80, facecolors="none" if ring else color,
                            edgecolors=color if ring else None, linewidths=2,
                            label="vortex (w = +1)" if sign == 1 else "antivortex (w = -1)")
        r, c = np.nonzero(top)
        axes[1].scatter(c + 0.5, r + 0.5, marker="s", s=260, facecolors="none", edgecolors="w", linewidths=1,
                        label=f"top {k[n]} by score")
        axes[1].set_title(f"plaquette score s (sum of d over the corners), configuration {n} of those analysed",
                          fontsize=9)
        axes[1].legend(fontsize=7, loc="upper right")
        for ax in axes:
            ax.set_xlabel("x1")
            ax.set_ylabel("x0")
        written.append(_save(fig, folder / "vortex_map.png", plt))
    return written


def plot_charge_distribution(distributions, path: Path, labels=None, exact=None, log: bool = True,
                             title: str = "") -> Path:
    """P(Q) with Gamma-method error bars, one series of points per distribution, written to ``path``.

    distributions: a ``u1.ChargeDistribution`` or a list of them; labels: one per distribution;
    exact: optional (q, p) arrays drawn as a step line (e.g. the torus formula); log: logarithmic
    P axis (bins with P = 0 are left out there)."""
    from .u1 import ChargeDistribution

    plt = require_matplotlib()
    if isinstance(distributions, ChargeDistribution):
        distributions = [distributions]
    labels = labels or [f"chain {k + 1}" for k in range(len(distributions))]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n = len(distributions)
    for k, (d, label) in enumerate(zip(distributions, labels)):
        shift = 0.08 * (k - (n - 1) / 2)  # side by side, not on top of each other
        keep = d.p > 0 if log else np.ones(len(d.q), dtype=bool)
        ax.errorbar(d.q[keep] + shift, d.p[keep], yerr=d.error[keep], fmt="o", ms=4, capsize=3, label=label)
    if exact is not None:
        q, p = (np.asarray(a) for a in exact)
        ax.step(q, p, where="mid", color="k", lw=1, label="exact")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("Q")
    ax.set_ylabel("P(Q)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path, plt)
