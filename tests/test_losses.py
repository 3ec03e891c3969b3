import math

import pytest
import torch

from dde import credit
from dde.losses import bin_by_timestep, per_sample_error, preference_loss, sft_loss, split_pairs

E_TW = torch.tensor([0.10, 0.30])
E_TL = torch.tensor([0.20, 0.25])
E_RW = torch.tensor([0.12, 0.28])
E_RL = torch.tensor([0.18, 0.26])
# delta = (e_tw - e_rw) - (e_tl - e_rl) = [-0.02 - 0.02, 0.02 + 0.01] = [-0.04, 0.03]


def _by_hand(beta, w):
    deltas = [-0.04, 0.03]
    zs = [-(beta / 2) * wi * d for wi, d in zip(w, deltas)]
    loss = sum(math.log1p(math.exp(-z)) for z in zs) / 2  # -log sigmoid(z) = log(1 + e^-z)
    return loss, zs


def test_dpo_on_hand_computed_numbers():
    loss, diag = preference_loss(E_TW, E_TL, E_RW, E_RL, beta=50.0)
    expected, zs = _by_hand(50.0, [1, 1])
    assert zs == pytest.approx([1.0, -0.75])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert diag["implicit_acc"].item() == 0.5
    assert diag["reward_margin"].item() == pytest.approx(0.125, rel=1e-5)
    torch.testing.assert_close(diag["delta"], torch.tensor([-0.04, 0.03]))
    assert diag["e_ref_l"].item() == pytest.approx(0.22)
    credit_expected = [1 / (1 + math.exp(z)) * 25 for z in zs]
    assert diag["credit"].tolist() == pytest.approx(credit_expected, rel=1e-5)


@pytest.mark.parametrize("name", credit.variant_names())
def test_every_variant_on_hand_computed_numbers(sd_schedule, name):
    t = torch.tensor([150, 354])
    w = credit.weights(name, sd_schedule)[t].float()
    loss, diag = preference_loss(E_TW, E_TL, E_RW, E_RL, beta=50.0, weights=w)
    expected, zs = _by_hand(50.0, w.tolist())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert diag["z"].tolist() == pytest.approx(zs, rel=1e-5)


def test_importance_factors_scale_each_pairs_loss_on_hand_computed_numbers():
    w, f = [2.0, 0.5], [0.5, 2.0]  # importance: factor = 1 / w for a weight of mean 1 under p
    loss, diag = preference_loss(E_TW, E_TL, E_RW, E_RL, beta=50.0, weights=torch.tensor(w), factors=torch.tensor(f))
    _, zs = _by_hand(50.0, w)
    expected = sum(fi * math.log1p(math.exp(-z)) for fi, z in zip(f, zs)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    credit_expected = [fi / (1 + math.exp(z)) * 25 * wi for fi, z, wi in zip(f, zs, w)]
    assert diag["credit"].tolist() == pytest.approx(credit_expected, rel=1e-5)
    assert sft_loss(E_TW, weights=torch.tensor(w), factors=torch.tensor(f)).item() == pytest.approx(
        (0.10 * 1.0 + 0.30 * 1.0) / 2)


def test_constant_weights_equal_dpo():
    plain, _ = preference_loss(E_TW, E_TL, E_RW, E_RL, beta=7.0)
    ones, _ = preference_loss(E_TW, E_TL, E_RW, E_RL, beta=7.0, weights=torch.ones(2))
    assert plain.item() == ones.item()
    # a constant c inside the sigmoid is the same as beta * c
    scaled, _ = preference_loss(E_TW, E_TL, E_RW, E_RL, beta=7.0, weights=torch.full((2,), 3.0))
    beta3, _ = preference_loss(E_TW, E_TL, E_RW, E_RL, beta=21.0)
    assert scaled.item() == pytest.approx(beta3.item(), rel=1e-6)


def test_gradient_sign_lowers_winner_error_and_raises_loser_error():
    e_tw, e_tl = E_TW.clone().requires_grad_(), E_TL.clone().requires_grad_()
    w = torch.tensor([0.5, 2.0], requires_grad=True)
    loss, _ = preference_loss(e_tw, e_tl, E_RW, E_RL, beta=10.0, weights=w)
    loss.backward()
    assert (e_tw.grad > 0).all()  # descending the loss lowers the winner's error
    assert (e_tl.grad < 0).all()  # ...and raises the loser's
    assert w.grad is None  # weights are constants
    # magnitude: dL/d e_tw_i = sigmoid(-z_i) * beta / 2 * w_i / P
    _, zs = _by_hand(10.0, [0.5, 2.0])
    expected = [1 / (1 + math.exp(z)) * 5 * wi / 2 for z, wi in zip(zs, [0.5, 2.0])]
    assert e_tw.grad.tolist() == pytest.approx(expected, rel=1e-5)


def test_bad_inputs_raise_named_errors():
    with pytest.raises(ValueError, match="one length"):
        preference_loss(E_TW, E_TL[:1], E_RW, E_RL, beta=1.0)
    with pytest.raises(ValueError, match="e_ref_l has 1 non-finite value"):
        preference_loss(E_TW, E_TL, E_RW, torch.tensor([0.1, float("nan")]), beta=1.0)
    with pytest.raises(ValueError, match="weights has 1 non-finite"):
        preference_loss(E_TW, E_TL, E_RW, E_RL, beta=1.0, weights=torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="beta must be a positive finite number"):
        preference_loss(E_TW, E_TL, E_RW, E_RL, beta=0)
    with pytest.raises(ValueError, match="1-D"):
        preference_loss(E_TW[None], E_TL[None], E_RW[None], E_RL[None], beta=1.0)


def test_per_sample_error_and_pairs():
    pred, target = torch.zeros(4, 3, 2, 2), torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    assert per_sample_error(pred, target).tolist() == [0.0, 1.0, 4.0, 9.0]
    wins, losses = split_pairs(torch.arange(4))
    assert wins.tolist() == [0, 1] and losses.tolist() == [2, 3]
    with pytest.raises(ValueError, match="differ in shape"):
        per_sample_error(pred, target[:2])
    with pytest.raises(ValueError, match="even size"):
        split_pairs(torch.arange(3))


def test_sft_loss():
    assert sft_loss(torch.tensor([1.0, 3.0])).item() == 2.0
    assert sft_loss(torch.tensor([1.0, 3.0]), weights=torch.tensor([2.0, 0.0])).item() == 1.0


def test_bin_by_timestep():
    sums, counts = bin_by_timestep(torch.tensor([1.0, 2.0, 5.0]), torch.tensor([0, 9, 999]), T=1000, bins=10)
    assert sums[0].item() == 3.0 and counts[0].item() == 2 and sums[9].item() == 5.0 and counts.sum() == 3
