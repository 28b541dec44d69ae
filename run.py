"""Train EM-MIL, localise actions on the test split, evaluate. See README.md.

    python run.py                                   # embedded synthetic default
    python run.py --dataset thumos14 --data-root DIR
    python run.py --resume OUTPUT_DIR               # continue an interrupted run
    python run.py --seeds 1 2 3 4 5                 # mean ± std over seeds
"""
import argparse
import os
import pickle
import random
import re
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch

import annotation_reader
import evaluate
import synthetic
from dataset import SnippetDataset, load_dataset, read_class_list, stream_pair
from detection import (RELEASED_LAM, PostProcess, attention_scores, detect_batch,
                       localisation_scores, released_class_ids, segments_frame,
                       write_results_json, write_results_txt)
from em_trainer import ClassifierTrainer, EMTrainer, VideoInputs, progress
from model import EMMIL, UntrimmedNetClassifier, compute_dtype
from opts import layout_snippet_seconds, parse_opts, resume_opts, save_opts
from safe_io import InputError, atomic_write_json, atomic_write_text, one_line
from schedule import describe_epoch, format_schedule, run_schedule
from utils import Logger, atomic_torch_save, resolve_device, set_seed

DRY_RUN_VIDEOS = 4
LAST = "checkpoint_last.pt"


# 1. setup -------------------------------------------------------------------

# What this project writes into an output folder (and into a seed_<s> subfolder of one):
# --overwrite removes these names, and only these; a file of any other name is the user's
# and is left where it is.
RUN_FILES = re.compile(r"(opts\.json|log\.txt|metrics\.json|results\.json|results\.txt"
                       r"|em_mil\.pt|classifier\.pt|summary\.json|summary\.txt"
                       r"|checkpoint_last\.pt(\.link)?|checkpoint_\d+\.pt|\.tmp-.*)")
RUN_FOLDERS = re.compile(r"tensorboard|seed_\d+")
TENSORBOARD_FILES = re.compile(r"events\.out\.tfevents\..*")


def check_output_dir(path, overwrite):
    """The output folder can be created and written, and is empty unless --overwrite.
    Probes with a temporary file or folder, removed at once: nothing is left behind."""
    try:
        _check_output_dir(path, overwrite)
    except OSError as e:                                  # e.g. a folder that cannot be listed
        raise InputError(f"{path}: --output-dir cannot be used ({e.strerror})") from None


def _check_output_dir(path, overwrite):
    if os.path.lexists(path) and not os.path.isdir(path):
        raise InputError(f"{path}: --output-dir exists and is not a folder")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise InputError(f"{path}: output folder is not empty; choose another --output-dir, "
                         f"continue it with --resume {path}, or pass --overwrite")
    for name in os.listdir(path) if os.path.isdir(path) else []:
        if RUN_FILES.fullmatch(name) and os.path.isdir(os.path.join(path, name)) \
                and not os.path.islink(os.path.join(path, name)):
            raise InputError(f"{os.path.join(path, name)}: a folder where the run writes a file")
    ancestor = os.path.abspath(path)
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise InputError(f"{path}: --output-dir cannot be created: {ancestor} is not a folder")
    try:
        if ancestor == os.path.abspath(path):
            fd, probe = tempfile.mkstemp(dir=path, prefix=".tmp-probe")
            os.close(fd)
            os.remove(probe)
        else:
            os.rmdir(tempfile.mkdtemp(dir=ancestor, prefix=".tmp-probe"))
    except OSError as e:
        raise InputError(f"{path}: --output-dir is not writable ({e.strerror})") from None


