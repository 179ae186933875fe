import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.inference.upscale import upscale
from srgan_noise.inference.weights import load_generator, save_generator
from srgan_noise.models.generator import Generator
from srgan_noise.models.projection import affine_projection, downscale_matrix, project_in_place
from srgan_noise.training.data import downscale


pytestmark = pytest.mark.usefixtures("one_thread")


def down(x: torch.Tensor, scale: int) -> torch.Tensor:
    """A x with the per-axis matrices."""
    a_h = torch.from_numpy(downscale_matrix(x.shape[-2], scale).toarray()).to(x.dtype)
    a_w = torch.from_numpy(downscale_matrix(x.shape[-1], scale).toarray()).to(x.dtype)
    return a_h @ x @ a_w.T


@pytest.mark.parametrize("scale, h, w", [(2, 5, 7), (4, 9, 13), (8, 3, 5), (4, 1, 6)])
def test_matrices_are_the_pipelines_downscaler(scale, h, w):
    hr = torch.rand(2, 3, h * scale, w * scale, dtype=torch.float64)
    pipeline = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(down(hr, scale), pipeline, rtol=0, atol=1e-12)
    # data.downscale is the same in float32, clamped to [0, 1]
    torch.testing.assert_close(down(hr, scale).clamp(0, 1).float(), downscale(hr.float(), scale), rtol=0, atol=1e-6)


def test_matrices_match_pil_bicubic_of_srgan_eval():
    """srgan eval's LR is PIL bicubic on 8-bit images: equal up to its rounding."""
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(hr).resize((11, 9), Image.BICUBIC), dtype=np.float64)
    ours = down(torch.from_numpy(hr.astype(np.float64)).permute(2, 0, 1), 4).permute(1, 2, 0).numpy()
    assert np.abs(np.clip(ours, 0, 255) - pil).max() <= 1.0


def test_matrix_of_a_long_axis_is_read_in_blocks():
    """Longer than one block of identity columns: still the pipeline's operator."""
    for length in (8 * 70, 8 * 64 + 8):  # > BLOCK; the last block one column wide
        columns = torch.rand(1, 1, length, 3, dtype=torch.float64)
        pipeline = F.interpolate(columns, scale_factor=(1 / 8, 1), mode="bicubic", antialias=True, align_corners=False)
        np.testing.assert_allclose(downscale_matrix(length, 8) @ columns[0, 0].numpy(), pipeline[0, 0].numpy(),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale, h, w", [(2, 7, 5), (4, 9, 13), (8, 5, 3), (4, 1, 1)])
def test_projection_is_consistent_and_idempotent(scale, h, w):
    x = torch.rand(2, 3, h * scale, w * scale) * 2 - 0.5
    y = torch.rand(2, 3, h, w)
    projected = affine_projection(x, y, scale)
    assert (down(projected, scale) - y).abs().max() <= 1e-4
    assert (affine_projection(projected, y, scale) - projected).abs().max() <= 1e-4


def test_projection_is_the_nearest_consistent_image():
    """x' - x lies in the row space of A: orthogonal to every z with A z = 0."""
    scale = 4
    x, y = torch.rand(1, 1, 24, 20, dtype=torch.float64), torch.rand(1, 1, 6, 5, dtype=torch.float64)
    w = torch.randn(1, 1, 24, 20, dtype=torch.float64)
    null = affine_projection(w, torch.zeros_like(y), scale)  # w - A^+ A w: A null == 0
    assert down(null, scale).abs().max() < 1e-10
    step = affine_projection(x, y, scale) - x
    assert abs(float((step * null).sum())) < 1e-10


def test_projection_gradcheck():
    x = torch.rand(1, 2, 8, 12, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: affine_projection(x, y, 4), (x, y))


def test_projection_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="is not y"):
        affine_projection(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 5, 4), 4)


@pytest.mark.parametrize("scale, h, w", [(4, 7, 9), (2, 150, 11), (8, 70, 3)])  # 300 and 560 rows: several STRIPs, blocks
def test_in_place_equals_the_dense_projection(scale, h, w):
    x, y = torch.rand(3, h * scale, w * scale), torch.rand(3, h, w)
    expected = affine_projection(x[None].double(), y[None].double(), scale)[0].float()
    assert (project_in_place(x.clone(), y, scale) - expected).abs().max() <= 1e-5


def _projected_generator(scale: int) -> Generator:
    generator = Generator(preset("tiny", scale=scale, projection="affine"))
    for module in generator.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    return generator.eval()


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_generator_output_is_consistent_with_its_input(scale):
    generator = _projected_generator(scale)
    lr = torch.rand(2, 3, 7, 5)
    with torch.no_grad():
        sr = generator(lr)
        unprojected = generator(lr, project=False)
    assert (down(sr, scale) - lr).abs().max() <= 1e-4
    assert (down(unprojected, scale) - lr).abs().max() > 1e-2


@pytest.mark.parametrize("scale, height, width, tile", [(4, 37, 23, 16), (2, 25, 18, 9), (8, 12, 17, 5), (4, 1, 29, 8)])
def test_tiled_equals_untiled_with_the_projection(scale, height, width, tile):
    generator = _projected_generator(scale)
    image = torch.rand(3, height, width)
    with torch.inference_mode():
        untiled = generator(image[None])[0]
    tiled = upscale(generator, image, tile=tile, batch_tiles=3)
    assert (tiled - untiled).abs().max() <= 1e-4


def test_projection_is_saved_with_the_weights(tmp_path):
    generator = _projected_generator(4)
    save_generator(generator, tmp_path / "g.safetensors")
    assert load_generator(tmp_path / "g.safetensors").config.projection == "affine"


def test_unknown_projection():
    with pytest.raises(UserError, match="projection must be one of none, affine, got 'cubic'"):
        preset("tiny", projection="cubic")
