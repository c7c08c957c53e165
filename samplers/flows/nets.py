"""Conditioner networks for coupling layers: small CNNs with periodic (circular) padding, so they
are translation equivariant on the torus (Albergo, Kanwar, Shanahan, PRD 100 (2019) 034515)."""
from __future__ import annotations

from torch import nn


def conv_net(in_channels: int, out_channels: int, hidden: tuple[int, ...] = (16, 16), kernel_size: int = 3,
             final_zero: bool = True, final_kernel_size: int | None = None) -> nn.Sequential:
    """Conv2d stack with circular padding and LeakyReLU between layers (Tanh-free output). With
    final_zero the last layer starts at zero, so a fresh coupling layer is the identity.
    final_kernel_size (default: kernel_size) sets the kernel of the output layer only, e.g. 1 for a
    cheap per-site output head when the output has many channels."""
    sizes = [in_channels, *hidden, out_channels]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i == len(sizes) - 2 and final_kernel_size is not None:
            k = final_kernel_size
            layers.append(nn.Conv2d(a, b, k, padding=k // 2, padding_mode="circular") if k > 1
                          else nn.Conv2d(a, b, 1))
            continue
        layers.append(nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2, padding_mode="circular"))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU())
    if final_zero:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)
