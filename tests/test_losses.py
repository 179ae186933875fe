import math

import pytest
import torch

from srgan_noise.losses import LOSSES, d_loss, feature_matching, g_loss

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def softplus(x):
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("kind, expected_d, expected_g", [
    ("non-saturating", (softplus(-2) + softplus(1)) / 2 + (softplus(0.5) + softplus(-3)) / 2,
     (softplus(-0.5) + softplus(3)) / 2),
    ("saturating", (softplus(-2) + softplus(1)) / 2 + (softplus(0.5) + softplus(-3)) / 2,
     -(softplus(0.5) + softplus(-3)) / 2),
    ("lsgan", 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.5**2 + 9) / 2, 0.5 * ((0.5 - 1) ** 2 + 16) / 2),
    ("hinge", (0 + 2) / 2 + (1.5 + 0) / 2, -(0.5 - 3) / 2),
    ("wgan", (0.5 - 3) / 2 - (2 - 1) / 2, -(0.5 - 3) / 2),
    ("wgan-gp", (0.5 - 3) / 2 - (2 - 1) / 2, -(0.5 - 3) / 2),
])
def test_losses_at_chosen_outputs(kind, expected_d, expected_g):
    assert d_loss(kind, REAL, FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    assert g_loss(kind, FAKE).item() == pytest.approx(expected_g, rel=1e-6)
    assert kind in LOSSES


def test_label_smoothing_target():
    logits = torch.tensor([0.0])
    # target 0.9 at D = 0.5: -(0.9 log 0.5 + 0.1 log 0.5) = log 2, plus the fake term log 2
    assert d_loss("non-saturating", logits, logits, real_target=0.9).item() == pytest.approx(2 * math.log(2))
    assert d_loss("lsgan", torch.tensor([0.9]), torch.tensor([0.0]), real_target=0.9).item() == 0.0


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown adversarial loss 'relativistic'"):
        d_loss("relativistic", REAL, FAKE)


def test_feature_matching_by_hand():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
    fake = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean (1, 1)
    assert feature_matching(real, fake).item() == pytest.approx(1 + 4)
