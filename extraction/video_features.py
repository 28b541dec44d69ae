"""One video to its features: its frames at 25 fps (frames.py) in non-overlapping chunks of
16 (T = floor(frames / 16); the last partial chunk is dropped), each chunk's RGB crops and
flow fields through Inception-I3D (i3d.py), one 1024-d vector per chunk and stream.

Flow field i goes from frame i to frame i + 1, both resized (short side 256) and grey, and
is then cut to the same centre 224 x 224 as the RGB crop; so chunk c has the 16 fields of
its 16 frames, the last one reaching into the next chunk's first frame. When the video ends
exactly at a chunk's end, its last field (which would need a frame past the end) repeats the
one before it. Frames stream through: at most one chunk (17 frames) and `batch` chunks of
network input are held, whatever the video's length.
"""
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from extraction import frames as fr
from extraction.flow import flow_algorithm, flow_fields, scale_flow
from extraction.i3d import FEATURE_DIM
from readers.features import STREAMS

CHUNK = 16               # frames per feature vector


@dataclass
class VideoStats:
    """What a video gave: frames at 25 fps, chunks, seconds per stage."""
    frames: int = 0                 # at 25 fps
    chunks: int = 0
    rotation: int = 0               # degrees counter-clockwise the frames were turned
    longest_gap: tuple = (0.0, 0.0)  # (seconds between two frames, time of the first)
    coded: tuple = None             # (height, width) of the first frame, turned
    size: tuple = None              # (height, width) of every frame after the resize
    rescaled: int = 0               # decoded frames of another size, scaled to `size`
    seconds: dict = field(default_factory=lambda: {"decode": 0.0, "resize": 0.0,
                                                   "flow": 0.0, "i3d": 0.0})


def _timed(stats, stage, t0):
    stats.seconds[stage] += time.perf_counter() - t0
    return time.perf_counter()


def displayed(frame, stats):
    """av.VideoFrame -> (h, w, 3) uint8 RGB as displayed, short side 256: the first frame
    sets the size (stats.size), a later frame of another size (a resolution switch
    mid-stream) is scaled to it, and counted (stats.rescaled)."""
    image = fr.to_rgb(frame)                                        # (H, W, 3) turned
    if stats.size is None:
        stats.coded = image.shape[:2]
        full = fr.resize_short_side(image)
        stats.size = full.shape[:2]
        return full
    if image.shape[:2] != stats.coded:
        stats.rescaled += 1
        return fr.resize_to(image, stats.size)
    return fr.resize_short_side(image)


def chunk_inputs(path, streams=STREAMS, flow_method="tvl1", threads=0, stats=None,
                 max_hours=fr.MAX_HOURS, flow_device="cpu"):
    """Yield the network inputs of each 16-frame chunk of a video at 25 fps:
    {"rgb": (16, 224, 224, 3) float32 in [-1, 1], "flow": (16, 224, 224, 2) float32 in
    [-1, 1]} (only the streams asked for). stats (VideoStats) is filled as it goes. The
    fields of a chunk are computed together once its frames (and the next one) are in;
    tvl1-torch computes them on flow_device."""
    stats = stats if stats is not None else VideoStats()
    want_rgb, want_flow = "rgb" in streams, "flow" in streams
    algo = flow_algorithm(flow_method, flow_device) if want_flow else None
    rgb, greys = [], []                 # the current chunk's crops and grey frames (+ one)
    last = (None, None)
    t = time.perf_counter()
    for k, source, frame in fr.frames_at(path, fr.FPS, threads, max_hours, stats):
        stats.frames = k + 1
        if source != last[0]:
            t = _timed(stats, "decode", t)
            full = displayed(frame, stats)                          # (h, w, 3) uint8
            last = (source, full)
            t = _timed(stats, "resize", t)
        full = last[1]
        rgb.append(fr.rgb_values(fr.centre_crop(full)) if want_rgb else None)  # (224, 224, 3)
        if want_flow:
            greys.append(fr.gray(full))                             # (h, w) uint8
        t = _timed(stats, "resize", t)
        if len(rgb) == CHUNK + want_flow:       # with flow: wait for the next chunk's frame 0
            yield _chunk(rgb[:CHUNK], _flows(algo, greys, stats), streams)
            stats.chunks += 1
            rgb, greys = rgb[CHUNK:], greys[CHUNK:]
            t = time.perf_counter()
    t = _timed(stats, "decode", t)
    if want_flow and len(rgb) == CHUNK:         # the video ends at this chunk's end
        flows = _flows(algo, greys, stats)
        if flows:
            flows.append(flows[-1])
        if len(flows) == CHUNK:
            yield _chunk(rgb, flows, streams)
            stats.chunks += 1