def clear_earlier_run(folder):
    """Remove what an earlier run wrote into `folder` (RUN_FILES, RUN_FOLDERS), never
    following a link: a link of one of these names is removed itself."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isdir(path):
            if RUN_FILES.fullmatch(name) or RUN_FOLDERS.fullmatch(name):
                os.remove(path)
        elif RUN_FOLDERS.fullmatch(name):
            if name == "tensorboard":
                for event in os.listdir(path):
                    if TENSORBOARD_FILES.fullmatch(event):
                        os.remove(os.path.join(path, event))
            else:
                clear_earlier_run(path)
            if not os.listdir(path):
                os.rmdir(path)


def check_resume_folder(folder):
    """Before --resume writes: the folder is writable and its log and TensorBoard folder
    are not links (they are appended to, so they cannot be replaced)."""
    for name in ("log.txt", "tensorboard"):
        if os.path.islink(os.path.join(folder, name)):
            raise InputError(f"{os.path.join(folder, name)}: is a symbolic link; --resume "
                             f"never writes through one")
    check_output_dir(folder, overwrite=True)


def setup_torch(opts):
    set_seed(opts.seed)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return resolve_device(opts.device)


# 2. data --------------------------------------------------------------------

def load_data(opts, log):
    root = opts.data_root
    if opts.generate_synthetic:
        root = synthetic.ensure(root, opts.synthetic_videos, opts.synthetic_max_seconds, log=log)
    max_videos = DRY_RUN_VIDEOS if opts.dry_run else None
    classes = None if opts.classes == "annotations" else read_class_list(opts.classes)
    data = load_dataset(root, opts.bundle, opts.train_subset, opts.test_subset, opts.layout,
                        opts.annotations, max_videos, snippet_seconds=opts.snippet_seconds,
                        layout_seconds=layout_snippet_seconds(), memory=opts.memory,
                        classes=classes)
    return root, data


def split_validation(videos, fraction, seed):
    """(train, held-out) lists: a seeded random `fraction` of the training videos held out."""
    n_val = held_out_count(len(videos), fraction)
    order = np.random.default_rng(seed).permutation(len(videos))
    held = set(order[:n_val].tolist())
    return ([v for i, v in enumerate(videos) if i not in held],
            [v for i, v in enumerate(videos) if i in held])


def held_out_count(n_videos, fraction):
    return int(round(fraction * n_videos))


def check_data(opts, data):
    """The options that depend on the data, checked before anything is written."""
    train = data.split("train")
    width = {v.features.shape[1] // 2 for v in data.videos}
    if width and width != {opts.feature_dim}:
        raise InputError(f"--feature-dim {opts.feature_dim}: the features have "
                         f"{' or '.join(map(str, sorted(width)))} per stream")
    n_val = held_out_count(len(train), opts.val_fraction)
    if n_val >= len(train):
        raise InputError(f"--val-fraction {opts.val_fraction}: holds out {n_val} of the "
                         f"{len(train)} training videos, leaving none to train on")
    if opts.val_fraction and not n_val:
        raise InputError(f"--val-fraction {opts.val_fraction}: holds out none of the "
                         f"{len(train)} training videos")


def ground_truth(videos, classes, ambiguous):
    """Evaluation ground truth of videos [(name, [(class_index, start, end)])]."""
    names = {name for name, _ in videos}
    segments = pd.DataFrame([(name, classes[c], s, e) for name, segs in videos for c, s, e in segs],
                            columns=["video", "label", "start", "end"])
    amb = pd.DataFrame([a for a in ambiguous if a[0] in names], columns=["video", "start", "end"])
    return evaluate.GroundTruth(segments=segments, videos=[name for name, _ in videos],
                                classes=list(classes), ambiguous=amb,
                                class_ids=evaluate.class_ids(classes))


def evaluation_ground_truth(data, test_subset):
    """The ground truth of the test split, read from the annotation source itself by the one
    reader, as `python evaluate.py results.json --gt SOURCE` reads it: every annotated test
    video (those dropped for empty features too: their segments count as misses), segments
    as annotated (not clipped); the class list is the data's. An HDF5 file is its own
    annotation source: its test videos, dropped ones included. (--dry-run too is evaluated
    against every annotated test video, so its mAP is near 0.)"""
    if data.layout != "hdf5":
        ann = annotation_reader.read_annotations(data.source, test_subset)
        return evaluate.ground_truth_of(ann, test_subset, data.classes)
    videos = [(v.name, v.segments) for v in data.split("test")]
    videos += [(name, segs) for name, split, segs in data.dropped if split == "test"]
    return ground_truth(videos, data.classes, data.ambiguous)


def only_videos(gt, names):
    """The ground truth of some of its videos (names), in its own video order."""
    keep = set(names)
    return evaluate.GroundTruth(
        segments=gt.segments[gt.segments["video"].isin(keep)].reset_index(drop=True),
        videos=[v for v in gt.videos if v in keep], classes=gt.classes,
        ambiguous=gt.ambiguous[gt.ambiguous["video"].isin(keep)].reset_index(drop=True),
        class_ids=gt.class_ids)


# 3. checkpoints ---------------------------------------------------------------

def rng_state():
    np_state = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      *np_state[2:]]}


def set_rng_state(state):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def save_checkpoint(opts, position, model, classifier, em, cls):
    """Everything needed to continue after `position` completed epochs (classifier epochs
    first, then EM epochs). Written to a temporary file and renamed."""
    state = {"position": position, "model": model.state_dict(),
             "classifier": classifier.state_dict(), "em_trainer": em.state_dict() if em else None,
             "cls_trainer": cls.state_dict(), "rng": rng_state(), "opts": vars(opts)}
    last = os.path.join(opts.output_dir, LAST)
    if opts.save_every and position % opts.save_every == 0:
        # the numbered copy first, then `last` as a hard link to it: a kill in between
        # leaves `last` one epoch behind, and that epoch is redone (identically) on resume
        kept = os.path.join(opts.output_dir, f"checkpoint_{position:04d}.pt")
        atomic_torch_save(state, kept)
        tmp = last + ".link"
        if os.path.lexists(tmp):
            os.remove(tmp)
        try:
            os.link(kept, tmp)
            os.replace(tmp, last)
        except OSError:                      # a file system without hard links
            atomic_torch_save(state, last)
    else:
        atomic_torch_save(state, last)


def load_checkpoint(folder):
    """The last checkpoint of `folder` as a dict (tensors and plain values only)."""
    path = os.path.join(folder, LAST)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is several lines of advice; keep what it refused to build
        asked = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f"asks to build {asked.group(1)}" if asked else one_line(e)
        raise InputError(f"{path}: refused: not a checkpoint of this project ({what})") from None
    except Exception as e:
        raise InputError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a checkpoint of this project (a {type(state).__name__})")
    missing = {"position", "model", "classifier", "cls_trainer", "rng"} - set(state)
    if missing:
        raise InputError(f"{path}: not a checkpoint of this project (missing {sorted(missing)})")
    return state


def check_optimizer(opt):
    """Adam's loaded state fits its parameters (load_state_dict checks only the counts)."""
    for group in opt.param_groups:
        for key in ("lr", "eps", "weight_decay"):
            if not (isinstance(group.get(key), (int, float)) and np.isfinite(group[key])):
                raise ValueError(f"param group {key} is {group.get(key)!r}")
        betas = group.get("betas")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"param group betas is {betas!r}")
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if not torch.is_tensor(value):
                    raise ValueError(f"state {key} is a {type(value).__name__}")
                if key == "step" and value.numel() != 1:
                    raise ValueError("state step is not one number")
                if key != "step" and value.shape != p.shape:
                    raise ValueError(f"state {key} of shape {tuple(value.shape)} for a "
                                     f"parameter of shape {tuple(p.shape)}")


