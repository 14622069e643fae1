"""Cross-entropy of a linear head over the whole catalogue, fused: ``CE_b = −log softmax(h W^T + b)[b, y_b]``.

The plain composition (``F.cross_entropy(F.linear(h, W, b), y)``) makes about nine passes over
the ``[B, n]`` logits on a CPU: the bias copy, ``log_softmax`` into a new tensor, a dense one-hot
gradient from ``nll_loss``, the softmax backward into another new tensor, the bias-gradient sum.
At 70,852 items and batch 256 each pass moves 72 MB, and together they cost as much as the three
GEMMs. Here one ``[B, n]`` buffer holds the logits, then (in place) the softmax ``p``, which the
two backward GEMMs read; the one-hot part of the gradient and the per-row weights ``g`` are
applied on the small ``[B, d]`` side:

    dL/dlogits = g_b · (p_b − e_{y_b})
    dW = p^T (g ⊙ h) − scatter_y(g ⊙ h),   dh = g ⊙ (p W − W_y),   db = p^T g − scatter_y(g)

Denormals: in a trained model many logits sit more than ~87 below their row's maximum, and their
``exp`` comes out as denormal floats, which a CPU computes ~30× slower (``F.cross_entropy`` on
such logits: ~4× slower forward + backward, measured at 70,852 items). When the logits *can* be
that spread (a cheap bound from the norms of ``h`` and ``W``), they are clamped at
``row max − 80`` before the softmax; this moves each probability by < 2e-35. GPUs compute
denormals at full speed: there the bound (three values read back per step) is skipped. The loss of a row whose
logged item has ``p < e^-70`` (so possibly clamped) is recomputed exactly from that row's logits.

The backward consumes the saved buffer, so a graph through this function can be back-propagated
once (``retain_graph=True`` and a second backward raise an error).
"""

from __future__ import annotations

import torch

_CLAMP_BELOW_MAX = 80.0
_EXACT_BELOW = -70.0  # log p of the logged item below which its loss is recomputed exactly


def _softmax_(x: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax of ``x [B, n]`` in place (each row is read before it is written)."""
    try:
        return torch.ops.aten._softmax.out(x, 1, False, out=x)
    except (RuntimeError, NotImplementedError):  # pragma: no cover - a backend without the out= kernel
        return x.copy_(torch.softmax(x, dim=1))


def _logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())


def _may_spread(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether two logits of a row can differ by more than the clamp distance:
    ``|z_i − z_j| ≤ 2 · max‖h_b‖ · max‖W_i‖ + 2 · max|b|`` (one pass over ``W``, not the logits)."""
    spread = 2.0 * float(h.norm(dim=1).max()) * float(weight.norm(dim=1).max())
    if bias is not None:
        spread += 2.0 * float(bias.abs().max())
    return spread > _CLAMP_BELOW_MAX


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor):
        z = _logits(h, weight, bias)  # [B, n]
        z_y = z.gather(1, targets[:, None]).squeeze(1)
        if h.device.type == "cpu" and _may_spread(h, weight, bias):  # denormals are slow on CPUs only
            z.clamp_min_(z.amax(dim=1, keepdim=True) - _CLAMP_BELOW_MAX)
        p = _softmax_(z)
        log_p_y = p.gather(1, targets[:, None]).squeeze(1).log()
        ce = -log_p_y
        exact = (log_p_y < _EXACT_BELOW).nonzero().squeeze(1)
        if exact.numel():  # rare: a confident mistake; its loss from the unclamped logits
            ce[exact] = torch.logsumexp(_logits(h[exact], weight, bias), dim=1) - z_y[exact]
        ctx.save_for_backward(h, weight, targets)
        ctx.p, ctx.has_bias = p, bias is not None
        return ce

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        if ctx.p is None:
            raise RuntimeError("linear_cross_entropy: the backward consumes its buffer; it cannot run twice")
        h, weight, targets = ctx.saved_tensors
        p, ctx.p = ctx.p, None  # [B, n] softmax
        g = g.to(h.dtype)
        gh = h * g[:, None]  # [B, d]
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_h = (p @ weight - weight[targets]) * g[:, None]
        if ctx.needs_input_grad[1]:
            grad_w = (p.t() @ gh).index_add_(0, targets, gh, alpha=-1.0)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = (p.t() @ g).index_add_(0, targets, g, alpha=-1.0)
        return grad_h, grad_w, grad_b, None


def linear_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor
) -> torch.Tensor:
    """Per-row cross-entropy of the logged item under the linear head's softmax.

    h ``[B, d]``, weight ``[n, d]``, bias ``[n]`` or ``None``, targets int64 ``[B]`` in ``[0, n)``
    → ``[B]``. Same value and gradients as
    ``F.cross_entropy(F.linear(h, weight, bias), targets, reduction="none")``."""
    if h.dim() != 2 or weight.dim() != 2 or h.shape[1] != weight.shape[1]:
        raise ValueError(f"linear_cross_entropy: h [B, d] and weight [n, d] expected, got {tuple(h.shape)} "
                         f"and {tuple(weight.shape)}")
    if targets.shape != (h.shape[0],):
        raise ValueError(f"linear_cross_entropy: targets must be [B={h.shape[0]}], got {tuple(targets.shape)}")
    if torch.is_autocast_enabled(h.device.type):  # the buffer holds probabilities: float32, as F.cross_entropy
        with torch.autocast(h.device.type, enabled=False):
            return _LinearCrossEntropy.apply(h.float(), weight, bias, targets)
    return _LinearCrossEntropy.apply(h, weight, bias, targets)


__all__ = ["linear_cross_entropy"]
