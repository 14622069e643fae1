"""Cross-entropy of a linear head over the whole catalogue, fused: ``CE_b = −log softmax(h W^T + b)[b, y_b]``.

The plain composition (``F.cross_entropy(F.linear(h, W, b), y)``) makes about nine passes over
the ``[B, n]`` logits on a CPU: the bias copy, ``log_softmax`` into a new tensor, a dense one-hot
gradient from ``nll_loss``, the softmax backward into another new tensor, the bias-gradient sum.
At 70,852 items and batch 256 each pass moves 72 MB, and together they cost as much as the three
GEMMs. Here the catalogue is processed in column chunks (``chunk`` items; on a CPU small enough
to stay in cache between the operations on it):

* forward, per chunk ``c``: the logits ``z_c``, their row maxima ``m_c``, ``e_c = exp(z_c − m_c)``
  in place and its row sums ``s_c``. Then ``lse = log Σ_c s_c e^{m_c}`` (combined stably) and
  ``CE_b = lse_b − z_{b,y_b}``, the logged item's logit taken as a row-wise dot product;
* backward, with ``p_c = e_c · r_c`` and the row factors ``r_c = exp(m_c − lse)`` applied on the
  small ``[B, d]`` side (the probabilities are never written out), per chunk:

      dL/dz = g_b · (p_b − e_{y_b})
      dW_c = e_c^T (g r_c ⊙ h) − scatter_y(g ⊙ h),   dh = g ⊙ (Σ_c r_c ⊙ (e_c W_c) − W_y),
      db_c = e_c^T (g r_c) − scatter_y(g)

  so each ``e_c`` is read from memory once for its three products.

Denormals: in a trained model many logits sit more than ~87 below their row's maximum, and their
``exp`` comes out as denormal floats, which a CPU computes ~30× slower (``F.cross_entropy`` on
such logits: ~4× slower forward + backward, measured at 70,852 items). When the logits *can* be
that spread (a cheap bound from the norms of ``h`` and ``W``), each chunk's logits are clamped at
``m_c − 80`` before the ``exp``; this moves a probability by < 2e-35 and the loss by less than
float precision (``lse`` only grows, by < n·e^-80 of a sum ≥ 1; the logged logit is exact).
GPUs compute denormals at full speed: there the bound (three values read back per step) is skipped.

The backward consumes the saved buffer, so a graph through this function can be back-propagated
once (``retain_graph=True`` and a second backward raise an error).
"""

from __future__ import annotations

import torch

_CLAMP_BELOW_MAX = 80.0
CPU_CHUNK = 4000
"""Items per chunk on a CPU: a ``[256, 4000]`` float32 chunk (4 MB) stays in cache between its
GEMM, its ``exp`` and the three backward products (4,096 was the fastest power of two from 1,024 to
16,384 at 70,852 items, but its 16 KiB row stride made about half of all processes ~20% slower on
this Xeon, by where their buffers happened to land relative to each other: a cache-set conflict;
4,000 = 250 × 16 floats keeps the AVX-512 width without it)."""


def _may_spread(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether two logits of a row can differ by more than the clamp distance:
    ``|z_i − z_j| ≤ 2 · max‖h_b‖ · max‖W_i‖ + 2 · max|b|`` (one pass over ``W``, not the logits)."""
    spread = 2.0 * float(h.norm(dim=1).max()) * float(weight.norm(dim=1).max())
    if bias is not None:
        spread += 2.0 * float(bias.abs().max())
    return spread > _CLAMP_BELOW_MAX


def _chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(a, min(a + chunk, n)) for a in range(0, n, chunk)]


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                chunk: int):
        spans = _chunks(weight.shape[0], chunk)
        clamp = h.device.type == "cpu" and _may_spread(h, weight, bias)  # denormals are slow on CPUs only
        exps, maxima, sums = [], [], []
        for a, b in spans:
            z = h @ weight[a:b].t() if bias is None else torch.addmm(bias[a:b], h, weight[a:b].t())  # [B, c]
            m = z.amax(dim=1, keepdim=True)
            if clamp:
                z.clamp_min_(m - _CLAMP_BELOW_MAX)
            e = z.sub_(m).exp_()
            exps.append(e)
            maxima.append(m.squeeze(1))
            sums.append(e.sum(dim=1))
        m, s = torch.stack(maxima), torch.stack(sums)  # [chunks, B]
        top = m.amax(dim=0)
        lse = top + (s * (m - top).exp()).sum(dim=0).log()  # [B]
        z_y = (h * weight[targets]).sum(dim=1) + (0.0 if bias is None else bias[targets])
        ctx.save_for_backward(h, weight, targets)
        ctx.exps, ctx.factors, ctx.spans, ctx.has_bias = exps, (m - lse).exp(), spans, bias is not None
        return lse - z_y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        if ctx.exps is None:
            raise RuntimeError("linear_cross_entropy: the backward consumes its buffer; it cannot run twice")
        h, weight, targets = ctx.saved_tensors
        exps, ctx.exps = ctx.exps, None  # e_c [B, c] per chunk; p_c = e_c · factors[c][:, None]
        g = g.to(h.dtype)
        gh = h * g[:, None]  # [B, d]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = ctx.has_bias and ctx.needs_input_grad[2]
        grad_h = torch.zeros_like(h) if need_h else None
        grad_w = torch.empty_like(weight) if need_w else None
        grad_b = weight.new_empty(weight.shape[0]) if need_b else None
        for (a, b), e, r in zip(ctx.spans, exps, ctx.factors):
            if need_h:
                grad_h.addcmul_(e @ weight[a:b], r[:, None])
            if need_w:
                torch.mm(e.t(), gh * r[:, None], out=grad_w[a:b])
            if need_b:
                torch.mv(e.t(), g * r, out=grad_b[a:b])
        if need_h:
            grad_h = (grad_h - weight[targets]) * g[:, None]
        if need_w:
            grad_w.index_add_(0, targets, gh, alpha=-1.0)
        if need_b:
            grad_b.index_add_(0, targets, g, alpha=-1.0)
        return grad_h, grad_w, grad_b, None, None


def linear_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """Per-row cross-entropy of the logged item under the linear head's softmax.

    h ``[B, d]``, weight ``[n, d]``, bias ``[n]`` or ``None``, targets int64 ``[B]`` in ``[0, n)``
    → ``[B]``. Same value and gradients as
    ``F.cross_entropy(F.linear(h, weight, bias), targets, reduction="none")``. ``chunk``: items
    per chunk (default :data:`CPU_CHUNK` on a CPU, the whole catalogue elsewhere)."""
    if h.dim() != 2 or weight.dim() != 2 or h.shape[1] != weight.shape[1]:
        raise ValueError(f"linear_cross_entropy: h [B, d] and weight [n, d] expected, got {tuple(h.shape)} "
                         f"and {tuple(weight.shape)}")
    if targets.shape != (h.shape[0],):
        raise ValueError(f"linear_cross_entropy: targets must be [B={h.shape[0]}], got {tuple(targets.shape)}")
    if chunk is None:
        chunk = CPU_CHUNK if h.device.type == "cpu" else weight.shape[0]
    if chunk < 1:
        raise ValueError(f"linear_cross_entropy: chunk must be >= 1, got {chunk}")
    if torch.is_autocast_enabled(h.device.type):  # the buffer holds probabilities: float32, as F.cross_entropy
        with torch.autocast(h.device.type, enabled=False):
            return _LinearCrossEntropy.apply(h.float(), weight, bias, targets, chunk)
    return _LinearCrossEntropy.apply(h, weight, bias, targets, chunk)


__all__ = ["linear_cross_entropy"]
