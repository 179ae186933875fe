import math

import pytest
import torch
import torch.nn.functional as F

from srgan_noise.base.config import ModelConfig, preset
from srgan_noise.base.errors import UserError
from srgan_noise.models.discriminator import Discriminator, build_discriminator
from srgan_noise.models.generator import Generator, SubPixelGenerator, build_generator, receptive_radius


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_generator_shape(scale):
    generator = Generator(preset("tiny", scale=scale))
    assert generator(torch.rand(2, 3, 7, 9)).shape == (2, 3, 7 * scale, 9 * scale)


@pytest.mark.parametrize("size", [16, 24, 96, 130])
def test_discriminator_any_patch_size(size):
    assert Discriminator(preset("tiny")).eval()(torch.rand(3, 3, size, size)).shape == (3,)


def test_srresnet_preset_is_16_blocks_of_64():
    config = preset("srresnet")
    generator = Generator(config)
    assert len(generator.body) == 16 and generator.conv_first[0].out_channels == 64


def test_no_batch_norm():
    generator = Generator(preset("tiny", batch_norm=False))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in generator.body.modules())


def test_bad_scale():
    with pytest.raises(UserError, match="scale must be the integer 2, 4 or 8, got 3"):
        ModelConfig(scale=3)
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        preset("huge")


def test_config_round_trip():
    config = preset("small", scale=2)
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("name", ["tiny", "fast", "tiny-pixel-shuffle"])
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_receptive_radius_bounds_the_influence(scale, name):
    """A pixel change at distance > radius (LR px) leaves the output pixel unchanged."""
    name, _, upsample = name.partition("-")
    config = preset(name, scale=scale, **({"upsample": upsample} if upsample else {}))
    generator = build_generator(config).eval().double()
    radius = receptive_radius(config)
    size = 2 * radius + 9
    x = torch.rand(1, 3, size, size, dtype=torch.float64)
    centre = size // 2
    y = generator(x)[0, :, centre * scale, centre * scale]
    far = x.clone()
    far[..., centre + radius + 1, :] += 1.0
    far[..., :, centre - radius - 1] += 1.0
    torch.testing.assert_close(generator(far)[0, :, centre * scale, centre * scale], y, rtol=0, atol=1e-12)
    near = x.clone()
    near[..., centre + 1, centre + 1] += 1.0
    assert not torch.allclose(generator(near)[0, :, centre * scale, centre * scale], y)


def test_saved_architectures_without_a_generator_field_are_srresnet():
    old = {name: value for name, value in preset("small").to_dict().items() if name != "generator"}
    assert ModelConfig.from_dict(old) == preset("small") and preset("small").generator == "srresnet"


def subpixel(scale=4, seed=0):
    """The fast preset's generator in float64 with every weight random, conv_last included."""
    torch.manual_seed(seed)
    generator = SubPixelGenerator(preset("fast", scale=scale)).double()
    torch.nn.init.normal_(generator.conv_last.weight, std=0.1)
    return generator


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_subpixel_generator_adds_a_luma_residual_to_bicubic(scale):
    """Output minus F.interpolate's bicubic (odd sizes) is the same on R, G and B, so Cb and Cr
    are bicubic's; with conv_last at zero the output is bicubic itself."""
    generator = subpixel(scale)
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    bicubic = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    residual = generator(x) - bicubic
    assert residual.shape == (2, 3, 5 * scale, 7 * scale) and residual.abs().max() > 1e-3
    torch.testing.assert_close(residual[:, 1:], residual[:, :1].expand(-1, 2, -1, -1), rtol=0, atol=1e-12)
    torch.nn.init.zeros_(generator.conv_last.weight)
    torch.nn.init.zeros_(generator.conv_last.bias)
    torch.testing.assert_close(generator(x), bicubic, rtol=0, atol=1e-12)


