import math

import numpy as np
import pytest
import skimage.data
import torch
from kornia.filters import gaussian_blur2d
from PIL import Image


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny convolutions gain nothing from threads, and on a busy machine lose seconds waiting for them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def image_folder(tmp_path):
    """Four small RGB PNGs with texture, in tmp_path/images."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        y, x = np.mgrid[0:48, 0:40]
        base = np.stack([np.sin(x / (3 + i)), np.cos(y / (4 + i)), np.sin((x + y) / 5)], -1) * 100 + 128
        array = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"img{i}.png")
    return folder


def _astronaut(top: int = 300, left: int = 300, size: int = 96) -> torch.Tensor:
    """A textured crop of scikit-image's astronaut (bundled, offline): (1, 3, size, size) in [0, 1]."""
    array = torch.from_numpy(skimage.data.astronaut()[top : top + size, left : left + size].copy())
    return array.permute(2, 0, 1).float().div(255).unsqueeze(0)


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    size = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur2d(image, (size, size), (sigma, sigma), border_type="reflect")


@pytest.fixture
def astronaut():
    """_astronaut: crops of a bundled image with real texture, for the image measures."""
    return _astronaut


@pytest.fixture
def blur():
    return _blur
