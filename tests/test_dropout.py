"""The cheap-mask dropout and the attention that uses it: statistics of the mask, gradients,
seeding, and agreement with torch's attention where no dropout is drawn."""

import math

import pytest
import torch
import torch.nn.functional as F

from recgym.agents.nets.attention import attention
from recgym.agents.nets.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_drop_rate_scale_and_mean(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_003)  # not a multiple of 4: the tail of the last 64-bit draw is used
    y = dropout(x, p)
    kept = y != 0
    rate = 1 - kept.double().mean().item()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / x.numel())
    dropped = round(p * 65536)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 65536 / (65536 - dropped)))
    assert abs(y.double().mean().item() - 1.0) < 5 * math.sqrt(p / (1 - p) / x.numel())


def test_neighbours_are_independent():
    # four elements share one 64-bit draw: both-dropped pairs must occur at rate p^2
    torch.manual_seed(1)
    p = 0.3
    kept = dropout(torch.ones(4_000_000), p) != 0
    d = ~kept.view(-1, 4)
    for i, j in [(0, 1), (1, 2), (2, 3), (0, 3)]:
        both = (d[:, i] & d[:, j]).double().mean().item()
        assert abs(both - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / d.shape[0])


def test_gradient_is_the_mask():
    torch.manual_seed(2)
    x = torch.randn(64, 10, 8, requires_grad=True)
    y = dropout(x, 0.25)
    g = torch.randn_like(y)
    y.backward(g)
    scale = 65536 / (65536 - round(0.25 * 65536))
    mask = (y != 0).float() * scale
    assert torch.allclose(x.grad, g * mask)
    assert torch.allclose(y, x.detach() * mask)


def test_seeded_and_eval_identity():
    m = Dropout(0.2)
    x = torch.randn(32, 16)
    torch.manual_seed(3)
    a = m(x)
    torch.manual_seed(3)
    b = m(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, m(x))  # the next call draws a new mask
    m.eval()
    assert m(x) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Dropout(1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dropout(x, -0.1)


def _inputs(B=3, h=2, T=5, d=4):
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(B, h, T, d, generator=g) for _ in range(3))
    allowed = torch.ones(T, T, dtype=torch.bool).tril()[None, None].expand(B, 1, T, T).clone()
    allowed[0, :, :, 0] = False  # a masked key (the diagonal stays allowed)
    allowed[0, :, 0, 0] = True
    return q, k, v, allowed


def test_attention_without_dropout_is_sdpa():
    q, k, v, allowed = _inputs()
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert torch.allclose(attention(q, k, v, allowed, 0.3, training=False), ref, atol=1e-6)
    assert torch.allclose(attention(q, k, v, allowed, 0.0, training=True), ref, atol=1e-6)


def test_attention_dropout_drops_weights_not_outputs():
    # the explicit training path: softmax(q kᵀ/√d masked) with dropout on the weights, then @ v
    q, k, v, allowed = _inputs()
    torch.manual_seed(5)
    out = attention(q, k, v, allowed, 0.5, training=True)
    torch.manual_seed(5)
    w = torch.softmax((q @ k.transpose(-2, -1) / 2.0).masked_fill(~allowed, float("-inf")), dim=-1)
    expected = dropout(w, 0.5) @ v
    assert torch.allclose(out, expected, atol=1e-6)
    assert not torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), atol=1e-3)
