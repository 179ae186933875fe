import copy
import dataclasses
import json
import math

import pytest
import torch

from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.inference.weights import load_generator
from srgan_noise.training.checkpoint import load_checkpoint
from srgan_noise.training.losses import g_loss_relativistic
from srgan_noise.training.monitor import read_metrics
from srgan_noise.training.regularisers import roth_omega
from srgan_noise.training.steps import build_nets, gan_step
from srgan_noise.training.train import train
from srgan_noise.training.train_config import TrainConfig

TINY = dict(model=preset("tiny"), batch_size=2, patch_size=16, log_every=2, checkpoint_every=2, progress=False)


def config(tmp_path, name="run", **overrides):
    return TrainConfig(out=str(tmp_path / name), **{**TINY, **overrides})


def batches(n=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 16, 16, generator=g)) for _ in range(n)]


def nets_for(cfg):
    torch.manual_seed(0)
    return build_nets(cfg.model, cfg, torch.device("cpu"))


def null():
    return torch.autocast("cpu", enabled=False)


class Spy(torch.nn.Module):
    """Records every discriminator input."""

    def __init__(self, discriminator):
        super().__init__()
        self.discriminator, self.inputs = discriminator, []

    def forward_maps(self, x):
        self.inputs.append(x.detach().clone())
        return self.discriminator.forward_maps(x)

    def forward_features(self, x):
        return self.forward_maps(x)[1:]

    def forward(self, x):
        return self.forward_maps(x)[2]


def test_noise_on_both_inputs_of_every_d_call(tmp_path):
    cfg = config(tmp_path, noise="constant", sigma0=0.2)
    nets = nets_for(cfg)
    spy = Spy(nets.discriminator)
    nets = dataclasses.replace(nets, discriminator=spy)
    (lr, hr), = data = batches()
    with torch.no_grad():
        fake_before = nets.generator(lr)
    gan_step(nets, data, 0, cfg, null)
    g_input, real_input, fake_input = spy.inputs  # G's adversarial call, then D's two
    for seen, clean in ((g_input, fake_before), (real_input, hr)):
        assert abs((seen - clean).std().item() - 0.2) < 0.03
    with torch.no_grad():
        fake_after = nets.generator(lr)
    assert abs((fake_input - fake_after).std().item() - 0.2) < 0.03


def test_zero_noise_leaves_inputs_clean(tmp_path):
    cfg = config(tmp_path, noise="none")
    nets = nets_for(cfg)
    spy = Spy(nets.discriminator)
    data = batches()
    gan_step(dataclasses.replace(nets, discriminator=spy), data, 0, cfg, null)
    assert torch.equal(spy.inputs[1], data[0][1])


def test_regulariser_changes_d_update_only(tmp_path):
    """+gamma/2 Omega is in the D loss only: G's update is the same with or without it."""
    plain, roth = config(tmp_path, noise="none"), config(tmp_path, noise="none", reg="roth", gamma0=5.0)
    results = []
    for cfg in (plain, roth):
        nets = nets_for(cfg)
        torch.manual_seed(1)
        values = gan_step(nets, batches(), 0, cfg, null)
        results.append((nets, values))
    (n0, v0), (n1, v1) = results
    for p0, p1 in zip(n0.generator.parameters(), n1.generator.parameters()):
        torch.testing.assert_close(p0, p1)
    assert v0["omega"] == 0 and v1["omega"] > 0 and v1["gamma"] == 5.0
    assert v1["loss_d"] == pytest.approx(v0["loss_d"])  # reported loss_d excludes the penalty
    assert any(not torch.allclose(p0, p1) for p0, p1 in zip(n0.discriminator.parameters(), n1.discriminator.parameters()))


def test_lazy_regularisation_every_k(tmp_path):
    cfg = config(tmp_path, noise="none", reg="roth", reg_every=3, d_steps=2)
    computed = [gan_step(nets_for(cfg), batches(2), t, cfg, null)["omega_computed"] for t in range(4)]
    assert computed == [1.0, 0.0, 0.0, 1.0]  # first D updates are D steps 0, 2, 4, 6


def test_lazy_regularisation_scaled_by_k(tmp_path):
    """On a regularised D step, reg_every=k with gamma equals reg_every=1 with k*gamma."""
    lazy = config(tmp_path, noise="none", reg="roth", reg_every=3, gamma0=0.5, gamma_schedule="constant")
    eager = config(tmp_path, noise="none", reg="roth", reg_every=1, gamma0=1.5, gamma_schedule="constant")
    nets = []
    for cfg in (lazy, eager):
        nets.append(nets_for(cfg))
        gan_step(nets[-1], batches(), 0, cfg, null)
    for p0, p1 in zip(nets[0].discriminator.parameters(), nets[1].discriminator.parameters()):
        torch.testing.assert_close(p0, p1)


