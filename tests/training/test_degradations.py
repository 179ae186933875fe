import io
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_noise.evaluation.evaluate import bicubic_down
from srgan_noise.training.degradations import (DOWNSCALERS, FAMILIES, Chain, blur_size, degrade_realistic,
                                               downscale_with, downscaler_weights, draw_chain, gaussian_kernel)


def _image(height=48, width=40, seed=0) -> torch.Tensor:
    """(3, H, W) uint8 with texture and noise, so rounding and aliasing show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(x / 2.1), np.cos(y / 1.7), np.sin((x + y) / 3.3)], -1) * 100 + 128
    array = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


# --- named families --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("scale", [2, 4])
def test_family_smoke(name, scale):
    hr = _image()
    lr = FAMILIES[name](hr, scale)
    assert lr.dtype == torch.uint8 and lr.shape == (3, 48 // scale, 40 // scale)
    assert torch.equal(lr, FAMILIES[name](hr, scale))  # deterministic


@pytest.mark.parametrize("name, resample", [("pil-bicubic", Image.BICUBIC), ("pil-lanczos", Image.LANCZOS),
                                            ("pil-box", Image.BOX)])
def test_pil_families_are_pillow(name, resample):
    hr = _image()
    assert torch.equal(FAMILIES[name](hr, 4), _tensor(_pil(hr).resize((10, 12), resample)))


def test_protocol_family_is_evals_bicubic():
    hr = _image()
    assert torch.equal(FAMILIES["pil-bicubic"](hr, 4), bicubic_down(hr, 4))


def test_jpeg75_is_pillow_jpeg_of_pil_bicubic():
    hr = _image()
    buffer = io.BytesIO()
    _pil(bicubic_down(hr, 4)).save(buffer, format="JPEG", quality=75)
    assert torch.equal(FAMILIES["jpeg75"](hr, 4), _tensor(Image.open(buffer)))


def test_noise5_has_sigma_5():
    hr = _image(256, 256)
    difference = FAMILIES["noise5"](hr, 2).float() - bicubic_down(hr, 2).float()
    unclipped = (bicubic_down(hr, 2) > 20) & (bicubic_down(hr, 2) < 235)
    assert difference[unclipped].std().item() == pytest.approx(5.0, rel=0.05)
    assert difference[unclipped].mean().abs().item() < 0.2


def test_cv_area_is_the_block_mean():
    hr = _image()
    blocks = hr.double().view(3, 12, 4, 10, 4).mean((2, 4))
    assert (FAMILIES["cv-area"](hr, 4).double() - blocks).abs().max() <= 0.5


def test_cv_families_do_not_antialias():
    """One bright column in every 4: antialiased x4 downscaling keeps its mean (a quarter
    of 255); OpenCV's cubic and linear taps at 4x + 1.5 miss it, and it vanishes."""
    columns = torch.tensor([0, 0, 0, 255], dtype=torch.uint8).repeat(10)
    hr = columns.expand(3, 40, 40).contiguous()
    for name in ("pil-bicubic", "pil-box", "cv-area"):
        assert FAMILIES[name](hr, 4)[..., 2:-2].float().sub(63.75).abs().max() <= 1, name  # borders aside
    for name in ("cv-cubic", "cv-linear"):
        assert FAMILIES[name](hr, 4).max() == 0, name


OPENCV = {"cv-cubic": "INTER_CUBIC", "cv-linear": "INTER_LINEAR", "cv-area": "INTER_AREA"}


