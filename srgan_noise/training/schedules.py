"""Pure functions of the step: the stabilisers' strengths of the GAN step t (0 at
the first GAN step) and the pre-training learning rate. Images are in [0, 1], so
sigma is in intensity units of that range (sigma 0.1 is 10 % of full scale)."""

from __future__ import annotations

import math


def noise_sigma(t: int, kind: str, sigma0: float, steps: int) -> float:
    """Instance-noise standard deviation at step t.

    none: 0.  constant: sigma0.  linear: sigma0 * (1 - t/steps), 0 from t = steps on."""
    if kind == "none":
        return 0.0
    if kind == "constant":
        return sigma0
    if kind == "linear":
        if steps <= 0:
            return 0.0
        return sigma0 * max(0.0, 1.0 - t / steps)
    raise ValueError(f"unknown noise schedule {kind!r}")


def reg_gamma(t: int, kind: str, gamma0: float, steps: int) -> float:
    """Strength (a noise variance) of the Roth et al. regulariser at step t.

    constant: gamma0.  annealed: gamma0 * 0.01 ** (t/steps), held at gamma0 / 100
    from t = steps on (Roth et al. anneal by two decades over training)."""
    if kind == "constant":
        return gamma0
    if kind == "annealed":
        if steps <= 0:
            return gamma0 * 0.01
        return gamma0 * 0.01 ** min(1.0, t / steps)
    raise ValueError(f"unknown gamma schedule {kind!r}")


def pretrain_lr(t: int, kind: str, lr0: float, steps: int) -> float:
    """Learning rate of MSE pre-training step t (0 at the first).

    constant: lr0.  cosine: lr0 * (1 + cos(pi t / steps)) / 2, from lr0 at t = 0
    down to 0 at t = steps (Loshchilov & Hutter 2017, without restarts)."""
    if kind == "constant":
        return lr0
    if kind == "cosine":
        return lr0 * (1 + math.cos(math.pi * min(t, steps) / steps)) / 2 if steps > 0 else lr0
    raise ValueError(f"unknown learning-rate schedule {kind!r}")
