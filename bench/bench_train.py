"""Training and test-pass speed: the optimised trainer against the plain per-video reference.

    python bench/bench_train.py [--scale full|small] [--device cpu|cuda] [--amp]

THUMOS-shaped synthetic data in memory (full: 200 train / 212 test videos, mean length about
370 snippets, long tail to about 2,500; small: 40 / 40). Prints, per phase: seconds,
snippets/s, achieved GFLOP/s on the FLOPs the phase needs, the fraction of this machine's
measured float32 matmul rate, and the speed-up over the reference; then the projected time of
the whole released schedule.
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
from dataset import SnippetDataset, Video  # noqa: E402
from detection import (PostProcess, detect_batch, localisation_scores,  # noqa: E402
                       segments_frame)
from em_trainer import ClassifierTrainer, EMTrainer  # noqa: E402
from model import EMMIL, UntrimmedNetClassifier, video_classifier_loss  # noqa: E402
from ref_released_training import reference_epoch, released_copy  # noqa: E402
from opts import build_parser  # noqa: E402
from test_pass import score_videos  # noqa: E402
from schedule import Phase  # noqa: E402

K, D, H = 20, 1024, 256
POST = PostProcess.from_opts(build_parser().parse_args([]))     # opts.py's defaults


def make_videos(n, rng, split):
    lengths = np.clip(rng.lognormal(np.log(280), 0.75, size=n), 20, 2500).astype(int)
    videos = []
    for i, T in enumerate(lengths):
        labels = torch.zeros(K)
        labels[rng.choice(K, size=rng.integers(1, 3), replace=False)] = 1
        feats = torch.from_numpy(rng.random((T, 2 * D), dtype=np.float32))
        videos.append(Video(f"{split}_{i}", split, feats, labels, T * 0.64))
    return videos


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


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


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
        mask = torch.ones(1, v.features.shape[0], dtype=torch.bool)
        scores = clf(v.features[None, :, :D], v.features[None, :, D:], mask)
        video_classifier_loss(scores, v.labels[None]).backward()
        opt.step()


@torch.no_grad()
def reference_test_pass(model, clf, videos):
    """The released test loop: per video the released layers (model: a ReleasedEMMIL) and
    the classifier module, then the per-snippet loop."""
    for v in videos:
        rgb, flow = v.features[None, :, :D], v.features[None, :, D:]
        mask = torch.ones(1, v.features.shape[0], dtype=torch.bool)
        vs = clf(rgb, flow, mask)[0].numpy()
        q_rgb, q_flow = model.key_streams(rgb, flow)
        p_rgb, p_flow = model.cls_streams(rgb, flow)
        q, p = (q_rgb + q_flow) / 2, (p_rgb + p_flow) / 2
        detect_loop(localisation_scores(q[0].numpy(), p[0].numpy(), 0.8), vs, 0.15, 0.05, 0.64,
                    v.duration)


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["full", "small"], default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="bfloat16 products in the optimised path")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference loop")
    a = ap.parse_args()
    device = torch.device(a.device)
    rng = np.random.default_rng(0)
    n_train, n_test = (200, 212) if a.scale == "full" else (40, 40)
    train, test = make_videos(n_train, rng, "train"), make_videos(n_test, rng, "test")
    n_snip = sum(v.features.shape[0] for v in train)
    n_test_snip = sum(v.features.shape[0] for v in test)
    rate = matmul_rate(device)
    print(f"scale {a.scale}: {n_train} train videos ({n_snip} snippets), {n_test} test "
          f"({n_test_snip}); device {device}; threads {torch.get_num_threads()}; amp {a.amp}")
    print(f"measured float32 matmul rate: {rate:.0f} GFLOP/s")

    torch.manual_seed(0)
    base = EMMIL(K).to(device)
    dataset = SnippetDataset(train, 0.64)
    ours = EMMIL(K).to(device)
    ours.load_state_dict(base.state_dict())
    trainer = EMTrainer(ours, dataset, 1e-4, 0.15, 1, device, seed=1, log=lambda *x: None,
                        amp=a.amp)
    phases = {"M1": Phase(1, "M", 1, 1.0), "E": Phase(11, "E", 1, 1.0), "M2": Phase(21, "M", 2, 4.0)}
    # warm-up: oneDNN builds a kernel for every new video length once per process; over the
    # 65 epochs of a run that cost is paid once, so it is kept out of the per-epoch figures
    warm = EMMIL(K).to(device)
    EMTrainer(warm, dataset, 1e-4, 0.15, 1, device, seed=1, log=lambda *x: None,
              amp=a.amp).train_epoch(Phase(1, "E", 1, 1.0))
    t_ours = {name: timed(lambda ph=ph: trainer.train_epoch(ph), device)
              for name, ph in phases.items()}
    clf = UntrimmedNetClassifier(K).to(device)
    cls_trainer = ClassifierTrainer(clf, dataset, 1e-4, 1, device, seed=1, amp=a.amp)
    t_ours["cls"] = timed(lambda: cls_trainer.train_epoch(Phase(1, "C", 0, 1.0)), device)
    t_ours["test"] = timed(lambda: test_pass(ours, clf, test, device), device)

    t_ref = {}
    if not a.no_reference and device.type == "cpu":
        ref = released_copy(base)          # the released torch layers, the same weights
        opts = {"M": torch.optim.Adam(ref.cls_parameters(), lr=1e-4),
                "E": torch.optim.Adam(ref.key_parameters(), lr=1e-4)}
        order = list(range(len(train)))
        for name, ph in phases.items():
            t_ref[name] = timed(lambda ph=ph: reference_epoch(ref, train, ph, 0.15, opts, order,
                                                              1e-4), device)
        ref_clf = UntrimmedNetClassifier(K)
        ref_opt = torch.optim.Adam(ref_clf.parameters(), lr=1e-4)
        t_ref["cls"] = timed(lambda: reference_classifier_epoch(ref_clf, train, ref_opt, order),
                             device)
        t_ref["test"] = timed(lambda: reference_test_pass(ref, ref_clf, test), device)

    print(f"{'phase':<6} {'seconds':>8} {'snippets/s':>11} {'GFLOP/s':>8} {'of matmul':>10}"
          f" {'reference s':>12} {'speed-up':>9}")
    for name, t in t_ours.items():
        snippets = n_test_snip if name == "test" else n_snip
        gflops = needed_flops(name, snippets) / t / 1e9
        ref_t = t_ref.get(name)
        print(f"{name:<6} {t:8.2f} {snippets / t:11.0f} {gflops:8.1f} {gflops / rate:10.0%}"
              f" {'' if ref_t is None else f'{ref_t:12.2f}':>12}"
              f" {'' if ref_t is None else f'{ref_t / t:8.2f}x':>9}")
    t_vec, t_loop, n_det = time_detection(test, rng)
    print(f"detection alone on the {n_test} test videos ({n_det} segments; median of several"
          f" runs): vectorised {t_vec * 1e3:.1f} ms, per-snippet loop {t_loop * 1e3:.0f} ms,"
          f" speed-up {t_loop / t_vec:.0f}x")
    projected = schedule_seconds(t_ours)
    print(f"projected whole schedule (65 EM + 45 classifier epochs + test): {projected:.0f} s")
    if t_ref:
        ref_all = schedule_seconds(t_ref)
        print(f"reference, the same schedule: {ref_all:.0f} s; speed-up {ref_all / projected:.2f}x")
        ref_em = schedule_seconds(t_ref, em_only=True)
        ours_em = schedule_seconds(t_ours, em_only=True)
        print(f"EM epochs only: ours {ours_em:.0f} s, reference {ref_em:.0f} s, "
              f"speed-up {ref_em / ours_em:.2f}x")


if __name__ == "__main__":
    main()
