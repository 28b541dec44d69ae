"""The memory traffic of tvl1-torch: bytes each step moves per pixel, counted by running the
step on a small image under a dispatch mode that adds up the bytes every non-view operator
reads and writes (what the unfused kernels move: each reads its inputs and writes its
output once), and from them the bytes of one field. Also the few numbers the projection
for a GPU assumes until one is measured."""
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from extraction import tvl1_torch as tv

H100_BYTES_PER_S = 3.35e12          # H100 SXM HBM3 peak; PCIe cards: 2.0e12
ASSUMED_SHARE = 0.5                 # of the peak, for a projection until measured
ASSUMED_I3D_FLOPS = 25e12           # float32 convolutions on an H100 (TF32 off), assumed


class CountBytes(TorchDispatchMode):
    """Adds up the bytes of the tensors each operator reads and writes (views: none)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not any(r.alias_info is not None for r in func._schema.returns):
            self.bytes += sum(t.numel() * t.element_size() for t in tree_leaves((args, kwargs,
                              out)) if isinstance(t, torch.Tensor) and t.dim() > 0)
        return out


def step_bytes(h=48, w=64):
    """{step: bytes per pixel}: one inner iteration, one median filtering of both flow
    components, one warping's set-up, on a (1, h, w) pair."""
    rng = torch.Generator().manual_seed(0)
    I0, I1 = (torch.rand(1, h, w, generator=rng) * 255 for _ in range(2))
    p = tv.TVL1()
    zero = torch.zeros_like(I0)
    s = tv.Scale(I0, zero + 0.3, zero - 0.2, zero, zero, zero, zero)
    s.error = torch.full((1,), float("inf"), dtype=torch.float64)
    grads = tv.centred_gradient(I1)
    out = {}
    with CountBytes() as c:
        warped = tv.warp_terms(s, I1, *grads)
    out["warp"] = c.bytes
    with CountBytes() as c:
        tv.inner_step(s, torch.ones(1, dtype=torch.bool), warped, p)
    out["inner"] = c.bytes
    with CountBytes() as c:
        keep = torch.ones(1, 1, 1, dtype=torch.bool)
        for u in (s.u1, s.u2):
            torch.where(keep, tv.median_filter(u, p.median), u)
    out["median"] = c.bytes
    return {k: v / (h * w) for k, v in out.items()}


def field_bytes(height, width, params=tv.TVL1()):
    """Bytes one field of height x width moves when every iteration runs (what a batch does
    on a GPU, where no pair stops the others): the levels' pixels times each step's bytes."""
    per = step_bytes()
    pixels, (h, w) = 0, (height, width)
    for _ in range(params.scales):
        if h < tv.MIN_SIDE or w < tv.MIN_SIDE:
            break
        pixels += h * w
        h, w = round(h * params.scale_step), round(w * params.scale_step)
    per_pixel = params.warps * (per["warp"] + params.outer * (
        per["median"] + params.inner * per["inner"]))
    return pixels * per_pixel, per


def peak_bandwidth(device):
    """The GPU's peak memory bandwidth in bytes/s from its clock and bus width (double data
    rate), or None when torch does not say."""
    props = torch.cuda.get_device_properties(device)
    clock, bus = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    return 2 * clock * 1e3 * bus / 8 if clock and bus else None
