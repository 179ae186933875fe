import math

import pytest
import torch

from srgan_noise.base.errors import UserError
from srgan_noise.training.losses import LOSSES
from srgan_noise.training.toy import (MIXTURE_STD, TOY_GAMMA0, TOY_MARGIN, TOY_SIGMA0, ToyConfig, build_toy_nets,
                                      high_quality_percent, mixture_centres, mode_counts, modes_covered, plot_snapshots,
                                      reverse_kl, sample_mixture, toy_metrics, toy_step, train_toy)


def at_centres(mixture, per_mode, jitter=0.5, seed=0):
    """per_mode (K,) points per mode, each within jitter std of its centre."""
    centres, std = mixture_centres(mixture), MIXTURE_STD[mixture]
    g = torch.Generator().manual_seed(seed)
    points = [centres[k] + jitter * std * torch.randn(n, 2, generator=g) for k, n in enumerate(per_mode) if n]
    return torch.cat(points)


# smoke


def test_centres_ring_and_grid():
    ring, grid = mixture_centres("ring"), mixture_centres("grid")
    assert ring.shape == (8, 2) and torch.allclose(ring.norm(dim=1), torch.ones(8))
    assert grid.shape == (25, 2) and set(grid[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


@pytest.mark.parametrize("mixture", ["ring", "grid"])
def test_true_samples_score_as_perfect(mixture):
    samples = sample_mixture(mixture, 5000, torch.Generator().manual_seed(0))
    metrics = toy_metrics(samples, mixture)
    assert metrics["modes"] == len(mixture_centres(mixture))
    assert metrics["high_quality"] == pytest.approx(100 * (1 - math.exp(-4.5)), abs=0.5)  # 3 std of a 2-D Gaussian
    assert metrics["reverse_kl"] < 0.02


# the harness metrics on constructed sample sets


@pytest.mark.parametrize("mixture", ["ring", "grid"])
def test_all_modes_balanced(mixture):
    k = len(mixture_centres(mixture))
    samples = at_centres(mixture, [10] * k)
    centres, std = mixture_centres(mixture), MIXTURE_STD[mixture]
    assert modes_covered(samples, centres, std) == k
    assert high_quality_percent(samples, centres, std) == 100.0
    assert reverse_kl(samples, centres, std) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("mixture", ["ring", "grid"])
def test_one_mode(mixture):
    centres, std = mixture_centres(mixture), MIXTURE_STD[mixture]
    samples = at_centres(mixture, [50] + [0] * (len(centres) - 1))
    assert modes_covered(samples, centres, std) == 1
    assert high_quality_percent(samples, centres, std) == 100.0
    assert reverse_kl(samples, centres, std) == pytest.approx(math.log(len(centres)))


def test_samples_off_every_mode():
    ring_centres, ring_std = mixture_centres("ring"), MIXTURE_STD["ring"]
    angles = torch.arange(8) * (2 * math.pi / 8) + math.pi / 8  # half-way between ring modes
    ring = torch.stack([angles.cos(), angles.sin()], 1)
    grid = mixture_centres("grid") + 1.0  # centres of the grid's squares
    for samples, mixture in ((ring, "ring"), (grid, "grid")):
        metrics = toy_metrics(samples, mixture)
        assert metrics == {"modes": 0.0, "high_quality": 0.0, "reverse_kl": math.inf}
    assert mode_counts(ring, ring_centres, ring_std).sum() == 0


def test_mixed_set_counts_only_high_quality_samples():
    centres, std = mixture_centres("ring"), MIXTURE_STD["ring"]
    on_modes = at_centres("ring", [3, 1, 0, 0, 0, 0, 0, 0])
    off = torch.zeros(4, 2)  # the ring's centre, 1 from every mode
    samples = torch.cat([on_modes, off])
    assert modes_covered(samples, centres, std) == 2
    assert high_quality_percent(samples, centres, std) == pytest.approx(50.0)
    q = torch.tensor([0.75, 0.25])
    assert reverse_kl(samples, centres, std) == pytest.approx(float((q * (q * 8).log()).sum()))


# the training step and loop


def test_toy_step_figures_and_regulariser():
    config = ToyConfig(reg="roth", gamma_schedule="constant", noise="constant", batch_size=16)
    torch.manual_seed(0)
    nets = build_toy_nets(config)
    real = sample_mixture("ring", 16, torch.Generator().manual_seed(0))
    values = toy_step(nets, real, torch.randn(16, config.latent), 0, config)
    assert set(values) == {"loss_g", "loss_d", "omega", "d_real", "d_fake", "d_fake_next", "sigma", "gamma"}
    assert values["omega"] > 0
    assert values["sigma"] == pytest.approx(TOY_SIGMA0["ring"])
    assert values["gamma"] == pytest.approx(TOY_GAMMA0["ring"])
    assert all(math.isfinite(v) for v in values.values())


@pytest.mark.parametrize("loss", LOSSES)
def test_toy_step_runs_every_loss(loss):
    config = ToyConfig(loss=loss, d_autoencoder=loss == "ebgan", reg="r1", gamma_schedule="constant", batch_size=8,
                       width=8)
    nets = build_toy_nets(config)
    real = sample_mixture("ring", 8, torch.Generator().manual_seed(0))
    values = toy_step(nets, real, torch.randn(8, config.latent), 0, config)
    assert all(math.isfinite(v) for v in values.values())
    if loss == "wgan":
        assert max(p.abs().max().item() for p in nets.discriminator.parameters()) <= config.clip


@pytest.mark.parametrize("overrides", [dict(d_spectral_norm=True), dict(d_minibatch_kernels=4),
                                       dict(feature_matching="replace"), dict(feature_matching="add"),
                                       dict(historical_averaging=0.1)])
def test_toy_step_runs_every_technique(overrides):
    config = ToyConfig(batch_size=8, width=8, **overrides)
    nets = build_toy_nets(config)
    before = [p.detach().clone() for p in nets.discriminator.parameters()]
    real = sample_mixture("ring", 8, torch.Generator().manual_seed(0))
    for t in range(2):
        values = toy_step(nets, real, torch.randn(8, config.latent), t, config)
        assert all(math.isfinite(v) for v in values.values())
    assert any(not torch.equal(p, q) for p, q in zip(before, nets.discriminator.parameters()))
    if config.historical_averaging:
        assert nets.history_g.count == nets.history_d.count == 2


def test_toy_feature_matching_replaces_the_generator_loss():
    config = ToyConfig(batch_size=8, width=8, feature_matching="replace")
    nets = build_toy_nets(config)
    real, latent = sample_mixture("ring", 8, torch.Generator().manual_seed(0)), torch.randn(8, config.latent)
    with torch.no_grad():
        expected = (nets.discriminator.forward_features(real)[0].mean(0)
                    - nets.discriminator.forward_features(nets.generator(latent))[0].mean(0)).pow(2).sum().item()
    assert toy_step(nets, real, latent, 0, config)["loss_g"] == pytest.approx(expected, rel=1e-5)


def test_train_toy_records_and_snapshots(tmp_path):
    config = ToyConfig(mixture="grid", steps=12, batch_size=32, width=16, log_every=5, snapshots=3,
                       snapshot_samples=20, samples=50)
    run = train_toy(config)
    assert [r["step"] for r in run.records] == [5, 10, 12]
    assert {"d_real", "d_fake", "d_fake_next", "seconds_per_step"} <= set(run.records[0])
    assert sorted(run.snapshots) == [0, 6, 12] and run.snapshots[6].shape == (20, 2)
    assert run.samples.shape == (50, 2)
    again = train_toy(config)
    assert torch.equal(run.samples, again.samples)  # seeded
    path = plot_snapshots({"none": run, "other": again}, "grid", tmp_path / "snap.png")
    assert path.stat().st_size > 0


# exception


def test_config_rejects_unknown_mixture():
    with pytest.raises(UserError, match="toy mixture must be one of ring, grid"):
        ToyConfig(mixture="spiral")
    with pytest.raises(UserError, match="toy snapshots must be at least 2"):
        ToyConfig(snapshots=1)
    with pytest.raises(UserError, match="toy label smoothing needs a loss with a real target, not hinge"):
        ToyConfig(label_smoothing=True, loss="hinge")


# virtual batch norm and EBGAN on the toy


@pytest.mark.parametrize("overrides", [dict(d_norm="virtual"), dict(d_norm="batch"),
                                       dict(loss="ebgan", d_autoencoder=True),
                                       dict(loss="ebgan", d_autoencoder=True, pt_weight=0.1, d_norm="virtual"),
                                       dict(loss="ebgan", d_autoencoder=True, reg="r1", feature_matching="add")])
def test_train_toy_with_virtual_batch_norm_and_ebgan(overrides):
    config = ToyConfig(steps=6, batch_size=16, width=8, log_every=3, snapshots=2, snapshot_samples=10, samples=20,
                       **overrides)
    run = train_toy(config)
    assert [r["step"] for r in run.records] == [3, 6]
    assert all(math.isfinite(v) for r in run.records for k, v in r.items() if k != "phase")
    assert torch.equal(run.samples, train_toy(config).samples)  # the reference batch is seeded too


def test_toy_virtual_batch_norm_reference_is_fixed_and_per_example():
    from srgan_noise.models.discriminator import reference_stream

    config = ToyConfig(d_norm="virtual", batch_size=16, width=8)
    nets = build_toy_nets(config)
    reference = sample_mixture("ring", 16, reference_stream(0))
    nets.discriminator.reference.set(reference)
    x = torch.randn(5, 2)
    torch.testing.assert_close(nets.discriminator(x)[:2], nets.discriminator(x[:2]), rtol=1e-5, atol=1e-6)
    toy_step(nets, sample_mixture("ring", 16, torch.Generator().manual_seed(1)), torch.randn(16, 2), 0, config)
    assert torch.equal(nets.discriminator.reference.batch, reference)


def test_toy_autoencoder_energy_and_monitored_probability():
    import copy

    config = ToyConfig(loss="ebgan", d_autoencoder=True, batch_size=8, width=8)
    nets = build_toy_nets(config)
    real = sample_mixture("ring", 8, torch.Generator().manual_seed(0))
    codes, energies = nets.discriminator.forward_features(real)
    with torch.no_grad():
        reconstruction = nets.discriminator.decoder(nets.discriminator.encoder(real))
    assert codes.shape == (8, 8) and energies.shape == (8, 1)
    torch.testing.assert_close(energies.detach(), (reconstruction - real).pow(2).mean(1, keepdim=True))
    before = copy.deepcopy(nets.discriminator)
    values = toy_step(nets, real, torch.randn(8, config.latent), 0, config)
    margin = TOY_MARGIN["ring"]
    with torch.no_grad():
        expected = torch.sigmoid(4 * (1 - 2 * before(real) / margin)).mean().item()
    assert config.margin == margin and values["d_real"] == pytest.approx(expected, rel=1e-5)


def test_toy_ebgan_config_errors():
    with pytest.raises(UserError, match="toy loss ebgan and the auto-encoder discriminator go together"):
        ToyConfig(loss="ebgan")
    with pytest.raises(UserError, match="toy pulling-away term has no effect with loss hinge"):
        ToyConfig(loss="hinge", pt_weight=0.1)
    with pytest.raises(UserError, match="toy minibatch discrimination needs the MLP discriminator"):
        ToyConfig(loss="ebgan", d_autoencoder=True, d_minibatch_kernels=4)
    with pytest.raises(UserError, match="toy d-norm must be one of batch, virtual, none"):
        ToyConfig(d_norm="layer")
