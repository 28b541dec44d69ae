"""Training and test-pass speed: the optimised trainer against the released loop.

    python bench/bench_train.py [--scale full|small|tiny] [--device cpu|cuda] [--amp]
                                [--measure-schedule] [--no-reference]

THUMOS-shaped synthetic data in memory (full: 200 train / 212 test videos, mean length about
370 snippets, long tail to about 2,500; small: 40 / 40; tiny: 4 / 4 short videos, a smoke
test). Side by side on the same device: our one-video step, the same step padded to a few
length buckets (buckets.py: fixed shapes, the unit a CUDA graph would capture; run eagerly
here), and the released loop (tests/ref_released_training.py: the released torch layers and
train.py's per-video loop, with cuDNN off as released). Prints, per phase: seconds,
snippets/s, achieved GFLOP/s on the FLOPs the phase needs, the fraction of this machine's
measured float32 matmul rate, the padded step's seconds, the reference's and the speed-up;
then the profiler's view of each path (bench/launch_share.py: operations per step, the
share of the time spent issuing them); then the projected time of the whole released
schedule and, with --measure-schedule, its measured wall time.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from training.buckets import bucket_lengths, padding_overhead  # noqa: E402
from dataset import Video  # noqa: E402
from training.batches import SnippetDataset  # noqa: E402
from detection import (PostProcess, detect_batch, localisation_scores,  # noqa: E402
                       segments_frame)
from em_trainer import ClassifierTrainer, EMTrainer  # noqa: E402
from launch_share import empty_op_seconds, epoch_shares, timed  # noqa: E402
from model import EMMIL, UntrimmedNetClassifier, video_classifier_loss  # noqa: E402
from ref_released_training import reference_epoch, released_copy  # noqa: E402
from opts import build_parser  # noqa: E402
from pipeline.localise import score_videos  # noqa: E402
from training.schedule import Phase, dry_run_schedule, run_schedule  # noqa: E402

K, D, H = 20, 1024, 256
OPTS = build_parser().parse_args([])                            # opts.py's defaults
POST = PostProcess.from_opts(OPTS)
MAX_PADDING = 0.125      # the buckets' padding bound: 11 buckets for THUMOS14's lengths
SCALES = {"full": (200, 212, 280), "small": (40, 40, 280), "tiny": (4, 4, 30)}
#         train videos, test videos, median length (snippets)


def make_videos(n, rng, split, median=280):
    lengths = np.clip(rng.lognormal(np.log(median), 0.75, size=n), 20, 2500).astype(int)
    videos = []
    for i, T in enumerate(lengths):
        labels = torch.zeros(K)
        labels[rng.choice(K, size=rng.integers(1, 3), replace=False)] = 1
        feats = torch.from_numpy(rng.random((T, 2 * D), dtype=np.float32))
        videos.append(Video(f"{split}_{i}", split, feats, labels, T * 0.64))
    return videos


def on_device(videos, device):
    """The videos with their features and labels on `device` (the reference's inputs)."""
    return [Video(v.name, v.split, v.features.to(device), v.labels.to(device), v.duration)
            for v in videos]


def matmul_rate(device, seconds=1.0, repeats=3):
    """Measured float32 GFLOP/s of a large square matmul: the best of `repeats` runs of
    `seconds` each (one run alone varies by 10 % on a shared 2-core machine)."""
    a = torch.rand(2048, 2048, device=device)
    b = torch.rand(2048, 2048, device=device)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            n += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, n * 2 * 2048 ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


# FLOPs each phase needs per snippet (multiply-add = 2 FLOPs). c: one conv trunk forward.
CONV = 2 * 3 * D * H


def needed_flops(phase, snippets):
    """Per snippet, both streams: a trained trunk costs forward + weight gradient (2 c), its
    tail forward + both gradients (3 x 2 H out); a frozen branch computed once costs c."""
    if phase == "M1":
        per = 2 * (2 * CONV + 3 * 2 * H * K)
    elif phase == "E":
        per = 2 * (2 * CONV + 3 * 2 * H) + 2 * (CONV + 2 * H * K)       # + frozen p, once
    elif phase == "M2":
        per = 2 * (2 * CONV + 3 * 2 * H * K) + 2 * (CONV + 2 * H)       # + frozen q, once
    elif phase == "cls":
        per = 2 * 2 * 2 * D * (K + 1)           # forward + weight gradient, both streams
    else:   # test pass: all four branches and the classifier, forward only
        per = 2 * (2 * CONV + 2 * H * (K + 1)) + 2 * 2 * D * (K + 1)
    return per * snippets


def test_pass(model, clf, videos, device):
    """run.py's test pass: the networks (score_videos), then detection across videos."""
    curves, video_scores = score_videos(model, clf, videos, device, lam=0.8)
    detect_batch(curves, video_scores, POST, snippet_seconds=0.64,
                 durations=[v.duration for v in videos])


def reference_classifier_epoch(clf, videos, opt, order):
    """The released train_unt.py loop (with the corrected sign): one video at a time through
    the nn.Module and autograd, plain Adam."""
    for i in order:
        v = videos[i]
        if v.labels.sum() == 0:
            continue
        opt.zero_grad()
        mask = torch.ones(1, v.features.shape[0], dtype=torch.bool, device=v.features.device)
        scores = clf(v.features[None, :, :D], v.features[None, :, D:], mask)
        video_classifier_loss(scores, v.labels[None]).backward()
        opt.step()


@torch.no_grad()
def reference_test_pass(model, clf, videos):
    """The released test loop: per video the released layers (model: a ReleasedEMMIL) and
    the classifier module, then the per-snippet loop."""
    for v in videos:
        rgb, flow = v.features[None, :, :D], v.features[None, :, D:]
        mask = torch.ones(1, v.features.shape[0], dtype=torch.bool, device=v.features.device)
        vs = clf(rgb, flow, mask)[0].cpu().numpy()
        q_rgb, q_flow = model.key_streams(rgb, flow)
        p_rgb, p_flow = model.cls_streams(rgb, flow)
        q, p = (q_rgb + q_flow) / 2, (p_rgb + p_flow) / 2
        detect_loop(localisation_scores(q[0].cpu().numpy(), p[0].cpu().numpy(), 0.8), vs, 0.15,
                    0.05, 0.64, v.duration)


def detect_loop(scores, video_scores, cls_threshold, loc_threshold, snippet_seconds, duration):
    """The released per-class, per-snippet loop (with our fixes), as the baseline of detection."""
    out = []
    chosen = [c for c in range(scores.shape[1]) if video_scores[c] >= cls_threshold] or \
        [int(np.argmax(video_scores))]
    for c in chosen:
        s = scores[:, c]
        norm = (s - s.mean()) / ((s.max() - s.min()) or 1.0)
        start = None
        for t in range(len(s) + 1):
            on = t < len(s) and norm[t] > loc_threshold
            if on and start is None:
                start = t
            elif not on and start is not None:
                conf = float(np.mean(s[start:t])) * video_scores[c]
                out.append((c, start * snippet_seconds, min(t * snippet_seconds, duration), conf))
                start = None
    return out


def time_detection(videos, rng):
    """Detection alone (after the networks): detect_batch against the per-snippet loop."""
    def curve(T):      # smooth random curves (T, K), like real localisation scores
        x = np.cumsum(rng.normal(size=(T, K)), axis=0)
        return 1 / (1 + np.exp(-(x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)))
    cases = [(curve(v.features.shape[0]), rng.dirichlet(np.ones(K)) * 3, v.duration)
             for v in videos]
    names = [str(c) for c in range(K)]

    def vectorised():
        found = detect_batch([c[0] for c in cases], np.stack([c[1] for c in cases]), POST,
                             snippet_seconds=0.64, durations=[c[2] for c in cases])
        return len(segments_frame([f"v{i}" for i in range(len(cases))], found, names))

    def loop():
        return sum(len(detect_loop(s, vs, 0.15, 0.05, 0.64, d)) for s, vs, d in cases)

    def median_time(fn, repeats):      # a few milliseconds: the median of several runs
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            n = fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times)), n

    (t_vec, n_vec), (t_loop, n_loop) = median_time(vectorised, 7), median_time(loop, 3)
    assert n_vec == n_loop, (n_vec, n_loop)
    return t_vec, t_loop, n_vec


