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

from training.batches import SnippetDataset
from em_trainer import ClassifierTrainer, EMTrainer, VideoInputs, progress
from model import EMMIL, UntrimmedNetClassifier
from opts import EXECUTION, parse_opts
from pipeline.data import check_data, load_data, split_validation
from pipeline.localise import held_out_map, test_ground_truth, videos_ground_truth
from pipeline.outputs import Localisation, localise_and_evaluate, write_seeds_summary
from pipeline.run_files import RunFolder
from pipeline.run_folder import (check_output_dir, check_resume_folder, clear_earlier_run,
                                 history_entry, load_checkpoint, restore,
                                 save_checkpoint, write_history)
from pipeline.saved_opts import ADDED, resume_opts, save_opts
from core.cli import cli
from core.errors import InputError, one_line, warn
from training.buckets import MAX_PADDING, bucket_lengths
from training.schedule import describe_epoch, format_schedule, run_schedule
from utils import Logger, resolve_device, set_seed
from core.files import atomic_torch_save
from sweeps.trials import TrialFiles

# a run as a trial of sweeps/trials.py: finished when metrics.json is written, resumed from
# its last checkpoint, the same run when opts.json holds the same options (an older opts.json
# read with the options added since at the values it stands for)
RUN_TRIAL = TrialFiles(done=RunFolder.METRICS, resume=RunFolder.LAST, options=RunFolder.OPTS,
                       inputs=("data_root", "annotations", "classes"),
                       added=tuple(ADDED.items()))


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
        if not stats.pop("finite"):
            raise InputError(diverged(position, phase))
        yield position, phase, stats, time.time() - t0


def diverged(position, phase):
    """The one line of a run stopped by a NaN or Inf (the last checkpoint is the epoch
    before: it is kept, and nothing of this epoch is written)."""
    lr = "--cls-lr" if phase.step == "C" else "--lr"
    kept = (f"the checkpoint of epoch {position - 1} is kept" if position > 1
            else "no checkpoint was written")
    return (f"epoch {position} ({phase.name} {phase.epoch}) diverged: a NaN or Inf in the "
            f"loss or the weights; {kept}; try a lower {lr}")


# the stages of a run ----------------------------------------------------------------

@dataclass
class Run:
    """A run in memory: its schedule, data, networks, trainers and where it stands."""
    schedule: list
    loc: Localisation           # the networks and the test videos (pipeline/outputs.py)
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


def buckets_of(opts, train_set):
    """--step padded: the bucket lengths of the training videos, padding at most
    buckets.MAX_PADDING x their snippets (None: unpadded one-video steps, or --batch-size >
    1, whose batches are padded already)."""
    if opts.step != "padded" or opts.batch_size != 1:
        return None
    return bucket_lengths([v.num_snippets for v in train_set.videos], MAX_PADDING)


def prepare(opts, loaded, checkpoint, log):
    """Everything before the first write: seeds, splits, ground truth, networks, trainers,
    and the checkpoint's contents restored (each checked)."""
    schedule = run_schedule(opts.cls_epochs, opts.schedule, opts.stage2_lr_mult,
                            em=opts.method == "emmil")
    device = setup_torch(opts)
    data = loaded.data
    test_gt = test_ground_truth(data, opts)
    train_videos, val_videos = split_validation(data.split("train"), opts.val_fraction, opts.seed)
    train_set = SnippetDataset(train_videos, data.snippet_seconds)
    test_set = SnippetDataset(data.split("test"), data.snippet_seconds)
    model, classifier = build_networks(opts, len(data.classes), device)
    # the training features as the steps read them (on a GPU: copied there once, shared by
    # both trainers; --amp: with a bfloat16 copy, made once)
    inputs = VideoInputs(train_set.videos, device, opts.amp)
    video_trainer = ClassifierTrainer(classifier, train_set, opts.cls_lr, opts.batch_size,
                                      device, opts.seed, amp=opts.amp, show_progress=not opts.quiet,
                                      inputs=inputs)
    em = None
    if opts.method == "emmil":
        em = EMTrainer(model, train_set, opts.lr, opts.gamma, opts.batch_size, device, opts.seed,
                       log=log, amp=opts.amp, show_progress=not opts.quiet, inputs=inputs,
                       buckets=buckets_of(opts, train_set))
    position = 0
    if checkpoint is not None:
        position = restore(checkpoint, RunFolder(opts.output_dir).last, len(schedule),
                           model, classifier, video_trainer, em)
    val_gt = (videos_ground_truth(val_videos, data.classes, data.ambiguous) if val_videos
              else None)
    loc = Localisation(model, classifier, device, data, test_set, test_gt, val_videos or None,
                       val_gt)
    return Run(schedule, loc, train_set, {"C": video_trainer, "M": em, "E": em}, position)


