"""extract.py's speed, stage by stage, and what it projects for THUMOS14.

    python bench/bench_extract.py [--scale 1] [--cores N]

A synthetic video shaped like THUMOS14's (320 x 180 at 30 fps, --scale x 8 s) is written
with PyAV. Each stage runs on one core (one process, one thread) and on all cores (N
processes of one thread at once, as extract.py --workers N runs videos; I3D also as one
process of N threads, as --workers 1 does):

  decode   PyAV decoding and conversion to RGB             source frames per second
  resize   short side 256, centre 224 crop, to [-1, 1]     frames per second
  flow     TV-L1 and DIS on grey 455 x 256 frame pairs      fields per second
  i3d      Inception-I3D on 16 x 224 x 224 chunks (RGB)     frames per second, GFLOP/s

and, in the same process, the float32 matmul rate (2048 x 2048 products) the I3D rate is
set against. Then THUMOS14 (412 videos, 24 hours: 2.16 M frames at 25 fps, sources mostly
at 30 fps) on this machine, with TV-L1 and with DIS, and with I3D moved to a GPU. Random
weights: speed does not depend on them.
"""
import argparse
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time

import av
import cv2
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from extraction import frames as fr  # noqa: E402
from extraction.flow import flow_algorithm, flow_field, scale_flow  # noqa: E402
from extraction.i3d import FEATURE_DIM, conv_flops, random_i3d  # noqa: E402

WIDTH, HEIGHT, SOURCE_FPS = 320, 180, 30
THUMOS_VIDEOS, THUMOS_HOURS = 412, 24.0
STAGES = ("decode", "resize", "tvl1", "dis", "i3d")


def write_video(path, seconds):
    """A textured, moving 320 x 180 video at 30 fps (what the encoder and the flow see)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (HEIGHT // 8 + 8, WIDTH // 8 + 40, 3), dtype=np.uint8)
    texture = cv2.resize(small, (small.shape[1] * 8, small.shape[0] * 8),
                         interpolation=cv2.INTER_CUBIC)
    out = av.open(path, "w")
    stream = out.add_stream("libx264", rate=SOURCE_FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    n = int(seconds * SOURCE_FPS)
    for i in range(n):
        x, y = (3 * i) % 300, (i // 3) % 60
        image = np.ascontiguousarray(texture[y:y + HEIGHT, x:x + WIDTH])
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return n


def one_thread():
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def decoded(path, threads=1):
    return [fr.to_rgb(f) for _, _, f in fr.timed_frames(path, threads)]


def stage(name, path, pairs, chunks):
    """(items, seconds) of one stage in this process."""
    if name == "decode":
        t0 = time.perf_counter()
        n = len(decoded(path))
        return n, time.perf_counter() - t0
    images = decoded(path)
    if name == "resize":
        t0 = time.perf_counter()
        for image in images:
            fr.rgb_values(fr.centre_crop(fr.resize_short_side(image)))
        return len(images), time.perf_counter() - t0
    if name in ("tvl1", "dis"):
        grey = [fr.gray(fr.resize_short_side(image)) for image in images[:pairs + 1]]
        algo = flow_algorithm(name)
        t0 = time.perf_counter()
        for a, b in zip(grey, grey[1:]):
            scale_flow(fr.centre_crop(flow_field(algo, a, b)))
        return len(grey) - 1, time.perf_counter() - t0
    net = random_i3d("rgb", 0)
    x = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    with torch.no_grad():
        net.features(x[:, :, :, :64, :64])                     # first-call set-up, not timed
        t0 = time.perf_counter()
        for _ in range(chunks):
            assert net.features(x).shape == (1, FEATURE_DIM)
    return 16 * chunks, time.perf_counter() - t0


def _worker(args):
    name, path, pairs, chunks, barrier = args
    one_thread()
    barrier.wait()
    return stage(name, path, pairs, chunks)


def all_cores(name, path, pairs, chunks, cores):
    """Items per second of `cores` processes of one thread running the stage at once."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(cores)
        with ctx.Pool(cores) as pool:
            out = pool.map(_worker, [(name, path, pairs, chunks, barrier)] * cores)
    return sum(n / s for n, s in out)


