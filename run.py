"""Train EM-MIL, localise actions on the test split, evaluate. See README.md.

    python run.py                                   # embedded synthetic default
    python run.py --dataset thumos14 --data-root DIR
    python run.py --resume OUTPUT_DIR               # continue an interrupted run
    python run.py --seeds 1 2 3 4 5                 # mean ± std over seeds
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

import evaluate
from analysis import report
from readers import synthetic
from dataset import SnippetDataset, load_dataset, read_class_list
from detection import released_class_ids, write_results_json, write_results_txt
from em_trainer import ClassifierTrainer, EMTrainer, VideoInputs, progress
from model import EMMIL, UntrimmedNetClassifier
from opts import DATA_ROOTS, layout_snippet_seconds, parse_opts
from pipeline.saved_opts import RESUME_MAY_CHANGE, resume_opts, save_opts
from pipeline.run_folder import (LAST, check_output_dir, check_resume_folder, clear_earlier_run,
                        history_entry, load_checkpoint, read_history, restore, save_checkpoint,
                        write_history)
from readers.safe_io import InputError, atomic_write_json, atomic_write_text, cli, one_line
from training.schedule import describe_epoch, format_schedule, run_schedule
from analysis.seeds import format_summary, summarise_seeds
from pipeline.localise import (evaluate_run, evaluation_ground_truth, ground_truth, held_out_map,
                       localise, only_videos, report_curves)
from utils import Logger, atomic_torch_save, resolve_device, set_seed

DRY_RUN_VIDEOS = 4


def setup_torch(opts):
    set_seed(opts.seed)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return resolve_device(opts.device)


# data --------------------------------------------------------------------

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



# the run's logs ------------------------------------------------------------

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

    history = read_history(opts.output_dir, position) if checkpoint is not None else []

    def after_epoch(pos, phase, stats, seconds):
        log(describe_epoch(phase, schedule, stats, seconds))
        history.append(history_entry(pos, phase, stats, seconds))
        write_history(opts.output_dir, history)
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
    # the final mAP on the held-out training videos: what sweep.py ranks by, never the test split
    val_map = held_out_map(model, classifier, val_videos, val_gt, data, opts, device) \
        if val_gt is not None else None
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
    if val_map is not None:
        metrics["val_mAP"] = val_map
    atomic_write_json(os.path.join(opts.output_dir, "metrics.json"), metrics)
    log(f"{len(detections)} detections on {len(test_set)} test videos "
        f"(protocol {opts.eval_protocol})")
    log(evaluate.format_table(metrics))
    if opts.report:                     # analyze.py's report, from what is in memory
        t_report = time.time()
        test_names = {v.name: v for v in test_set.videos}
        report.write_report(opts.output_dir, report.run_inputs(
            opts, detections, test_gt, data, synthetic_root=DATA_ROOTS["synthetic"],
            metrics=metrics, history=history,
            curves=lambda names: report_curves(model, classifier, [test_names[n] for n in names
                                                                   if n in test_names],
                                               data.classes, data.snippet_seconds, opts,
                                               device)))
        log(f"report: {os.path.join(opts.output_dir, 'report', 'index.html')} "
            f"({time.time() - t_report:.1f} s)")
    log(f"wall time {time.time() - t_start:.0f} s; everything is in {opts.output_dir}")
    log.close()
    return metrics


# several seeds ------------------------------------------------------------------



def run_seeds(opts, loaded, log):
    """The whole pipeline once per seed, into OUTPUT_DIR/seed_<s>; summary.json/.txt.
    --workers N > 1: the seeds as N parallel trials on Ray (trials.py), else one by one here."""
    if opts.overwrite:
        clear_earlier_run(opts.output_dir)
    subs = [argparse.Namespace(**{**vars(opts), "seed": seed, "seeds": None,
                                  "output_dir": os.path.join(opts.output_dir, f"seed_{seed}")})
            for seed in opts.seeds]
    if opts.workers > 1:
        results = seeds_on_ray(opts, subs, log)
    else:
        results = [run_pipeline(sub, loaded, log=log.fresh()) for sub in subs]
    summary = summarise_seeds(opts.seeds, results)
    atomic_write_json(os.path.join(opts.output_dir, "summary.json"), summary)
    text = format_summary(summary)
    print(text)
    atomic_write_text(os.path.join(opts.output_dir, "summary.txt"), text + "\n")
    if opts.report:
        report.write_summary_report(opts.output_dir, [(opts.method, summary)], opts.tiou)
    return summary


def seeds_on_ray(opts, subs, log):
    """The runs `subs` as trials on a local Ray (trials.py), at most --workers at once."""
    from sweeps.trials import run_trials, trials_of          # Ray is imported only when used
    from run import trial_work as work       # the module's, not __main__'s: sent by name
    done = run_trials(trials_of([vars(s) for s in subs], RESUME_MAY_CHANGE), work,
                      cpus=max(1, opts.threads), workers=opts.workers,
                      gpus=int(resolve_device(opts.device).type == "cuda"),
                      on_done=lambda r: log(f"{r['name']}: {r['status']}, {r['seconds']:.0f} s"))
    failed = [r for r in done if r["status"] == "failed"]
    if failed:
        raise InputError(f"{failed[0]['name']}: {failed[0]['error']}")
    return [r["metrics"] for r in done]


def trial_work(saved, resume):
    """One trial of trials.py, in a Ray worker: a new run with the resolved, checked options
    `saved` (a dict), or (resume) the continuation of the run in saved["output_dir"]."""
    if resume:
        return main(["--resume", saved["output_dir"], "--quiet"])
    opts = argparse.Namespace(**saved)
    check_output_dir(opts.output_dir, overwrite=True)
    log = Logger(quiet=opts.quiet)
    loaded = load_data(opts, log)
    check_data(opts, loaded[1])
    return run_pipeline(opts, loaded, log=log)


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


if __name__ == "__main__":
    sys.exit(cli(main))