def test_subpixel_generator_inference_path_equals_the_autograd_path():
    """Under no_grad the sum is written straight into the output's layout: the same numbers,
    channels_last input too."""
    generator = subpixel()
    x = torch.rand(2, 3, 6, 5, dtype=torch.float64)
    expected = generator(x)
    with torch.no_grad():
        assert torch.equal(generator(x), expected)
        channels_last = generator(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(channels_last, expected, rtol=0, atol=1e-12)


def test_subpixel_generator_gradcheck():
    generator = subpixel(scale=2)
    x = torch.rand(1, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(generator, (x,))


@pytest.mark.parametrize("overrides", [dict(batch_norm=True), dict(image_skip=False)])
def test_subpixel_generator_refuses_batch_norm_and_no_image_skip(overrides):
    with pytest.raises(UserError, match="the subpixel generator has no batch norm and needs the image skip"):
        preset("fast", **overrides)


def test_unknown_generator():
    with pytest.raises(UserError, match="generator must be one of srresnet, subpixel, got 'espcn'"):
        ModelConfig(generator="espcn")


def test_spectral_norm_bounds_every_layer():
    discriminator = Discriminator(preset("tiny", d_spectral_norm=True, d_norm="none"))
    for _ in range(30):  # power iterations run in training-mode forwards
        discriminator(torch.rand(2, 3, 16, 16))
    layers = [m for m in discriminator.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 10 and all(hasattr(m, "parametrizations") for m in layers)
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_minibatch_discrimination_by_hand():
    from srgan_noise.models.discriminator import MinibatchDiscrimination

    layer = MinibatchDiscrimination(in_features=2, kernels=1, dim=2)
    with torch.no_grad():
        layer.tensor.copy_(torch.eye(2))
    features = torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.0, 1.0]])
    # L1 distances: |0-1|+|0-2| = 3, 1; and between rows 1 and 2: 1 + 1 = 2
    expected = torch.tensor([[1 + math.exp(-3) + math.exp(-1)], [math.exp(-3) + 1 + math.exp(-2)],
                             [math.exp(-1) + math.exp(-2) + 1]])
    torch.testing.assert_close(layer(features), expected)


def test_minibatch_discrimination_gradcheck():
    """First and second derivatives (the regularisers' double backward), float64."""
    from srgan_noise.models.discriminator import MinibatchDiscrimination

    layer = MinibatchDiscrimination(in_features=3, kernels=2, dim=2).double()
    features = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (features,))
    assert torch.autograd.gradgradcheck(layer, (features,))


def test_minibatch_discrimination_sees_the_batch():
    discriminator = Discriminator(preset("tiny", d_minibatch_kernels=4, d_norm="none")).eval()
    x = torch.rand(3, 3, 16, 16)
    alone = discriminator(x[:1])
    together = discriminator(x)[:1]
    assert not torch.allclose(alone, together)


# virtual batch normalisation


def virtual_discriminator(reference_size=4, size=16, **overrides):
    discriminator = build_discriminator(preset("tiny", d_norm="virtual", d_reference_size=reference_size, **overrides))
    discriminator.reference.set(torch.rand(reference_size, 3, size, size))
    return discriminator


def test_virtual_batch_norm_by_hand():
    """Each example: batch norm over the reference batch plus itself; the reference rows: over the reference alone."""
    from srgan_noise.models.discriminator import VirtualBatchNorm

    layer = VirtualBatchNorm(channels=2, reference_size=3).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([2.0, 0.5]))
        layer.bias.copy_(torch.tensor([0.1, -0.3]))
    for shape in ((2,), (2, 5, 4)):  # dense features, then conv feature maps
        reference, examples = torch.randn(3, *shape, dtype=torch.float64), torch.randn(4, *shape, dtype=torch.float64)
        out = layer(torch.cat([reference, examples]))
        bn = lambda x: torch.nn.functional.batch_norm(x, None, None, layer.weight, layer.bias, training=True)
        torch.testing.assert_close(out[:3], bn(reference))
        for i in range(4):
            torch.testing.assert_close(out[3 + i], bn(torch.cat([reference, examples[i:i + 1]]))[-1])


def test_virtual_batch_norm_gradcheck():
    """First and second derivatives (the regularisers' double backward), float64, reference rows included."""
    from srgan_noise.models.discriminator import VirtualBatchNorm

    layer = VirtualBatchNorm(channels=2, reference_size=2).double()
    x = torch.randn(5, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))


