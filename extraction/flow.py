"""Optical flow between consecutive grey frames, as I3D's flow stream reads it: (H, W, 2)
displacements (x then y, in pixels) clipped to +-20 and scaled to [-1, 1].

tvl1  OpenCV's Dual TV-L1 (opencv-contrib), its default parameters: the published
      convention (DeepMind's Kinetics I3D and the W-TALC features use TV-L1).
dis   OpenCV's DIS optical flow, preset MEDIUM: tens of times faster on a CPU, but not the
      published convention (extraction.json says so).
"""
import cv2
import numpy as np

FLOW_BOUND = 20.0        # pixels: flow is clipped to [-20, 20], then divided by 20
METHODS = ("tvl1", "dis")
TVL1_PARAMS = ("Tau", "Lambda", "Theta", "ScalesNumber", "WarpingsNumber", "Epsilon",
               "InnerIterations", "OuterIterations", "ScaleStep", "Gamma", "MedianFiltering")
DIS_PRESET = "MEDIUM"
DIS_PARAMS = ("FinestScale", "PatchSize", "PatchStride", "GradientDescentIterations",
              "VariationalRefinementIterations", "VariationalRefinementAlpha",
              "VariationalRefinementDelta", "VariationalRefinementGamma",
              "UseMeanNormalization", "UseSpatialPropagation")


def flow_algorithm(method):
    """A new OpenCV flow object of `method` ('tvl1' or 'dis'); .calc(prev, next, None)."""
    if method == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create()
    if method == "dis":
        return cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{DIS_PRESET}"))
    raise ValueError(f"unknown flow method {method!r} (choose from {', '.join(METHODS)})")


def _number(x):
    return bool(x) if isinstance(x, bool) else round(float(x), 6) if isinstance(x, float) \
        else int(x)


def flow_params(method):
    """The flow's parameters as OpenCV reports them ({name: value}), for extraction.json."""
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


def scale_flow(flow):
    """Pixels -> I3D's input: clipped to +-FLOW_BOUND and divided by it ([-1, 1], float32)."""
    return np.clip(flow, -FLOW_BOUND, FLOW_BOUND).astype(np.float32) / np.float32(FLOW_BOUND)


def unscale_flow(values):
    """I3D's flow input -> pixels (the inverse of scale_flow inside +-FLOW_BOUND)."""
    return values.astype(np.float32) * np.float32(FLOW_BOUND)