def restore(checkpoint, path, total, model, classifier, cls, em):
    """Load a checkpoint into the run's models, trainers and random streams; its position.
    Whatever does not fit this run is an InputError naming the part."""
    position = checkpoint["position"]
    if type(position) is not int or not 0 <= position <= total:
        raise InputError(f"{path}: position {str(position)[:40]!r} is not an epoch count "
                         f"in 0..{total}")

    def trainer(t):
        def load(state):
            t.load_state_dict(state)
            for opt in (t.opt.values() if isinstance(t.opt, dict) else [t.opt]):
                check_optimizer(opt)
        return load

    parts = [("model", model.load_state_dict), ("classifier", classifier.load_state_dict),
             ("cls_trainer", trainer(cls))]
    if em is not None:
        parts.append(("em_trainer", trainer(em)))
    parts.append(("rng", set_rng_state))
    for key, load in parts:
        try:
            load(checkpoint.get(key))
        except Exception as e:
            raise InputError(f"{path}: its {key} does not fit this run "
                             f"({type(e).__name__}: {one_line(e)})") from None
    return position


# 4. detection -----------------------------------------------------------------

@torch.no_grad()
def score_videos(model, classifier, videos, device, *, lam, method="emmil", amp=False,
                 show_progress=False):
    """The test pass: per video its localisation scores (T, K) (numpy float64) and the
    video scores (N, K). One video at a time, its features read once (a view in RAM)."""
    classifier.eval()
    if method == "emmil":
        key, cls = (model.branch_scorer(kind, compute_dtype(amp)) for kind in ("key", "cls"))
    curves, video_scores = [], []
    for v in progress(videos, len(videos), "detection", show_progress):
        xs = stream_pair(v.features).to(device)                           # (2, T, D)
        rgb, flow = xs[0][None], xs[1][None]                               # (1, T, D)
        mask = torch.ones(rgb.shape[:2], dtype=torch.bool, device=device)
        a, c = classifier.attention_and_classes(rgb, flow, mask)          # (1, T), (1, T, K)
        a, c = a[0].double().cpu().numpy(), c[0].double().cpu().numpy()
        video_scores.append((a[:, None] * c).sum(axis=0))                  # (K,)
        if method == "emmil":
            q, p = key(xs)[:, 0], cls(xs)                                  # (T,), (T, K)
            curves.append(localisation_scores(q.double().cpu().numpy(),
                                              p.double().cpu().numpy(), lam))
        else:
            curves.append(attention_scores(a, c))
    return curves, np.stack(video_scores)


