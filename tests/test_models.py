import math

import pytest
import torch

from srgan_noise.config import ModelConfig, preset
from srgan_noise.discriminator import Discriminator
from srgan_noise.errors import UserError
from srgan_noise.generator import Generator, receptive_radius


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
    with pytest.raises(UserError, match="scale must be 2, 4 or 8, got 3"):
        ModelConfig(scale=3)
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        preset("huge")


def test_config_round_trip():
    config = preset("small", scale=2)
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_receptive_radius_bounds_the_influence(scale):
    """A pixel change at distance > radius (LR px) leaves the output pixel unchanged."""
    config = preset("tiny", scale=scale)
    generator = Generator(config).eval().double()
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


def test_spectral_norm_bounds_every_layer():
    discriminator = Discriminator(preset("tiny", d_spectral_norm=True, d_batch_norm=False))
    for _ in range(30):  # power iterations run in training-mode forwards
        discriminator(torch.rand(2, 3, 16, 16))
    layers = [m for m in discriminator.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 10 and all(hasattr(m, "parametrizations") for m in layers)
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_minibatch_discrimination_by_hand():
    from srgan_noise.discriminator import MinibatchDiscrimination

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
    from srgan_noise.discriminator import MinibatchDiscrimination

    layer = MinibatchDiscrimination(in_features=3, kernels=2, dim=2).double()
    features = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (features,))
    assert torch.autograd.gradgradcheck(layer, (features,))


def test_minibatch_discrimination_sees_the_batch():
    discriminator = Discriminator(preset("tiny", d_minibatch_kernels=4, d_batch_norm=False)).eval()
    x = torch.rand(3, 3, 16, 16)
    alone = discriminator(x[:1])
    together = discriminator(x)[:1]
    assert not torch.allclose(alone, together)
