"""Discriminator regularisers as pure functions of logits and inputs.

Every function here takes logits phi(x) of inputs x that were made with
requires_grad and a graph (so the result can be back-propagated into D)."""

from __future__ import annotations

import torch
from torch import autograd


def add_instance_noise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x + N(0, sigma^2), fresh noise per call (Sønderby et al. 2016; Arjovsky & Bottou 2017)."""
    if sigma == 0.0:
        return x
    return x + sigma * torch.randn_like(x)


def input_gradient_sq_norms(
    logits: tuple[torch.Tensor, ...], inputs: tuple[torch.Tensor, ...]
) -> list[torch.Tensor]:
    """Per-sample ||grad_x phi(x)||^2 (B,) for each (logits, inputs) pair, with a
    graph so a penalty on them trains D (double backward).

    Summing logits over the batch gives per-sample gradients because each
    sample's logit depends on its own input alone (true in eval-mode BN or
    without BN; train-mode BN adds the small cross-sample terms every
    gradient-penalty implementation accepts)."""
    grads = autograd.grad([phi.sum() for phi in logits], list(inputs), create_graph=True)
    return [g.flatten(1).pow(2).sum(1) for g in grads]


def roth_omega(
    logits_real: torch.Tensor, x_real: torch.Tensor, logits_fake: torch.Tensor, x_fake: torch.Tensor
) -> torch.Tensor:
    """Roth et al. (2017) JS regulariser, the analytic form of instance noise:

    Omega = mean_b [(1 - D(x_real))^2 ||grad phi(x_real)||^2 + D(x_fake)^2 ||grad phi(x_fake)||^2]

    with D = sigmoid(phi). Add gamma/2 * Omega to the D loss, gamma being the
    variance of the noise it stands for. The weights keep their gradient, as
    in the authors' code."""
    norm_real, norm_fake = input_gradient_sq_norms((logits_real, logits_fake), (x_real, x_fake))
    weight_real = (1 - torch.sigmoid(logits_real)).pow(2)
    weight_fake = torch.sigmoid(logits_fake).pow(2)
    return (weight_real * norm_real).mean() + (weight_fake * norm_fake).mean()
