"""Optical flow between consecutive grey frames, as I3D's flow stream reads it: (H, W, 2)
displacements (x then y, in pixels) clipped to +-20 and scaled to [-1, 1].

tvl1  OpenCV's Dual TV-L1 (opencv-contrib), its default parameters: the published
      convention (DeepMind's Kinetics I3D and the W-TALC features use TV-L1).
dis   OpenCV's DIS optical flow, preset MEDIUM: tens of times faster on a CPU, but not the
      published convention (extraction.json says so).
tvl1-torch  the same Dual TV-L1 written in PyTorch (tvl1_torch.py), batched over the pairs
      of a chunk, on the CPU or on the GPU I3D runs on; its fields equal OpenCV's to within
      OpenCV's own sensitivity (mean end-point error about 0.01 px on real footage).
"""
import cv2
import numpy as np
import torch

from extraction.tvl1_torch import TVL1, tvl1_flow

FLOW_BOUND = 20.0        # pixels: flow is clipped to [-20, 20], then divided by 20
METHODS = ("tvl1", "dis", "tvl1-torch")
TVL1_PARAMS = ("Tau", "Lambda", "Theta", "ScalesNumber", "WarpingsNumber", "Epsilon",
               "InnerIterations", "OuterIterations", "ScaleStep", "Gamma", "MedianFiltering")
DIS_PRESET = "MEDIUM"
DIS_PARAMS = ("FinestScale", "PatchSize", "PatchStride", "GradientDescentIterations",
              "VariationalRefinementIterations", "VariationalRefinementAlpha",
              "VariationalRefinementDelta", "VariationalRefinementGamma",
              "UseMeanNormalization", "UseSpatialPropagation")


class TorchTVL1:
    """tvl1-torch on `device`, with OpenCV's flow objects' .calc and a batched .fields."""
    params = TVL1()                     # OpenCV's defaults

    def __init__(self, device="cpu"):
        self.device = torch.device(device)

    def fields(self, greys):
        """[(H, W) uint8 grey frames] -> [(H, W, 2) float32 field from each to the next],
        all pairs in one batch."""
        x = torch.from_numpy(np.stack(greys)).to(self.device)         # (N, H, W) uint8
        return list(tvl1_flow(x[:-1], x[1:], self.params).cpu().numpy())           # N-1 x (H, W, 2)

    def calc(self, prev, nxt, _flow=None):
        return self.fields([prev, nxt])[0]


def flow_algorithm(method, device="cpu"):
    """A new flow object of `method` (METHODS): .calc(prev, next, None); tvl1-torch runs on
    `device`, the others on the CPU."""
    if method == "tvl1-torch":
        return TorchTVL1(device)
    if method == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create()
    if method == "dis":
        return cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{DIS_PRESET}"))
    raise ValueError(f"unknown flow method {method!r} (choose from {', '.join(METHODS)})")


def _number(x):
    return bool(x) if isinstance(x, bool) else round(float(x), 6) if isinstance(x, float) \
        else int(x)


def flow_params(method):
    """The flow's parameters as OpenCV reports them ({name: value}), for extraction.json
    (tvl1-torch: its own, under OpenCV's names)."""
    if method == "tvl1-torch":
        return {name: _number(value) for name, value in TorchTVL1.params.record().items()}
    algo = flow_algorithm(method)
    names = TVL1_PARAMS if method == "tvl1" else DIS_PARAMS
    params = {name: _number(getattr(algo, "get" + name)()) for name in names}
    if method == "dis":
        params = {"preset": DIS_PRESET, **params}
    return params


def flow_field(algo, prev, nxt):
    """(H, W, 2) float32 displacement in pixels from grey frame prev to grey frame nxt:
    prev[y, x] is seen at nxt[y + dy, x + dx]."""
    return algo.calc(prev, nxt, None)


def flow_fields(algo, greys):
    """[(H, W) uint8 grey frames] -> [(H, W, 2) float32 field from each frame to the next]:
    one batch for tvl1-torch, pair by pair for OpenCV's."""
    if isinstance(algo, TorchTVL1):
        return algo.fields(greys)
    return [flow_field(algo, a, b) for a, b in zip(greys, greys[1:])]


def scale_flow(flow):
    """Pixels -> I3D's input: clipped to +-FLOW_BOUND and divided by it ([-1, 1], float32)."""
    return np.clip(flow, -FLOW_BOUND, FLOW_BOUND).astype(np.float32) / np.float32(FLOW_BOUND)


def unscale_flow(values):
    """I3D's flow input -> pixels (the inverse of scale_flow inside +-FLOW_BOUND)."""
    return values.astype(np.float32) * np.float32(FLOW_BOUND)
