"""What a learned chain's file says about its proposals, and when its errors cannot be trusted.

An independence Metropolis-Hastings chain (learned-mh) sticks at a configuration x for about
w(x) / E_q[w] updates, w = p / q. A model that rarely proposes a region the target weights
heavily gives a heavy tail of w: the chain sits in such a region for very long once it gets
there, and a chain that has not yet been there is biased. The Gamma method then sees only the
part of the autocorrelation that the chain has sampled, so two guards are applied (docs/design.md,
"Errors of sticky chains"):

- every error is at least the blocking error with blocks of twice the longest stay (the longest
  run of rejections): fluctuations slower than the window of the Gamma method still count;
- an estimate is flagged "unreliable" when the chain holds fewer than RELIABLE_BLOCKS = 100 such blocks, when the
  blocking error dominates (1.5 x the Gamma error), or when the weights have a heavy tail (the
  largest weight above STICK_RATIO x the mean): its value may be off by more than its error.

All numbers come from the file's per-configuration diagnostics (log_q, log_p, proposal, accept),
so they hold for the whole chain across resumes. For configurations distributed as p (a chain),
the proposal's weight moments follow from E_q[w] = 1 / E_p[1/w] and E_q[w^2] / E_q[w]^2 =
E_p[w] E_p[1/w]; for raw model samples (distributed as q) they are direct.
"""
from __future__ import annotations

import numpy as np

from samplers.learned_mh import STICK_RATIO
from .stats import RELIABLE_BLOCKS
from samplers.weights import ess_fraction

LEARNED = ("learned-mh", "hybrid", "model-samples")
REMEDY = {"learned-mh": "train longer, or use --algorithm hybrid",
          "hybrid": "train longer, or give the local updates more room (--local-per-proposal)",
          "model-samples": "train longer; reweighted averages are dominated by a few samples"}


def longest_stay(proposal: np.ndarray) -> int:
    """The longest run of consecutive stored configurations that are one and the same proposal
    (index >= 0; -1 marks configurations not from the model), in measurements."""
    idx = np.asarray(proposal)
    if idx.size == 0:
        return 0
    change = np.flatnonzero(np.diff(idx) != 0)
    bounds = np.concatenate(([0], change + 1, [idx.size]))
    runs = np.diff(bounds)
    from_model = idx[bounds[:-1]] >= 0
    return int(runs[from_model].max()) if from_model.any() else 0


def proposal_diagnostics(diagnostics: dict, algorithm: str, every: int = 1, report: dict | None = None) -> dict:
    """acceptance, longest rejection run (updates), max w / mean w, proposal ESS fraction and the
    heavy-tail warning of a learned-mh / hybrid / model-samples file; {} for other algorithms.
    ``report``: the run summary of the file's last invocation (its proposals' own largest weight,
    which may lie where the chain has not been: the larger ratio is taken)."""
    if algorithm not in LEARNED or "log_q" not in diagnostics:
        return {}
    log_w = np.asarray(diagnostics["log_p"], dtype=np.float64) - np.asarray(diagnostics["log_q"], dtype=np.float64)
    out: dict = {"acceptance": float(np.mean(diagnostics["accept"]))}
    if algorithm == "learned-mh":
        out["longest_stay"] = longest_stay(diagnostics["proposal"])  # measurements
        out["longest_rejection_run"] = out["longest_stay"] * int(every)  # updates (to within `every`)
    if not np.isfinite(log_w).all():
        out["note"] = "the model gives no density for its samples (no weights): no proposal ESS"
        return out
    if algorithm == "model-samples":  # samples of q
        w = np.exp(log_w - log_w.max())
        out["max_w_over_mean"] = float(w.max() / w.mean())
        out["proposal_ess"] = ess_fraction(log_w)
    else:  # samples of p
        w = np.exp(log_w - log_w.max())
        inv = np.exp(log_w.max() - log_w)  # 1 / w in the same units
        out["max_w_over_mean"] = float(w.max() * np.mean(inv))
        out["proposal_ess"] = float(1.0 / (np.mean(w) * np.mean(inv)))
    proposed = (report or {}).get("max_w_over_mean")
    if isinstance(proposed, (int, float)) and proposed > out["max_w_over_mean"]:
        out["max_w_over_mean"] = float(proposed)
    if out["max_w_over_mean"] > STICK_RATIO:
        out["warning"] = (f"heavy tail of log w: the largest weight is {out['max_w_over_mean']:.3g} x the mean; "
                          f"estimates may be off by more than their errors: {REMEDY[algorithm]}")
    return out


def block_floor(diag: dict) -> int:
    """The block length (measurements) every error must at least cover: twice the longest stay."""
    return 2 * diag.get("longest_stay", 0)


def unreliable_reason(est, diag: dict) -> str | None:
    """Why the estimate ``est`` of a learned chain cannot be trusted, or None."""
    if "warning" in diag and "longest_stay" in diag:
        return "unreliable (heavy tail of w: sticky chain)"
    if est.n_blocks and est.n_blocks < RELIABLE_BLOCKS:
        return f"unreliable (sticky: {est.n_blocks} blocks of 2 x the longest stay)"
    if est.blocked:
        return "unreliable (error dominated by rejection runs)"
    return None


def lines(diag: dict) -> list[str]:
    """The diagnostics as printed under a table."""
    if not diag:
        return []
    parts = [f"acceptance {diag['acceptance']:.3f}"]
    if "longest_rejection_run" in diag:
        parts.append(f"longest rejection run {diag['longest_rejection_run']} updates")
    if "max_w_over_mean" in diag:
        parts.append(f"max w / mean w {diag['max_w_over_mean']:.3g}")
        parts.append(f"proposal ESS/N {diag['proposal_ess']:.3f}")
    out = ["proposals (from the stored configurations): " + ", ".join(parts)]
    for key in ("note", "warning"):
        if key in diag:
            out.append(f"{key}: {diag[key]}")
    return out