def test_penalty_on_a_share_of_the_batch(tmp_path):
    """reg_share 0.5 of a batch of 4: the penalty has a forward of its own on the first two real
    and fake patches the D loss saw, and omega is the Roth term of D_t there."""
    cfg = config(tmp_path, noise="none", reg="roth", reg_share=0.5, batch_size=4)
    nets = nets_for(cfg)
    discriminator_t = copy.deepcopy(nets.discriminator)
    spy = Spy(nets.discriminator)
    g = torch.Generator().manual_seed(0)
    data = [(torch.rand(4, 3, 4, 4, generator=g), torch.rand(4, 3, 16, 16, generator=g))]
    values = gan_step(dataclasses.replace(nets, discriminator=spy), data, 0, cfg, null)
    _, real, fake, real_share, fake_share = spy.inputs  # G's call, the D loss's two, the penalty's two
    assert torch.equal(real_share, real[:2]) and torch.equal(fake_share, fake[:2])
    x_real, x_fake = real[:2].requires_grad_(True), fake[:2].requires_grad_(True)
    omega = roth_omega(discriminator_t(x_real), x_real, discriminator_t(x_fake), x_fake)
    assert values["omega"] == pytest.approx(omega.item(), rel=1e-5)


def test_cosine_pretrain_schedule_sets_each_step_learning_rate(tmp_path, image_folder):
    """The MSE phase's Adam runs each step at the schedule's rate: the run's optimiser ends at
    the last step's rate, and a resumed run ends where an uninterrupted one does."""
    cfg = config(tmp_path, data=str(image_folder), pretrain_steps=4, steps=0, pretrain_lr=1e-3,
                 pretrain_lr_schedule="cosine")
    train(cfg)
    state = load_checkpoint(tmp_path / "run")
    assert state["opt_pretrain"]["param_groups"][0]["lr"] == pytest.approx(cfg.pretrain_learning_rate(3))
    assert cfg.pretrain_learning_rate(3) == pytest.approx(1e-3 * (1 + math.cos(math.pi * 3 / 4)) / 2)


def test_d_fake_next_is_old_d_on_new_generator(tmp_path):
    """D_t(G_{t+1}) equals D_t (before its update) on the updated generator's fakes."""
    cfg = config(tmp_path, noise="none", model=preset("tiny", d_norm="none"))
    nets = nets_for(cfg)
    d_before = __import__("copy").deepcopy(nets.discriminator)
    data = batches()
    values = gan_step(nets, data, 0, cfg, null)
    with torch.no_grad():
        expected = torch.sigmoid(d_before(nets.generator(data[0][0]))).mean().item()
    assert values["d_fake_next"] == pytest.approx(expected, abs=1e-6)


def test_label_smoothing_changes_d_loss(tmp_path):
    values = [gan_step(nets_for(c), batches(), 0, c, null)["loss_d"]
              for c in (config(tmp_path, noise="none"), config(tmp_path, noise="none", label_smoothing=True))]
    assert values[0] != pytest.approx(values[1])


def test_resume_matches_uninterrupted(tmp_path, image_folder):
    common = dict(data=str(image_folder), val=str(image_folder), pretrain_steps=4, noise="linear",
                  noise_steps=8, reg="roth", gamma_steps=8)
    whole = train(config(tmp_path, "whole", steps=8, **common))
    half = train(config(tmp_path, "half", steps=2, **common))
    halves = read_metrics(half)
    assert halves[-1]["step"] == 6
    saved = TrainConfig.from_dict(load_checkpoint(half)["config"])
    train(dataclasses.replace(saved, steps=8), resume=True)
    first, second = read_metrics(whole), read_metrics(half)
    assert [r["step"] for r in first] == [2, 4, 6, 8, 10, 12]
    assert len(first) == len(second)
    for a, b in zip(first, second):
        for key in a:
            if key == "phase":
                assert a[key] == b[key]
            elif key != "seconds_per_step":
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


def test_realistic_degradation_resumes_exactly(tmp_path, image_folder):
    """The realistic chain draws from the data generator, whose state the checkpoint holds."""
    common = dict(data=str(image_folder), val=str(image_folder), pretrain_steps=2, noise="none",
                  degradation="realistic")
    whole = train(config(tmp_path, "whole", steps=4, **common))
    half = train(config(tmp_path, "half", steps=2, **common))
    saved = TrainConfig.from_dict(load_checkpoint(half)["config"])
    assert saved.degradation == "realistic"
    train(dataclasses.replace(saved, steps=4), resume=True)
    first, second = read_metrics(whole), read_metrics(half)
    assert [r["step"] for r in first] == [r["step"] for r in second] == [2, 4, 6]
    for a, b in zip(first, second):
        assert a["loss_pixel"] == pytest.approx(b["loss_pixel"], rel=1e-5, abs=1e-7)
        assert a["val_psnr"] == pytest.approx(b["val_psnr"], rel=1e-5)
    bicubic = read_metrics(train(config(tmp_path, "bicubic", steps=0, **{**common, "degradation": "bicubic"})))
    assert bicubic[0]["loss_pixel"] != pytest.approx(first[0]["loss_pixel"], rel=1e-3)  # other LR patches


