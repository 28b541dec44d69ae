"""The training schedule as data: one Phase per epoch, in the order they are trained.

Torch-free (opts.py checks --schedule with it). The released order, stated in full:

    C:45,M1:10,E:10,M2:10,alt:35

45 epochs of the video classifier, then EM: 10 M-steps of stage 1, 10 E-steps, 10 M-steps
of stage 2, 35 epochs alternating E and M2 (E first). On the command line the classifier's
epochs are --cls-epochs and --schedule holds the EM phases; `run_schedule` joins them.

What each step trains, keeps frozen, and learns from (Luo et al., ECCV 2020, Alg. 1):
"""
import re
from dataclasses import dataclass

from core.errors import InputError

@dataclass(frozen=True)
class Step:
    trained: str          # the network it trains, in words
    frozen: str           # the network whose output gives its targets (None: the labels)
    targets: str          # what it learns from: the pseudo-label rule
    branch: str           # the EMMIL branch it trains: 'cls' (p) or 'key' (q); None: C
    frozen_branch: str    # the EMMIL branch it reads its targets from; None: C


# The one table of the steps: the log, the trainers and the tests read it.
STEPS = {
    "C": Step("video classifier", None,
              "the video labels, L1-normalised (model.video_classifier_loss)", None, None),
    "M": Step("classifier p", "key-instance network q",
              "stage 1: the video labels at every snippet; stage 2: the labels where q is"
              " high (pseudo_labels.m_step_targets)", "cls", "key"),
    "E": Step("key-instance network q", "classifier p",
              "the snippets where p of a labelled class is above its mean"
              " (pseudo_labels.e_step_targets)", "key", "cls"),
}
EM_STEPS = ("M", "E")


@dataclass(frozen=True)
class Phase:
    epoch: int        # 1-based, counted apart for the classifier's and the EM epochs
    step: str         # 'C' video classifier, 'M' classifier p, 'E' key-instance network q
    stage: int        # M-step targets: 1 the video labels, 2 from q (E: the stage so far; C: 0)
    lr_mult: float    # learning-rate factor of this epoch (EM only; C: 1)

    @property
    def name(self):
        """'C', 'M1', 'M2' or 'E': the name in the log and the TensorBoard tags."""
        return f"M{self.stage}" if self.step == "M" else self.step

    @property
    def is_em(self):
        return self.step != "C"

    @property
    def role(self):
        """What this epoch trains, keeps frozen and learns from: its step's row of STEPS."""
        return STEPS[self.step]

    def __str__(self):
        return f"{self.epoch:3d} {self.name:<2} lr x{self.lr_mult:g}"


_PART = re.compile(r"^(C|M1|M2|E|alt):(\d+)$")
EXPECTED = ("expected PHASE:EPOCHS with PHASE in M1, E, M2, alt (e.g. M1:10,E:10,M2:10,alt:35)")


def schedule_parts(text):
    """'M1:10,E:10' -> [('M1', 10), ('E', 10)]: the one reader of the schedule syntax."""
    parts = []
    for part in text.replace(" ", "").split(","):
        m = _PART.match(part)
        if not m:
            raise InputError(f"--schedule: cannot read {part!r}; {EXPECTED}")
        parts.append((m.group(1), int(m.group(2))))
    return parts


def parts_text(parts):
    """[('M1', 10), ('E', 10)] -> 'M1:10,E:10'."""
    return ",".join(f"{kind}:{n}" for kind, n in parts)


def _steps(parts):
    """[(kind, n)] -> [(step, stage of an M-step or None)], one per epoch."""
    steps = []
    for kind, n in parts:
        if kind == "alt":
            steps += [("E", None) if i % 2 == 0 else ("M", 2) for i in range(n)]
        else:
            steps += [{"C": ("C", None), "M1": ("M", 1), "M2": ("M", 2),
                       "E": ("E", None)}[kind]] * n
    return steps


