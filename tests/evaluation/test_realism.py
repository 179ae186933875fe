
import pytest
import torch

from srgan_noise.base.errors import UserError
from srgan_noise.base.metrics import quantize
from srgan_noise.evaluation.realism import cosine_learning_rate, critic_accuracy, patch_grid, repeated_critic_accuracy


pytestmark = pytest.mark.usefixtures("one_thread")


FAST = dict(patch=16, steps=150, batch=16)  # about a second on one thread


def test_patch_grid_is_non_overlapping_inside_the_border():
    assert patch_grid(40, 50, 16, border=2) == [(2, 2), (2, 18), (18, 2), (18, 18)]
    assert patch_grid(15, 50, 16) == []


def test_cosine_learning_rate_endpoints():
    assert cosine_learning_rate(0, 100, 2e-3) == 2e-3
    assert cosine_learning_rate(50, 100, 2e-3) == pytest.approx(1e-3)
    assert cosine_learning_rate(100, 100, 2e-3) == pytest.approx(0.0, abs=1e-12)


def test_critic_cannot_tell_hr_from_itself(astronaut):
    images = [astronaut(size=64)[0], astronaut(380, 200, size=48)[0]]
    result = critic_accuracy(images, images, patch=16, steps=20, batch=8)
    assert result.accuracy == 0.5 and result.train_accuracy == 0.5
    assert result.test_count + result.train_count == 2 * (16 + 9)


def test_critic_catches_heavy_blur(astronaut, blur):
    hr = [astronaut(size=96)[0], astronaut(380, 200, size=96)[0]]
    sr = [blur(image[None], 2.0)[0] for image in hr]
    result = critic_accuracy(sr, hr, **FAST)
    assert result.test_count == 2 * round(0.3 * 72)
    assert result.accuracy > 0.8


def test_critic_is_deterministic_and_leaves_global_rng_alone(astronaut):
    hr = [astronaut(size=64)[0]]
    sr = [quantize(hr[0] + 0.05 * torch.randn(hr[0].shape))]
    state = torch.get_rng_state()
    first = critic_accuracy(sr, hr, patch=16, steps=30, batch=8, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert critic_accuracy(sr, hr, patch=16, steps=30, batch=8, seed=3) == first


def test_images_smaller_than_the_patch_contribute_nothing(astronaut):
    hr = [astronaut(size=64)[0], torch.rand(3, 10, 40)]
    result = critic_accuracy(hr, hr, patch=16, steps=5, batch=4)
    assert result.test_count + result.train_count == 2 * 16


def test_critic_exception():
    tiny = [torch.rand(3, 10, 12), torch.rand(3, 20, 20)]
    with pytest.raises(UserError, match=r"needs at least 2 patches of 16x16 px \(after a 0 px border\) "
                                        r"but the images give 1 \(smallest side 10 px\)"):
        critic_accuracy(tiny, tiny, patch=16)
    with pytest.raises(ValueError, match="patch must be at least 16 px"):
        critic_accuracy(tiny, tiny, patch=8)
    with pytest.raises(ValueError, match=r"image 0: expected SR and HR \(3, H, W\) of one shape"):
        critic_accuracy([torch.rand(3, 32, 32)], [torch.rand(3, 32, 33)])


def test_repeated_critic_is_the_mean_of_its_seeds(astronaut, blur):
    hr = [astronaut(size=64)[0]]
    sr = [blur(hr[0][None], 1.0)[0]]
    options = dict(patch=16, steps=20, batch=8)
    single = critic_accuracy(sr, hr, seed=0, **options)
    assert repeated_critic_accuracy(sr, hr, 1, **options) == (single.accuracy, single.standard_error)
    accuracies = [critic_accuracy(sr, hr, seed=seed, **options).accuracy for seed in range(3)]
    mean, error = repeated_critic_accuracy(sr, hr, 3, **options)
    assert mean == pytest.approx(sum(accuracies) / 3)
    spread = (sum((a - mean) ** 2 for a in accuracies) / 2) ** 0.5
    assert error == pytest.approx(spread / 3 ** 0.5)
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        repeated_critic_accuracy(sr, hr, 0, **options)
