"""Adversarial losses on discriminator logits (B,)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss_bce(logits_real: torch.Tensor, logits_fake: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))); real_target 0.9 is one-sided label smoothing (Salimans et al. 2016)."""
    loss_real = F.binary_cross_entropy_with_logits(logits_real, torch.full_like(logits_real, real_target))
    loss_fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return loss_real + loss_fake


def g_loss_non_saturating(logits_fake: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)) (Goodfellow et al. 2014's practical choice)."""
    return F.softplus(-logits_fake).mean()


def g_loss_saturating(logits_fake: torch.Tensor) -> torch.Tensor:
    """log(1 - D(G(z))), the minimax loss, which saturates when D wins."""
    return -F.softplus(logits_fake).mean()
