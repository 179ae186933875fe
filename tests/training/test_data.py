import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_noise.base.errors import UserError
from srgan_noise.base.images import load_rgb
from srgan_noise.training.data import PatchSampler, downscale, load_folder, load_samples, validation_pairs
from srgan_noise.training.degradations import downscale_with


def test_sampler_shapes_and_determinism(image_folder):
    sampler = PatchSampler(load_folder(image_folder), patch_size=24, scale=4, source="x")
    lr, hr = sampler.sample(5, torch.Generator().manual_seed(3))
    assert lr.shape == (5, 3, 6, 6) and hr.shape == (5, 3, 24, 24)
    assert 0 <= hr.min() and hr.max() <= 1
    lr2, hr2 = sampler.sample(5, torch.Generator().manual_seed(3))
    assert torch.equal(hr, hr2) and torch.equal(lr, lr2)


def test_sampler_realistic_degradation(image_folder):
    """Same crops as bicubic (the chain draws after them), other LR patches, 8-bit values,
    reproducible from the seed."""
    images = load_folder(image_folder)
    realistic = PatchSampler(images, patch_size=24, scale=4, source="x", degradation="realistic")
    lr, hr = realistic.sample(6, torch.Generator().manual_seed(3))
    lr_bicubic, hr_bicubic = PatchSampler(images, 24, 4, "x").sample(6, torch.Generator().manual_seed(3))
    assert torch.equal(hr, hr_bicubic) and lr.shape == lr_bicubic.shape == (6, 3, 6, 6)
    assert not torch.equal(lr, lr_bicubic) and torch.equal(lr.mul(255).round(), lr.mul(255))
    again, _ = realistic.sample(6, torch.Generator().manual_seed(3))
    assert torch.equal(lr, again)
    with pytest.raises(UserError, match="--degradation must be one of bicubic, bicubic-mixed, realistic, got 'jpeg'"):
        PatchSampler(images, 24, 4, "x", degradation="jpeg")


def test_sampler_bicubic_mixed_degradation(image_folder):
    """Same crops as bicubic; each LR patch is the antialiased bicubic one or the
    non-antialiased (OpenCV INTER_CUBIC) one, both kinds in a batch, reproducible."""
    images = load_folder(image_folder)
    mixed = PatchSampler(images, patch_size=24, scale=4, source="x", degradation="bicubic-mixed")
    lr, hr = mixed.sample(16, torch.Generator().manual_seed(3))
    lr_bicubic, hr_bicubic = PatchSampler(images, 24, 4, "x").sample(16, torch.Generator().manual_seed(3))
    assert torch.equal(hr, hr_bicubic)
    aliased = downscale_with(hr, 4, "bicubic-aliased").clamp(0, 1)
    is_antialiased = [torch.equal(a, b) for a, b in zip(lr, lr_bicubic)]
    is_aliased = [torch.equal(a, b) for a, b in zip(lr, aliased)]
    assert all(x != y for x, y in zip(is_antialiased, is_aliased)) and 0 < sum(is_aliased) < 16
    again, _ = mixed.sample(16, torch.Generator().manual_seed(3))
    assert torch.equal(lr, again)


def test_downscale_matches_pil_bicubic():
    image = Image.fromarray((torch.rand(64, 48, 3) * 255).byte().numpy())
    hr = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    ours = downscale(hr, 4).mul(255)
    pil = torch.from_numpy(np.array(image.resize((12, 16), Image.BICUBIC))).permute(2, 0, 1)
    assert (ours[0] - pil.float()).abs().mean() < 1.0  # within a grey level on average


def test_modes_become_rgb_and_exif_honoured(tmp_path):
    Image.new("L", (10, 6), 100).save(tmp_path / "grey.png")
    Image.new("RGBA", (10, 6), (1, 2, 3, 4)).save(tmp_path / "rgba.png")
    Image.new("P", (10, 6), 5).save(tmp_path / "palette.png")
    Image.fromarray((torch.arange(60).view(6, 10) * 1000).int().numpy().astype("uint16")).save(tmp_path / "deep.png")
    rotated = Image.new("RGB", (10, 6))
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rotated.save(tmp_path / "exif.jpg", exif=exif)
    for name in ("grey.png", "rgba.png", "palette.png", "deep.png"):
        assert load_rgb(tmp_path / name).shape == (3, 6, 10)
    assert load_rgb(tmp_path / "exif.jpg").shape == (3, 10, 6)


def test_unreadable_skipped_with_warning(image_folder):
    (image_folder / "broken.png").write_text("not an image")
    with pytest.warns(UserWarning, match="broken.png: not an image"):
        images = load_folder(image_folder)
    assert len(images) == 4


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        load_folder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError, match="none of its 1 image files could be read"):
            load_folder(tmp_path / "bad")


def test_patch_larger_than_images(image_folder):
    with pytest.raises(UserError, match="patch size 64 is larger than every image"):
        PatchSampler(load_folder(image_folder), patch_size=64, scale=4, source=str(image_folder))
    with pytest.raises(UserError, match="not a multiple of the scale"):
        PatchSampler(load_folder(image_folder), patch_size=30, scale=4, source="x")


def test_samples_load_offline_and_validation_pairs_are_mod_cropped():
    images = load_samples(("chelsea",))
    ((lr, hr),) = validation_pairs(images, 8)
    assert hr.shape[-2] % 8 == 0 and hr.shape[-1] % 8 == 0
    assert lr.shape[-2:] == (hr.shape[-2] // 8, hr.shape[-1] // 8)
