import pytest

from srgan_noise.training.schedules import noise_sigma, pretrain_lr, reg_gamma


@pytest.mark.parametrize("t, expected", [(0, 0.2), (50, 0.1), (100, 0.0), (150, 0.0), (25, 0.15)])
def test_linear_noise(t, expected):
    assert noise_sigma(t, "linear", 0.2, 100) == pytest.approx(expected)


@pytest.mark.parametrize("t", [0, 50, 100, 1000])
def test_constant_and_none_noise(t):
    assert noise_sigma(t, "constant", 0.3, 100) == 0.3
    assert noise_sigma(t, "none", 0.3, 100) == 0.0


@pytest.mark.parametrize("t, expected", [(0, 2.0), (50, 0.2), (100, 0.02), (400, 0.02)])
def test_annealed_gamma(t, expected):
    assert reg_gamma(t, "annealed", 2.0, 100) == pytest.approx(expected)


def test_constant_gamma():
    assert [reg_gamma(t, "constant", 1.5, 10) for t in (0, 5, 10, 20)] == [1.5] * 4


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown noise schedule 'cosine'"):
        noise_sigma(0, "cosine", 0.1, 10)
    with pytest.raises(ValueError, match="unknown gamma schedule"):
        reg_gamma(0, "linear", 0.1, 10)


@pytest.mark.parametrize("t, expected", [(0, 1e-3), (25, 1e-3 * (1 + 0.5 ** 0.5) / 2), (50, 5e-4), (100, 0.0), (150, 0.0)])
def test_cosine_pretrain_lr(t, expected):
    assert pretrain_lr(t, "cosine", 1e-3, 100) == pytest.approx(expected, abs=1e-15)


def test_constant_pretrain_lr():
    assert [pretrain_lr(t, "constant", 2e-4, 10) for t in (0, 5, 10, 20)] == [2e-4] * 4
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        pretrain_lr(0, "step", 1e-3, 10)