@pytest.mark.parametrize("name", list(OPENCV))
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_cv_families_equal_opencv(name, scale):
    cv2 = pytest.importorskip("cv2")
    for seed, (height, width) in enumerate([(48, 40), (72, 56), (96, 64)]):
        hr = _image(height, width, seed)
        hr = hr[:, : height // scale * scale, : width // scale * scale]
        array = np.ascontiguousarray(hr.permute(1, 2, 0).numpy())
        reference = cv2.resize(array, (array.shape[1] // scale, array.shape[0] // scale),
                               interpolation=getattr(cv2, OPENCV[name]))
        assert torch.equal(FAMILIES[name](hr, scale), torch.from_numpy(reference).permute(2, 0, 1))


# --- the realistic chain ---------------------------------------------------------------------------------------

def test_realistic_is_reproducible_from_the_seed_and_varies_across_seeds():
    hr = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    first = degrade_realistic(hr, 4, torch.Generator().manual_seed(7))
    again = degrade_realistic(hr, 4, torch.Generator().manual_seed(7))
    other = degrade_realistic(hr, 4, torch.Generator().manual_seed(8))
    assert first.shape == (6, 3, 8, 8) and torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(first.mul(255).round(), first.mul(255))  # 8-bit values
    assert 0 <= first.min() and first.max() <= 1


def test_realistic_continues_a_generator_stream():
    """Two batches from one generator equal the same two batches drawn after restoring
    the generator's state in between: what a resumed training run does."""
    hr = torch.rand(3, 3, 16, 16)
    generator = torch.Generator().manual_seed(3)
    degrade_realistic(hr, 2, generator)
    state = generator.get_state()
    second = degrade_realistic(hr, 2, generator)
    restored = torch.Generator()
    restored.set_state(state)
    assert torch.equal(second, degrade_realistic(hr, 2, restored))


def test_chain_distribution():
    generator = torch.Generator().manual_seed(0)
    chains = [draw_chain(4, generator) for _ in range(3000)]
    counts = Counter(chain.downscaler for chain in chains)
    expected = {name: 3000 * weight / sum(downscaler_weights(4)) for name, weight in
                zip(DOWNSCALERS, downscaler_weights(4))}
    assert expected["bicubic-aliased"] == expected["bilinear-aliased"] == 900 and expected["lanczos"] == 300
    assert all(counts[name] == pytest.approx(expected[name], abs=4 * expected[name] ** 0.5) for name in DOWNSCALERS)
    blurred = [chain.blur for chain in chains if chain.blur is not None]
    assert len(blurred) == pytest.approx(900, abs=100)
    assert all(0.2 <= sigma <= 2.0 for blur in blurred for sigma in blur[:2])
    assert sum(blur[0] != blur[1] for blur in blurred) == pytest.approx(450, abs=80)  # anisotropic half
    qualities = [chain.jpeg_quality for chain in chains if chain.jpeg_quality is not None]
    assert len(qualities) == pytest.approx(1500, abs=120) and min(qualities) == 30 and max(qualities) == 95
    sigmas = [chain.gaussian_sigma for chain in chains if chain.gaussian_sigma is not None]
    assert len(sigmas) == pytest.approx(1200, abs=120) and 1 <= min(sigmas) and max(sigmas) <= 10
    peaks = [chain.poisson_peak for chain in chains if chain.poisson_peak is not None]
    assert len(peaks) == pytest.approx(600, abs=90) and 150 <= min(peaks) and max(peaks) <= 3000
    x2 = [draw_chain(2, generator) for _ in range(1000)]
    assert all(chain.blur is None or max(chain.blur[:2]) <= 1.0 for chain in x2)  # sigma up to scale / 2
    # at x2 OpenCV's bilinear is area's 2x2 mean: its share goes to the aliased cubic
    counts = Counter(chain.downscaler for chain in x2)
    assert "bilinear-aliased" not in counts and counts["bicubic-aliased"] == pytest.approx(600, abs=60)


def test_aliased_bilinear_at_x2_is_area():
    """Why the x2 chain never draws it: the same LR image as area's."""
    hr = torch.rand(2, 3, 16, 24)
    torch.testing.assert_close(downscale_with(hr, 2, "bilinear-aliased"), downscale_with(hr, 2, "area"))
    assert not torch.allclose(downscale_with(hr, 4, "bilinear-aliased"), downscale_with(hr, 4, "area"))


def test_plain_chain_is_the_downscaler():
    """Without blur, noise or JPEG, the chain is its downscaler, rounded to 8 bits."""
    hr = torch.rand(1, 3, 32, 32)
    for downscaler in DOWNSCALERS:
        chain = Chain(None, downscaler, None, False, None, None)
        lr = degrade_realistic(hr, 4, torch.Generator(), [chain])
        expected = downscale_with(hr, 4, downscaler).clamp(0, 1).mul(255).round().div(255)
        torch.testing.assert_close(lr, expected, rtol=0, atol=1e-6)
    # torch's antialiased bicubic is Pillow's, the aliased one OpenCV's
    pixels = _image(32, 32)
    hr = pixels[None].float().div(255)
    for downscaler, family, tolerance in (("bicubic", "pil-bicubic", 1), ("bicubic-aliased", "cv-cubic", 1),
                                          ("area", "cv-area", 1), ("lanczos", "pil-lanczos", 1)):
        lr = degrade_realistic(hr, 4, torch.Generator(), [Chain(None, downscaler, None, False, None, None)])
        assert (lr[0].mul(255) - FAMILIES[family](pixels, 4).float()).abs().max() <= tolerance, downscaler


def test_gaussian_kernel():
    kernel = gaussian_kernel(blur_size(4), 2.0, 0.5, 0.0)
    assert kernel.shape == (13, 13) and kernel.sum().item() == pytest.approx(1.0)
    assert kernel[6, 9] > kernel[9, 6]  # wide along x at angle 0
    turned = gaussian_kernel(13, 2.0, 0.5, torch.pi / 2)
    torch.testing.assert_close(turned, kernel.T)
    isotropic = gaussian_kernel(13, 1.0, 1.0, 0.3)
    torch.testing.assert_close(isotropic, isotropic.T)


def test_realistic_family_draws_per_image():
    """Seeded by the pixels: the same image always gets the same LR, other images other draws."""
    first, second = _image(64, 64, seed=0), _image(64, 64, seed=1)
    assert torch.equal(FAMILIES["realistic"](first, 4), FAMILIES["realistic"](first.clone(), 4))
    lr_second = FAMILIES["realistic"](second, 4)
    assert not torch.equal(lr_second, degrade_realistic(second[None].float() / 255, 4,
                                                        torch.Generator().manual_seed(0))[0].mul(255).round().byte())
