"""Dual TV-L1 optical flow in PyTorch, batched over frame pairs, on the CPU or a GPU: the
algorithm of Zach, Pock and Bischof (DAGM 2007) as Sanchez, Meinhardt-Llopis and Facciolo
describe it (IPOL 2013), with the choices of OpenCV's cv2.optflow.DualTVL1OpticalFlow (its
CPU code, opencv_contrib modules/optflow/src/tvl1flow.cpp) so that the fields agree:

  grey levels   0..255 as float32
  pyramid       each level the one above resized by 0.8 (bilinear, pixel centres mapped,
                the size rounded) as the OpenCV wheel does it: Intel IPP's float path,
                weights in float64, one rounding per interpolation; a level under 16
                pixels ends the pyramid; the flow goes up to the next level the same way
  warp          bicubic (Keys, a = -0.75) at coordinates rounded to 1/32 pixel, zero
                outside the image (cv2.remap INTER_CUBIC, BORDER_CONSTANT)
  gradients     of I1: centred differences, one-sided halves at the border; of the flow:
                forward differences, 0 at the last row / column; divergence: backward
  median        5 x 5 on each flow component before each outer iteration, border
                replicated
  stopping      per warping: the inner iterations stop once the sum over the pixels of the
                squared change of the flow is at most epsilon^2 x pixels

The stopping rule is a per-pair mask on the device (a converged pair keeps its flow while
the others go on), so nothing waits for the host inside the iterations; on the CPU the
remaining iterations of a warping are skipped once every pair of the batch has converged
(free there, and what makes the CPU fast).

Every step is made of exact IEEE operations (+ - * / sqrt, gathers, selections) and the
stopping sums are in float64, so the fields do not depend on the number of threads.
"""
import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

TAB = 32                 # cv2.remap: sub-pixel positions per pixel (INTER_TAB_SIZE)
CUBIC_A = -0.75          # cv2's bicubic kernel (Keys)
MIN_SIDE = 16            # a pyramid level smaller than this is not used


@dataclass(frozen=True)
class TVL1:
    """OpenCV's default parameters (cv2.optflow.DualTVL1OpticalFlow_create())."""
    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    scales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner: int = 30
    outer: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median: int = 5

    def record(self):
        """The parameters under OpenCV's names (as extraction.json records TV-L1's)."""
        return {"Tau": self.tau, "Lambda": self.lambda_, "Theta": self.theta,
                "ScalesNumber": self.scales, "WarpingsNumber": self.warps,
                "Epsilon": self.epsilon, "InnerIterations": self.inner,
                "OuterIterations": self.outer, "ScaleStep": self.scale_step,
                "Gamma": self.gamma, "MedianFiltering": self.median}


# ----------------------------------------------------------------------------- resize

def _axis(n_in, n_out, scale):
    """cv2.resize INTER_LINEAR along one axis as the OpenCV wheel computes it (Intel IPP's
    float path): (left index, right index, right weight), each (n_out,); output pixel d
    reads the input at (d + 0.5) / scale - 0.5, the weight taken in float64, then clamped
    to the image."""
    d = torch.arange(n_out, dtype=torch.float64)
    s = (d + 0.5) * (1.0 / scale) - 0.5
    left = torch.floor(s)
    w = (s - left).float()
    left = left.long()
    w = torch.where((left < 0) | (left >= n_in - 1), torch.zeros_like(w), w)
    return left.clamp(0, n_in - 1), (left + 1).clamp(0, n_in - 1), w


def _lerp(a, b, w):
    """a + w (b - a) with one rounding of the product and sum (a fused multiply-add, as
    IPP's resize does), in float64: exact IEEE steps, so the same on any thread count."""
    return (a.double() + w.double() * (b - a).double()).float()


def resize_linear(x, size, scale=None):
    """(B, H, W) -> (B, h, w) as cv2.resize INTER_LINEAR: size (h, w); scale (sy, sx) the
    factor OpenCV maps pixels with (given: cv2.resize(x, None, fx, fy); else h/H, w/W)."""
    (h, w), (H, W) = size, x.shape[-2:]
    sy, sx = scale if scale is not None else (h / H, w / W)
    left, right, a = (t.to(x.device) for t in _axis(W, w, sx))
    x = _lerp(x[..., left], x[..., right], a)                        # (B, H, w)
    top, bottom, b = (t.to(x.device) for t in _axis(H, h, sy))
    return _lerp(x[:, top, :], x[:, bottom, :], b[:, None])          # (B, h, w)


