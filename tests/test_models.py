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
