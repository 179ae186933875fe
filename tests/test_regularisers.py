import torch
from torch import nn

from srgan_noise.regularisers import add_instance_noise, input_gradient_sq_norms, roth_omega


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


def test_input_gradient_matches_finite_differences():
    d = Quadratic(3)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    (norms,) = input_gradient_sq_norms((d(x),), (x,))
    eps = 1e-6
    for b in range(2):
        grad = torch.zeros(3, dtype=torch.float64)
        for i in range(3):
            step = torch.zeros_like(x)
            step[b, i] = eps
            with torch.no_grad():
                grad[i] = (d(x + step)[b] - d(x - step)[b]) / (2 * eps)
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


def test_instance_noise_statistics():
    x = torch.zeros(200_000)
    noisy = add_instance_noise(x, 0.3)
    assert abs(noisy.std().item() - 0.3) < 0.005
    assert abs(noisy.mean().item()) < 0.005
    assert add_instance_noise(x, 0.0) is x
    assert not torch.equal(add_instance_noise(x, 0.3), noisy)  # fresh noise each call


def test_r1_on_linear_logit_is_norm_of_w():
    """gamma/2 E||grad phi||^2 on phi = w.x + b is gamma/2 ||w||^2."""
    from srgan_noise.regularisers import d_penalty, r1_penalty

    d = Linear(6)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    gamma = 3.0
    w2 = d.w.detach().pow(2).sum()
    torch.testing.assert_close(gamma / 2 * r1_penalty(d(x), x).detach(), gamma / 2 * w2)
    x_fake = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(d_penalty("r2", d(x), x, d(x_fake), x_fake).detach(), w2)


def test_wgan_gp_on_linear_critic():
    """(||w|| - 1)^2 whatever the interpolates, since grad = w everywhere."""
    from srgan_noise.regularisers import wgan_gradient_penalty

    d = Linear(5)
    penalty = wgan_gradient_penalty(d, torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64))
    torch.testing.assert_close(penalty.detach(), (d.w.detach().norm() - 1) ** 2)
    penalty.backward()
    assert d.w.grad is not None and d.w.grad.abs().sum() > 0


def test_historical_average_is_mean_of_snapshots():
    from srgan_noise.regularisers import HistoricalAverage

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
    from srgan_noise.config import preset
    from srgan_noise.discriminator import AutoEncoderDiscriminator
    from srgan_noise.losses import as_logits
    from srgan_noise.regularisers import d_penalty

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