def open_outputs(opts, run, root, checkpoint, log):
    """The first write (an earlier run's files removed just before): the log, opts.json,
    the run's description, TensorBoard, the history so far."""
    if checkpoint is None and opts.overwrite:
        clear_earlier_run(opts.output_dir)
    os.makedirs(opts.output_dir, exist_ok=True)
    folder = RunFolder(opts.output_dir)
    log.open(folder.log, append=checkpoint is not None)
    if checkpoint is None:
        save_opts(opts, folder.opts, run.loc.device)
    data, loc, em_schedule = run.loc.data, run.loc, [p for p in run.schedule if p.is_em]
    held = len(loc.val_videos or [])
    log(f"data: {opts.dataset} from {root}: {len(run.train_set)} train"
        f"{f' (+{held} held out)' if held else ''} / {len(loc.video_set)} test"
        f" videos, {len(data.classes)} classes, {data.snippet_seconds:g} s per snippet;"
        f" device {loc.device}; method {opts.method}")
    log(f"evaluation ground truth: {data.source} ({len(loc.gt.videos)} test videos)")
    if run.trainers["M"] is not None:
        log(f"schedule: {format_schedule(em_schedule)}")
    if checkpoint is not None:
        log(f"resumed from {RunFolder.LAST} after {run.position} of {opts.cls_epochs} classifier + "
            f"{len(em_schedule)} EM epochs")
        if run.position >= len(run.schedule):
            log("training was already complete: detecting and evaluating again")
        run.history = folder.read_history(run.position)
    return open_tensorboard(opts, run.position)


def record_epoch(opts, run, writer, log, position, phase, stats, seconds):
    """After an epoch: the log line, history.json, TensorBoard, the held-out mAP every
    --eval-every EM epochs, the checkpoint."""
    loc = run.loc
    log(describe_epoch(phase, run.schedule, stats, seconds))
    run.history.append(history_entry(position, phase, stats, seconds))
    write_history(opts.output_dir, run.history)
    for tag, value in epoch_scalars(phase, stats) if writer else []:
        writer.add_scalar(tag, value, position)
    if phase.is_em and opts.eval_every and loc.val_gt is not None \
            and phase.epoch % opts.eval_every == 0:
        val_map = held_out_map(loc.model, loc.classifier, loc.val_videos, loc.val_gt, loc.data,
                               opts, loc.device)
        log(f"  held-out training videos: mAP {100 * val_map:.2f}"
            f" (mean over tIoU {opts.tiou[0]:g}..{opts.tiou[-1]:g})")
        if writer:
            writer.add_scalar("val/mAP_mean", val_map, position)
    save_checkpoint(opts, position, loc.model, loc.classifier, run.trainers["M"],
                    run.trainers["C"])


def save_weights(folder, loc):
    atomic_torch_save(loc.classifier.state_dict(), RunFolder(folder).classifier)
    atomic_torch_save(loc.model.state_dict(), RunFolder(folder).model)


def run_pipeline(opts, loaded, checkpoint=None, log=None):
    """Train (or continue training), detect, evaluate, report; returns the metrics dict.
    loaded: LoadedData from load_data, checked by check_data; checkpoint: one to continue
    from (load_checkpoint), its contents checked here before the first write."""
    log = log or Logger(quiet=opts.quiet)
    t_start = time.time()
    run = prepare(opts, loaded, checkpoint, log)                     # nothing written yet
    writer = open_outputs(opts, run, loaded.root, checkpoint, log)   # the first write
    for epoch in train(run.schedule, run.position, run.trainers, show=not opts.quiet):
        record_epoch(opts, run, writer, log, *epoch)
    if writer:
        writer.close()
    save_weights(opts.output_dir, run.loc)
    # localise the test split (used only here: no model selection on it), evaluate, report
    metrics = localise_and_evaluate(opts.output_dir, opts, run.loc, log, run.history,
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
    return write_seeds_summary(opts.output_dir, opts.seeds, results, opts)


def seeds_on_ray(opts, subs, log):
    """The runs `subs` as trials on a local Ray (trials.py), at most --workers at once."""
    from sweeps.cluster import local_cores
    from sweeps.trials import SHARE, run_trials, trials_of   # Ray is imported only when used
    from run import trial_work as work       # the module's, not __main__'s: sent by name
    runs = trials_of([vars(s) for s in subs], EXECUTION, RUN_TRIAL)
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
    check_data(opts, loaded.data)
    return run_pipeline(opts, loaded, log=log)


def moved_note(checkpoint, device):
    """One line when a run continues on another kind of device than the one its checkpoint
    was made on (None otherwise, and for a checkpoint that does not say)."""
    made, saved = checkpoint.get("machine"), checkpoint.get("opts")
    before = (made.get("device") if isinstance(made, dict)             # since it is recorded
              else saved.get("device") if isinstance(saved, dict) else None)   # --device
    if before not in ("cpu", "cuda") or before == device.type:
        return None
    return (f"the checkpoint was made on {before} and the run continues on {device.type}: "
            f"its results will differ from an uninterrupted run's in the last digits")


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
    device = resolve_device(opts.device)
    if checkpoint is not None:
        note = moved_note(checkpoint, device)
        if note:
            warn(note)
    log = Logger(quiet=opts.quiet)
    loaded = load_data(opts, log)
    check_data(opts, loaded.data)
    if opts.seeds and checkpoint is None:
        run_seeds(opts, loaded, log)
    else:
        run_pipeline(opts, loaded, checkpoint, log)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