@pytest.mark.parametrize("degradation", ["realistic", "bicubic-mixed"])
def test_other_degradations_refuse_the_affine_projection(tmp_path, degradation):
    with pytest.raises(UserError, match=f"--projection affine .* --degradation {degradation} does not use"):
        config(tmp_path, degradation=degradation, model=preset("tiny", projection="affine"))
    with pytest.raises(UserError, match="--degradation must be one of bicubic, bicubic-mixed, realistic"):
        config(tmp_path, degradation="jpeg")


def test_outputs_written(tmp_path, image_folder):
    run = train(config(tmp_path, data=str(image_folder), val=str(image_folder), steps=2, pretrain_steps=2))
    record = read_metrics(run)[-1]
    for key in ("d_real", "d_fake", "d_fake_next", "loss_d", "loss_g", "sigma", "gamma", "omega",
                "val_ssim", "val_mse", "val_psnr", "val_hf_ratio", "loss_pixel"):
        assert key in record
    generator = load_generator(run / "generator.safetensors")
    assert generator.config == preset("tiny")
    assert list((run / "tb").iterdir())


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, image_folder, monkeypatch):
    # A diverging GAN phase: --adv-weight nan is refused up front now, so the adversarial loss turns nan.
    monkeypatch.setattr("srgan_noise.training.steps.g_loss", lambda *args: torch.tensor(float("nan")))
    cfg = config(tmp_path, data=str(image_folder), pretrain_steps=2, steps=4)
    with pytest.raises(UserError, match=r"loss_g became nan by step 4.*last good checkpoint kept: step 2"):
        train(cfg)
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint["step"] == 2
    assert all(torch.isfinite(v).all() for v in checkpoint["generator"].values() if v.is_floating_point())
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").open()] == [2]


def test_refuses_to_overwrite_a_run(tmp_path, image_folder):
    cfg = config(tmp_path, data=str(image_folder), pretrain_steps=2, steps=0)
    train(cfg)
    with pytest.raises(UserError, match="already holds a run; use --resume"):
        train(cfg)


@pytest.mark.parametrize("overrides, message", [
    (dict(noise="cosine"), "--noise must be one of"),
    (dict(checkpoint_every=3), "multiple of --log-every"),
    (dict(patch_size=18), "not a multiple of the scale"),
    (dict(steps=0, pretrain_steps=0), "not both 0"),
    (dict(reg_every=0), "--reg-every must be at least 1"),
    (dict(reg="roth", reg_share=0), r"--reg-share must be a number in \(0, 1\]"),
    (dict(pretrain_lr_schedule="step"), "--pretrain-lr-schedule must be one of constant, cosine"),
    (dict(reg="roth", reg_share=1.5), r"--reg-share must be a number in \(0, 1\]"),
])
def test_invalid_config(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message):
        config(tmp_path, **overrides)


@pytest.mark.parametrize("overrides", [
    dict(loss="saturating"), dict(loss="lsgan", label_smoothing=True), dict(loss="hinge"),
    dict(loss="wgan", model=preset("tiny", d_norm="none")), dict(loss="wgan-gp", model=preset("tiny", d_norm="none")),
    dict(reg="r1"), dict(reg="r2"), dict(feature_matching="replace"), dict(feature_matching="add"),
    dict(historical_averaging=0.1), dict(model=preset("tiny", d_spectral_norm=True, d_minibatch_kernels=4)),
    *[dict(model=preset("tiny", d_arch="unet"), **technique) for technique in (
        dict(), dict(loss="relativistic"), dict(loss="hinge"), dict(loss="lsgan"), dict(loss="wgan-gp"),
        dict(reg="roth"), dict(reg="r1"), dict(reg="roth", reg_share=0.5), dict(feature_matching="add"),
        dict(d_feature_weight=1.0), dict(noise="constant"))],
    dict(d_feature_weight=1.0),
])
def test_every_technique_trains_the_discriminator(tmp_path, overrides):
    cfg = config(tmp_path, **{"noise": "none", **overrides})
    nets = nets_for(cfg)
    before = [p.detach().clone() for p in nets.discriminator.parameters()]
    values = [gan_step(nets, batches(seed=t), t, cfg, null) for t in range(2)]
    assert all(__import__("math").isfinite(v) for step in values for v in step.values())
    assert any(not torch.equal(p, q) for p, q in zip(before, nets.discriminator.parameters()))


def test_wgan_clips_weights_and_uses_rmsprop(tmp_path):
    cfg = config(tmp_path, noise="none", loss="wgan", clip=0.01, model=preset("tiny", d_norm="none"))
    nets = nets_for(cfg)
    assert isinstance(nets.opt_d, torch.optim.RMSprop) and isinstance(nets.opt_g, torch.optim.RMSprop)
    gan_step(nets, batches(), 0, cfg, null)
    assert max(p.abs().max().item() for p in nets.discriminator.parameters()) <= 0.01 + 1e-9