def pyramid(images, params):
    """[(B, H, W), (B, h1, w1), ...]: the levels OpenCV's TV-L1 uses, finest first."""
    levels = [images]
    for _ in range(1, params.scales):
        H, W = levels[-1].shape[-2:]
        h, w = round(H * params.scale_step), round(W * params.scale_step)
        if h < MIN_SIDE or w < MIN_SIDE:
            break
        levels.append(resize_linear(levels[-1], (h, w), (params.scale_step,) * 2))
    return levels


# ----------------------------------------------------------------------------- derivatives

def centred_gradient(x):
    """(B, H, W) -> d/dx, d/dy (B, H, W): centred differences, replicated border."""
    p = F.pad(x[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]     # (B, H + 2, W + 2)
    return (0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]),
            0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]))


def forward_gradient(u):
    """(B, H, W) -> forward differences d/dx, d/dy, 0 at the last column / row."""
    return (F.pad(u[:, :, 1:] - u[:, :, :-1], (0, 1)),
            F.pad(u[:, 1:, :] - u[:, :-1, :], (0, 0, 0, 1)))


def divergence(px, py):
    """Backward differences, the values before the first row / column taken as 0 (the
    adjoint of -forward_gradient)."""
    return (px - F.pad(px[:, :, :-1], (1, 0))) + (py - F.pad(py[:, :-1, :], (0, 0, 1, 0)))


