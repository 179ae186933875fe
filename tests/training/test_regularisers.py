import itertools

import pytest
import torch
from torch import nn

from srgan_noise.training.regularisers import (add_instance_noise, d_penalty, d_penalty_on_share,
                                               input_gradient_sq_norms, one_pixel_each, roth_omega, share_size,
                                               wgan_gradient_penalty)


class Linear(nn.Module):
    """phi(x) = w . x + b: grad_x phi = w for every sample."""

    def __init__(self, dim):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn((), dtype=torch.float64))

    def forward(self, x):
        return x.flatten(1) @ self.w + self.b


class Quadratic(nn.Module):
    """phi(x) = 0.5 x^T A x with A symmetric: grad_x phi = A x, a per-sample gradient."""

    def __init__(self, dim):
        super().__init__()
        m = torch.randn(dim, dim, dtype=torch.float64)
        self.a = nn.Parameter((m + m.T) / 2)

    def forward(self, x):
        return 0.5 * ((x @ self.a) * x).sum(1)


def test_omega_linear_closed_form():
    d = Linear(12)
    x_real = torch.randn(5, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    x_fake = torch.randn(5, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    omega = roth_omega(d(x_real), x_real, d(x_fake), x_fake)
    with torch.no_grad():
        w2 = d.w.pow(2).sum()
        expected = ((1 - torch.sigmoid(d(x_real))) ** 2).mean() * w2 + (torch.sigmoid(d(x_fake)) ** 2).mean() * w2
    torch.testing.assert_close(omega.detach(), expected)


def test_omega_per_sample_weights_quadratic():
    d = Quadratic(4)
    x_real = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    x_fake = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    omega = roth_omega(d(x_real), x_real, d(x_fake), x_fake)
    with torch.no_grad():
        a = d.a
        norm_real = (x_real @ a).pow(2).sum(1)
        norm_fake = (x_fake @ a).pow(2).sum(1)
        expected = ((1 - torch.sigmoid(d(x_real))) ** 2 * norm_real).mean() + (
            torch.sigmoid(d(x_fake)) ** 2 * norm_fake).mean()
    torch.testing.assert_close(omega.detach(), expected)


def central_difference_gradient(logits_of, x, b, eps=1e-6):
    """d logits_of(x)[b] / d x[b] by central differences, for inputs x (B, n) and logits (B,)."""
    grad = torch.zeros(x.shape[1], dtype=x.dtype)
    for i in range(x.shape[1]):
        step = torch.zeros_like(x)
        step[b, i] = eps
        with torch.no_grad():
            grad[i] = (logits_of(x + step)[b] - logits_of(x - step)[b]) / (2 * eps)
    return grad


def test_input_gradient_matches_finite_differences():
    d = Quadratic(3)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    (norms,) = input_gradient_sq_norms((d(x),), (x,))
    for b in range(2):
        grad = central_difference_gradient(d, x, b)
        torch.testing.assert_close(norms[b].detach(), grad.pow(2).sum(), rtol=1e-6, atol=1e-8)


def test_omega_gradcheck_wrt_discriminator_parameters():
    """Double backward: d Omega / d theta matches finite differences (float64)."""
    x_real = torch.randn(3, 4, dtype=torch.float64)
    x_fake = torch.randn(3, 4, dtype=torch.float64)

    def omega_of(a):
        xr, xf = x_real.clone().requires_grad_(True), x_fake.clone().requires_grad_(True)
        phi = lambda x: 0.5 * ((x @ a) * x).sum(1) + torch.tanh(x).sum(1)  # noqa: E731
        return roth_omega(phi(xr), xr, phi(xf), xf)

    a = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(omega_of, (a,))


class SmallConv(nn.Module):
    """A conv net's logit per example (B, 3, H, W) -> (B,), float64; with batch norm
    optional (train-mode BN couples the examples of a batch, eval mode does not)."""

    def __init__(self, batch_norm=False):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4) if batch_norm else nn.Identity(),
                                 nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, stride=2, padding=1)).double()
        if batch_norm:
            with torch.no_grad():
                self.net[1].running_mean.uniform_(-0.5, 0.5)
                self.net[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.net(x).flatten(1).mean(1) + 4 * self.net(x).flatten(1).pow(2).mean(1)


@pytest.mark.parametrize("kind", ["roth", "r1", "r2"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_penalty_on_a_share_is_unbiased_over_subsets(kind, batch_norm):
    """For a D whose logit is per example (no BN, or BN in eval mode), the mean over every
    subset of two of a batch of four of the penalty on that share, from its own forward,
    and of its gradient in D's weights, is the penalty on the whole batch and its gradient."""
    torch.manual_seed(0)
    discriminator = SmallConv(batch_norm).eval()
    weights = list(discriminator.parameters())
    x_real = torch.rand(4, 3, 6, 6, dtype=torch.float64)
    x_fake = torch.rand(4, 3, 6, 6, dtype=torch.float64)
    estimates, gradients = [], []
    for subset in itertools.combinations(range(4), 2):
        order = list(subset) + [i for i in range(4) if i not in subset]  # the share is the first two
        estimate = d_penalty_on_share(kind, discriminator, x_real[order], x_fake[order], share=0.5)
        estimates.append(estimate.detach())
        gradients.append(torch.autograd.grad(estimate, weights))
    x_real.requires_grad_(True), x_fake.requires_grad_(True)
    whole = d_penalty(kind, discriminator(x_real), x_real, discriminator(x_fake), x_fake)
    torch.testing.assert_close(torch.stack(estimates).mean(), whole.detach())
    for i, gradient in enumerate(torch.autograd.grad(whole, weights)):
        torch.testing.assert_close(torch.stack([g[i] for g in gradients]).mean(0), gradient)
    assert torch.stack(estimates).std() > 1e-3 * whole.abs()  # the subsets' estimates differ: a real average


@pytest.mark.parametrize("batch, share, size", [(16, 0.25, 4), (16, 1.0, 16), (3, 0.25, 1), (6, 0.25, 2), (5, 0.01, 1)])
def test_share_size(batch, share, size):
    assert share_size(batch, share) == size


def test_instance_noise_statistics():
    x = torch.zeros(200_000)
    noisy = add_instance_noise(x, 0.3)
    assert abs(noisy.std().item() - 0.3) < 0.005
    assert abs(noisy.mean().item()) < 0.005
    assert add_instance_noise(x, 0.0) is x
    assert not torch.equal(add_instance_noise(x, 0.3), noisy)  # fresh noise each call


def test_r1_on_linear_logit_is_norm_of_w():
    """gamma/2 E||grad phi||^2 on phi = w.x + b is gamma/2 ||w||^2."""
    from srgan_noise.training.regularisers import d_penalty, r1_penalty

    d = Linear(6)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    gamma = 3.0
    w2 = d.w.detach().pow(2).sum()
    torch.testing.assert_close(gamma / 2 * r1_penalty(d(x), x).detach(), gamma / 2 * w2)
    x_fake = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(d_penalty("r2", d(x), x, d(x_fake), x_fake).detach(), w2)


def test_wgan_gp_on_linear_critic():
    """(||w|| - 1)^2 whatever the interpolates, since grad = w everywhere."""
    from srgan_noise.training.regularisers import wgan_gradient_penalty

    d = Linear(5)
    penalty = wgan_gradient_penalty(d, torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64))
    torch.testing.assert_close(penalty.detach(), (d.w.detach().norm() - 1) ** 2)
    penalty.backward()
    assert d.w.grad is not None and d.w.grad.abs().sum() > 0


def test_historical_average_is_mean_of_snapshots():
    from srgan_noise.training.regularisers import HistoricalAverage

    module = nn.Linear(3, 2)
    history = HistoricalAverage(module)
    assert history.penalty(module).item() == 0.0
    snapshots = []
    for _ in range(5):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn_like(p))
        snapshots.append([p.detach().clone() for p in module.parameters()])
        history.update(module)
    for i, name in enumerate(["weight", "bias"]):
        torch.testing.assert_close(history.mean[name], torch.stack([s[i] for s in snapshots]).mean(0))
    expected = sum((p - torch.stack([s[i] for s in snapshots]).mean(0)).pow(2).sum()
                   for i, p in enumerate(module.parameters()))
    torch.testing.assert_close(history.penalty(module), expected)
    restored = HistoricalAverage(module)
    restored.load_state_dict(history.state_dict())
    assert restored.count == 5 and torch.equal(restored.mean["weight"], history.mean["weight"])


def test_ebgan_regularisers_act_on_the_energy_mapped_logit():
    """With EBGAN, R1 is on phi = 4 (1 - 2E/m): (8/m)^2 E||grad_x E||^2 for the energy E."""
    from srgan_noise.base.config import preset
    from srgan_noise.models.discriminator import AutoEncoderDiscriminator
    from srgan_noise.training.losses import as_logits
    from srgan_noise.training.regularisers import d_penalty

    discriminator = AutoEncoderDiscriminator(preset("tiny", d_autoencoder=True, d_norm="none")).double()
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    margin = 0.1
    energies = discriminator(x)
    penalty = d_penalty("r1", as_logits("ebgan", energies, margin), x, energies, x)
    (grad,) = torch.autograd.grad(discriminator(x).sum(), x)
    expected = (8 / margin) ** 2 * grad.flatten(1).pow(2).sum(1).mean()
    torch.testing.assert_close(penalty.detach(), expected)
    penalty.backward()  # the double backward reaches the auto-encoder's weights
    assert discriminator.encoder[0].weight.grad.abs().sum() > 0


# Per-pixel logits (the U-Net discriminator): the penalty is the mean over pixels, estimated on one drawn pixel


class PixelQuadratic(nn.Module):
    """A logit per pixel: phi_p(x) = 0.5 x^T A_p x for inputs (B, 4) and P = 3 pixels,
    returned as (B, 1, 1, 3); grad_x phi_p = A_p x."""

    def __init__(self):
        super().__init__()
        m = torch.randn(3, 4, 4, dtype=torch.float64)
        self.a = nn.Parameter((m + m.transpose(1, 2)) / 2)

    def forward(self, x):
        return 0.5 * torch.einsum("bi,pij,bj->bp", x, self.a, x).view(x.shape[0], 1, 1, 3)


def exact_pixel_omega(d, x_real, x_fake):
    """mean over examples and pixels of the per-pixel Roth terms, in closed form."""
    with torch.no_grad():
        terms = []
        for x, real in ((x_real, True), (x_fake, False)):
            phi = d(x).flatten(1)  # (B, P)
            norms = torch.einsum("pij,bj->bpi", d.a, x).pow(2).sum(2)  # ||A_p x_b||^2
            weight = (1 - torch.sigmoid(phi)) ** 2 if real else torch.sigmoid(phi) ** 2
            terms.append((weight * norms).mean())
        return sum(terms)


def test_one_pixel_each_passes_per_example_logits_and_draws_one_pixel_per_example():
    logits = torch.arange(6.0)
    assert one_pixel_each(logits) is logits
    maps = torch.arange(24.0).view(2, 1, 3, 4)
    torch.manual_seed(3)
    drawn = one_pixel_each(maps)
    assert drawn.shape == (2,)
    assert 0 <= drawn[0] < 12 and 12 <= drawn[1] < 24  # each from its own example
    seen = {int(one_pixel_each(maps)[0]) for _ in range(400)}
    assert seen == set(range(12))  # every pixel can be drawn


def test_pixel_omega_is_the_drawn_pixels_terms_and_unbiased_for_the_pixel_mean():
    torch.manual_seed(0)
    d = PixelQuadratic()
    x_real = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    x_fake = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    estimates = []
    for seed in range(300):
        torch.manual_seed(seed)
        omega = roth_omega(d(x_real), x_real, d(x_fake), x_fake)
        # The same draws by hand: one pixel per example, real then fake.
        torch.manual_seed(seed)
        pick_real, pick_fake = torch.randint(3, (4, 1)), torch.randint(3, (4, 1))
        with torch.no_grad():
            rows = torch.arange(4)
            grad_real = torch.einsum("bij,bj->bi", d.a[pick_real[:, 0]], x_real)
            grad_fake = torch.einsum("bij,bj->bi", d.a[pick_fake[:, 0]], x_fake)
            phi_real = d(x_real).flatten(1)[rows, pick_real[:, 0]]
            phi_fake = d(x_fake).flatten(1)[rows, pick_fake[:, 0]]
            by_hand = (((1 - torch.sigmoid(phi_real)) ** 2 * grad_real.pow(2).sum(1)).mean()
                       + (torch.sigmoid(phi_fake) ** 2 * grad_fake.pow(2).sum(1)).mean())
        torch.testing.assert_close(omega.detach(), by_hand)
        estimates.append(omega.item())
    exact = exact_pixel_omega(d, x_real, x_fake).item()
    mean, spread = torch.tensor(estimates).mean().item(), torch.tensor(estimates).std().item()
    assert abs(mean - exact) < 4 * spread / len(estimates) ** 0.5


def test_pixel_penalties_gradient_matches_finite_differences():
    """The drawn pixel's input gradient (R1 on per-pixel logits) against central differences."""
    torch.manual_seed(1)
    d = PixelQuadratic()
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(5)
    penalty = d_penalty("r1", d(x), x, d(x), x)
    torch.manual_seed(5)
    pick = torch.randint(3, (2, 1))[:, 0]
    drawn = lambda x: d(x).flatten(1)[torch.arange(2), pick]  # each example's drawn pixel's logit
    expected = [central_difference_gradient(drawn, x, b).pow(2).sum() for b in range(2)]
    torch.testing.assert_close(penalty.detach(), torch.stack(expected).mean(), rtol=1e-6, atol=1e-8)


def test_pixel_wgan_penalty_draws_one_pixel_per_example():
    torch.manual_seed(2)
    d = PixelQuadratic()
    x_real, x_fake = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    torch.manual_seed(7)
    penalty = wgan_gradient_penalty(d, x_real, x_fake)
    torch.manual_seed(7)
    mix = torch.rand(3, 1, dtype=torch.float64)
    pick = torch.randint(3, (3, 1))[:, 0]
    x_hat = mix * x_real + (1 - mix) * x_fake
    grads = torch.einsum("bij,bj->bi", d.a[pick].detach(), x_hat)
    torch.testing.assert_close(penalty.detach(), (grads.norm(dim=1) - 1).pow(2).mean())