def schedule_seconds(t, em_only=False):
    """The released schedule from per-epoch times: 10 M1, 28 E, 27 M2 epochs, then (unless
    em_only) 45 classifier epochs and one test pass."""
    em = 10 * t["M1"] + 28 * t["E"] + 27 * t["M2"]
    return em if em_only else em + 45 * t["cls"] + t["test"]




def schedule_flops(n_snip, n_test_snip, em_only=False):
    """The FLOPs the whole released schedule needs (as the per-phase figures count them)."""
    t = {name: needed_flops(name, n_snip) for name in ("M1", "E", "M2", "cls")}
    t["test"] = needed_flops("test", n_test_snip)
    return schedule_seconds(t, em_only)


PHASES = {"M1": Phase(1, "M", 1, 1.0), "E": Phase(11, "E", 1, 1.0), "M2": Phase(21, "M", 2, 4.0)}


def em_trainer(model, dataset, device, amp, buckets=None):
    return EMTrainer(model, dataset, OPTS.lr, OPTS.gamma, 1, device, seed=1,
                     log=lambda *x: None, amp=amp, buckets=buckets)


def time_phases(trainer, device):
    """Seconds of one epoch of each EM phase (in the schedule's order)."""
    return {name: timed(lambda ph=ph: trainer.train_epoch(ph), device)
            for name, ph in PHASES.items()}