def test_feature_matching_replace_is_the_adversarial_term(tmp_path):
    cfg = config(tmp_path, noise="none", feature_matching="replace", model=preset("tiny", d_norm="none"))
    nets = nets_for(cfg)
    (lr, hr), = data = batches()
    with torch.no_grad():
        features_real, _ = nets.discriminator.forward_features(hr)
        features_fake, _ = nets.discriminator.forward_features(nets.generator(lr))
        expected = (features_real.mean(0) - features_fake.mean(0)).pow(2).sum().item()
    assert gan_step(nets, data, 0, cfg, null)["loss_adv"] == pytest.approx(expected, rel=1e-5)


def test_resume_restores_historical_average(tmp_path, image_folder):
    cfg = config(tmp_path, data=str(image_folder), pretrain_steps=2, steps=2, noise="none", historical_averaging=0.1)
    run = train(cfg)
    state = load_checkpoint(run)
    assert state["history_g"]["count"] == 2 and state["history_d"]["count"] == 2


@pytest.mark.parametrize("content", ["mse", "l1", "none"])
def test_content_term_is_the_chosen_loss(tmp_path, content):
    cfg = config(tmp_path, noise="none", content=content)
    nets = nets_for(cfg)
    (lr, hr), = data = batches()
    with torch.no_grad():
        fake = nets.generator(lr)
    expected = {"mse": torch.nn.functional.mse_loss(fake, hr), "l1": torch.nn.functional.l1_loss(fake, hr),
                "none": torch.zeros(())}[content].item()
    values = gan_step(nets, data, 0, cfg, null)
    assert values["loss_content"] == pytest.approx(expected, rel=1e-5, abs=1e-12)
    assert values["loss_g"] == pytest.approx(expected + cfg.adv_weight * values["loss_adv"], rel=1e-5)
    assert values["loss_pixel"] > 0  # G_{t+1}'s pixel MSE is logged whatever the content term


def test_content_none_trains_the_generator_by_the_adversarial_term_alone(tmp_path):
    cfg = config(tmp_path, noise="none", content="none", adv_weight=1.0)
    nets = nets_for(cfg)
    before = [p.detach().clone() for p in nets.generator.parameters()]
    gan_step(nets, batches(), 0, cfg, null)
    assert any(not torch.equal(p, q) for p, q in zip(before, nets.generator.parameters()))


