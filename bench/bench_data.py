"""Memory and speed of the feature layouts at ActivityNet1.2 scale (a benchmark, not a test).

    python bench/bench_data.py --scale 0.1            # 720 videos, about 1 GB per float32 copy
    python bench/bench_data.py                        # 7,200 videos, about 10.6 GB per copy

Writes synthetic ActivityNet1.2-shaped data (100 classes, 2/3 train, T uniform in [60, 300],
mean 180 snippets, RGB + flow 2 x 1024 float32) in the layouts asked for, then runs each
layout in its own child process: load_dataset, one reading pass over the training videos,
then one epoch of the video classifier and of each EM phase (M1, E, M2) on a SnippetDataset.
Prints, per layout: load time, RSS after loading, peak RSS (ru_maxrss of the child), and
snippets per second of the reading pass and of training.

Layouts ("mode" = how load_dataset holds the features):
    hdf5        float32 HDF5 file, streamed (the default for HDF5)
    hdf5-fp16   HDF5 file written with --fp16, streamed
    hdf5-ram16  float32 HDF5 file cached in RAM as float16 (memory="float16")
    wtalc       the W-TALC bundle, in RAM as float32 (its only mode)
    folders     BaS-Net folders of .npy files, streamed
Disk: about 10.6 GB per float32 copy at full scale (5.3 GB for hdf5-fp16); check `df -h`.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dataset import Video, load_dataset  # noqa: E402
from training.batches import SnippetDataset  # noqa: E402
from em_trainer import ClassifierTrainer, EMTrainer  # noqa: E402
from model import EMMIL, UntrimmedNetClassifier  # noqa: E402
from readers.hdf5_format import write_hdf5  # noqa: E402
from readers.layouts import wtalc_paths  # noqa: E402
from opts import PRESETS, layout_snippet_seconds  # noqa: E402
from training.schedule import parse_schedule  # noqa: E402

FULL_VIDEOS = 7200
NUM_CLASSES = 100
PRESET = PRESETS["activitynet12"]
SNIPPET = layout_snippet_seconds()["wtalc"]     # I3D: 0.64 s
LAYOUTS = ["hdf5", "hdf5-fp16", "hdf5-ram16", "wtalc", "folders"]
GB = 1024 ** 3


# ---------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------

def synthetic_video(i, n_train, seed=0):
    """Video i: dict(name, split, feats (T, 2048) float32, label, segment, duration)."""
    rng = np.random.default_rng([seed, i])
    T = int(rng.integers(60, 301))                           # mean 180 snippets
    duration = T * SNIPPET
    start = float(rng.uniform(0, duration / 2))
    end = float(min(duration, start + rng.uniform(1.0, duration / 2)))
    return {"name": f"video_{i}", "split": "train" if i < n_train else "test",
            "feats": rng.random((T, 2048), dtype=np.float32), "label": i % NUM_CLASSES,
            "segment": (start, end), "duration": duration}


def as_video(d):
    labels = torch.zeros(NUM_CLASSES)
    labels[d["label"]] = 1.0
    return Video(d["name"], d["split"], torch.from_numpy(d["feats"]), labels, d["duration"],
                 [(d["label"], *d["segment"])])


def videos(n, n_train):
    for i in range(n):
        yield synthetic_video(i, n_train)


def classes():
    return [f"class_{k:03d}" for k in range(NUM_CLASSES)]


def write_hdf5_file(path, n, n_train, fp16):
    write_hdf5(path, classes(), (as_video(d) for d in videos(n, n_train)), SNIPPET, fp16=fp16,
               dataset="activitynet12", source="bench_data.py synthetic", total=n)


def object_array(values):
    """1-D object array of arbitrary items (lists stay lists)."""
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return arr


def write_wtalc(root, n, n_train):
    """The W-TALC bundle: one pickled object array, so all features are in RAM while writing."""
    feat_path, ann = wtalc_paths(root, PRESET["bundle"])
    os.makedirs(ann)
    subset = {"train": PRESET["train_subset"], "test": PRESET["test_subset"]}
    feats, meta = object_array([None] * n), []
    for i, d in enumerate(videos(n, n_train)):
        feats[i] = d.pop("feats")                           # (T, 2048)
        meta.append(d)

    def save(name, values):
        np.save(os.path.join(ann, name + ".npy"), object_array(values), allow_pickle=True)

    np.save(os.path.join(ann, "videoname.npy"), np.array([d["name"] for d in meta]))
    np.save(os.path.join(ann, "subset.npy"), np.array([subset[d["split"]] for d in meta]))
    np.save(os.path.join(ann, "classlist.npy"), np.array(classes()))
    np.save(os.path.join(ann, "duration.npy"), np.array([d["duration"] for d in meta]))
    save("segments", [[list(d["segment"])] for d in meta])
    save("labels", [[classes()[d["label"]]] for d in meta])
    save("labels_all", [[classes()[d["label"]]] for d in meta])
    np.save(feat_path, feats, allow_pickle=True)


def write_folders(root, n, n_train):
    database, splits = {}, {"train": [], "test": []}
    for d in videos(n, n_train):
        for stream, part in (("rgb", d["feats"][:, :1024]), ("flow", d["feats"][:, 1024:])):
            folder = os.path.join(root, "features", d["split"], stream)
            os.makedirs(folder, exist_ok=True)
            np.save(os.path.join(folder, d["name"] + ".npy"), np.ascontiguousarray(part))
        splits[d["split"]].append(d["name"])
        database[d["name"]] = {"subset": d["split"], "duration": d["duration"], "annotations": [
            {"segment": list(d["segment"]), "label": classes()[d["label"]]}]}
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump({"database": database}, f)
    for split, names in splits.items():
        with open(os.path.join(root, f"split_{split}.txt"), "w") as f:
            f.write("\n".join(names) + "\n")


def where(data_dir, layout):
    """(path, layout, memory) a bench layout loads."""
    return {"hdf5": (os.path.join(data_dir, "f32.h5"), "hdf5", "stream"),
            "hdf5-fp16": (os.path.join(data_dir, "f16.h5"), "hdf5", "stream"),
            "hdf5-ram16": (os.path.join(data_dir, "f32.h5"), "hdf5", "float16"),
            "wtalc": (os.path.join(data_dir, "wtalc"), "wtalc", "float32"),
            "folders": (os.path.join(data_dir, "folders"), "folders", "stream")}[layout]


def make_data(data_dir, layout, n, n_train):
    path, _, _ = where(data_dir, layout)
    if os.path.exists(path):
        return path
    t = time.time()
    if layout in ("hdf5", "hdf5-ram16"):
        write_hdf5_file(path, n, n_train, fp16=False)
    elif layout == "hdf5-fp16":
        write_hdf5_file(path, n, n_train, fp16=True)
    elif layout == "wtalc":
        write_wtalc(path, n, n_train)
    else:
        write_folders(path, n, n_train)
    print(f"wrote {layout} data in {time.time() - t:.0f} s: {path} ({disk_size(path) / GB:.2f} GB)",
          flush=True)
    return path


def disk_size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


# ---------------------------------------------------------------------------
# One layout, in a child process
# ---------------------------------------------------------------------------

def proc_status(key):
    """Bytes of a /proc/self/status line: VmRSS (resident now) or VmHWM (peak resident).

    VmHWM is this process's own peak; ru_maxrss would also count the parent's RSS at fork."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def run_layout(data_dir, layout, hidden_dim):
    """Load, read once, train one epoch per phase; returns a dict of measurements."""
    path, kind, memory = where(data_dir, layout)
    quiet = lambda *a: None  # noqa: E731
    rss_start = proc_status("VmRSS")
    t = time.time()
    data = load_dataset(path, PRESET["bundle"], PRESET["train_subset"], PRESET["test_subset"],
                        kind, memory=memory, layout_seconds=layout_snippet_seconds(), log=quiet)
    load_s = time.time() - t
    rss_loaded = proc_status("VmRSS")
    train = SnippetDataset(data.split("train"), data.snippet_seconds)
    snippets = sum(v.num_snippets for v in train.videos)

    t = time.time()
    for i in range(len(train)):
        item = train[i]                                     # rgb, flow (T, 1024) float32
        assert item["rgb"].dtype == torch.float32
    read_s = time.time() - t

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    classifier = UntrimmedNetClassifier(len(data.classes), 1024)
    model = EMMIL(len(data.classes), 1024, hidden_dim)
    t = time.time()
    trainers = {"C": ClassifierTrainer(classifier, train, 1e-4, 1, cpu, 0),
                "M": EMTrainer(model, train, 1e-4, 0.15, 1, cpu, 0, log=quiet)}
    trainers["E"] = trainers["M"]
    for phase in parse_schedule("C:1,M1:1,E:1,M2:1", 4.0):
        trainers[phase.step].train_epoch(phase)
    train_s = time.time() - t
    return {"layout": layout, "videos": len(data.videos), "train_videos": len(train),
            "disk_gb": disk_size(path) / GB, "load_s": load_s,
            "rss_start_gb": rss_start / GB, "rss_loaded_gb": rss_loaded / GB,
            "peak_rss_gb": proc_status("VmHWM") / GB,
            "ru_maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB,
            "read_snippets_per_s": snippets / read_s,
            "train_snippets_per_s": 4 * snippets / train_s, "train_s": train_s}


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help=f"fraction of ActivityNet1.2's {FULL_VIDEOS} videos")
    p.add_argument("--layouts", default="hdf5,hdf5-fp16,wtalc",
                   help=f"comma-separated, from {','.join(LAYOUTS)}")
    p.add_argument("--dir", default=None, help="where the data goes (default: a temporary folder, "
                                               "deleted at the end)")
    p.add_argument("--hidden-dim", type=int, default=256, help="EM-MIL trunk width (run.py: 256)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (0: torch's default); 1 keeps timings stable on a shared "
                        "machine, where OpenMP threads waiting for a busy core slow small "
                        "ops a hundredfold")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--make", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:                                          # one layout, report as JSON
        print(json.dumps(run_layout(args.dir, args.child, args.hidden_dim)), flush=True)
        return 0
    n = max(4, round(FULL_VIDEOS * args.scale))
    n_train = 2 * n // 3
    if args.make:                                           # write one layout's data
        make_data(args.dir, args.make, n, n_train)
        return 0
    layouts = args.layouts.split(",")
    for layout in layouts:
        if layout not in LAYOUTS:
            p.error(f"--layouts: unknown {layout!r}")
    data_dir = args.dir or tempfile.mkdtemp(prefix="bench-data-")
    os.makedirs(data_dir, exist_ok=True)
    print(f"{n} videos ({n_train} train), data in {data_dir}", flush=True)
    results = []
    try:
        for layout in layouts:
            # writing (all of W-TALC's features are in RAM then) and measuring: child processes,
            # so that this one stays small
            me = [sys.executable, os.path.abspath(__file__), "--dir", data_dir,
                  "--scale", str(args.scale)]
            subprocess.run(me + ["--make", layout], check=True)
            r = subprocess.run(me + ["--child", layout, "--hidden-dim", str(args.hidden_dim),
                                     "--threads", str(args.threads)], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{layout}: failed\n{r.stderr}", flush=True)
                continue
            results.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"\nscale {args.scale:g}: {n} videos, hidden {args.hidden_dim}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'layout':<11} {'disk GB':>8} {'load s':>7} {'RSS loaded':>11} {'peak RSS':>9} "
          f"{'read snip/s':>12} {'train snip/s':>13}")
    for r in results:
        print(f"{r['layout']:<11} {r['disk_gb']:8.2f} {r['load_s']:7.1f} {r['rss_loaded_gb']:9.2f}GB "
              f"{r['peak_rss_gb']:7.2f}GB {r['read_snippets_per_s']:12.0f} "
              f"{r['train_snippets_per_s']:13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