def profile_phases(trainer, device, seconds, op_seconds):
    """bench/launch_share.py's figures of one more epoch of each EM phase."""
    steps = len(trainer.dataset)
    return {name: epoch_shares(lambda ph=ph: trainer.train_epoch(ph), device, steps,
                               seconds[name], op_seconds) for name, ph in PHASES.items()}


def reference_times(base, train, test, device):
    """Per phase, one epoch of the released loops on `device` (cuDNN off, as released)."""
    ref = released_copy(base).to(device)       # the released torch layers, the same weights
    train, test = on_device(train, device), on_device(test, device)
    opts = {"M": torch.optim.Adam(ref.cls_parameters(), lr=OPTS.lr),
            "E": torch.optim.Adam(ref.key_parameters(), lr=OPTS.lr)}
    order = list(range(len(train)))
    t = {}
    with torch.backends.cudnn.flags(enabled=False):
        for name, ph in PHASES.items():
            t[name] = timed(lambda ph=ph: reference_epoch(ref, train, ph, OPTS.gamma, opts,
                                                          order, OPTS.lr), device)
        ref_clf = UntrimmedNetClassifier(K).to(device)
        ref_opt = torch.optim.Adam(ref_clf.parameters(), lr=OPTS.cls_lr)
        t["cls"] = timed(lambda: reference_classifier_epoch(ref_clf, train, ref_opt, order),
                         device)
        t["test"] = timed(lambda: reference_test_pass(ref, ref_clf, test), device)
    return t


def measured_schedule(dry):
    """The released schedule (opts.py's defaults: --cls-epochs, then --schedule) or, dry,
    one epoch of each phase (as run.py --dry-run)."""
    if dry:
        return run_schedule(1, dry_run_schedule(OPTS.schedule), OPTS.stage2_lr_mult)
    return run_schedule(OPTS.cls_epochs, OPTS.schedule, OPTS.stage2_lr_mult)


