"""The checks of every option, before anything is read or written: RULES (the allowed values
of run.py's options and of the other commands' own), applied by every command through
check_rules; check_options adds run.py's cross-option checks (and its --schedule)."""
import math

from core.errors import InputError
from training.schedule import run_schedule


def finite_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _in(lo, hi, hi_open=False, lo_open=False):
    return (lambda v: finite_number(v) and (lo < v if lo_open else lo <= v)
            and (v < hi if hi_open else v <= hi),
            f"must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


def _above(lo):
    return (lambda v: finite_number(v) and v > lo), f"must be > {lo}"


def _at_least(lo):
    return (lambda v: finite_number(v) and v >= lo), f"must be >= {lo}"


MAX_SEED = 2 ** 32 - 1          # NumPy's limit
# option -> (rule, what the rule says); a list option is checked element by element,
# an option left at None (no value) is not checked
RULES = {
    "synthetic_videos": _at_least(0),
    "synthetic_max_seconds": _above(0),
    "feature_fps": _above(0),
    "frames_per_snippet": _at_least(1),
    "feature_dim": _at_least(1),
    "hidden_dim": _at_least(1),
    "lr": _above(0),
    "stage2_lr_mult": _above(0),
    "gamma": _in(-1, 1),             # q > mean + gamma (max - min): beyond +-1 all or nothing
    "batch_size": _at_least(1),
    "cls_epochs": _at_least(0),
    "cls_lr": _above(0),
    "lam": _in(0, 1),
    "cls_threshold": _in(0, 1),      # video scores are probabilities
    "loc_threshold": _in(-1, 1),     # (s - mean) / (max - min) lies in [-1, 1]
    "oic_margin": _at_least(0),
    "nms_iou": _in(0, 1),
    "soft_sigma": _above(0),
    "tiou": _in(0, 1),
    "eval_every": _at_least(0),
    "val_fraction": _in(0, 1, hi_open=True),
    "seed": _in(0, MAX_SEED),
    "seeds": _in(0, MAX_SEED),
    "workers": _at_least(1),
    "threads": _at_least(0),
    "save_every": _at_least(0),
    # the other commands' own options (sweep.py, extract.py, analyze.py)
    "cpus_per_trial": _above(0),
    "gpus_per_trial": _at_least(0),
    "gpus_per_task": _at_least(0),
    "max_hours": _above(0),
    "max_retries": _at_least(0),
    "alpha": _in(0, 1, lo_open=True),
    "top_k": _at_least(1),
    "dpi": _at_least(1),
    "timelines": _at_least(0),
}
NOT_EMPTY = ("data_root", "annotations", "output_dir", "resume")   # "" would mean the default


def flag(name):
    return "--" + name.replace("_", "-")


def rule_problems(values):
    """The problems of the options in `values` (any command's parsed arguments, a Namespace
    or a dict) that RULES, the lists without repeats and NOT_EMPTY speak of, as one-line
    messages; an option absent or None is not checked."""
    values = values if isinstance(values, dict) else vars(values)
    problems = []
    for name, (ok, says) in RULES.items():
        value = values.get(name)
        for v in (value if isinstance(value, list) else [value]):
            if v is not None and not ok(v):
                problems.append(f"{flag(name)} {v}: {says}")
                break
    for name in ("tiou", "seeds"):
        value = values.get(name) or []
        dup = sorted({v for v in value if value.count(v) > 1})
        if dup:
            problems.append(f"{flag(name)} {' '.join(map(str, value))}: {dup[0]} given twice")
    for name in NOT_EMPTY:
        if values.get(name) == "":
            problems.append(f"{flag(name)}: must not be empty")
    return problems


def check_rules(values):
    """Raise InputError (one line) naming the first option of `values` that breaks its rule
    (rule_problems): what every command checks of its options first."""
    problems = rule_problems(values)
    if problems:
        raise InputError(problems[0])


def option_problems(opts):
    """Every problem of a (resolved) run.py options namespace, as one-line messages."""
    problems = rule_problems(opts)
    if getattr(opts, "detection", "ours") == "released":
        extra = [flag for flag, used in [
            ("--method untrimmednet", opts.method != "emmil"),
            ("several --loc-threshold", len(opts.loc_threshold) > 1),
            ("--score oic", opts.score != "mean"), ("--nms", opts.nms != "none"),
            ("--drop-ambiguous", opts.drop_ambiguous)] if used]
        if extra:
            problems.append(f"--detection released is the released test(); it has no {extra[0]}")
    if getattr(opts, "eval_every", 0) and not getattr(opts, "val_fraction", 0):
        problems.append("--eval-every needs --val-fraction > 0 (mAP is never computed on the "
                        "test split)")
    if not problems:
        try:
            run_schedule(opts.cls_epochs, opts.schedule, opts.stage2_lr_mult)
        except InputError as e:
            problems.append(str(e))
    return problems


def check_options(opts):
    """Raise InputError (one line) naming the first bad option."""
    problems = option_problems(opts)
    if problems:
        raise InputError(problems[0])
