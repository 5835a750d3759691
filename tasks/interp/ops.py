"""Pure-PyTorch replacements of the CUDA/CuPy kernels of the interpolation baselines (run on CPU and GPU,
differentiable through autograd).  Each op is checked against a slow per-pixel loop in
tests/tasks/interp/test_ops.py.

- :func:`local_separable_conv`: SepConv's per-pixel separable filtering (Niklaus et al., ICCV 2017, Eq. 3;
  the CuPy kernel of sniklaus/sepconv-slomo), also the KEL of SSAN's Table 2/3.
- :func:`correlation`: the FlowNet/PWC-Net cost volume (Sun et al., CVPR 2018, Eq. 1; ``Correlation`` CUDA
  layer with kernel 1, stride 1, max displacement ``md``), channel order dy outer / dx inner.
- :func:`depth_flow_projection`: DAIN's depth-aware flow projection (Bao et al., CVPR 2019, Eq. 1-3;
  ``DepthFlowProjection`` CUDA layer), with the inference-time hole filling of ``FlowFillhole``.
- :func:`adaptive_warp`: DAIN's adaptive warping layer (Sec. 3.4; ``FilterInterpolation`` CUDA layer).

Hand-written because no maintained library ships these ops without compiled CUDA extensions
(the spec's survey: sepconv-slomo #28, DAIN #55/#125/#147).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def local_separable_conv(padded: torch.Tensor, kv: torch.Tensor, kh: torch.Tensor) -> torch.Tensor:
    """out[b,c,y,x] = sum_{i,j<K} padded[b,c,y+i,x+j] * kv[b,i,y,x] * kh[b,j,y,x].

    ``padded``: (B, C, H+K-1, W+K-1) (the caller pads, SepConv replicate-pads by K//2); ``kv``, ``kh``:
    (B, K, H, W).  The kernels differ per output pixel, so this is not two 1-D convolutions: loop over
    the K kernel rows, each a width-only unfold (a view) contracted with kh, scaled by kv's row weight.
    """
    b, k, h, w = kv.shape
    if padded.shape[-2:] != (h + k - 1, w + k - 1) or kh.shape != kv.shape:
        raise ValueError(f"local_separable_conv: image {tuple(padded.shape)} and kernels {tuple(kv.shape)}, "
                         f"{tuple(kh.shape)} do not fit (need H+K-1, W+K-1)")
    kh_last = kh.permute(0, 2, 3, 1).unsqueeze(1)                   # B, 1, H, W, K
    out = None
    for i in range(k):
        rows = padded[:, :, i:i + h, :].unfold(3, k, 1)              # B, C, H, W, K (view)
        term = (rows * kh_last).sum(-1) * kv[:, i:i + 1]
        out = term if out is None else out + term
    return out


def correlation(f1: torch.Tensor, f2: torch.Tensor, md: int = 4) -> torch.Tensor:
    """Cost volume: out[b, (dy+md)*(2md+1) + (dx+md), y, x] = mean_c f1[b,c,y,x] * f2[b,c,y+dy,x+dx],
    zero outside f2.  (2md+1)^2 channels (81 for PWC-Net's md = 4)."""
    h, w = f1.shape[-2:]
    f2p = F.pad(f2, (md, md, md, md))
    vols = [(f1 * f2p[:, :, dy:dy + h, dx:dx + w]).mean(1) for dy in range(2 * md + 1) for dx in range(2 * md + 1)]
    return torch.stack(vols, 1)


def _fill_holes(flow: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """FlowFillhole: each hole takes the mean of the nearest valid values found along -x, +x, -y, +y."""
    b, c, h, w = flow.shape
    total = torch.zeros_like(flow)
    n = torch.zeros_like(flow[:, :1])

    def nearest(dim: int, reverse: bool):
        size = flow.shape[dim]
        idx = torch.arange(size, device=flow.device).view([1, 1, -1, 1] if dim == 2 else [1, 1, 1, -1])
        v = valid.flip(dim) if reverse else valid
        marked = torch.where(v, idx.expand_as(v), torch.full_like(v, -1, dtype=torch.long))
        last, _ = marked.cummax(dim)                                  # index of the last valid so far, -1 if none
        src = flow.flip(dim) if reverse else flow
        got = src.gather(dim, last.clamp(min=0).expand(-1, c, -1, -1))
        ok = (last >= 0).to(flow.dtype)
        if reverse:
            got, ok = got.flip(dim), ok.flip(dim)
        return got * ok, ok

    for dim in (2, 3):
        for rev in (False, True):
            g, ok = nearest(dim, rev)
            total, n = total + g, n + ok
    filled = total / n.clamp(min=1)
    return torch.where(valid, flow, filled)


def depth_flow_projection(flow: torch.Tensor, weight: torch.Tensor, fill_holes: bool | None = None) -> torch.Tensor:
    """Project flow(0->1, already scaled by t) to the intermediate time: a source pixel x lands at
    p = x + f(x); -w(x) f(x) is added to the 4 integer corners of p (the same w at each corner, no
    bilinear weights) and divided by the summed w.  ``weight`` (B,1,H,W) is DAIN's inverse depth
    (1 for plain FlowProjection).  Gradients reach ``flow`` and ``weight`` through the values, not
    the positions, as in the CUDA kernel.  Holes are filled (``fill_holes=None``: only when no gradient
    is needed, as DAIN does at inference)."""
    b, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    px, py = xs + flow[:, 0], ys + flow[:, 1]
    inside = (px >= 0) & (py >= 0) & (px <= w - 1) & (py <= h - 1)
    wgt = weight[:, 0] * inside.to(flow.dtype)
    x0, y0 = px.detach().floor().clamp(0, w - 1).long(), py.detach().floor().clamp(0, h - 1).long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    vals = (-wgt.unsqueeze(1) * flow).flatten(2)                      # B, 2, HW
    acc = flow.new_zeros(b, 2, h * w)
    cnt = flow.new_zeros(b, 1, h * w)
    for yy, xx in ((y0, x0), (y0, x1), (y1, x0), (y1, x1)):
        idx = (yy * w + xx).flatten(1).unsqueeze(1)
        acc = acc.scatter_add(2, idx.expand(-1, 2, -1), vals)
        cnt = cnt.scatter_add(2, idx, wgt.flatten(1).unsqueeze(1))
    valid = cnt > 0
    out = torch.where(valid, acc / torch.where(valid, cnt, torch.ones_like(cnt)), torch.zeros_like(acc))
    out = out.view(b, 2, h, w)
    if fill_holes is None:
        fill_holes = not (torch.is_grad_enabled() and (flow.requires_grad or weight.requires_grad))
    if fill_holes:
        out = _fill_holes(out, valid.view(b, 1, h, w))
    return out


def adaptive_warp(image: torch.Tensor, flow: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """DAIN FilterInterpolation (4x4): at p = x + f(x), take rows floor(p_y)-1 .. floor(p_y)+2 and cols
    floor(p_x)-1 .. floor(p_x)+2 (clamped; the +1 neighbour is clamped to the border first), weight them by
    the 16 per-pixel kernel values (row-major, ``kernel`` (B,16,H,W)), sum each 2x2 quadrant and blend the
    four quadrant sums bilinearly with the fractional part of p.  Pixels whose p leaves the image or
    whose |f| >= half the size copy the input pixel."""
    b, c, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=image.device, dtype=image.dtype),
                            torch.arange(w, device=image.device, dtype=image.dtype), indexing="ij")
    px, py = xs + flow[:, 0], ys + flow[:, 1]
    ok = ((px >= 0) & (py >= 0) & (px <= w - 1) & (py <= h - 1)
          & (flow[:, 0].abs() < w / 2) & (flow[:, 1].abs() < h / 2)).unsqueeze(1)
    left, top = px.detach().floor().clamp(0, w - 1), py.detach().floor().clamp(0, h - 1)
    alpha, beta = (px - left).unsqueeze(1), (py - top).unsqueeze(1)  # gradient to the flow flows through these
    left, top = left.long(), top.long()
    right, bottom = (left + 1).clamp(max=w - 1), (top + 1).clamp(max=h - 1)
    rows = [(top - 1).clamp(min=0), top, bottom, (bottom + 1).clamp(max=h - 1)]
    cols = [(left - 1).clamp(min=0), left, right, (right + 1).clamp(max=w - 1)]
    flat = image.flatten(2)
    quad = {}
    for r in range(4):
        for q in range(4):
            idx = (rows[r] * w + cols[q]).flatten(1).unsqueeze(1).expand(-1, c, -1)
            tap = flat.gather(2, idx).view(b, c, h, w) * kernel[:, r * 4 + q: r * 4 + q + 1]
            key = (r // 2, q // 2)
            quad[key] = tap if key not in quad else quad[key] + tap
    out = ((1 - alpha) * (1 - beta) * quad[0, 0] + alpha * (1 - beta) * quad[0, 1]
           + (1 - alpha) * beta * quad[1, 0] + alpha * beta * quad[1, 1])
    return torch.where(ok, out, image)