def measure_schedule(train, test, device, amp, buckets=None, dry=False):
    """Wall seconds of measured_schedule(dry) from fresh networks, then the test pass."""
    def run():
        torch.manual_seed(1)
        model, clf = EMMIL(K).to(device), UntrimmedNetClassifier(K).to(device)
        dataset = SnippetDataset(train, 0.64)
        trainers = {"C": ClassifierTrainer(clf, dataset, OPTS.cls_lr, 1, device, seed=1,
                                           amp=amp)}
        trainers["M"] = trainers["E"] = em_trainer(model, dataset, device, amp, buckets)
        for phase in measured_schedule(dry):
            trainers[phase.step].train_epoch(phase)
        test_pass(model, clf, test, device)
    return timed(run, device)


def fmt(x, spec, width):
    return f"{'' if x is None else format(x, spec):>{width}}"


def print_phases(t_ours, t_pad, t_ref, n_snip, n_test_snip, rate):
    print(f"{'phase':<6} {'seconds':>8} {'snippets/s':>11} {'GFLOP/s':>8} {'of matmul':>10}"
          f" {'padded s':>9} {'reference s':>12} {'speed-up':>9}")
    for name, t in t_ours.items():
        snippets = n_test_snip if name == "test" else n_snip
        gflops = needed_flops(name, snippets) / t / 1e9
        ref_t = t_ref.get(name)
        print(f"{name:<6} {t:8.2f} {snippets / t:11.0f} {gflops:8.1f} {gflops / rate:10.0%}"
              f" {fmt(t_pad.get(name), '.2f', 9)} {fmt(ref_t, '.2f', 12)}"
              f" {fmt(None if ref_t is None else ref_t / t, '.2f', 8)}{'x' if ref_t else ' '}")


def print_profiles(profiles, op_seconds):
    print(f"profiler, one epoch a phase (host share = ops x {op_seconds * 1e6:.1f} us, the host"
          " cost of an empty op here, / wall):")
    print(f"{'path':<8} {'phase':<6} {'ops/step':>9} {'host share':>11} {'launch share':>13}"
          f" {'device busy':>12}")
    for path, rows in profiles.items():
        for name, r in rows.items():
            print(f"{path:<8} {name:<6} {r['ops_per_step']:9.0f} {r['host_share']:11.1%}"
                  f" {fmt(r['launch_share'], '.0%', 13)} {fmt(r['device_busy'], '.0%', 12)}")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=list(SCALES), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="bfloat16 products in the optimised path")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference loop")
    ap.add_argument("--measure-schedule", action="store_true",
                    help="also run the whole schedule (ours, unpadded and padded) and time it"
                         " (--scale tiny: one epoch a phase)")
    return ap.parse_args()


def print_schedule_totals(t_ours, t_ref, flops):
    """The whole schedule projected from the per-epoch times, ours against the reference's;
    returns the reference's projected seconds (None without it)."""
    projected = schedule_seconds(t_ours)
    print(f"projected whole schedule (65 EM + 45 classifier epochs + test): {projected:.1f} s"
          f" ({flops / projected / 1e9:.0f} GFLOP/s)")
    if not t_ref:
        return None
    ref_all = schedule_seconds(t_ref)
    print(f"reference, the same schedule: {ref_all:.1f} s; speed-up {ref_all / projected:.2f}x")
    ref_em = schedule_seconds(t_ref, em_only=True)
    ours_em = schedule_seconds(t_ours, em_only=True)
    print(f"EM epochs only: ours {ours_em:.1f} s, reference {ref_em:.1f} s, "
          f"speed-up {ref_em / ours_em:.2f}x")
    return ref_all


