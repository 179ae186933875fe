import numpy as np
import pytest
import torch
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
