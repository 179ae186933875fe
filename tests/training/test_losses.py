import math

import pytest
import torch

from srgan_noise.training.losses import LOSSES, as_logits, d_loss, feature_matching, g_loss, pulling_away

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
    with pytest.raises(ValueError, match="unknown adversarial loss 'rsgan'"):
        d_loss("rsgan", REAL, FAKE)


def test_feature_matching_by_hand():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
    fake = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean (1, 1)
    assert feature_matching(real, fake).item() == pytest.approx(1 + 4)


# EBGAN


def test_ebgan_losses_at_chosen_energies():
    real, fake = torch.tensor([0.01, 0.03]), torch.tensor([0.05, 0.2])
    # D: mean real energy 0.02, plus max(0, 0.1 - E_fake): 0.05 and 0 (beyond the margin), mean 0.025
    assert d_loss("ebgan", real, fake, margin=0.1).item() == pytest.approx(0.02 + 0.025)
    assert g_loss("ebgan", fake).item() == pytest.approx(0.125)
    with pytest.raises(ValueError, match="the ebgan loss needs a margin"):
        d_loss("ebgan", real, fake)


def test_ebgan_loss_gradients():
    """Real energies are pushed down; fake ones up while under the margin, not beyond it; G pulls its own down."""
    real = torch.tensor([0.01, 0.03], requires_grad=True)
    fake = torch.tensor([0.05, 0.2], requires_grad=True)
    d_loss("ebgan", real, fake, margin=0.1).backward()
    assert real.grad.tolist() == [0.5, 0.5] and fake.grad.tolist() == [-0.5, 0.0]
    fake.grad = None
    g_loss("ebgan", fake).backward()
    assert fake.grad.tolist() == [0.5, 0.5]


def test_pulling_away_by_hand():
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    # cosines: (0, 1) 0, (0, 2) and (1, 2) 1/sqrt(2), squared 1/2; ordered pairs: 2 x (0 + 1/2 + 1/2) = 2, over 3 x 2
    assert pulling_away(codes).item() == pytest.approx(1 / 3)
    assert pulling_away(torch.eye(4)).item() == pytest.approx(0.0)
    assert pulling_away(torch.tensor([[1.0, 2.0], [-2.0, -4.0], [0.5, 1.0]])).item() == pytest.approx(1.0)
    assert pulling_away(torch.rand(1, 5)).item() == 0.0
    assert pulling_away(codes.view(3, 2, 1, 1)).item() == pytest.approx(1 / 3)  # codes are flattened


def test_pulling_away_gradcheck():
    codes = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pulling_away, (codes,))


def test_energies_map_to_logits_around_half_the_margin():
    energies = torch.tensor([0.0, 0.05, 0.1, 0.2])
    logits = as_logits("ebgan", energies, margin=0.1)
    torch.testing.assert_close(logits, torch.tensor([4.0, 0.0, -4.0, -12.0]))
    assert torch.sigmoid(logits[0]).item() == pytest.approx(0.982, abs=1e-3)
    for kind in LOSSES[:-1]:
        assert torch.equal(as_logits(kind, energies, margin=0.1), energies)


def test_relativistic_losses_at_chosen_outputs():
    """Means: real 0.5, fake -1.25. D: BCE(real - (-1.25), 1) and BCE(fake - 0.5, 0), halved; G swaps the labels."""
    d_real = (softplus(-(2 + 1.25)) + softplus(-(-1 + 1.25))) / 2
    d_fake = (softplus(0.5 - 0.5) + softplus(-3 - 0.5)) / 2
    g_real = (softplus(2 + 1.25) + softplus(-1 + 1.25)) / 2
    g_fake = (softplus(-(0.5 - 0.5)) + softplus(-(-3 - 0.5))) / 2
    assert d_loss("relativistic", REAL, FAKE).item() == pytest.approx((d_real + d_fake) / 2, rel=1e-6)
    assert g_loss("relativistic", FAKE, REAL).item() == pytest.approx((g_real + g_fake) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="needs D's outputs on real images"):
        g_loss("relativistic", FAKE)


def test_relativistic_generator_gradient_flows_through_both_terms():
    """The fakes' mean sits in the real term, so each fake's gradient has both terms' parts."""
    fake = FAKE.clone().requires_grad_(True)
    g_loss("relativistic", fake, REAL).backward()
    by_hand = torch.zeros(2)
    for i in range(2):
        real_term = sum(torch.sigmoid(REAL[j] - FAKE.mean()) * (-1 / 2) for j in range(2)) / 2  # d/dfake_i
        fake_term = (torch.sigmoid(FAKE[i] - REAL.mean()) - 1) / 2
        by_hand[i] = (real_term + fake_term) / 2
    torch.testing.assert_close(fake.grad, by_hand)
