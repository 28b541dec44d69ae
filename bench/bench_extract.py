"""extract.py's speed, stage by stage, and what it projects for THUMOS14.

    python bench/bench_extract.py [--scale 1] [--cores N] [--flow tvl1-torch --device cuda]

A synthetic video shaped like THUMOS14's (320 x 180 at 30 fps, --scale x 8 s) is written
with PyAV. Each stage runs on one core (one process, one thread) and on all cores (N
processes of one thread at once, as extract.py --workers N runs videos; I3D also as one
process of N threads, as --workers 1 does):

  decode   PyAV decoding and conversion to RGB             source frames per second
  resize   short side 256, centre 224 crop, to [-1, 1]     frames per second
  flow     TV-L1, DIS and tvl1-torch on grey 455 x 256      fields per second
           frame pairs (tvl1-torch: --batch pairs at once, on --device; on a GPU also the
           share of its memory bandwidth, from the bytes a field moves: bench/tvl1_bytes.py)
  i3d      Inception-I3D on 16 x 224 x 224 chunks (RGB)     frames per second, GFLOP/s

and, in the same process, the float32 matmul rate (2048 x 2048 products) the I3D rate is
set against. Then THUMOS14 (412 videos, 24 hours: 2.16 M frames at 25 fps, sources mostly
at 30 fps) for each flow method, on this machine and on one with --gpu-cores cores and a
GPU (rates not measured here are projected, and marked so). Random weights: speed does not
depend on them.
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
from extraction.flow import flow_algorithm, flow_fields, scale_flow  # noqa: E402
from extraction.i3d import FEATURE_DIM, conv_flops, random_i3d  # noqa: E402
import tvl1_bytes  # noqa: E402

WIDTH, HEIGHT, SOURCE_FPS = 320, 180, 30
THUMOS_VIDEOS, THUMOS_HOURS = 412, 24.0
FLOWS = ("tvl1", "dis", "tvl1-torch")
STAGES = ("decode", "resize", *FLOWS, "i3d")


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


def torch_flow(greys, device, batch):
    """(fields, seconds) of tvl1-torch on `device`, `batch` pairs at once (the first batch
    once untimed: start-up)."""
    algo = flow_algorithm("tvl1-torch", device)
    algo.fields(greys[:2])
    sync = torch.cuda.synchronize if algo.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for k in range(0, len(greys) - 1, batch):
        for field in flow_fields(algo, greys[k:k + batch + 1]):
            scale_flow(fr.centre_crop(field))
    sync()
    return len(greys) - 1, time.perf_counter() - t0


def stage(name, path, pairs, chunks, device="cpu", batch=1):
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
    if name in FLOWS:
        grey = [fr.gray(fr.resize_short_side(image)) for image in images[:pairs + 1]]
        if name == "tvl1-torch":
            return torch_flow(grey, device, batch)
        algo = flow_algorithm(name)
        t0 = time.perf_counter()
        for field in flow_fields(algo, grey):
            scale_flow(fr.centre_crop(field))
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
    return stage(name, path, pairs, chunks, batch=pairs)


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


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help="8 s of video, 3 TV-L1 pairs, 30 DIS pairs and 1 I3D chunk per unit")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="'all cores'")
    p.add_argument("--stages", default=",".join(STAGES), help="a subset of " + ",".join(STAGES))
    p.add_argument("--flow", default=None, help="only these flow methods (of " +
                   ",".join(FLOWS) + "), with decode, resize and i3d")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where tvl1-torch (and, on cuda, a second I3D measure) runs")
    p.add_argument("--batch", type=int, default=None,
                   help="tvl1-torch pairs at once (default: 16 on cuda, 2 on the CPU)")
    p.add_argument("--gpu-cores", type=int, default=16, help="cores of the GPU machine "
                   "the projection assumes (CPU rates scaled from one core)")
    args = p.parse_args(argv)
    args.stages = ([s for s in args.stages.split(",") if s] if args.flow is None else
                   ["decode", "resize", *args.flow.split(","), "i3d"])
    args.batch = args.batch or (16 if args.device == "cuda" else 2)
    return args


def measure(name, path, args, pairs, chunks):
    """(one core, all cores) items per second; tvl1-torch on a GPU: (rate, rate)."""
    one_thread()
    if name == "tvl1-torch" and args.device == "cuda":
        items, secs = stage(name, path, pairs, chunks, "cuda", args.batch)
        return items / secs, items / secs
    items, secs = stage(name, path, pairs, chunks, batch=args.batch)
    return items / secs, all_cores(name, path, pairs, chunks, args.cores)


def main(argv=None):
    args = parse(argv)
    pairs = {"tvl1": max(2, round(3 * args.scale)), "dis": max(4, round(30 * args.scale)),
             "tvl1-torch": args.batch * max(1, round(args.scale)) if args.device == "cuda"
             else max(2, round(2 * args.scale))}
    chunks = max(1, math.ceil(args.scale))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.mp4")
        n = write_video(path, 8 * args.scale)
        print(f"video: {WIDTH} x {HEIGHT} at {SOURCE_FPS} fps, {n} frames; {args.cores} cores; "
              f"torch {torch.__version__}, OpenCV {cv2.__version__}, PyAV {av.__version__}")
        print(f"{'stage':10s} {'one core':>12s} {'all cores':>12s}   per second")
        rate = {}
        for name in args.stages:
            rate[name] = measure(name, path, args, pairs.get(name, 0), chunks)
            unit = "flow fields" if name in FLOWS else {"decode": "source frames"}.get(
                name, "frames")
            where = " (on the GPU)" if name == "tvl1-torch" and args.device == "cuda" else ""
            print(f"{name:10s} {rate[name][0]:12.2f} {rate[name][1]:12.2f}   {unit}{where}")
        if "tvl1-torch" in rate:
            bandwidth(rate["tvl1-torch"][0], args.device)
        if "i3d" in rate:
            i3d_rates(rate, path, chunks, args)
        project(rate, args)


def bandwidth(fields_per_s, device):
    """The bytes a field moves and, on a GPU, the share of its peak bandwidth reached."""
    per_field, per = tvl1_bytes.field_bytes(256, 455)
    print(f"tvl1-torch moves {per_field / 1e9:.0f} GB a 455 x 256 field with every iteration "
          f"run ({per['inner']:.0f} B a pixel an inner iteration; a fused one would move 64)")
    if device == "cuda":
        peak = tvl1_bytes.peak_bandwidth(torch.cuda.current_device())
        got = fields_per_s * per_field
        print(f"  {torch.cuda.get_device_name()}: {got / 1e9:.0f} GB/s" + (
            f" = {100 * got / peak:.0f} % of its {peak / 1e9:.0f} GB/s" if peak else ""))


def i3d_rates(rate, path, chunks, args):
    """I3D on all cores (one process of N threads too), its GFLOP/s, and on a GPU."""
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
    rate["gflop"] = gflop
    if args.device == "cuda":
        net = random_i3d("rgb", 0).cuda()
        x = torch.rand(8, 3, 16, 224, 224, device="cuda") * 2 - 1
        with torch.no_grad():
            net.features(x)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(3):
                net.features(x)
            torch.cuda.synchronize()
        rate["i3d_gpu"] = 3 * 8 * 16 / (time.perf_counter() - t0)
        print(f"i3d on {torch.cuda.get_device_name()}: {rate['i3d_gpu']:.0f} frames/s (RGB)")


def project(rate, args):
    """THUMOS14's extraction time per flow method: on this machine (all cores busy), and on
    one with --gpu-cores cores and a GPU (decode, resize and OpenCV's flow on the cores,
    scaled from one core; I3D and tvl1-torch on the GPU, projected where not measured)."""
    if not {"decode", "resize", "i3d"} <= set(rate):
        return
    frames = THUMOS_HOURS * 3600 * 25
    n = args.gpu_cores
    gpu_flow, flow_said = gpu_flow_rate(rate, args)
    i3d_gpu = rate.get("i3d_gpu") or tvl1_bytes.ASSUMED_I3D_FLOPS / (rate["gflop"] * 1e9) * 16
    i3d_said = "measured" if "i3d_gpu" in rate else "projected"
    print(f"THUMOS14: {THUMOS_VIDEOS} videos, {THUMOS_HOURS:g} h = {frames / 1e6:.2f} M frames "
          f"at 25 fps ({SOURCE_FPS / 25:g} source frames each):")
    for flow in (f for f in FLOWS if f in rate):
        prep = SOURCE_FPS / 25 / rate["decode"][1] + 1 / rate["resize"][1]
        i3d = (1 + rate["flow_cost"]) / rate["i3d"][1]          # the RGB and the flow pass
        if not (flow == "tvl1-torch" and args.device == "cuda"):
            here = prep + 1 / rate[flow][1] + i3d
            print(f"  {flow:10s} this machine          {days(frames * here)}   (flow "
                  f"{100 / rate[flow][1] / here:.0f} %)")
        cpu = (SOURCE_FPS / 25 / rate["decode"][0] + 1 / rate["resize"][0]) / n
        gpu = (1 + rate["flow_cost"]) / i3d_gpu
        if flow == "tvl1-torch":
            gpu += 1 / gpu_flow
        else:
            cpu += 1 / (rate[flow][0] * n)
        print(f"  {flow:10s} {n} cores + a GPU     {days(frames * max(cpu, gpu))}   (cores "
              f"{frames * cpu / 3600:.1f} h, GPU {frames * gpu / 3600:.1f} h; I3D {i3d_said}"
              + (f", tvl1-torch {flow_said}" if flow == "tvl1-torch" else "") + ")")


def gpu_flow_rate(rate, args):
    """(tvl1-torch fields/s on a GPU, 'measured' or 'projected'): measured when this run
    was on one, else an H100 at ASSUMED_SHARE of its bandwidth, every iteration run."""
    if args.device == "cuda" and "tvl1-torch" in rate:
        return rate["tvl1-torch"][0], "measured"
    per_field, _ = tvl1_bytes.field_bytes(256, 455)
    return (tvl1_bytes.H100_BYTES_PER_S * tvl1_bytes.ASSUMED_SHARE / per_field,
            f"projected: an H100 at {100 * tvl1_bytes.ASSUMED_SHARE:.0f} % of its bandwidth")


if __name__ == "__main__":
    main()