def localise(model, classifier, dataset, classes, opts, device, show_progress=False,
             ambiguous=()):
    """Detections of every video of `dataset` (DataFrame) and the video scores (N, K).
    ambiguous: [(video, start, end)], used with --drop-ambiguous."""
    post = PostProcess.from_opts(opts)
    index = {v.name: i for i, v in enumerate(dataset.videos)}
    spans = {}
    for video, s, e in ambiguous:
        if video in index:
            spans.setdefault(index[video], []).append((s, e))
    lam = RELEASED_LAM if opts.detection == "released" else opts.lam
    curves, video_scores = score_videos(model, classifier, dataset.videos, device, lam=lam,
                                        method=opts.method, amp=opts.amp,
                                        show_progress=show_progress)
    found = detect_batch(curves, video_scores, post, snippet_seconds=dataset.snippet_seconds,
                         durations=[v.duration for v in dataset.videos], ambiguous=spans)
    return segments_frame([v.name for v in dataset.videos], found, classes), video_scores


# 5. evaluation ----------------------------------------------------------------

def evaluate_run(detections, video_scores, videos, gt, opts):
    res = evaluate.evaluate_detection(detections, gt, opts.tiou, protocol=opts.eval_protocol)
    labels = torch.stack([v.labels for v in videos]).numpy()
    cmap = evaluate.classification_map(video_scores, labels)
    averages = {k: tuple(v) for k, v in opts.averages.items()}
    return evaluate.build_metrics(opts.eval_protocol, opts.tiou, res["mAP"], averages, cmap)


def open_tensorboard(opts, position):
    if not opts.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter
    folder = os.path.join(opts.output_dir, "tensorboard")
    if os.path.islink(folder):             # refused up front on --resume, removed by --overwrite
        raise InputError(f"{folder}: is a symbolic link; TensorBoard never writes through one")
    os.makedirs(folder, exist_ok=True)
    return SummaryWriter(log_dir=folder, purge_step=position + 1 if position else None)


def epoch_scalars(phase, stats):
    """TensorBoard (tag, value) pairs of one trained epoch."""
    if not phase.is_em:
        return [("classifier/loss", stats["loss"])]
    return [(f"loss/{phase.name}", stats["loss"]), ("lr", stats["lr"]),
            (f"positive_fraction/{phase.name}", stats["positive"])]


def held_out_map(model, classifier, val_videos, val_gt, data, opts, device):
    """--eval-every: detection mAP on the held-out training videos, mean over the tIoUs."""
    val_set = SnippetDataset(val_videos, data.snippet_seconds)
    dets, _ = localise(model, classifier, val_set, data.classes, opts, device)
    return float(np.mean(evaluate.evaluate_detection(dets, val_gt, opts.tiou,
                                                     "activitynet")["mAP"]))


# the training loop ----------------------------------------------------------------

def train(schedule, done, trainer_of, after_epoch, show=False):
    """The algorithm (schedule.py): the epochs of `schedule` after the first `done`, in
    order; each phase trains one network (phase.trained) on its targets (phase.targets),
    from the frozen other one (phase.frozen). trainer_of: step -> its trainer.
    after_epoch(position, phase, stats, seconds): log, TensorBoard, checkpoint."""
    todo = list(enumerate(schedule, 1))[done:]                  # (position, Phase)
    for position, phase in progress(todo, len(todo), "epochs", show):
        t0 = time.time()
        stats = trainer_of[phase.step].train_epoch(phase)
        after_epoch(position, phase, stats, time.time() - t0)


# the pipeline -------------------------------------------------------------------

