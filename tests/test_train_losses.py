"""Each loss term of the training game against values computed by hand."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import k1

from automod_cli.train import losses


def test_batch_kl_by_hand():
    # Two dimensions, three samples. Dim 0: values 1, 2, 3 -> mean 2, biased var 2/3.
    # Dim 1: values 0, 0, 3 -> mean 1, biased var 2.
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 3.0]], dtype=torch.float64)
    kl0 = (2 / 3 + 4) / 2 - 0.5 * math.log(2 / 3) - 0.5
    kl1 = (2 + 1) / 2 - 0.5 * math.log(2) - 0.5
    assert losses.batch_kl(z).item() == pytest.approx((kl0 + kl1) / 2, rel=1e-9)
    # A standard-normal-like batch (zero mean, unit variance) has KL 0.
    assert losses.batch_kl(torch.tensor([[1.0], [-1.0]], dtype=torch.float64)).item() == pytest.approx(0, abs=1e-9)


def test_kl_gap_margin_clamp():
    real, fake = torch.tensor(3.0), torch.tensor(1.0)  # 0.1*3 - 0.1*1 = 0.2
    assert losses.kl_gap(real, fake, 0.0).item() == pytest.approx(0.2)  # m = 0: unclamped
    assert losses.kl_gap(real, fake, 0.05).item() == pytest.approx(0.025)  # clamped to m/2
    assert losses.kl_gap(fake, real, 0.05).item() == pytest.approx(-0.05)  # clamped to -m
    assert losses.kl_gap(torch.tensor(1.1), torch.tensor(1.0), 0.05).item() == pytest.approx(0.01)  # inside


def test_cos_mismatch_reference_scaling():
    a = torch.tensor([[3.0, 4.0, 0.0, 0.0]])
    b = torch.tensor([[4.0, 3.0, 0.0, 0.0]])
    cos = 24 / 25
    # mean_d (2 - â_d b̂_d) = 2 - cos / D with D = 4 (the reference's scaling, not 1 - cos)
    assert losses.cos_mismatch(a, b).item() == pytest.approx(2 - cos / 4, rel=1e-6)
    two = torch.cat([a, a]), torch.cat([b, a])
    per = losses.cos_mismatch(*two, reduce="none")
    assert per.tolist() == pytest.approx([2 - cos / 4, 2 - 1 / 4], rel=1e-6)
    assert losses.cos_mismatch(*two, reduce="sum").item() == pytest.approx(sum(per.tolist()), rel=1e-6)


def test_mean_pairwise_cosine_against_all_pairs():
    same = torch.tensor([[3.0, 4.0], [0.6, 0.8], [6.0, 8.0]])  # one direction, any length
    assert float(losses.mean_pairwise_cosine(same)) == pytest.approx(1.0, abs=1e-6)
    assert float(losses.mean_pairwise_cosine(torch.eye(5))) == pytest.approx(0.0, abs=1e-7)
    assert float(losses.mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [-2.0, 0.0]]))) == pytest.approx(-1.0)
    z = torch.randn(7, 11, generator=torch.Generator().manual_seed(0))
    u = z / z.norm(dim=1, keepdim=True)
    pairs = [float(u[i] @ u[j]) for i in range(7) for j in range(7) if i != j]
    assert float(losses.mean_pairwise_cosine(z)) == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)


def test_consistency_and_l1_by_hand():
    # The reference's z_mix_diff (train.py:309, utils.py:65-66: ``(x - y).pow(2).mean(dim=1).mean()`` on
    # [mix_N, -1] views) detaches neither side: the target h = θ_[0,j)(z_A) gets the opposite gradient.
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0], [0.0, 4.0]], requires_grad=True)
    mse = losses.consistency_mse(f, t)
    assert mse.item() == pytest.approx((4 + 9) / 4)
    mse.backward()
    expected = 2 * (f - t).detach() / 4
    assert torch.allclose(f.grad, expected) and t.grad is not None and torch.allclose(t.grad, -expected)
    # hold_target (the CPU presets' consistency_grad "image") detaches the target only
    f.grad = t.grad = None
    losses.consistency_mse(f, t, hold_target=True).backward()
    assert torch.allclose(f.grad, expected) and t.grad is None
    assert losses.l1_loss(torch.tensor([-1.0, 2.0, -3.0, 0.0])).item() == pytest.approx(1.5)


def test_rho_special_cases():
    x = torch.tensor([0.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    one = torch.tensor(1.0, dtype=torch.float64)
    # α = 1: the pseudo-Huber / Charbonnier loss sqrt((x/c)² + 1) − 1
    rho1 = losses.robust_rho(x, one, one)
    assert rho1.tolist() == pytest.approx((torch.sqrt(x**2 + 1) - 1).tolist(), rel=1e-12)
    # near α = 2: L2 (x²/2); near α = 0: Cauchy log(x²/2 + 1)
    rho2 = losses.robust_rho(x, torch.tensor(2 - 1e-7, dtype=torch.float64), one)
    assert rho2.tolist() == pytest.approx((x**2 / 2).tolist(), rel=1e-5, abs=1e-9)
    rho0 = losses.robust_rho(x, torch.tensor(1e-7, dtype=torch.float64), one)
    assert rho0.tolist() == pytest.approx(torch.log1p(x**2 / 2).tolist(), rel=1e-5, abs=1e-9)
    # the scale divides x
    c = torch.tensor(2.0, dtype=torch.float64)
    assert losses.robust_rho(x, one, c).tolist() == pytest.approx((torch.sqrt((x / 2) ** 2 + 1) - 1).tolist())


def test_log_partition_known_values_and_integration():
    lz = lambda a: losses.log_partition(torch.tensor(a, dtype=torch.float64)).item()  # noqa: E731
    assert lz(0.0) == pytest.approx(math.log(math.pi * math.sqrt(2)), abs=1e-9)  # ∫ 1/(x²/2+1)
    assert lz(2.0) == pytest.approx(math.log(math.sqrt(2 * math.pi)), abs=1e-7)  # Gaussian
    assert lz(1.0) == pytest.approx(math.log(2 * math.e * k1(1.0)), abs=1e-9)  # ∫ exp(1 − sqrt(x²+1))
    # between knots: against direct integration
    for a in (0.0011, 0.0013, 0.0371, 0.377, 1.2345, 1.95, 1.998, 1.9989):
        z, _ = quad(lambda x: math.exp(-float(losses._rho_numpy(x, a))), -np.inf, np.inf, limit=400)
        assert lz(a) == pytest.approx(math.log(z), abs=2e-6)


def test_adaptive_loss_nll_and_gradients():
    loss = losses.AdaptiveRobustLoss((3, 2, 2))
    assert torch.allclose(loss.alpha(), torch.ones(3, 2, 2), atol=1e-6)
    assert torch.allclose(loss.scale(), torch.ones(3, 2, 2), atol=1e-6)
    r = torch.full((2, 3, 2, 2), 0.5)
    # α = 1, c = 1: sqrt(0.25 + 1) − 1 + log 1 + log Z(1)
    expected = math.sqrt(1.25) - 1 + math.log(2 * math.e * k1(1.0))
    value = loss(r)
    assert value.item() == pytest.approx(expected, abs=1e-5)
    value.backward()
    assert loss.latent_alpha.grad.abs().sum() > 0 and loss.latent_scale.grad.abs().sum() > 0
    # the shape stays in (0.001, 1.999) and the scale above 1e-5 whatever the latent values
    with torch.no_grad():
        loss.latent_alpha.fill_(1e4)
        loss.latent_scale.fill_(-1e4)
    assert loss.alpha().max().item() <= 1.999 + 1e-6 and loss.scale().min().item() >= 1e-5 * (1 - 1e-6)
    with pytest.raises(ValueError):
        loss(torch.zeros(1, 3, 4, 4))
