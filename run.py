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
from dataclasses import dataclass, field

import torch

from analysis.seeds import format_summary, summarise_seeds
from analysis import report
from training.batches import SnippetDataset
from em_trainer import ClassifierTrainer, EMTrainer, VideoInputs, progress
from model import EMMIL, UntrimmedNetClassifier
from opts import parse_opts
from pipeline.data import check_data, load_data, split_validation
from pipeline.localise import ground_truth, held_out_map, test_ground_truth
from pipeline.outputs import Trained, localise_and_evaluate
from pipeline.run_folder import (LAST, check_output_dir, check_resume_folder, clear_earlier_run,
                                 history_entry, load_checkpoint, read_history, restore,
                                 save_checkpoint, write_history)
from pipeline.saved_opts import RESUME_MAY_CHANGE, resume_opts, save_opts
from core.cli import cli
from core.errors import InputError, one_line
from core.files import atomic_write_json, atomic_write_text
from training.schedule import describe_epoch, format_schedule, run_schedule
from utils import Logger, resolve_device, set_seed
from core.files import atomic_torch_save
from sweeps.trials import TrialFiles

# a run as a trial of sweeps/trials.py: finished when metrics.json is written, resumed from
# its last checkpoint, the same run when opts.json holds the same options
RUN_TRIAL = TrialFiles(done="metrics.json", resume=LAST, options="opts.json",
                       inputs=("data_root", "annotations", "classes"))


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



def setup_torch(opts):
    set_seed(opts.seed)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return resolve_device(opts.device)


# the training loop ----------------------------------------------------------------

def train(schedule, done, trainer_of, show=False):
    """The algorithm (training/schedule.py): the epochs of `schedule` after the first `done`,
    in order; each phase trains one network (phase.role.trained) on its targets
    (phase.role.targets), from the frozen other one (phase.role.frozen). trainer_of: step ->
    its trainer.
    Yields (position, phase, stats, seconds) after each epoch."""
    todo = list(enumerate(schedule, 1))[done:]                  # (position, Phase)
    for position, phase in progress(todo, len(todo), "epochs", show):
        t0 = time.time()
        stats = trainer_of[phase.step].train_epoch(phase)
        yield position, phase, stats, time.time() - t0


# the stages of a run ----------------------------------------------------------------

@dataclass
class Run:
    """A run in memory: its schedule, data, networks, trainers and where it stands."""
    schedule: list
    net: Trained                # the networks and the test videos (pipeline/outputs.py)
    train_set: SnippetDataset
    trainers: dict              # step ('C', 'M', 'E') -> its trainer
    position: int = 0           # epochs of the schedule done
    history: list = field(default_factory=list)


def build_networks(opts, K, device):
    try:
        model = EMMIL(K, opts.feature_dim, opts.hidden_dim).to(device)
        classifier = UntrimmedNetClassifier(K, opts.feature_dim).to(device)
    except (RuntimeError, MemoryError) as e:          # sizes beyond memory
        raise InputError(f"--hidden-dim {opts.hidden_dim}: the networks cannot be built "
                         f"({one_line(e)[:120]})") from None
    return model, classifier


def prepare(opts, loaded, checkpoint, log):
    """Everything before the first write: seeds, splits, ground truth, networks, trainers,
    and the checkpoint's contents restored (each checked)."""
    schedule = run_schedule(opts.cls_epochs, opts.schedule, opts.stage2_lr_mult,
                            em=opts.method == "emmil")
    device = setup_torch(opts)
    _, data = loaded
    test_gt = test_ground_truth(data, opts)
    train_videos, val_videos = split_validation(data.split("train"), opts.val_fraction, opts.seed)
    train_set = SnippetDataset(train_videos, data.snippet_seconds)
    test_set = SnippetDataset(data.split("test"), data.snippet_seconds)
    model, classifier = build_networks(opts, len(data.classes), device)
    # one video per step: the training features as the steps read them (on a GPU: copied
    # there once, shared by both trainers)
    inputs = VideoInputs(train_set.videos, device) if opts.batch_size == 1 else None
    video_trainer = ClassifierTrainer(classifier, train_set, opts.cls_lr, opts.batch_size,
                                      device, opts.seed, amp=opts.amp, show_progress=not opts.quiet,
                                      inputs=inputs)
    em = None
    if opts.method == "emmil":
        em = EMTrainer(model, train_set, opts.lr, opts.gamma, opts.batch_size, device, opts.seed,
                       log=log, amp=opts.amp, show_progress=not opts.quiet, inputs=inputs)
    position = 0
    if checkpoint is not None:
        position = restore(checkpoint, os.path.join(opts.output_dir, LAST), len(schedule),
                           model, classifier, video_trainer, em)
    val_gt = ground_truth([(v.name, v.segments) for v in val_videos], data.classes,
                          data.ambiguous) if val_videos else None
    net = Trained(model, classifier, device, data, test_set, test_gt, val_videos or None, val_gt)
    return Run(schedule, net, train_set, {"C": video_trainer, "M": em, "E": em}, position)


