"""Plots for ``python -m observables compare --plots DIR`` (matplotlib, an optional extra).

histories.png        Monte Carlo histories of the headline observables, one panel each, all files
histogram.png        histogram of M (phi4), |m| (xy) or Q (u1), overlaid across files
autocorrelation.png  normalized autocorrelation functions rho(t) with the chosen window W marked
"""
from __future__ import annotations

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

    fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.6 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        for a, label in zip(analyses, labels):
            x = a.series[name]
            ax.plot(np.arange(len(x)) * a.settings["every"], x, lw=0.5, alpha=0.8, label=label)
        ax.set_ylabel(name)
    axes[-1, 0].set_xlabel("update (sweep / trajectory / proposal)")
    axes[0, 0].legend(fontsize=8, loc="upper right")
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
    ax.legend(fontsize=8)
    written.append(_save(fig, folder / "histogram.png", plt))

    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for a, label in zip(analyses, labels):
            est = a.estimates.get(name)
            w = est.window if est is not None else 20
            t_max = max(10, min(len(a.series[name]) // 2, 3 * max(w, 1)))
            rho = autocorrelation(a.series[name], max_lag=t_max)
            line, = ax.plot(np.arange(len(rho)), rho, lw=1, label=f"{label}, W = {w}")
            ax.axvline(w, color=line.get_color(), ls=":", lw=1)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("t (measurements)")
        ax.set_ylabel(f"rho(t) of {name}")
        ax.legend(fontsize=8)
    written.append(_save(fig, folder / "autocorrelation.png", plt))
    return written


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
