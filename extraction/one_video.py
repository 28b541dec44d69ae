"""One video to its feature files: in this process, or as a Ray task of sweeps/trials.py
(which loads the networks once per worker and hands its record back as video.json)."""
import functools
import os

import cv2
import numpy as np
import torch

from extraction.video_features import video_features
from extraction.folder import VIDEO_TRIAL, feature_paths
from extraction.frames import MAX_HOURS
from extraction import record as rec
from extraction.i3d import FEATURE_DIM, load_i3d, random_i3d
from core.errors import InputError, first_line
from core.files import atomic_write_json, write_atomically
from utils import resolve_device

GPU_BATCH, CPU_BATCH = 8, 1       # chunks per forward pass
RANDOM_SEEDS = {"rgb": 0, "flow": 1}


def write_npy(path, array):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)
    write_atomically(path, write)


def extract_one(opts, nets, device):
    """One video: its features written (each file atomically), and what extraction.json
    records of it: dict(source, split, snippets, frames, rotation, longest_gap, rescaled,
    size, seconds). Zero snippets: nothing written.
    Anything going wrong with the video is an InputError naming it."""
    path = opts["source"]
    try:
        feats, stats = video_features(path, nets, device, flow_method=opts["flow"],
                                      batch=GPU_BATCH if device.type == "cuda" else CPU_BATCH,
                                      threads=opts.get("threads") or 0,
                                      max_hours=opts.get("max_hours") or MAX_HOURS)
    except InputError:
        raise
    except (cv2.error, RuntimeError, ValueError, MemoryError, OSError) as e:
        raise InputError(f"{path}: extraction failed ({type(e).__name__}: "
                         f"{first_line(e, 160)})") from None
    snippets = stats.chunks
    if snippets:
        for stream, target in feature_paths(opts["out"], opts["split"], opts["name"],
                                            nets).items():
            assert feats[stream].shape == (snippets, FEATURE_DIM)
            write_npy(target, feats[stream])
    return {"source": path, "split": opts["split"], "snippets": snippets,
            "frames": stats.frames, "rotation": stats.rotation,
            "longest_gap": [float(x) for x in stats.longest_gap], "rescaled": stats.rescaled,
            "size": list(stats.size or ()), "seconds": {k: round(v, 3) for k, v in
                                                stats.seconds.items()},
            **rec.machine_record(device)}


@functools.lru_cache(maxsize=4)
def _networks(streams, weights, random_init, device):
    """{stream: network on device}; weights: ((stream, path), ...). Cached per process: a
    Ray worker that runs many videos loads the weights once."""
    weights = dict(weights)
    nets = {s: (random_i3d(s, RANDOM_SEEDS[s]) if random_init else load_i3d(weights[s], s))
            for s in streams}
    return {s: n.to(device) for s, n in nets.items()}


def video_task(opts, resume=False):
    """One video as a task of sweeps/trials.py (in a Ray worker): the networks loaded once
    per worker process, the video extracted, its record written as the task folder's
    VIDEO_TRIAL.done, which the executor hands back to the command."""
    threads = opts.get("threads") or 0
    if threads:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    device = resolve_device(opts["device"])
    nets = _networks(tuple(opts["streams"]), tuple(sorted(opts["weights"].items())),
                     opts["random_init"], device)
    done = extract_one(opts, nets, device)
    atomic_write_json(os.path.join(opts["output_dir"], VIDEO_TRIAL.done), done)
    return done