def _flows(algo, greys, stats):
    """[(224, 224, 2) float32 in [-1, 1]]: the fields between consecutive grey frames, cut
    to the crop and scaled (none when there is no flow stream)."""
    if algo is None:
        return []
    t0 = time.perf_counter()
    out = [scale_flow(fr.centre_crop(f)) for f in flow_fields(algo, greys)]
    _timed(stats, "flow", t0)
    return out


def _chunk(rgb, flows, streams):
    out = {}
    if "rgb" in streams:
        out["rgb"] = np.stack(rgb)                                  # (16, 224, 224, 3)
    if "flow" in streams:
        out["flow"] = np.stack(flows)                               # (16, 224, 224, 2)
    return out


def network_input(chunks, device):
    """[(16, 224, 224, C)] -> (N, C, 16, 224, 224) float32 on device; channels-last in
    memory (the order the chunks are in), which is also the faster layout for Conv3d."""
    x = torch.from_numpy(np.stack(chunks))                          # (N, 16, 224, 224, C)
    return x.to(device).permute(0, 4, 1, 2, 3)


def _on_one_thread(net, x):
    torch.set_num_threads(1)
    with torch.no_grad():
        return net.features(x).float().numpy()                      # (1, 1024)


def forward(net, x):
    """(N, C, 16, 224, 224) -> (N, 1024) float32 numpy. On a GPU one pass; on the CPU each
    chunk on one thread, the chunks spread over torch's threads: the CPU convolutions split
    their sums across threads by their number, so a chunk run on several threads would give
    features that change with --threads and with the machine's cores."""
    if x.device.type != "cpu":
        return net.features(x).float().cpu().numpy()
    threads = torch.get_num_threads()
    with ThreadPoolExecutor(max(1, min(threads, len(x)))) as pool:
        parts = list(pool.map(lambda chunk: _on_one_thread(net, chunk), x.split(1)))
    torch.set_num_threads(threads)
    return np.concatenate(parts)


@torch.no_grad()
def video_features(path, nets, device, *, flow_method="tvl1", batch=1, threads=0,
                   max_hours=fr.MAX_HOURS):
    """({stream: (T, 1024) float32}, VideoStats) of one video. nets: {stream: InceptionI3d}
    on `device` (the streams to extract); batch: chunks per forward pass (on the CPU at
    least one per thread); max_hours: the longest video accepted."""
    if torch.device(device).type == "cpu":
        batch = max(batch, torch.get_num_threads())
    streams = tuple(nets)
    stats = VideoStats()
    out = {s: [] for s in streams}
    pending = {s: [] for s in streams}

    def run(stream):
        t0 = time.perf_counter()
        x = network_input(pending[stream], device)
        out[stream].append(forward(nets[stream], x))                # (N, 1024)
        pending[stream].clear()
        _timed(stats, "i3d", t0)

    for chunk in chunk_inputs(path, streams, flow_method, threads, stats, max_hours, device):
        for s in streams:
            pending[s].append(chunk[s])
            if len(pending[s]) >= batch:
                run(s)
    for s in streams:
        if pending[s]:
            run(s)
    features = {s: (np.concatenate(out[s]) if out[s] else np.zeros((0, FEATURE_DIM)))
                .astype(np.float32) for s in streams}
    return features, stats
