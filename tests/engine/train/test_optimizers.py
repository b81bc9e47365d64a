"""Tests for engine.train.optimizers: each optimizer minimises, AdaBelief's update, lr dropout, clipping."""

import math

import pytest
import torch

from engine.train.optimizers import AdaBelief, LrDropout, clip_gradients, make_optimizer, set_learning_rate


@pytest.mark.parametrize("name", ["adam", "rmsprop", "adabelief"])
def test_each_optimizer_minimises_a_quadratic(name):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(10))
    opt = make_optimizer(name, [w], 0.05)
    for _ in range(200):
        opt.zero_grad()
        ((w - 3) ** 2).sum().backward()
        opt.step()
    assert torch.allclose(w, torch.full_like(w, 3.0), atol=0.2), w


def test_unknown_optimizer_and_learning_rate_change():
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("sgd", [w], 0.1)
    opt = make_optimizer("adam", [w], 0.1)
    set_learning_rate(opt, 0.01)
    assert opt.param_groups[0]["lr"] == 0.01


def test_adabelief_first_step_matches_the_formula():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = AdaBelief([w], lr=0.1, betas=(0.9, 0.999), eps=1e-16)
    w.grad = torch.tensor([0.5, -1.0])
    opt.step()
    # step 1: m = 0.1 g, s = 0.001 (g - m)^2 + eps; bias-corrected m/sqrt(s) = g / |0.9 g| = sign(g) / 0.9
    expected = torch.tensor([1.0, -2.0]) - 0.1 * torch.tensor([1.0, -1.0]) / 0.9
    assert torch.allclose(w.detach(), expected, atol=1e-5)
    assert set(opt.state[w]) == {"step", "exp_avg", "exp_avg_var"}


def test_lr_dropout_keeps_about_seventy_percent_of_each_update():
    w = torch.nn.Parameter(torch.zeros(10000))
    opt = torch.optim.SGD([w], lr=1.0)
    dropout = LrDropout([w], generator=torch.Generator().manual_seed(0))
    w.grad = -torch.ones_like(w)
    dropout.before_step()
    opt.step()
    dropout.after_step()
    moved = (w.detach() == 1.0).float().mean().item()
    assert 0.67 < moved < 0.73 and set(w.detach().unique().tolist()) == {0.0, 1.0}
    with pytest.raises(RuntimeError):
        dropout.after_step()


def test_clip_gradients_by_total_norm():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.full((3,), 3.0), torch.full((4,), 4.0)
    norm = clip_gradients([a, b], 1.0)
    assert norm == pytest.approx(math.sqrt(27 + 64))
    total = torch.cat([a.grad, b.grad]).norm().item()
    assert total == pytest.approx(1.0, rel=1e-4)
    assert math.isnan(clip_gradients([a, b], 0.0))