def run_pipeline(opts, loaded, checkpoint=None, log=None):
    """Train (or continue training), detect, evaluate; returns the metrics dict.
    loaded: (root, data) from load_data, checked by check_data; checkpoint: one to continue
    from (load_checkpoint), its contents checked here before the first write."""
    log = log or Logger(quiet=opts.quiet)
    show = not opts.quiet
    schedule = run_schedule(opts.cls_epochs, opts.schedule, opts.stage2_lr_mult,
                            em=opts.method == "emmil")
    device = setup_torch(opts)
    t_start = time.time()

    root, data = loaded
    test_gt = evaluation_ground_truth(data, opts.test_subset)     # checked before any write
    if opts.dry_run:                    # only the test videos the dry run read (dropped included)
        test_gt = only_videos(test_gt, [v.name for v in data.split("test")] +
                              [name for name, split, _ in data.dropped if split == "test"])
    train_videos, val_videos = split_validation(data.split("train"), opts.val_fraction, opts.seed)
    train_set = SnippetDataset(train_videos, data.snippet_seconds)
    test_set = SnippetDataset(data.split("test"), data.snippet_seconds)

    # models, optimizers, and where we are
    K = len(data.classes)
    try:
        model = EMMIL(K, opts.feature_dim, opts.hidden_dim).to(device)
        classifier = UntrimmedNetClassifier(K, opts.feature_dim).to(device)
    except (RuntimeError, MemoryError) as e:          # sizes beyond memory
        raise InputError(f"--hidden-dim {opts.hidden_dim}: the networks cannot be built "
                         f"({one_line(e)[:120]})") from None
    # one video per step: the training features as the steps read them (on a GPU: copied
    # there once, shared by both trainers)
    inputs = VideoInputs(train_set.videos, device) if opts.batch_size == 1 else None
    cls = ClassifierTrainer(classifier, train_set, opts.cls_lr, opts.batch_size, device,
                            opts.seed, amp=opts.amp, show_progress=show, inputs=inputs)
    em = None
    if opts.method == "emmil":
        em = EMTrainer(model, train_set, opts.lr, opts.gamma, opts.batch_size, device, opts.seed,
                       log=log, amp=opts.amp, show_progress=show, inputs=inputs)
    em_epochs = sum(p.is_em for p in schedule)
    position = 0                        # epochs of the schedule done
    if checkpoint is not None:
        position = restore(checkpoint, os.path.join(opts.output_dir, LAST), len(schedule),
                           model, classifier, cls, em)

    # everything is checked: the first write (an earlier run's files removed just before)
    if checkpoint is None and opts.overwrite:
        clear_earlier_run(opts.output_dir)
    os.makedirs(opts.output_dir, exist_ok=True)
    log.open(os.path.join(opts.output_dir, "log.txt"), append=checkpoint is not None)
    if checkpoint is None:
        save_opts(opts, os.path.join(opts.output_dir, "opts.json"))
    log(f"data: {opts.dataset} from {root}: {len(train_set)} train"
        f"{f' (+{len(val_videos)} held out)' if val_videos else ''} / {len(test_set)} test"
        f" videos, {len(data.classes)} classes, {data.snippet_seconds:g} s per snippet;"
        f" device {device}; method {opts.method}")
    log(f"evaluation ground truth: {data.source} ({len(test_gt.videos)} test videos)")
    if em is not None:
        log(f"schedule: {format_schedule([p for p in schedule if p.is_em])}")
    if checkpoint is not None:
        log(f"resumed from {LAST} after {position} of {opts.cls_epochs} classifier + "
            f"{em_epochs} EM epochs")
    if checkpoint is not None and position >= len(schedule):
        log("training was already complete: detecting and evaluating again")
    writer = open_tensorboard(opts, position)
    val_gt = ground_truth([(v.name, v.segments) for v in val_videos], data.classes,
                          data.ambiguous) if val_videos else None

    def after_epoch(pos, phase, stats, seconds):
        log(describe_epoch(phase, schedule, stats, seconds))
        for tag, value in epoch_scalars(phase, stats) if writer else []:
            writer.add_scalar(tag, value, pos)
        if phase.is_em and opts.eval_every and val_gt is not None \
                and phase.epoch % opts.eval_every == 0:
            val_map = held_out_map(model, classifier, val_videos, val_gt, data, opts, device)
            log(f"  held-out training videos: mAP {100 * val_map:.2f}"
                f" (mean over tIoU {opts.tiou[0]:g}..{opts.tiou[-1]:g})")
            if writer:
                writer.add_scalar("val/mAP_mean", val_map, pos)
        save_checkpoint(opts, pos, model, classifier, em, cls)

    train(schedule, position, {"C": cls, "M": em, "E": em}, after_epoch, show)
    if writer:
        writer.close()
    atomic_torch_save(classifier.state_dict(), os.path.join(opts.output_dir, "classifier.pt"))
    atomic_torch_save(model.state_dict(), os.path.join(opts.output_dir, "em_mil.pt"))

    # detect on the test split (used only here: no model selection on it)
    detections, video_scores = localise(model, classifier, test_set, data.classes, opts, device,
                                        show_progress=show, ambiguous=data.ambiguous)
    write_results_json(os.path.join(opts.output_dir, "results.json"), detections)
    if opts.thumos_ids:
        ids = (released_class_ids(data.classes) if opts.detection == "released"
               else test_gt.class_ids)
        write_results_txt(os.path.join(opts.output_dir, "results.txt"), detections, ids)

    # evaluate and report
    metrics = evaluate_run(detections, video_scores, data.split("test"), test_gt, opts)
    atomic_write_json(os.path.join(opts.output_dir, "metrics.json"), metrics)
    log(f"{len(detections)} detections on {len(test_set)} test videos "
        f"(protocol {opts.eval_protocol})")
    log(evaluate.format_table(metrics))
    log(f"wall time {time.time() - t_start:.0f} s; everything is in {opts.output_dir}")
    log.close()
    return metrics


