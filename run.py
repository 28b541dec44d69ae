"""Train EM-MIL, localise actions on the test split, evaluate. See README.md.

    python run.py                                   # embedded synthetic default
    python run.py --dataset thumos14 --data-root DIR
"""
import dataclasses
import os
import sys
import time

import numpy as np
import torch

import evaluate
import synthetic
from dataset import SnippetDataset, collate, load_wtalc
from detection import detect_video, write_results_json, write_results_txt, COLUMNS
from em_trainer import EMTrainer, format_schedule, parse_schedule, train_video_classifier
from model import EMMIL, UntrimmedNetClassifier
from opts import parse_opts, save_opts
from utils import InputError, Logger, atomic_torch_save, atomic_write_json, resolve_device, set_seed

import pandas as pd

DRY_RUN_VIDEOS = 4


# 1. setup -------------------------------------------------------------------

def check_output_dir(path, overwrite):
    if os.path.isfile(path):
        raise InputError(f"{path}: --output-dir is a file")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise InputError(f"{path}: output folder is not empty; choose another --output-dir "
                         f"or pass --overwrite")


# 2. data --------------------------------------------------------------------

def load_data(opts, log):
    root = opts.data_root
    if opts.dataset == "synthetic":
        root = synthetic.ensure(root, opts.synthetic_videos, opts.synthetic_max_seconds, log=log)
    max_videos = DRY_RUN_VIDEOS if opts.dry_run else None
    data = load_wtalc(root, opts.bundle, opts.train_subset, opts.test_subset, max_videos)
    if len(data.classes) != opts.num_classes:
        log(f"note: {len(data.classes)} classes in the annotations "
            f"(preset {opts.dataset} expects {opts.num_classes})")
    gt = evaluate.load_ground_truth(data.annotations_dir, subset="test")
    test_names = [v.name for v in data.split("test")]
    gt = dataclasses.replace(gt, videos=test_names,
                             segments=gt.segments[gt.segments.video.isin(test_names)],
                             ambiguous=gt.ambiguous[gt.ambiguous.video.isin(test_names)])
    return data, gt


# 6. detect ------------------------------------------------------------------

@torch.no_grad()
def localise(model, classifier, test_set, classes, opts, device):
    """Detections of every test video (DataFrame) and the video scores (N, K)."""
    model.eval()
    classifier.eval()
    found, video_scores = [], []
    for i in range(len(test_set)):
        b = collate([test_set[i]])
        rgb, flow, mask = b["rgb"].to(device), b["flow"].to(device), b["mask"].to(device)
        v = classifier(rgb, flow, mask)[0].cpu().numpy()                   # (K,)
        q, p = model(rgb, flow)                                            # (1, T), (1, T, K)
        found.append(detect_video(
            b["names"][0], q[0].cpu().numpy().astype(np.float64),
            p[0].cpu().numpy().astype(np.float64), v, lam=opts.lam,
            cls_threshold=opts.cls_threshold, loc_threshold=opts.loc_threshold,
            snippet_seconds=opts.snippet_seconds, duration=b["durations"][0], classes=classes))
        video_scores.append(v)
    detections = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=COLUMNS)
    return detections, np.stack(video_scores)


# 7. evaluate ----------------------------------------------------------------

def evaluate_run(detections, video_scores, test_videos, gt, opts):
    res = evaluate.evaluate_detection(detections, gt, opts.tiou, protocol=opts.eval_protocol)
    labels = torch.stack([v.labels for v in test_videos]).numpy()
    cmap = evaluate.classification_map(video_scores, labels)
    return evaluate.build_metrics(opts.eval_protocol, opts.tiou, res["mAP"], opts.averages, cmap)


def main(argv=None):
    # 1. setup
    opts = parse_opts(argv)
    log = Logger()
    check_output_dir(opts.output_dir, opts.overwrite)
    schedule = parse_schedule(opts.schedule, opts.stage2_lr_mult)
    set_seed(opts.seed)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = resolve_device(opts.device)
    t_start = time.time()

    # 2. data (read and checked before anything is written)
    data, gt = load_data(opts, log)
    train_set = SnippetDataset(data.split("train"), opts.snippet_seconds)
    test_set = SnippetDataset(data.split("test"), opts.snippet_seconds)
    os.makedirs(opts.output_dir, exist_ok=True)
    log.open(os.path.join(opts.output_dir, "log.txt"))
    save_opts(opts, os.path.join(opts.output_dir, "opts.json"))
    log(f"data: {opts.dataset} from {opts.data_root}: {len(train_set)} train / "
        f"{len(test_set)} test videos, {len(data.classes)} classes, "
        f"{opts.snippet_seconds:g} s per snippet; device {device}")
    log(f"schedule: {format_schedule(schedule)}")

    # 3. models
    K = len(data.classes)
    model = EMMIL(K, opts.feature_dim, opts.hidden_dim).to(device)
    classifier = UntrimmedNetClassifier(K, opts.feature_dim).to(device)

    # 4. video classifier
    train_video_classifier(classifier, train_set, opts.cls_epochs, opts.cls_lr, opts.batch_size,
                           device, opts.seed, log=log)
    atomic_torch_save(classifier.state_dict(), os.path.join(opts.output_dir, "classifier.pt"))

    # 5. EM training
    trainer = EMTrainer(model, train_set, opts.lr, opts.gamma, opts.batch_size, device,
                        opts.seed, log=log)
    trainer.fit(schedule)
    atomic_torch_save(model.state_dict(), os.path.join(opts.output_dir, "em_mil.pt"))

    # 6. detect on the test split (used only here: no model selection on it)
    detections, video_scores = localise(model, classifier, test_set, data.classes, opts, device)
    write_results_json(os.path.join(opts.output_dir, "results.json"), detections)
    if opts.thumos_ids:
        write_results_txt(os.path.join(opts.output_dir, "results.txt"), detections, gt.class_ids)

    # 7. evaluate
    metrics = evaluate_run(detections, video_scores, data.split("test"), gt, opts)
    atomic_write_json(os.path.join(opts.output_dir, "metrics.json"), metrics)

    # 8. report
    log(f"{len(detections)} detections on {len(test_set)} test videos "
        f"(protocol {opts.eval_protocol})")
    log(evaluate.format_table(metrics))
    log(f"wall time {time.time() - t_start:.0f} s; everything is in {opts.output_dir}")
    log.close()
    return 0


def cli(argv=None):
    try:
        return main(argv)
    except (InputError, evaluate.InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