def parse_schedule(text, stage2_lr_mult):
    """'M1:10,E:10,M2:10,alt:35' -> list of Phase, one per epoch.

    C: the video classifier. M1: M-step, stage 1. E: E-step. M2: M-step, stage 2. alt: E
    and M2 alternating, starting with E. The learning rate is multiplied by
    `stage2_lr_mult` from the first M2 epoch on (E epochs after it included), as released.
    """
    steps = _steps(schedule_parts(text))
    if not steps:
        raise InputError("--schedule: no epochs")
    phases, mult, stage, count = [], 1.0, 1, {"C": 0, "EM": 0}
    for step, st in steps:
        if step == "C":
            count["C"] += 1
            phases.append(Phase(count["C"], "C", 0, 1.0))
            continue
        if step == "M":
            stage = st
            if st == 2:
                mult = stage2_lr_mult
        count["EM"] += 1
        phases.append(Phase(count["EM"], step, stage, mult))
    return phases


def run_schedule(cls_epochs, schedule, stage2_lr_mult, em=True):
    """The epochs of a run in the released order: --cls-epochs of the video classifier, then
    the EM phases of --schedule (none with em=False: --method untrimmednet).
    45, 'M1:10,E:10,M2:10,alt:35' -> parse_schedule('C:45,M1:10,E:10,M2:10,alt:35')."""
    phases = parse_schedule(schedule, stage2_lr_mult)
    if not all(p.is_em for p in phases):
        raise InputError("--schedule: the video classifier's epochs are set by --cls-epochs, "
                         f"not by a C phase; {EXPECTED}")
    return [Phase(i, "C", 0, 1.0) for i in range(1, cls_epochs + 1)] + (phases if em else [])


def dry_run_schedule(text):
    """The same schedule with one epoch per phase (two for 'alt'): M1:10,E:10 -> M1:1,E:1."""
    return parts_text([(kind, min(n, 2 if kind == "alt" else 1))
                       for kind, n in schedule_parts(text)])


def _blocks(phases):
    """[first, last, name, lr_mult] of each run of epochs of the same name and rate; single
    epochs alternating E/M2 merged into one 'alt' block."""
    blocks, i = [], 0
    while i < len(phases):
        j = i
        while j + 1 < len(phases) and (phases[j + 1].name, phases[j + 1].lr_mult) == \
                (phases[i].name, phases[i].lr_mult):
            j += 1
        blocks.append([phases[i].epoch, phases[j].epoch, phases[i].name, phases[i].lr_mult])
        i = j + 1
    merged = []
    for blk in blocks:
        prev = merged[-1] if merged else None
        single = blk[0] == blk[1]
        starts_alt = prev and prev[0] == prev[1] and prev[2] == "E" and blk[2] == "M2"
        continues_alt = prev and prev[2] == "alt" and blk[2] in ("E", "M2")
        if single and (starts_alt or continues_alt) and prev[3] == blk[3]:
            prev[1], prev[2] = blk[1], "alt"
        else:
            merged.append(blk)
    return merged


def format_schedule(phases):
    """Compact printable form: '1-10 M1 lr x1 | 11-20 E lr x1 | 21-30 M2 lr x4 | 31-65 alt E/M2 lr x4'."""
    return " | ".join(f"{a}-{b} {'alt E/M2' if n == 'alt' else n} lr x{m:g}"
                      for a, b, n, m in _blocks(phases))


def schedule_text(phases):
    """The schedule syntax of a list of phases: parse_schedule(schedule_text(p), m) == p."""
    return parts_text([(name, last - first + 1) for first, last, name, _ in _blocks(phases)])


def describe_epoch(phase, schedule, stats, seconds):
    """The log line of one trained epoch of `schedule`."""
    n_epochs = sum(p.is_em == phase.is_em for p in schedule)
    if not phase.is_em:
        return (f"classifier epoch {phase.epoch:3d}/{n_epochs}  loss {stats['loss']:.4f}"
                f"  {seconds:.1f}s")
    return (f"epoch {phase.epoch:3d}/{n_epochs}  {phase.name:<2}  lr {stats['lr']:.0e}"
            f"  loss {stats['loss']:.4f}  positive {stats['positive']:.3f}  {seconds:.1f}s")
