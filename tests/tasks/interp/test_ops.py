"""The pure-PyTorch replacements of SepConv's and DAIN's CUDA kernels against slow per-pixel loops that
follow the kernels' definitions (tiny sizes)."""
import math

import pytest
import torch

from tasks.interp.ops import adaptive_warp, correlation, depth_flow_projection, local_separable_conv


def test_local_separable_conv_matches_loop():
    g = torch.Generator().manual_seed(0)
    b, c, h, w, k = 2, 2, 5, 6, 3
    img = torch.rand(b, c, h + k - 1, w + k - 1, generator=g)
    kv, kh = torch.randn(b, k, h, w, generator=g), torch.randn(b, k, h, w, generator=g)
    ref = torch.zeros(b, c, h, w)
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                for i in range(k):
                    for j in range(k):
                        ref[bi, :, y, x] += img[bi, :, y + i, x + j] * kv[bi, i, y, x] * kh[bi, j, y, x]
    torch.testing.assert_close(local_separable_conv(img, kv, kh), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        local_separable_conv(img[..., 1:], kv, kh)


def test_correlation_matches_loop_and_flownet_channel_order():
    g = torch.Generator().manual_seed(1)
    md, c, h, w = 2, 3, 4, 5
    f1, f2 = torch.randn(1, c, h, w, generator=g), torch.randn(1, c, h, w, generator=g)
    out = correlation(f1, f2, md)
    assert out.shape == (1, (2 * md + 1) ** 2, h, w)
    for dy in range(-md, md + 1):
        for dx in range(-md, md + 1):
            ch = (dy + md) * (2 * md + 1) + (dx + md)        # dy outer, dx inner
            for y in range(h):
                for x in range(w):
                    yy, xx = y + dy, x + dx
                    ref = (f1[0, :, y, x] * f2[0, :, yy, xx]).mean() if 0 <= yy < h and 0 <= xx < w else 0.0
                    assert math.isclose(float(out[0, ch, y, x]), float(ref), abs_tol=1e-6)


def _projection_loop(flow, weight):
    """DepthFlowProjection CUDA semantics, one source pixel at a time."""
    b, _, h, w = flow.shape
    acc, cnt = torch.zeros(b, 2, h, w, dtype=torch.float64), torch.zeros(b, 1, h, w, dtype=torch.float64)
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                fx, fy, wt = float(flow[bi, 0, y, x]), float(flow[bi, 1, y, x]), float(weight[bi, 0, y, x])
                px, py = x + fx, y + fy
                if not (0 <= px <= w - 1 and 0 <= py <= h - 1):
                    continue
                x0, y0 = int(math.floor(px)), int(math.floor(py))
                for yy, xx in ((y0, x0), (y0, min(x0 + 1, w - 1)), (min(y0 + 1, h - 1), x0),
                               (min(y0 + 1, h - 1), min(x0 + 1, w - 1))):
                    acc[bi, 0, yy, xx] += -wt * fx
                    acc[bi, 1, yy, xx] += -wt * fy
                    cnt[bi, 0, yy, xx] += wt
    out = torch.where(cnt > 0, acc / cnt.clamp(min=1e-300), torch.zeros_like(acc))
    return out, cnt > 0


def _fill_loop(flow, valid):
    b, c, h, w = flow.shape
    out = flow.clone()
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                if valid[bi, 0, y, x]:
                    continue
                found = []
                for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0)):
                    yy, xx = y + dy, x + dx
                    while 0 <= yy < h and 0 <= xx < w and not valid[bi, 0, yy, xx]:
                        yy, xx = yy + dy, xx + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        found.append(flow[bi, :, yy, xx])
                out[bi, :, y, x] = torch.stack(found).mean(0) if found else 0
    return out


def test_depth_flow_projection_matches_loop():
    g = torch.Generator().manual_seed(2)
    flow = (torch.rand(2, 2, 6, 7, generator=g) - 0.5) * 6          # some land outside: holes and misses
    weight = torch.rand(2, 1, 6, 7, generator=g) + 0.1
    ref, valid = _projection_loop(flow.double(), weight.double())
    assert not valid.all() and valid.any()
    torch.testing.assert_close(depth_flow_projection(flow, weight, fill_holes=False), ref.float(),
                               atol=1e-5, rtol=1e-5)
    filled = depth_flow_projection(flow, weight)                  # no grad needed: holes filled, as DAIN infers
    torch.testing.assert_close(filled, _fill_loop(ref, valid).float(), atol=1e-5, rtol=1e-5)


def test_depth_flow_projection_gradients_reach_flow_and_weight_not_holes_filled():
    flow = (torch.rand(1, 2, 5, 5) - 0.5).requires_grad_()
    weight = (torch.rand(1, 1, 5, 5) + 0.5).requires_grad_()
    out = depth_flow_projection(flow, weight)                     # training: holes stay 0
    out.square().sum().backward()
    assert flow.grad.abs().sum() > 0 and weight.grad.abs().sum() > 0


def _warp_loop(img, flow, kernel):
    """FilterInterpolation CUDA semantics (4x4 kernel, quadrant sums, bilinear blend)."""
    b, c, h, w = img.shape
    out = img.clone()
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                fx, fy = float(flow[bi, 0, y, x]), float(flow[bi, 1, y, x])
                px, py = x + fx, y + fy
                if not (0 <= px <= w - 1 and 0 <= py <= h - 1 and abs(fx) < w / 2 and abs(fy) < h / 2):
                    continue
                lx, ty = int(math.floor(px)), int(math.floor(py))
                rx, by = min(lx + 1, w - 1), min(ty + 1, h - 1)
                a, be = px - lx, py - ty

                def quad(r0, c0, kr, kc):
                    s = torch.zeros(c, dtype=img.dtype)
                    for dr in range(2):
                        for dc in range(2):
                            rr = min(max(r0 + dr, 0), h - 1)
                            cc = min(max(c0 + dc, 0), w - 1)
                            s += img[bi, :, rr, cc] * kernel[bi, (kr + dr) * 4 + kc + dc, y, x]
                    return s

                tl, tr = quad(ty - 1, lx - 1, 0, 0), quad(ty - 1, rx, 0, 2)
                bl, br = quad(by, lx - 1, 2, 0), quad(by, rx, 2, 2)
                out[bi, :, y, x] = (1 - a) * (1 - be) * tl + a * (1 - be) * tr + (1 - a) * be * bl + a * be * br
    return out


def test_adaptive_warp_matches_loop():
    g = torch.Generator().manual_seed(3)
    img = torch.rand(2, 3, 6, 7, generator=g)
    flow = (torch.rand(2, 2, 6, 7, generator=g) - 0.5) * 5
    kernel = torch.rand(2, 16, 6, 7, generator=g)
    ref = _warp_loop(img.double(), flow.double(), kernel.double())
    torch.testing.assert_close(adaptive_warp(img, flow, kernel), ref.float(), atol=1e-5, rtol=1e-5)


def test_adaptive_warp_gradients_reach_image_flow_and_kernel():
    img, flow, kernel = (torch.rand(1, 1, 6, 6).requires_grad_(), (torch.rand(1, 2, 6, 6) * 0.8).requires_grad_(),
                         torch.rand(1, 16, 6, 6).requires_grad_())
    adaptive_warp(img, flow, kernel).sum().backward()
    assert all(t.grad.abs().sum() > 0 for t in (img, flow, kernel))