def median_filter(u, k):
    """(B, H, W) -> the k x k median of each pixel, border replicated (cv2.medianBlur)."""
    B, H, W = u.shape
    p = F.pad(u[:, None], (k // 2,) * 4, mode="replicate")          # (B, 1, H+k-1, W+k-1)
    windows = F.unfold(p, k).view(B, k * k, H, W)                    # (B, k*k, H, W)
    return windows.median(dim=1).values


# ----------------------------------------------------------------------------- warp

def cubic_weights(t):
    """(..., ) fractions in [0, 1) -> (4, ...) weights of the taps at -1, 0, 1, 2."""
    a = CUBIC_A
    t1 = t + 1
    w0 = ((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    s = 1 - t
    w2 = ((a + 2) * s - (a + 3)) * s * s + 1
    return torch.stack((w0, w1, w2, 1 - w0 - w1 - w2))


def remap_cubic(images, u1, u2):
    """images (B, C, H, W) read at (x + u1, y + u2), u (B, H, W) -> (B, C, H, W): bicubic at
    positions rounded to 1/TAB pixel, 0 outside the image."""
    B, C, H, W = images.shape
    ys, xs = torch.meshgrid(torch.arange(H, device=u1.device, dtype=u1.dtype),
                            torch.arange(W, device=u1.device, dtype=u1.dtype), indexing="ij")
    X, Y = torch.round((xs + u1) * TAB), torch.round((ys + u2) * TAB)   # (B, H, W)
    ix, iy = torch.floor(X / TAB), torch.floor(Y / TAB)
    wx, wy = cubic_weights((X - ix * TAB) / TAB), cubic_weights((Y - iy * TAB) / TAB)
    padded = F.pad(images, (2, 2, 2, 2)).flatten(2)                  # (B, C, (H+4)(W+4))
    taps = torch.arange(-1, 3, device=u1.device)
    cols = (ix.long()[None] + taps[:, None, None, None]).clamp(-2, W + 1) + 2   # (4, B, H, W)
    rows = (iy.long()[None] + taps[:, None, None, None]).clamp(-2, H + 1) + 2
    out = None                                  # cv2's order: 4 taps a row, rows summed
    for i in range(4):
        row = None
        for j in range(4):
            index = (rows[i] * (W + 4) + cols[j]).flatten(1)         # (B, H*W)
            tap = padded.gather(2, index[:, None].expand(B, C, -1)).view(B, C, H, W)
            term = tap * (wy[i] * wx[j])[:, None]
            row = term if row is None else row + term
        out = row if out is None else out + row
    return out


# ----------------------------------------------------------------------------- the solver

@dataclass
class Scale:
    """One level's state, each (B, H, W) float32 but `error` (B,) float64."""
    I0: torch.Tensor
    u1: torch.Tensor
    u2: torch.Tensor
    p11: torch.Tensor
    p12: torch.Tensor
    p21: torch.Tensor
    p22: torch.Tensor
    error: torch.Tensor = None


def threshold(s, I1wx, I1wy, grad, rho_c, l_t):
    """The data term's step (TH): v = u + d, d from the linearised residual rho."""
    rho = rho_c + (I1wx * s.u1 + I1wy * s.u2)
    below, above = rho < -l_t * grad, rho > l_t * grad
    fi = torch.where(grad > torch.finfo(grad.dtype).eps, -rho / grad, torch.zeros_like(rho))
    step = torch.where(below, torch.full_like(rho, l_t),
                       torch.where(above, torch.full_like(rho, -l_t), fi))
    return s.u1 + step * I1wx, s.u2 + step * I1wy


def inner_step(s, live, warped, params):
    """One inner iteration on the pairs still live ((B,) bool): u from v and the dual
    variables' divergence, then the dual variables; s.error gets the squared change."""
    v1, v2 = threshold(s, *warped, params.lambda_ * params.theta)
    u1 = v1 + params.theta * divergence(s.p11, s.p12)
    u2 = v2 + params.theta * divergence(s.p21, s.p22)
    change = ((u1 - s.u1) * (u1 - s.u1) + (u2 - s.u2) * (u2 - s.u2)).double().sum((1, 2))
    s.error = torch.where(live, change, s.error)
    keep = live[:, None, None]                                       # (B, 1, 1)
    s.u1, s.u2 = torch.where(keep, u1, s.u1), torch.where(keep, u2, s.u2)
    taut = params.tau / params.theta
    for (pa, pb), u in ((("p11", "p12"), s.u1), (("p21", "p22"), s.u2)):
        ux, uy = forward_gradient(u)
        norm = 1.0 + taut * torch.sqrt(ux * ux + uy * uy)
        setattr(s, pa, torch.where(keep, (getattr(s, pa) + taut * ux) / norm, getattr(s, pa)))
        setattr(s, pb, torch.where(keep, (getattr(s, pb) + taut * uy) / norm, getattr(s, pb)))


def warp_terms(s, I1, I1x, I1y):
    """I1 and its gradient read at x + u: (I1wx, I1wy, |grad|^2, rho_c), each (B, H, W)."""
    I1w, I1wx, I1wy = remap_cubic(torch.stack((I1, I1x, I1y), 1), s.u1, s.u2).unbind(1)
    grad = I1wx * I1wx + I1wy * I1wy
    rho_c = I1w - I1wx * s.u1 - I1wy * s.u2 - s.I0
    return I1wx, I1wy, grad, rho_c


def one_scale(s, I1, params, host_skip, count):
    """The warpings of one level; s.u1, s.u2 updated in place."""
    I1x, I1y = centred_gradient(I1)
    eps = params.epsilon ** 2 * I1.shape[-1] * I1.shape[-2]
    for _ in range(params.warps):
        warped = warp_terms(s, I1, I1x, I1y)
        s.error = torch.full(I1.shape[:1], float("inf"), dtype=torch.float64, device=I1.device)
        for _ in range(params.outer):
            live = s.error > eps                                     # (B,) bool
            if host_skip and not bool(live.any()):
                break
            if params.median > 1:
                keep = live[:, None, None]
                s.u1 = torch.where(keep, median_filter(s.u1, params.median), s.u1)
                s.u2 = torch.where(keep, median_filter(s.u2, params.median), s.u2)
            for _ in range(params.inner):
                live = s.error > eps
                count += live
                inner_step(s, live, warped, params)


@contextlib.contextmanager
def no_tf32():
    """Full float32 in matrix products and convolutions on CUDA while inside."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@torch.no_grad()
def tvl1_flow(I0, I1, params=TVL1(), host_skip=None, counts=None):
    """I0, I1 (B, H, W) grey levels 0..255 (any real dtype, on any device) -> (B, H, W, 2)
    float32 flow in pixels (x then y): I0[y, x] is seen at I1[y + dy, x + dx].
    host_skip: skip a warping's remaining iterations once all pairs have converged (a host
    synchronisation each outer iteration; default: on the CPU only). counts: a (B,) int64
    tensor that gets each pair's inner iterations added."""
    if params.gamma != 0:
        raise ValueError("tvl1_flow: gamma 0 only (OpenCV's default)")
    host_skip = I0.device.type == "cpu" if host_skip is None else host_skip
    count = torch.zeros(I0.shape[0], dtype=torch.int64, device=I0.device)
    with no_tf32():
        levels = list(zip(pyramid(I0.float(), params), pyramid(I1.float(), params)))
        u1 = u2 = torch.zeros_like(levels[-1][0])
        for k in range(len(levels) - 1, -1, -1):
            a, b = levels[k]
            if u1.shape != a.shape:                                  # the level above's flow
                u1 = resize_linear(u1, a.shape[-2:]) * (1 / params.scale_step)
                u2 = resize_linear(u2, a.shape[-2:]) * (1 / params.scale_step)
            zero = torch.zeros_like(a)
            s = Scale(a, u1, u2, zero, zero, zero, zero)
            one_scale(s, b, params, host_skip, count)
            u1, u2 = s.u1, s.u2
    if counts is not None:
        counts += count.to(counts.device)
    return torch.stack((u1, u2), -1)