def print_measured_schedules(a, train, test, device, buckets, flops, ref_all):
    """--measure-schedule: the schedule run and timed, unpadded and padded."""
    dry = a.scale == "tiny"           # the smoke test: one epoch a phase, as --dry-run
    what = "dry-run schedule" if dry else "whole schedule"
    for path, b in (("ours", None), ("padded", buckets)):
        t = measure_schedule(train, test, device, a.amp, b, dry)
        speed = "" if dry else f" ({flops / t / 1e9:.0f} GFLOP/s" + (
            f"; reference projected {ref_all / t:.2f}x slower)" if ref_all else ")")
        print(f"measured {what}, {path}: {t:.1f} s{speed}")


def main():
    a = parse_args()
    device = torch.device(a.device)
    rng = np.random.default_rng(0)
    n_train, n_test, median = SCALES[a.scale]
    train, test = make_videos(n_train, rng, "train", median), make_videos(n_test, rng, "test",
                                                                          median)
    n_snip = sum(v.features.shape[0] for v in train)
    n_test_snip = sum(v.features.shape[0] for v in test)
    lengths = [v.features.shape[0] for v in train]
    buckets = bucket_lengths(lengths, MAX_PADDING)
    rate = matmul_rate(device, seconds=0.2 if a.scale == "tiny" else 1.0)
    print(f"scale {a.scale}: {n_train} train videos ({n_snip} snippets), {n_test} test "
          f"({n_test_snip}); device {device}; threads {torch.get_num_threads()}; amp {a.amp}")
    print(f"padded step: {len(buckets)} length buckets, padding "
          f"{padding_overhead(lengths, buckets):.1%} of the real snippets")
    print(f"measured float32 matmul rate: {rate:.0f} GFLOP/s")

    torch.manual_seed(0)
    base = EMMIL(K).to(device)
    dataset = SnippetDataset(train, 0.64)
    ours, padded = EMMIL(K).to(device), EMMIL(K).to(device)
    ours.load_state_dict(base.state_dict())
    padded.load_state_dict(base.state_dict())
    trainer, pad_trainer = (em_trainer(ours, dataset, device, a.amp),
                            em_trainer(padded, dataset, device, a.amp, buckets))
    # warm-up: oneDNN builds a kernel for every new video length once per process; over the
    # 65 epochs of a run that cost is paid once, so it is kept out of the per-epoch figures
    for b in (None, buckets):
        em_trainer(EMMIL(K).to(device), dataset, device, a.amp, b).train_epoch(PHASES["E"])
    t_ours, t_pad = time_phases(trainer, device), time_phases(pad_trainer, device)
    clf = UntrimmedNetClassifier(K).to(device)
    cls_trainer = ClassifierTrainer(clf, dataset, OPTS.cls_lr, 1, device, seed=1, amp=a.amp)
    t_ours["cls"] = timed(lambda: cls_trainer.train_epoch(Phase(1, "C", 0, 1.0)), device)
    t_ours["test"] = timed(lambda: test_pass(ours, clf, test, device), device)
    op_seconds = empty_op_seconds(device)
    profiles = {"ours": profile_phases(trainer, device, t_ours, op_seconds),
                "padded": profile_phases(pad_trainer, device, t_pad, op_seconds)}
    t_ref = {} if a.no_reference else reference_times(base, train, test, device)

    print_phases(t_ours, t_pad, t_ref, n_snip, n_test_snip, rate)
    print_profiles(profiles, op_seconds)
    t_vec, t_loop, n_det = time_detection(test, rng)
    print(f"detection alone on the {n_test} test videos ({n_det} segments; median of several"
          f" runs): vectorised {t_vec * 1e3:.1f} ms, per-snippet loop {t_loop * 1e3:.0f} ms,"
          f" speed-up {t_loop / t_vec:.0f}x")
    flops = schedule_flops(n_snip, n_test_snip)
    ref_all = print_schedule_totals(t_ours, t_ref, flops)
    if a.measure_schedule:
        print_measured_schedules(a, train, test, device, buckets, flops, ref_all)


if __name__ == "__main__":
    main()