@pytest.mark.parametrize("autoencoder", [False, True])
def test_virtual_batch_norm_output_does_not_depend_on_the_rest_of_the_batch(autoencoder):
    discriminator = virtual_discriminator(d_autoencoder=autoencoder).train()
    assert type(discriminator).__name__ == ("AutoEncoderDiscriminator" if autoencoder else "Discriminator")
    x = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(discriminator(x)[:1], discriminator(x[:1]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(discriminator(x)[1:], discriminator(x.flip(0))[:2].flip(0), rtol=1e-5, atol=1e-6)
    batch_norm = build_discriminator(preset("tiny", d_norm="batch", d_autoencoder=autoencoder)).train()
    assert not torch.allclose(batch_norm(x)[:2], batch_norm(x[:2]), rtol=1e-3, atol=1e-4)


def test_virtual_batch_norm_depends_on_the_reference_batch():
    discriminator = virtual_discriminator()
    x = torch.rand(2, 3, 16, 16)
    before = discriminator(x)
    discriminator.reference.set(torch.rand(4, 3, 16, 16))
    assert not torch.allclose(before, discriminator(x))


def test_reference_batch_travels_with_the_state_dict():
    """A fresh discriminator (empty reference) loading a state dict takes the stored reference batch."""
    discriminator = virtual_discriminator(size=24)
    fresh = Discriminator(discriminator.config)
    fresh.load_state_dict(discriminator.state_dict())
    assert torch.equal(fresh.reference.batch, discriminator.reference.batch)
    x = torch.rand(2, 3, 24, 24)
    torch.testing.assert_close(fresh(x), discriminator(x))


def test_reference_batch_errors():
    discriminator = Discriminator(preset("tiny", d_norm="virtual", d_reference_size=4))
    with pytest.raises(RuntimeError, match="virtual batch norm needs its reference batch: call set"):
        discriminator(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="the reference batch must have 4 examples, got 3"):
        discriminator.reference.set(torch.rand(3, 3, 16, 16))
    discriminator.reference.set(torch.rand(4, 3, 16, 16))
    with pytest.raises(ValueError, match=r"inputs of shape \(3, 24, 24\), but the reference batch's are \(3, 16, 16\)"):
        discriminator(torch.rand(2, 3, 24, 24))


def test_d_norm_replaces_d_batch_norm_in_saved_architectures():
    """Checkpoints and weights files written before d_norm (d_batch_norm: true/false) still load."""
    old = {**preset("small", d_arch="vgg").to_dict(), "d_batch_norm": False}
    del old["d_norm"], old["d_arch"]  # neither field existed then
    assert ModelConfig.from_dict(old) == preset("small", d_arch="vgg", d_norm="none")
    assert ModelConfig.from_dict({**old, "d_batch_norm": True}).d_norm == "batch"
    with pytest.raises(UserError, match="d_batch_norm must be true or false, got 'yes'"):
        ModelConfig.from_dict({**old, "d_batch_norm": "yes"})
    with pytest.raises(UserError, match="d_norm must be one of batch, virtual, none, got 'layer'"):
        preset("tiny", d_norm="layer")


# EBGAN's auto-encoder discriminator


def test_autoencoder_energy_is_its_reconstruction_error():
    from srgan_noise.models.discriminator import AutoEncoderDiscriminator

    discriminator = AutoEncoderDiscriminator(preset("tiny", d_autoencoder=True, d_norm="none"))
    x = torch.rand(3, 3, 16, 24)
    codes, energies = discriminator.forward_features(x)
    assert codes.shape == (3, 4 * 8 * 2 * 3) and energies.shape == (3,)
    with torch.no_grad():
        reconstruction = (torch.tanh(discriminator.decoder(discriminator.encoder(2 * x - 1))) + 1) / 2
        assert reconstruction.shape == x.shape
        torch.testing.assert_close(energies.detach(), (reconstruction - x).pow(2).mean((1, 2, 3)))
    assert (energies > 0).all()
    with pytest.raises(ValueError, match=r"sides that are multiples of 8, got \(16, 20\)"):
        discriminator(torch.rand(1, 3, 16, 20))


def test_autoencoder_spectral_norm_covers_its_transposed_convs():
    from srgan_noise.models.discriminator import AutoEncoderDiscriminator

    discriminator = AutoEncoderDiscriminator(preset("tiny", d_autoencoder=True, d_spectral_norm=True))
    layers = [m for m in discriminator.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(layers) == 6 and all(hasattr(m, "parametrizations") for m in layers)


def test_autoencoder_refuses_minibatch_discrimination():
    with pytest.raises(UserError, match="minibatch discrimination needs the Ledig discriminator"):
        preset("tiny", d_autoencoder=True, d_minibatch_kernels=4)


def test_unnormalised_discriminator_starts_signal_preserving():
    """d_norm none: He init keeps the input's variation alive through the eight convs (PyTorch's
    default init leaves about 1e-4 of it, and D's loss sits at ln 2), and the first conv's bias
    cancels the 0.5 mean of images in [0, 1]."""
    torch.manual_seed(0)
    x = torch.rand(8, 3, 64, 64)
    discriminator = Discriminator(preset("small", d_norm="none"))
    with torch.no_grad():
        spread = discriminator.features(x).std(0).mean() / x.std(0).mean()
        first = discriminator.features[0](torch.full((1, 3, 16, 16), 0.5))
        logits = discriminator(x)
    assert spread > 0.1
    assert first[..., 1:-1, 1:-1].abs().max() < 1e-5
    assert logits.abs().max() < 0.5  # the near-zero last layer: D starts undecided
    for module in discriminator.modules():  # the default init, for contrast
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.reset_parameters()
    with torch.no_grad():
        assert discriminator.features(x).std(0).mean() / x.std(0).mean() < 0.01



def test_nearest_upsampling_has_no_per_sub_pixel_weights():
    """upsample nearest: a constant feature map stays constant through the x2 stages, so no
    pattern repeats every `scale` output pixels (pixel-shuffle's 4c-channel convs give one)."""
    for upsample, periodic in (("nearest", False), ("pixel-shuffle", True)):
        torch.manual_seed(0)
        generator = Generator(preset("tiny", upsample=upsample, image_skip=False)).eval()
        with torch.no_grad():
            out = generator.conv_last(generator.upsample(torch.ones(1, 8, 12, 12)))[..., 8:-8, 8:-8]
        assert (out.std((-2, -1)).max() > 1e-3) == periodic
    assert Generator(preset("tiny", upsample="nearest")).upsample[1].out_channels == 8
    with pytest.raises(UserError, match="upsample must be one of pixel-shuffle, nearest"):
        preset("tiny", upsample="bilinear")
    with pytest.raises(UserError, match="the subpixel generator has no upsampling stages"):
        preset("fast", upsample="nearest")


def test_saved_architectures_without_an_upsample_field_are_pixel_shuffle():
    """Files written before the field existed hold PixelShuffle generators; the presets now make nearest ones."""
    old = {name: value for name, value in preset("small").to_dict().items() if name != "upsample"}
    assert ModelConfig.from_dict(old).upsample == "pixel-shuffle" and preset("small").upsample == "nearest"
    assert preset("fast").upsample == "pixel-shuffle"  # the sub-pixel network has no x2 stages


# Real-ESRGAN's U-Net discriminator: a logit per pixel


@pytest.mark.parametrize("size", [(16, 16), (32, 24), (64, 64)])
def test_unet_discriminator_gives_a_logit_per_pixel(size):
    discriminator = build_discriminator(preset("tiny", d_arch="unet"))
    maps, pooled, logits = discriminator.forward_maps(torch.rand(2, 3, *size))
    assert logits.shape == (2, 1, *size)
    c = discriminator.config.d_channels
    # encoder 2c, 4c, 8c at 1/2, 1/4, 1/8; decoder 4c, 2c, c back up; two tail maps at full size
    expected = [(2 * c, 2), (4 * c, 4), (8 * c, 8), (4 * c, 4), (2 * c, 2), (c, 1), (c, 1), (c, 1)]
    assert [(m.shape[1], size[0] // m.shape[2]) for m in maps] == expected
    assert pooled.shape == (2, 8 * c)
    torch.testing.assert_close(discriminator(torch.ones(1, 3, *size)), discriminator.eval()(torch.ones(1, 3, *size)))


def test_unet_discriminator_refuses_sides_that_are_not_multiples_of_8():
    with pytest.raises(ValueError, match="multiples of 8"):
        build_discriminator(preset("tiny", d_arch="unet"))(torch.rand(1, 3, 20, 16))


def test_unet_discriminator_spectral_norm_bounds_its_inner_convs():
    discriminator = build_discriminator(preset("tiny", d_arch="unet"))
    for _ in range(30):  # power iterations settle in train mode
        discriminator(torch.rand(2, 3, 16, 16))
    inner = [*discriminator.down, *discriminator.up, *discriminator.tail]
    assert len(inner) == 8
    for conv in inner:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)


def test_unet_pixel_logits_rest_on_a_64_px_window():
    """Through the bottleneck each pixel's logit sees 32 px to each side: a 64-px training patch's centre sees all of it."""
    discriminator = build_discriminator(preset("tiny", d_arch="unet")).eval()
    x = torch.rand(1, 3, 128, 128, requires_grad=True)
    discriminator(x)[0, 0, 64, 64].backward()
    reached = (x.grad.abs().sum((0, 1)) > 0).nonzero()
    assert reached.min(0).values.tolist() == [32, 32] and reached.max(0).values.tolist() == [95, 95]


@pytest.mark.parametrize("overrides", [dict(d_norm="batch"), dict(d_minibatch_kernels=4), dict(d_autoencoder=True),
                                       dict(d_arch="resnet")])
def test_unet_discriminator_refuses_what_it_has_no_use_for(overrides):
    with pytest.raises(UserError):
        preset("tiny", **{"d_arch": "unet", **overrides})


def test_saved_architectures_without_a_d_arch_field_are_vgg():
    values = preset("tiny").to_dict()
    del values["d_arch"]
    assert ModelConfig.from_dict(values).d_arch == "vgg"


@pytest.mark.parametrize("overrides", [dict(d_arch="vgg"), dict(d_arch="unet"), dict(d_autoencoder=True),
                                       dict(d_norm="virtual", d_reference_size=2)])
def test_forward_maps_agree_with_forward(overrides):
    discriminator = build_discriminator(preset("tiny", **overrides)).eval()
    if getattr(discriminator, "reference", None) is not None:
        discriminator.reference.set(torch.rand(2, 3, 16, 16))  # its rows are cut from the maps
    x = torch.rand(3, 3, 16, 16)
    maps, features, logits = discriminator.forward_maps(x)
    torch.testing.assert_close(logits, discriminator(x))
    torch.testing.assert_close(features, discriminator.forward_features(x)[0])
    assert all(m.shape[0] == 3 for m in maps)
