"""Adversarial losses on discriminator outputs, per example (B,) or per pixel
(B, 1, H, W: the U-Net D's, each pixel a term of the means): logits for the
cross-entropy losses, raw scores for LSGAN, hinge and the Wasserstein critic,
energies (reconstruction errors) for EBGAN. The relativistic loss's averages
run over the batch and the pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("non-saturating", "saturating", "lsgan", "hinge", "wgan", "wgan-gp", "relativistic", "ebgan")
CONTENT_LOSSES = ("mse", "l1", "vgg", "none")


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


def d_loss_relativistic(logits_real: torch.Tensor, logits_fake: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """Relativistic average GAN (Jolicoeur-Martineau 2018), as ESRGAN uses it: D learns that a real
    image is more realistic than the average fake, and a fake less than the average real,
    1/2 [BCE(C(x_r) - E C(x_f), 1) + BCE(C(x_f) - E C(x_r), 0)]."""
    return 0.5 * (F.binary_cross_entropy_with_logits(logits_real - logits_fake.mean(),
                                                     torch.full_like(logits_real, real_target))
                  + F.binary_cross_entropy_with_logits(logits_fake - logits_real.mean(), torch.zeros_like(logits_fake)))


def g_loss_relativistic(logits_fake: torch.Tensor, logits_real: torch.Tensor) -> torch.Tensor:
    """The generator's side of d_loss_relativistic, labels swapped: its gradient flows through both
    terms (the fakes' average sits in the real term), so G learns from D's view of real images too."""
    return 0.5 * (F.binary_cross_entropy_with_logits(logits_real - logits_fake.mean(), torch.zeros_like(logits_real))
                  + F.binary_cross_entropy_with_logits(logits_fake - logits_real.mean(), torch.ones_like(logits_fake)))


def d_loss_lsgan(real: torch.Tensor, fake: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """Mao et al. (2017): 1/2 E(D(x) - 1)^2 + 1/2 E D(G(z))^2, targets 1 and 0."""
    return 0.5 * (real - real_target).pow(2).mean() + 0.5 * fake.pow(2).mean()


def g_loss_lsgan(fake: torch.Tensor) -> torch.Tensor:
    """1/2 E(D(G(z)) - 1)^2."""
    return 0.5 * (fake - 1).pow(2).mean()


def d_loss_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E max(0, 1 - D(x)) + E max(0, 1 + D(G(z))) (Lim & Ye 2017; Miyato et al. 2018)."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def d_loss_wasserstein(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The critic's -(E D(x) - E D(G(z))) (Arjovsky et al. 2017); also WGAN-GP's without its penalty."""
    return fake.mean() - real.mean()


def g_loss_score(fake: torch.Tensor) -> torch.Tensor:
    """-E D(G(z)): the generator loss of hinge, WGAN and WGAN-GP."""
    return -fake.mean()


def d_loss_ebgan(energy_real: torch.Tensor, energy_fake: torch.Tensor, margin: float) -> torch.Tensor:
    """Zhao et al. (2017): E D(x) + E max(0, m - D(G(z))), D the energy: real energies
    pushed down, fake ones up to the margin m and no further."""
    return energy_real.mean() + F.relu(margin - energy_fake).mean()


def g_loss_energy(energy_fake: torch.Tensor) -> torch.Tensor:
    """E D(G(z)): EBGAN's generator loss, the energy of its samples."""
    return energy_fake.mean()


def pulling_away(codes: torch.Tensor) -> torch.Tensor:
    """EBGAN's pulling-away term on a batch's codes S (B, ...): the mean squared cosine
    similarity over ordered pairs i != j, 1/(B(B-1)) sum (S_i . S_j / (|S_i| |S_j|))^2.
    0 for orthogonal codes, 1 for parallel ones; 0 for a batch of one."""
    batch = codes.shape[0]
    if batch < 2:
        return codes.new_zeros(())
    unit = F.normalize(codes.flatten(1), dim=1)
    squared = (unit @ unit.T).pow(2)
    return (squared.sum() - squared.diagonal().sum()) / (batch * (batch - 1))


def as_logits(kind: str, outputs: torch.Tensor, margin: float) -> torch.Tensor:
    """D's outputs as the logits phi of the monitored D(x) = sigmoid(phi), on which the
    regularisers (roth, r1, r2) act: the outputs themselves, except EBGAN's energies E,
    mapped to phi = 4 (1 - 2E/m) for margin m: D(x) is 0.98 at E = 0 (reconstructed
    perfectly: taken for real), 0.5 at E = m/2 and 0.02 at E = m (pushed to the margin)."""
    if kind == "ebgan":
        return 4 * (1 - 2 * outputs / margin)
    return outputs


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor, real_target: float = 1.0,
           margin: float | None = None) -> torch.Tensor:
    """The discriminator's loss for adversarial loss `kind` (one of LOSSES); margin is EBGAN's."""
    if kind in ("non-saturating", "saturating"):
        return d_loss_bce(real, fake, real_target)
    if kind == "relativistic":
        return d_loss_relativistic(real, fake, real_target)
    if kind == "lsgan":
        return d_loss_lsgan(real, fake, real_target)
    if kind == "hinge":
        return d_loss_hinge(real, fake)
    if kind in ("wgan", "wgan-gp"):
        return d_loss_wasserstein(real, fake)
    if kind == "ebgan":
        if margin is None:
            raise ValueError("the ebgan loss needs a margin")
        return d_loss_ebgan(real, fake, margin)
    raise ValueError(f"unknown adversarial loss {kind!r}")


