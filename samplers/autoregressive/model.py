"""Autoregressive models behind the proposal interface (samplers/proposal.py).

    q(x) = prod_i q(x_i | x_<i),    log q(x) = sum_i log q(x_i | x_<i)     (sites in raster order)

exact, accumulated in float64 (samplers/autoregressive/conditionals.py), with the conditional
parameters of every site computed by a causal network (pixelcnn.py, made.py) in the module's dtype.
Trained by reverse KL from the action these are the variational autoregressive networks (VAN) of
Wu, Wang, Zhang, PRL 122 (2019) 080602; with continuous mixture conditionals on the circle for the
XY model as in the continuous-mixture autoregressive networks, Chinese Phys. Lett. 39 (2022) 120502.

Input features per site (channels of the network; zero at sites not yet sampled):
    phi4: (phi_x, 1)            xy: (cos theta_x, sin theta_x, 1)
The constant channel marks which sites of a window exist in the context (so a network can tell
the first sites, with little context, from the others); the XY features make log q exactly
2 pi-periodic in every angle.

``sample(n, generator)`` visits the sites in order, batched over the n configurations, and draws
x_i exactly from its conditional given the x_<i already drawn (the networks cache what does not
change, see their docstrings); it returns x and log q(x), where log q is evaluated at the sample
after its cast to the module dtype, so ``log_q(x)`` of the returned x agrees with it (to rounding
of the network arithmetic; 1e-10 in float64). Sampling is not reparameterized (the mixture's
component choice and the rejection sampler are discrete): ``reparameterizable = False``, and
reverse-KL training uses the score-function estimator (samplers/training.py, "reverse-kl-score").
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..flows.nets import ROW_BLOCK


class AutoregressiveModel(nn.Module):
    """A causal network + one-site conditionals; name, hyper, theory, log_p like ``Flow``."""

    reparameterizable = False

    def __init__(self, net: nn.Module, conditional, theory, name: str, hyper: dict):
        super().__init__()
        self.net = net
        self.conditional = conditional
        self.theory = theory
        self.name = name
        self.hyper = dict(hyper)
        self.shape = tuple(theory.shape)
        self.n_sites = math.prod(self.shape)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # follows .to(device/dtype)

    # ------------------------------------------------------------------ features
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Site features (N, F, ...) of field values x (N, ...)."""
        one = torch.ones_like(x)
        if self.conditional.periodic:
            return torch.stack([torch.cos(x), torch.sin(x), one], dim=1)
        return torch.stack([x, one], dim=1)

    @property
    def in_features(self) -> int:
        return 3 if self.conditional.periodic else 2

    # ------------------------------------------------------------------ densities
    def conditional_params(self, x: torch.Tensor) -> torch.Tensor:
        """Raw conditional parameters of every site, (N, V, P), in one causal pass over x (N, *shape)."""
        return self.net(self.features(x.reshape(x.shape[0], -1).to(self._anchor.dtype)))

    def conditional_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log q(x_i | x_<i) for every site, (N, V) float64."""
        flat = x.reshape(x.shape[0], -1)
        return self.conditional.log_prob(self.conditional_params(x), flat.to(self._anchor.dtype))

    def log_q(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log q(x) = sum_i log q(x_i | x_<i), float64."""
        return self.conditional_log_prob(x).sum(1)

    def log_p(self, x: torch.Tensor) -> torch.Tensor:
        """-S(x) of the target theory (float64, unnormalized)."""
        return -self.theory.torch_action(x.to(torch.float64))

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n configurations (N, *shape) in the module dtype and their exact log q (float64)."""
        return self.sample_streams([n], [generator])

    def sample_streams(self, sizes: list[int], generators: list) -> tuple[torch.Tensor, torch.Tensor]:
        """sum(sizes) configurations in one pass over the sites: rows of block j (sizes[j] of them, in
        order) draw from generators[j] alone, so block j is bit for bit what ``sample(sizes[j],
        generators[j])`` gives (the chains of a set share the passes, samplers/proposal.py). Why each
        block is padded to a multiple of ROW_BLOCK rows: the causal networks treat rows independently,
        but BLAS may sum a product, and vectorized exp/log may treat an entry, differently by its
        alignment (samplers/flows/nets.py _padded); padded blocks all start alike, alone or in a set.
        Returns x (N, *shape) in the module dtype and log q (N,) float64."""
        a = self._anchor
        padded = [-(-n // ROW_BLOCK) * ROW_BLOCK for n in sizes]
        starts = [sum(padded[:j]) for j in range(len(sizes))]
        real = torch.cat([torch.arange(o, o + n, device=a.device) for o, n in zip(starts, sizes)])
        with torch.no_grad():
            x = torch.zeros(sum(padded), self.n_sites, dtype=a.dtype, device=a.device)
            log_q = torch.zeros(x.shape[0], dtype=torch.float64, device=a.device)
            cache = self.net.start(torch.zeros(x.shape[0], self.in_features, self.n_sites, dtype=a.dtype,
                                               device=a.device))
            for i in range(self.n_sites):
                raw = self.net.site(cache, i)
                parts = []
                for o, n, m, g in zip(starts, sizes, padded, generators):
                    parts.append(self.conditional.sample(raw[o:o + n], g).to(a.dtype))
                    if m > n:
                        parts.append(torch.zeros(m - n, dtype=a.dtype, device=a.device))  # padding rows: 0
                xi = torch.cat(parts)
                log_q += self.conditional.log_prob(raw, xi)  # all rows: a block's vector lanes as alone
                x[:, i] = xi
                self.net.record(cache, i, self.features(xi))
        return x[real].view(real.numel(), *self.shape), log_q[real]
