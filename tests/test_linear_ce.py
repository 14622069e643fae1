"""The fused catalogue cross-entropy against ``F.cross_entropy(F.linear(...))``: values and all
three gradients, per-row weights, the denormal clamp, and its error cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.agents.nets.linear_ce import linear_cross_entropy


def _pair(B: int, d: int, n: int, seed: int, dtype=torch.float64, scale: float = 1.0, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    h = (scale * torch.randn(B, d, generator=g, dtype=dtype)).requires_grad_()
    w = torch.randn(n, d, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(n, generator=g, dtype=dtype).requires_grad_() if bias else None
    y = torch.randint(0, n, (B,), generator=g)
    row_w = torch.rand(B, generator=g, dtype=dtype)  # per-row weights, as SAC / SA2C use
    return h, w, b, y, row_w


def _grads(fn, h, w, b, y, row_w):
    ce = fn(h, w, b, y)
    params = [h, w] + ([b] if b is not None else [])
    return ce.detach(), torch.autograd.grad((row_w * ce).sum(), params)


def _reference(h, w, b, y):
    return F.cross_entropy(F.linear(h, w, b), y, reduction="none")


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 9), d=st.integers(1, 7), n=st.integers(2, 40), seed=st.integers(0, 10**6),
       bias=st.booleans(), chunk=st.integers(1, 45))
def test_value_and_gradients_equal_the_unfused_composition(B, d, n, seed, bias, chunk):
    args = _pair(B, d, n, seed, bias=bias)
    ce, grads = _grads(lambda *a: linear_cross_entropy(*a, chunk=chunk), *args)
    ce_ref, grads_ref = _grads(_reference, *args)
    torch.testing.assert_close(ce, ce_ref, rtol=1e-10, atol=1e-10)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10)


def test_hand_computed_value():
    h = torch.tensor([[1.0, 0.0]])
    w = torch.tensor([[0.0, 0.0], [torch.log(torch.tensor(3.0)).item(), 0.0]])
    ce = linear_cross_entropy(h, w, torch.zeros(2), torch.tensor([1]))
    assert ce.item() == pytest.approx(-torch.log(torch.tensor(0.75)).item(), rel=1e-6)  # p = 3/4


@pytest.mark.parametrize("chunk", [7, 64, 4096])
def test_wide_logits_clamp_changes_gradients_only_below_float_precision(chunk):
    # logits spread over ~±2000: most probabilities underflow; values stay exact
    args = _pair(16, 8, 500, seed=3, dtype=torch.float32, scale=60.0)
    ce, grads = _grads(lambda *a: linear_cross_entropy(*a, chunk=chunk), *args)
    ce_ref, grads_ref = _grads(_reference, *args)
    torch.testing.assert_close(ce, ce_ref, rtol=1e-5, atol=1e-3)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(ce).all() and ce.max() > 100  # confident mistakes are not capped


def test_no_grad_for_h_is_fine_and_second_backward_is_refused():
    h, w, b, y, _ = _pair(4, 3, 10, seed=0)
    ce = linear_cross_entropy(h.detach(), w, b, y)
    (gw,) = torch.autograd.grad(ce.sum(), [w], retain_graph=True)
    assert gw.shape == w.shape
    with pytest.raises(RuntimeError, match="cannot run twice"):
        ce.sum().backward()


def test_bad_shapes_are_named():
    h, w, b, y, _ = _pair(4, 3, 10, seed=0)
    with pytest.raises(ValueError, match="targets must be"):
        linear_cross_entropy(h, w, b, y[:2])
    with pytest.raises(ValueError, match=r"weight \[n, d\]"):
        linear_cross_entropy(h, w[:, :2], b, y)
    with pytest.raises(ValueError, match="chunk must be"):
        linear_cross_entropy(h, w, b, y, chunk=0)