def g_loss(kind: str, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's adversarial loss for `kind` (one of LOSSES); `real`, D's outputs on a real
    batch, only the relativistic loss uses (and needs)."""
    if kind == "relativistic":
        if real is None:
            raise ValueError("the relativistic loss needs D's outputs on real images")
        return g_loss_relativistic(fake, real)
    if kind == "non-saturating":
        return g_loss_non_saturating(fake)
    if kind == "saturating":
        return g_loss_saturating(fake)
    if kind == "lsgan":
        return g_loss_lsgan(fake)
    if kind in ("hinge", "wgan", "wgan-gp"):
        return g_loss_score(fake)
    if kind == "ebgan":
        return g_loss_energy(fake)
    raise ValueError(f"unknown adversarial loss {kind!r}")


def feature_matching(features_real: torch.Tensor, features_fake: torch.Tensor) -> torch.Tensor:
    """Salimans et al. (2016): ||mean_b f(x_real) - mean_b f(G(z))||^2 over (B, F) features."""
    return (features_real.mean(0) - features_fake.mean(0)).pow(2).sum()


def d_feature_loss(maps_fake: list[torch.Tensor], maps_real: list[torch.Tensor]) -> torch.Tensor:
    """pix2pixHD's feature loss (Wang et al. 2018): the sum over D's layers of the mean absolute
    difference between the feature maps of each SR output and of its own HR image. Paired, so
    it asks every output for its image's features (a perceptual loss whose network is D), where
    feature_matching asks only the batch means to agree."""
    return sum(F.l1_loss(fake.float(), real.float()) for fake, real in zip(maps_fake, maps_real, strict=True))


def content_loss(kind: str, sr: torch.Tensor, hr: torch.Tensor, vgg: torch.nn.Module | None = None) -> torch.Tensor:
    """G's content term for `kind` (one of CONTENT_LOSSES) on (B, 3, H, W) in [0, 1];
    vgg is the VGG54 loss module for kind "vgg"; "none" is a zero that keeps the graph."""
    if kind == "mse":
        return F.mse_loss(sr, hr)
    if kind == "l1":
        return F.l1_loss(sr, hr)
    if kind == "vgg":
        return vgg(sr, hr)
    if kind == "none":
        return sr.new_zeros(())
    raise ValueError(f"unknown content loss {kind!r}")