# several seeds ------------------------------------------------------------------

def flatten_metrics(m):
    out = {f"mAP@{k}": v for k, v in m["mAP"].items()}
    out.update({f"average_mAP@{k}": v for k, v in m["average_mAP"].items()})
    if m.get("cmAP") is not None:
        out["cmAP"] = m["cmAP"]
    return out


def summarise_seeds(seeds, all_metrics):
    """{"seeds", "metrics": {name: {"mean", "std", "values"}}}; std is the sample std (ddof 1)."""
    flat = [flatten_metrics(m) for m in all_metrics]
    summary = {"seeds": list(seeds), "metrics": {}}
    for name in flat[0]:
        values = np.array([f[name] for f in flat], dtype=float)
        summary["metrics"][name] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": values.tolist()}
    return summary


def format_summary(summary):
    lines = [f"{'metric':<22} mean ± std (%) over seeds {summary['seeds']}"]
    for name, s in summary["metrics"].items():
        lines.append(f"{name:<22} {100 * s['mean']:6.2f} ± {100 * s['std']:.2f}")
    return "\n".join(lines)


def run_seeds(opts, loaded, log):
    """The whole pipeline once per seed, into OUTPUT_DIR/seed_<s>; summary.json/.txt."""
    if opts.overwrite:
        clear_earlier_run(opts.output_dir)
    results = []
    for seed in opts.seeds:
        sub = argparse.Namespace(**{**vars(opts), "seed": seed, "seeds": None,
                                    "output_dir": os.path.join(opts.output_dir, f"seed_{seed}")})
        results.append(run_pipeline(sub, loaded, log=log.fresh()))
    summary = summarise_seeds(opts.seeds, results)
    atomic_write_json(os.path.join(opts.output_dir, "summary.json"), summary)
    text = format_summary(summary)
    print(text)
    atomic_write_text(os.path.join(opts.output_dir, "summary.txt"), text + "\n")
    return summary


def main(argv=None):
    """Check everything (options, output folder, data, checkpoint), then run."""
    argv = sys.argv[1:] if argv is None else list(argv)
    checkpoint = None
    if any(a == "--resume" or a.startswith("--resume=") for a in argv):
        opts = resume_opts(argv)
        check_resume_folder(opts.output_dir)
        checkpoint = load_checkpoint(opts.output_dir)
    else:
        opts = parse_opts(argv)
        check_output_dir(opts.output_dir, opts.overwrite)
    resolve_device(opts.device)
    log = Logger(quiet=opts.quiet)
    loaded = load_data(opts, log)
    check_data(opts, loaded[1])
    if opts.seeds and checkpoint is None:
        run_seeds(opts, loaded, log)
    else:
        run_pipeline(opts, loaded, checkpoint, log)
    return 0


def cli(argv=None):
    try:
        return main(argv)
    except (InputError, evaluate.InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