def matmul_rate(threads, seconds=1.0):
    """float32 GFLOP/s of 2048 x 2048 products on `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 2048 ** 3 * n / (time.perf_counter() - t0) / 1e9


def days(seconds):
    return f"{seconds / 86400:8.1f} days ({seconds / 3600:7.0f} h)"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help="8 s of video, 3 TV-L1 pairs, 30 DIS pairs and 1 I3D chunk per unit")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="'all cores'")
    p.add_argument("--stages", default=",".join(STAGES), help="a subset of " + ",".join(STAGES))
    args = p.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    pairs = {"tvl1": max(2, round(3 * args.scale)), "dis": max(4, round(30 * args.scale))}
    chunks = max(1, math.ceil(args.scale))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.mp4")
        n = write_video(path, 8 * args.scale)
        print(f"video: {WIDTH} x {HEIGHT} at {SOURCE_FPS} fps, {n} frames; {args.cores} cores; "
              f"torch {torch.__version__}, OpenCV {cv2.__version__}, PyAV {av.__version__}")
        print(f"{'stage':8s} {'one core':>12s} {'all cores':>12s}   per second")
        rate = {}
        for name in stages:
            one_thread()
            items, secs = stage(name, path, pairs.get(name, 0), chunks)
            rate[name] = (items / secs, all_cores(name, path, pairs.get(name, 0), chunks,
                                                  args.cores))
            unit = {"decode": "source frames", "tvl1": "flow fields", "dis": "flow fields"}
            print(f"{name:8s} {rate[name][0]:12.2f} {rate[name][1]:12.2f}   "
                  f"{unit.get(name, 'frames')}")
        if "i3d" in rate:
            gflop = conv_flops(random_i3d("rgb", 0), (1, 3, 16, 224, 224)) / 1e9
            rate["flow_cost"] = conv_flops(random_i3d("flow", 1), (1, 2, 16, 224, 224)) / 1e9 / gflop
            torch.set_num_threads(args.cores)
            items, secs = stage("i3d", path, 0, chunks)
            threaded = items / secs
            mm1, mmn = matmul_rate(1), matmul_rate(args.cores)
            on1, onn = rate["i3d"][0] / 16 * gflop, max(threaded, rate["i3d"][1]) / 16 * gflop
            print(f"i3d, one process of {args.cores} threads: {threaded:.2f} frames/s")
            print(f"I3D: {gflop:.1f} GFLOP a chunk (RGB; flow {gflop * rate['flow_cost']:.1f}); "
                  f"{on1:.1f} GFLOP/s on one core against a matmul rate of {mm1:.1f} "
                  f"({100 * on1 / mm1:.0f} %); {onn:.1f} GFLOP/s on all cores against "
                  f"{mmn:.1f} ({100 * onn / mmn:.0f} %)")
            rate["i3d"] = (rate["i3d"][0], max(threaded, rate["i3d"][1]))
        project(rate)


def project(rate):
    """THUMOS14 on this machine: seconds per 25-fps frame of each stage, all cores busy."""
    if not {"decode", "resize", "i3d"} <= set(rate):
        return
    frames = THUMOS_HOURS * 3600 * 25
    print(f"THUMOS14: {THUMOS_VIDEOS} videos, {THUMOS_HOURS:g} h = {frames / 1e6:.2f} M frames "
          f"at 25 fps ({SOURCE_FPS / 25:g} source frames each), all cores busy:")
    for flow in ("tvl1", "dis"):
        if flow not in rate:
            continue
        cpu = (SOURCE_FPS / 25 / rate["decode"][1] + 1 / rate["resize"][1] + 1 / rate[flow][1])
        i3d = (1 + rate["flow_cost"]) / rate["i3d"][1]     # the RGB and the flow pass
        print(f"  {flow:5s} on this CPU          {days(frames * (cpu + i3d))}"
              f"   (flow {100 / rate[flow][1] / (cpu + i3d):.0f} % of it, I3D "
              f"{100 * i3d / (cpu + i3d):.0f} %)")
        print(f"  {flow:5s} with I3D on a GPU    {days(frames * cpu)}   (decode, resize and "
              f"flow left on these cores)")


if __name__ == "__main__":
    main()