def open_outputs(opts, run, root, checkpoint, log):
    """The first write (an earlier run's files removed just before): the log, opts.json,
    the run's description, TensorBoard, the history so far."""
    if checkpoint is None and opts.overwrite:
        clear_earlier_run(opts.output_dir)
    os.makedirs(opts.output_dir, exist_ok=True)
    log.open(os.path.join(opts.output_dir, "log.txt"), append=checkpoint is not None)
    if checkpoint is None:
        save_opts(opts, os.path.join(opts.output_dir, "opts.json"))
    data, net, em_schedule = run.net.data, run.net, [p for p in run.schedule if p.is_em]
    held = len(net.val_videos or [])
    log(f"data: {opts.dataset} from {root}: {len(run.train_set)} train"
        f"{f' (+{held} held out)' if held else ''} / {len(net.videos)} test"
        f" videos, {len(data.classes)} classes, {data.snippet_seconds:g} s per snippet;"
        f" device {net.device}; method {opts.method}")
    log(f"evaluation ground truth: {data.source} ({len(net.gt.videos)} test videos)")
    if run.trainers["M"] is not None:
        log(f"schedule: {format_schedule(em_schedule)}")
    if checkpoint is not None:
        log(f"resumed from {LAST} after {run.position} of {opts.cls_epochs} classifier + "
            f"{len(em_schedule)} EM epochs")
        if run.position >= len(run.schedule):
            log("training was already complete: detecting and evaluating again")
        run.history = read_history(opts.output_dir, run.position)
    return open_tensorboard(opts, run.position)


def record_epoch(opts, run, writer, log, position, phase, stats, seconds):
    """After an epoch: the log line, history.json, TensorBoard, the held-out mAP every
    --eval-every EM epochs, the checkpoint."""
    net = run.net
    log(describe_epoch(phase, run.schedule, stats, seconds))
    run.history.append(history_entry(position, phase, stats, seconds))
    write_history(opts.output_dir, run.history)
    for tag, value in epoch_scalars(phase, stats) if writer else []:
        writer.add_scalar(tag, value, position)
    if phase.is_em and opts.eval_every and net.val_gt is not None \
            and phase.epoch % opts.eval_every == 0:
        val_map = held_out_map(net.model, net.classifier, net.val_videos, net.val_gt, net.data,
                               opts, net.device)
        log(f"  held-out training videos: mAP {100 * val_map:.2f}"
            f" (mean over tIoU {opts.tiou[0]:g}..{opts.tiou[-1]:g})")
        if writer:
            writer.add_scalar("val/mAP_mean", val_map, position)
    save_checkpoint(opts, position, net.model, net.classifier, run.trainers["M"],
                    run.trainers["C"])


def save_weights(folder, net):
    atomic_torch_save(net.classifier.state_dict(), os.path.join(folder, "classifier.pt"))
    atomic_torch_save(net.model.state_dict(), os.path.join(folder, "em_mil.pt"))


def run_pipeline(opts, loaded, checkpoint=None, log=None):
    """Train (or continue training), detect, evaluate, report; returns the metrics dict.
    loaded: (root, data) from load_data, checked by check_data; checkpoint: one to continue
    from (load_checkpoint), its contents checked here before the first write."""
    log = log or Logger(quiet=opts.quiet)
    t_start = time.time()
    run = prepare(opts, loaded, checkpoint, log)                     # nothing written yet
    writer = open_outputs(opts, run, loaded[0], checkpoint, log)     # the first write
    for epoch in train(run.schedule, run.position, run.trainers, show=not opts.quiet):
        record_epoch(opts, run, writer, log, *epoch)
    if writer:
        writer.close()
    save_weights(opts.output_dir, run.net)
    # localise the test split (used only here: no model selection on it), evaluate, report
    metrics = localise_and_evaluate(opts.output_dir, opts, run.net, log, run.history,
                                    show=not opts.quiet)
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
    from sweeps.cluster import local_cores
    from sweeps.trials import SHARE, run_trials, trials_of   # Ray is imported only when used
    from run import trial_work as work       # the module's, not __main__'s: sent by name
    runs = trials_of([vars(s) for s in subs], RESUME_MAY_CHANGE, RUN_TRIAL)
    done = run_trials(runs, work, cpus=max(1, opts.threads),
                      workers=local_cores(opts.workers, opts.threads),
                      gpus=SHARE if resolve_device(opts.device).type == "cuda" else 0,
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
