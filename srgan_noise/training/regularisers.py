"""Discriminator regularisers as pure functions of logits and inputs.

Every function here takes logits phi(x) of inputs x that were made with
requires_grad and a graph (so the result can be back-propagated into D):
a logit per example (B,), or per pixel (B, 1, H, W) from the U-Net D. A
per-pixel D's penalty is the mean over pixels of the per-pixel terms, as its
loss is; one_pixel_each estimates that mean without bias at the cost of a
per-example D (the exact mean would take one backward per pixel)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import autograd


def add_instance_noise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x + N(0, sigma^2), fresh noise per call (Sønderby et al. 2016; Arjovsky & Bottou 2017)."""
    if sigma == 0.0:
        return x
    return x + sigma * torch.randn_like(x)


def one_pixel_each(logits: torch.Tensor) -> torch.Tensor:
    """Logits (B,) as they are; per-pixel logits (B, 1, H, W) -> (B,), the logit of one pixel
    drawn uniformly for each example (torch's generator, which checkpoints keep).

    A penalty that is a mean of per-example terms f(phi(x_b), grad phi(x_b)) then becomes the
    same mean over a drawn pixel of each example, whose expectation over the draw is the mean
    over examples and pixels: an unbiased estimate, from one backward as for a per-example D
    (each drawn logit depends on its own example alone, so summing them still separates the
    examples' gradients)."""
    if logits.dim() == 1:
        return logits
    flat = logits.flatten(1)
    drawn = torch.randint(flat.shape[1], (flat.shape[0], 1), device=flat.device)
    return flat.gather(1, drawn).squeeze(1)


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
    in the authors' code. Per-pixel logits: the terms of one drawn pixel per example
    (one_pixel_each), the weight that pixel's D."""
    logits_real, logits_fake = one_pixel_each(logits_real), one_pixel_each(logits_fake)
    norm_real, norm_fake = input_gradient_sq_norms((logits_real, logits_fake), (x_real, x_fake))
    weight_real = (1 - torch.sigmoid(logits_real)).pow(2)
    weight_fake = torch.sigmoid(logits_fake).pow(2)
    return (weight_real * norm_real).mean() + (weight_fake * norm_fake).mean()


def r1_penalty(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """E ||grad_x phi(x)||^2: R1 on real inputs, R2 on fakes (Mescheder et al. 2018).
    Added as gamma/2 times this, the 1/2 of Mescheder et al.'s convention. Per-pixel
    logits: one drawn pixel per example (one_pixel_each)."""
    (norms,) = input_gradient_sq_norms((one_pixel_each(logits),), (x,))
    return norms.mean()


def wgan_gradient_penalty(critic, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
    """Gulrajani et al. (2017): E (||grad critic(x_hat)|| - 1)^2 on random interpolates
    x_hat = e x_real + (1 - e) x_fake, e ~ U[0, 1] per sample. Weight it by lambda (10).
    A per-pixel critic: one drawn pixel per example (one_pixel_each)."""
    mix = torch.rand(x_real.shape[0], *([1] * (x_real.dim() - 1)), device=x_real.device, dtype=x_real.dtype)
    x_hat = (mix * x_real.detach() + (1 - mix) * x_fake.detach()).requires_grad_(True)
    (norms,) = input_gradient_sq_norms((one_pixel_each(critic(x_hat)),), (x_hat,))
    return (norms.sqrt() - 1).pow(2).mean()


def d_penalty(
    kind: str, logits_real: torch.Tensor, x_real: torch.Tensor, logits_fake: torch.Tensor, x_fake: torch.Tensor
) -> torch.Tensor:
    """The penalty P of regulariser `kind` (roth | r1 | r2); the D loss gets + gamma/2 * P."""
    if kind == "roth":
        return roth_omega(logits_real, x_real, logits_fake, x_fake)
    if kind == "r1":
        return r1_penalty(logits_real, x_real)
    if kind == "r2":
        return r1_penalty(logits_fake, x_fake)
    raise ValueError(f"unknown regulariser {kind!r}")


def share_size(batch: int, share: float) -> int:
    """How many of a batch's examples a penalty on `share` of it uses: round(share x batch), at least one."""
    return max(1, round(share * batch))


def d_penalty_on_share(kind: str, logits_of: Callable[[torch.Tensor], torch.Tensor], x_real: torch.Tensor,
                       x_fake: torch.Tensor, share: float) -> torch.Tensor:
    """The penalty P of regulariser `kind` (roth | r1 | r2) on the first share_size(B, share)
    real and fake examples of (B, ...) batches, from a forward of their own through
    `logits_of` (D's logits), at about `share` of the cost of P on the whole batch.

    P is a mean of per-example terms, and the batch is a random draw, so when an
    example's logit depends on that example alone (D without batch norm, with virtual
    batch norm, or in eval mode) this is an unbiased estimate of P on the whole batch:
    the mean of the estimates over all subsets of that size is P (tested). Train-mode
    batch norm couples the examples: the forward here normalises the share with its own
    statistics, so each term is that of the same D seeing a batch of share_size(B, share)
    examples (and BN's running statistics take one more update); so does minibatch
    discrimination."""
    size = share_size(x_real.shape[0], share)
    x_real, x_fake = (x[:size].detach().requires_grad_(True) for x in (x_real, x_fake))
    if kind == "r1":  # one side only: no forward of the other
        return r1_penalty(logits_of(x_real), x_real)
    if kind == "r2":
        return r1_penalty(logits_of(x_fake), x_fake)
    return d_penalty(kind, logits_of(x_real), x_real, logits_of(x_fake), x_fake)


def d_extra_loss(config, discriminator, x_real: torch.Tensor, x_fake: torch.Tensor,
                 history: "HistoricalAverage | None") -> torch.Tensor:
    """The D-loss terms beyond the adversarial loss and the gamma/2 penalty:
    WGAN-GP's gradient penalty and historical averaging. `config` is a
    TrainConfig or ToyConfig (loss, gp_weight, historical_averaging)."""
    extra = x_real.new_zeros(())
    if config.loss == "wgan-gp":
        extra = extra + config.gp_weight * wgan_gradient_penalty(discriminator, x_real, x_fake)
    if history is not None:
        extra = extra + config.historical_averaging * history.penalty(discriminator)
    return extra


@torch.no_grad()
def after_d_update(config, discriminator, history: "HistoricalAverage | None") -> None:
    """After D's optimiser step: WGAN's weight clipping to [-clip, clip], then
    the historical average's new snapshot."""
    if config.loss == "wgan":
        for parameter in discriminator.parameters():
            parameter.clamp_(-config.clip, config.clip)
    if history is not None:
        history.update(discriminator)


class HistoricalAverage:
    """Online mean of a module's parameter snapshots (Salimans et al. 2016).

    penalty() = ||theta - mean of past theta||^2 summed over parameters; call
    update() after each optimiser step to add the new snapshot."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.count = 0
        self.mean = {name: torch.zeros_like(p, requires_grad=False) for name, p in module.named_parameters()}

    def penalty(self, module: torch.nn.Module) -> torch.Tensor:
        if self.count == 0:
            return next(module.parameters()).new_zeros(())
        return sum((p - self.mean[name]).pow(2).sum() for name, p in module.named_parameters())

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.count += 1
        for name, p in module.named_parameters():
            self.mean[name] += (p.detach() - self.mean[name]) / self.count

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": dict(self.mean)}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]
        for name, value in state["mean"].items():
            self.mean[name].copy_(value)