def test_content_vgg_uses_the_given_weights(tmp_path):
    from torchvision.models import vgg19

    from srgan_noise.models.perceptual import load_vgg_loss

    path = tmp_path / "vgg19.pth"
    torch.save(vgg19(weights=None).state_dict(), path)
    cfg = config(tmp_path, noise="none", content="vgg", vgg_weights=str(path))
    nets = nets_for(cfg)
    (lr, hr), = data = batches()
    with torch.no_grad():
        expected = load_vgg_loss(path)(nets.generator(lr), hr).item()
    assert gan_step(nets, data, 0, cfg, null)["loss_content"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("overrides, message", [
    (dict(content="vgg"), "--content vgg needs --vgg-weights PATH"),
    (dict(vgg_weights="vgg.pth"), "--vgg-weights has no effect with --content mse"),
    (dict(content="none", adv_weight=0.0), "> 0 with --content none"),
    (dict(content="ssim"), "--content must be one of mse, l1, vgg, none"),
])
def test_invalid_content(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message):
        config(tmp_path, **overrides)


def test_projected_run_stays_consistent_with_its_input(tmp_path, image_folder):
    """--projection affine with the adversarial term alone (the seed's setting): the
    trained generator's validation outputs downscale exactly to their inputs."""
    from srgan_noise.training.data import load_folder, validation_pairs

    cfg = config(tmp_path, data=str(image_folder), val=str(image_folder), steps=2, pretrain_steps=2,
                 content="none", model=preset("tiny", projection="affine"))
    run = train(cfg)
    record = read_metrics(run)[-1]
    assert 0 < record["val_hf_ratio"] < 5
    generator = load_generator(run / "generator.safetensors")
    assert generator.config.projection == "affine"
    lr, _ = validation_pairs(load_folder(image_folder), 4)[0]
    with torch.no_grad():
        sr = generator(lr)
    # the unclamped downscaling, as A is: downscale() clamps, and y is in [0, 1]
    assert (torch.nn.functional.interpolate(sr, scale_factor=0.25, mode="bicubic", antialias=True) - lr).abs().max() < 1e-4


def test_validation_crops_go_to_tensorboard(tmp_path, image_folder):
    """At every window, a panel of the first validation image's LR (nearest), SR and HR crops."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from srgan_noise.training.train import crop_panel

    run = train(config(tmp_path, data=str(image_folder), val=str(image_folder), steps=2, pretrain_steps=2))
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("val/lr_sr_hr")
    assert [image.step for image in images] == [2, 4]
    assert (images[0].height, images[0].width) == (40, 120)  # 48x40 images: a 40 px square, three side by side
    hr = torch.rand(3, 48, 40)
    lr, sr = hr[:, ::4, ::4], torch.rand(3, 48, 40)
    panel = crop_panel(lr, sr, hr, 4)
    assert panel.shape == (3, 40, 120)
    torch.testing.assert_close(panel[:, :, 80:], hr[:, 4:44, :])  # the centre 40 rows of HR
    torch.testing.assert_close(panel[:, :4, :4], lr[:, 1:2, 0:1].expand(3, 4, 4))  # one LR pixel, 4x4


def test_init_starts_from_the_given_weights(tmp_path, image_folder):
    """--init: the GAN phase (no pre-training) starts from the weights file, so its first
    window is the same as continuing the run that made them with a fresh GAN phase."""
    source = train(config(tmp_path, "source", data=str(image_folder), steps=0, pretrain_steps=2))
    weights = source / "generator.safetensors"
    started = train(config(tmp_path, "started", data=str(image_folder), steps=0, pretrain_steps=2, seed=5,
                           init=str(weights)))
    # Pre-training continued from the file: its first MSE is the file's, not a random G's.
    random_start = train(config(tmp_path, "random", data=str(image_folder), steps=0, pretrain_steps=2, seed=5))
    init_loss, random_loss = (read_metrics(r)[0]["loss_pixel"] for r in (started, random_start))
    assert init_loss != pytest.approx(random_loss)
    torch.manual_seed(0)
    gan = train(config(tmp_path, "gan", data=str(image_folder), steps=2, pretrain_steps=0, init=str(weights)))
    # One GAN window in, G moved from the file's weights but stays near them (lr 1e-4, 2 steps).
    start, after = (dict(load_generator(path).named_parameters()) for path in (weights, gan / "generator.safetensors"))
    moved = max(float((start[name] - after[name]).abs().max()) for name in start)
    assert 0 < moved < 0.01


def test_init_with_another_architecture_is_one_line(tmp_path, image_folder):
    source = train(config(tmp_path, "source", data=str(image_folder), steps=0, pretrain_steps=2))
    with pytest.raises(UserError) as error:
        train(config(tmp_path, "other", data=str(image_folder), steps=2, pretrain_steps=0,
                     model=preset("tiny", blocks=3), init=str(source / "generator.safetensors")))
    message = str(error.value)
    assert "\n" not in message and "blocks 2 (the run: 3)" in message and "generator.safetensors" in message
    assert not (tmp_path / "other" / "checkpoint.pt").exists()


# virtual batch norm and EBGAN in the step and the run


def test_virtual_batch_norm_run_resumes_bit_for_bit(tmp_path, image_folder):
    """The reference batch is drawn once, from its own seeded stream (the data order stays a
    plain run's), saved in the checkpoint, and a resumed run continues exactly."""
    from srgan_noise.models.discriminator import reference_stream
    from srgan_noise.training.train import load_data

    common = dict(data=str(image_folder), val=str(image_folder), pretrain_steps=2, noise="linear", noise_steps=4,
                  reg="r1", gamma_steps=4, model=preset("tiny", d_norm="virtual", d_reference_size=3))
    whole = load_checkpoint(train(config(tmp_path, "whole", steps=4, **common)))
    half = train(config(tmp_path, "half", steps=2, **common))
    train(dataclasses.replace(TrainConfig.from_dict(load_checkpoint(half)["config"]), steps=4), resume=True)
    resumed = load_checkpoint(half)
    assert resumed["step"] == whole["step"] == 6
    for name in ("generator", "discriminator", "opt_d"):
        flat = lambda state: torch.cat([v.flatten() for v in torch.utils._pytree.tree_leaves(state)
                                        if isinstance(v, torch.Tensor) and v.is_floating_point()])
        assert torch.equal(flat(whole[name]), flat(resumed[name])), name
    sampler, _ = load_data(config(tmp_path, **common))
    expected = sampler.sample(3, reference_stream(0))[1]
    assert torch.equal(whole["discriminator"]["reference.batch"], expected)
    plain = load_checkpoint(train(config(tmp_path, "plain", steps=4, **{**common, "model": preset("tiny")})))
    assert torch.equal(plain["rng"]["data"], whole["rng"]["data"])


def test_ebgan_step_by_hand(tmp_path):
    """G's adversarial term: E(G(z)) + pt_weight x the pulling-away term of D's codes; D's loss:
    E(x) + max(0, m - E(G_t+1(z))); monitored D(x) = sigmoid(4 (1 - 2E/m))."""
    import copy

    from srgan_noise.training.losses import pulling_away

    margin = 0.1
    cfg = config(tmp_path, noise="none", loss="ebgan", ebgan_margin=margin, pt_weight=0.1,
                 model=preset("tiny", d_autoencoder=True, d_norm="none"))
    nets = nets_for(cfg)
    (lr, hr), = data = batches()
    d_before = copy.deepcopy(nets.discriminator)
    with torch.no_grad():
        codes, energy_fake = nets.discriminator.forward_features(nets.generator(lr))
    values = gan_step(nets, data, 0, cfg, null)
    with torch.no_grad():
        energy_real, energy_next = d_before(hr), d_before(nets.generator(lr))
    probability = lambda energy: torch.sigmoid(4 * (1 - 2 * energy / margin)).mean().item()
    assert values["loss_adv"] == pytest.approx((energy_fake.mean() + 0.1 * pulling_away(codes)).item(), rel=1e-5)
    assert values["loss_d"] == pytest.approx((energy_real.mean() + (margin - energy_next).clamp(min=0).mean()).item(),
                                             rel=1e-5)
    assert values["d_real"] == pytest.approx(probability(energy_real), rel=1e-5)
    assert values["d_fake"] == pytest.approx(probability(energy_fake), rel=1e-5)
    assert values["d_fake_next"] == pytest.approx(probability(energy_next), rel=1e-5)


@pytest.mark.parametrize("overrides", [dict(), dict(pt_weight=0.1), dict(reg="roth"), dict(reg="r1"),
                                       dict(feature_matching="add"), dict(model=preset("tiny", d_autoencoder=True,
                                                                                       d_norm="virtual"))])
def test_ebgan_gradients_reach_both_players(tmp_path, overrides):
    cfg = config(tmp_path, noise="none", loss="ebgan", content="none", adv_weight=1.0,
                 **{"model": preset("tiny", d_autoencoder=True), **overrides})
    nets = nets_for(cfg)
    if cfg.model.d_norm == "virtual":
        nets.discriminator.reference.set(torch.rand(cfg.model.d_reference_size, 3, 16, 16))
    before = [[p.detach().clone() for p in module.parameters()] for module in (nets.generator, nets.discriminator)]
    values = [gan_step(nets, batches(seed=t), t, cfg, null) for t in range(2)]
    assert all(__import__("math").isfinite(v) for step in values for v in step.values())
    for old, module in zip(before, (nets.generator, nets.discriminator)):
        assert any(not torch.equal(p, q) for p, q in zip(old, module.parameters()))
    if cfg.reg != "none":
        assert values[0]["omega"] > 0


def test_pulling_away_term_changes_the_generator_update(tmp_path):
    updated = []
    for pt_weight in (0.0, 1.0):
        cfg = config(tmp_path, noise="none", loss="ebgan", pt_weight=pt_weight,
                     model=preset("tiny", d_autoencoder=True))
        nets = nets_for(cfg)
        gan_step(nets, batches(), 0, cfg, null)
        updated.append(torch.cat([p.detach().flatten() for p in nets.generator.parameters()]))
    assert not torch.equal(*updated)


def test_virtual_batch_norm_trains_the_discriminator(tmp_path):
    cfg = config(tmp_path, noise="constant", model=preset("tiny", d_norm="virtual", d_reference_size=2))
    nets = nets_for(cfg)
    nets.discriminator.reference.set(torch.rand(2, 3, 16, 16))
    reference = nets.discriminator.reference.batch.clone()
    before = [p.detach().clone() for p in nets.discriminator.parameters()]
    values = gan_step(nets, batches(), 0, cfg, null)
    assert all(__import__("math").isfinite(v) for v in values.values())
    assert any(not torch.equal(p, q) for p, q in zip(before, nets.discriminator.parameters()))
    assert torch.equal(nets.discriminator.reference.batch, reference)  # fixed: not trained, not renoised


@pytest.mark.parametrize("overrides, message", [
    (dict(loss="ebgan"), "--loss ebgan and the auto-encoder discriminator"),
    (dict(model=preset("tiny", d_autoencoder=True)), "--loss ebgan and the auto-encoder discriminator"),
    (dict(loss="ebgan", model=preset("tiny", d_autoencoder=True), patch_size=20),
     "--loss ebgan needs a --patch-size that is a multiple of 8 .*got 20"),
    (dict(loss="ebgan", model=preset("tiny", d_autoencoder=True), ebgan_margin=0.0), "--ebgan-margin must be > 0"),
    (dict(loss="ebgan", model=preset("tiny", d_autoencoder=True), ebgan_margin=-1.0),
     "--ebgan-margin must be a number >= 0"),
    (dict(pt_weight=0.1), "--pt-weight .* has no effect with --loss non-saturating"),
    (dict(loss="ebgan", model=preset("tiny", d_autoencoder=True), label_smoothing=True),
     "needs a loss with a real target"),
])
def test_invalid_ebgan_config(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message):
        config(tmp_path, **overrides)


def test_ema_is_the_moving_average_of_the_gan_phase(tmp_path, image_folder):
    """--ema d: the weights file holds E_t = d E_{t-1} + (1 - d) G_t over the GAN steps, E_1 = G_1
    (pre-training is not averaged); the checkpoint's G is the last iterate, and validation scores E."""
    decay = 0.5
    common = dict(data=str(image_folder), val=str(image_folder), pretrain_steps=2, steps=3, noise="none",
                  log_every=1, checkpoint_every=1)
    plain = train(config(tmp_path, "plain", **common))
    averaged = train(config(tmp_path, "ema", ema=decay, **common))
    # The same training (the average is not fed back): every step's G equals the plain run's.
    assert load_checkpoint(averaged)["generator"].keys() == load_checkpoint(plain)["generator"].keys()
    for name, value in load_checkpoint(plain)["generator"].items():
        torch.testing.assert_close(load_checkpoint(averaged)["generator"][name], value, rtol=0, atol=0)
    # Rebuild the average from the plain run's G after each GAN step (its checkpoints, one a step).
    iterates = []
    for steps in (1, 2, 3):
        run = train(config(tmp_path, f"g{steps}", **{**common, "steps": steps}))
        iterates.append(dict(load_generator(run / "generator.safetensors").named_parameters()))
    expected = {name: value.detach().clone() for name, value in iterates[0].items()}
    for later in iterates[1:]:
        for name in expected:
            expected[name] = decay * expected[name] + (1 - decay) * later[name].detach()
    delivered = dict(load_generator(averaged / "generator.safetensors").named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(delivered[name].detach(), value, rtol=1e-5, atol=1e-7)
    records = read_metrics(averaged)
    assert records[1]["val_psnr"] == pytest.approx(read_metrics(plain)[1]["val_psnr"], rel=1e-9)  # pre-training
    assert records[-1]["val_psnr"] != pytest.approx(read_metrics(plain)[-1]["val_psnr"], rel=1e-6)


def test_ema_resumes_exactly(tmp_path, image_folder):
    common = dict(data=str(image_folder), val=str(image_folder), pretrain_steps=2, noise="none", ema=0.9)
    whole = train(config(tmp_path, "whole", steps=4, **common))
    half = train(config(tmp_path, "half", steps=2, **common))
    train(dataclasses.replace(TrainConfig.from_dict(load_checkpoint(half)["config"]), steps=4), resume=True)
    for a, b in zip(read_metrics(whole), read_metrics(half), strict=True):
        assert a["val_psnr"] == pytest.approx(b["val_psnr"], rel=1e-6)
    assert load_checkpoint(half)["ema"]["n_averaged"].item() == 4


def test_ema_decay_is_checked():
    with pytest.raises(UserError, match=r"--ema must be a number in \[0, 1\)"):
        TrainConfig(ema=1.0)


def test_d_lr_sets_the_discriminators_learning_rate_alone(tmp_path):
    nets = nets_for(config(tmp_path, lr=1e-4, d_lr=4e-4))
    assert [group["lr"] for group in nets.opt_d.param_groups] == [4e-4]
    assert [group["lr"] for group in nets.opt_g.param_groups] == [1e-4]
    assert [group["lr"] for group in nets_for(config(tmp_path, lr=3e-4)).opt_d.param_groups] == [3e-4]
    with pytest.raises(UserError, match="--d-lr must be a number > 0"):
        config(tmp_path, d_lr=0.0)


def test_relativistic_generator_term_uses_d_on_real_images(tmp_path):
    """--loss relativistic: G's adversarial term is losses.g_loss_relativistic of D_t on G_t's
    fakes and on the real batch (with instance noise on both: every D call gets it)."""
    cfg = config(tmp_path, noise="constant", sigma0=0.1, loss="relativistic",
                 model=preset("tiny", d_norm="none"))
    nets = nets_for(cfg)
    spy = Spy(nets.discriminator)
    nets = dataclasses.replace(nets, discriminator=spy)
    (lr, hr), = data = batches()
    with torch.no_grad():
        fake = nets.generator(lr)
    values = gan_step(nets, data, 0, cfg, null)
    noisy_fake, noisy_real = spy.inputs[:2]  # the G step's two D calls, before D's update
    torch.testing.assert_close((noisy_real - hr).std(), torch.tensor(0.1), atol=0.03, rtol=0)
    assert not torch.allclose(noisy_fake, fake + (noisy_real - hr))  # fresh noise per call
    with torch.no_grad():  # D_t is the spy's D after its update now: rebuild D_t from the same seed
        d_t = nets_for(cfg).discriminator
        expected = g_loss_relativistic(d_t(noisy_fake), d_t(noisy_real))
    assert values["loss_adv"] == pytest.approx(expected.item(), rel=1e-5)


# The U-Net discriminator (a logit per pixel) and the paired feature loss in the step and the run


def test_unet_monitor_is_the_mean_over_pixels(tmp_path):
    """D(real), D(fake) and D_t(G_{t+1}) are sigmoid(logit) averaged over the batch and the pixels, of D_t."""
    cfg = config(tmp_path, noise="none", model=preset("tiny", d_arch="unet"))
    nets = nets_for(cfg)
    d_t = copy.deepcopy(nets.discriminator).eval()  # eval: no power iteration, D_t's current estimate
    (lr, hr), = data = batches()
    with torch.no_grad():
        d_fake = torch.sigmoid(d_t(nets.generator(lr))).mean().item()
    values = gan_step(nets, data, 0, cfg, null)
    with torch.no_grad():
        d_real = torch.sigmoid(d_t(hr)).mean().item()
        d_fake_next = torch.sigmoid(d_t(nets.generator(lr))).mean().item()
    # the step's forwards in train mode take a power iteration each, moving D_t's sigma estimate a little
    assert values["d_real"] == pytest.approx(d_real, abs=2e-3)
    assert values["d_fake"] == pytest.approx(d_fake, abs=2e-3)
    assert values["d_fake_next"] == pytest.approx(d_fake_next, abs=2e-3)
    per_image = torch.sigmoid(d_t(hr).flatten(1).mean(1)).mean().item()
    assert per_image != pytest.approx(d_real, abs=1e-6)  # a mean of pixels' D, not D of a mean logit


@pytest.mark.parametrize("arch", ["vgg", "unet"])
def test_d_feature_loss_joins_the_content_term(tmp_path, arch):
    """loss_content = MSE + w x the paired L1 of D_t's maps of each fake and of its own HR image."""
    from srgan_noise.training.losses import d_feature_loss

    cfg = config(tmp_path, noise="none", d_feature_weight=2.0, model=preset("tiny", d_arch=arch))
    nets = nets_for(cfg)
    d_t = copy.deepcopy(nets.discriminator).eval()
    (lr, hr), = data = batches()
    with torch.no_grad():
        fake = nets.generator(lr)
        maps_fake, maps_real = d_t.forward_maps(fake)[0], d_t.forward_maps(hr)[0]
        expected = torch.nn.functional.mse_loss(fake, hr) + 2.0 * d_feature_loss(maps_fake, maps_real)
        same = d_feature_loss(maps_fake, maps_fake)
    assert same == 0
    values = gan_step(nets, data, 0, cfg, null)
    assert values["loss_content"] == pytest.approx(expected.item(), rel=1e-3)
    assert expected > torch.nn.functional.mse_loss(fake, hr)


def test_d_feature_loss_moves_the_generator(tmp_path):
    """With the adversarial weight 0, the feature loss alone changes G's update."""
    updates = []
    for weight in (0.0, 1.0):
        cfg = config(tmp_path, noise="none", adv_weight=0.0, d_feature_weight=weight, model=preset("tiny", d_arch="unet"))
        nets = nets_for(cfg)
        gan_step(nets, batches(), 0, cfg, null)
        updates.append(torch.cat([p.detach().flatten() for p in nets.generator.parameters()]))
    assert not torch.allclose(updates[0], updates[1])


def test_unet_run_with_feature_loss_resumes_bit_for_bit(tmp_path, image_folder):
    """Spectral norm's power-iteration vectors and the pixel draws of the Roth term travel with the checkpoint."""
    common = dict(data=str(image_folder), val=str(image_folder), pretrain_steps=2, noise="linear", noise_steps=4,
                  reg="roth", gamma_steps=4, d_feature_weight=1.0, model=preset("tiny", d_arch="unet"))
    whole = load_checkpoint(train(config(tmp_path, "whole", steps=4, **common)))
    half = train(config(tmp_path, "half", steps=2, **common))
    train(dataclasses.replace(TrainConfig.from_dict(load_checkpoint(half)["config"]), steps=4), resume=True)
    resumed = load_checkpoint(half)
    assert resumed["step"] == whole["step"] == 6
    assert any("_u" in name for name in whole["discriminator"])  # the power iteration's state is saved
    for name in ("generator", "discriminator", "opt_g", "opt_d"):
        flat = lambda state: torch.cat([v.flatten() for v in torch.utils._pytree.tree_leaves(state)
                                        if isinstance(v, torch.Tensor) and v.is_floating_point()])
        assert torch.equal(flat(whole[name]), flat(resumed[name])), name


def test_unet_needs_patches_that_are_multiples_of_8(tmp_path):
    with pytest.raises(UserError, match="multiple of 8"):
        config(tmp_path, patch_size=20, model=preset("tiny", d_arch="unet"))


def test_d_feature_weight_is_checked(tmp_path):
    with pytest.raises(UserError, match="--d-feature-weight must be a number >= 0"):
        config(tmp_path, d_feature_weight=float("nan"))
