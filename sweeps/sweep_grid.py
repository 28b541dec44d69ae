"""The grid of a sweep: `--grid KEY=V1,V2 ...` read against run.py's own parser.

    KEY      an option of run.py: its name as in opts.json (cls_epochs) or its flag
             (cls-epochs, --cls-epochs)
    V1,V2    its values, separated by commas, each read with the option's own argparse type
             and choices. `+` joins the parts of one value that has several: the phases of a
             schedule (schedule=M1:10,M1:10+E:10+M2:10+alt:35 is two schedules, the second
             --schedule M1:10,E:10,M2:10,alt:35) and the numbers of a list option
             (loc_threshold=0.05,0.05+0.1 is --loc-threshold 0.05, then 0.05 0.1).
             A flag takes true or false (amp=false,true).

Pure: it imports neither run.py nor opts.py (the parser is handed in), and writes nothing.
"""
import hashlib
import itertools
import re
from dataclasses import dataclass

from core.errors import InputError, one_line

JOINED = {"schedule": ","}          # options whose `+`-joined parts are one comma-joined value
BOOLEAN = {"true": True, "false": False}
NAME_CHARS = re.compile(r"[^A-Za-z0-9._+:=-]")     # anything else becomes - in a trial name
MAX_NAME = 200


@dataclass(frozen=True)
class Value:
    label: str        # as written in --grid: the trial's name and the tables
    tokens: tuple     # the run.py command-line tokens that give it
    typed: object     # the parsed value (a list for a list option): the sweep's manifest


@dataclass(frozen=True)
class Axis:
    dest: str         # the option's name in opts.json
    flag: str         # --its-flag
    values: tuple     # (Value, ...)


def option_actions(parser):
    """{every accepted spelling of a key: its argparse action} of run.py's options."""
    actions = {}
    for a in parser._actions:
        if not a.option_strings or a.dest == "help":
            continue
        for name in [a.dest, *a.option_strings]:
            bare = name.lstrip("-")
            for spelling in (name, bare, bare.replace("-", "_"), bare.replace("_", "-")):
                actions.setdefault(spelling, a)
    return actions


def _typed(action, text, spec):
    if action.type is None:
        value = text
    else:
        try:
            value = action.type(text)
        except (TypeError, ValueError):
            raise InputError(f"--grid {spec}: {text!r} is not a valid {action.option_strings[0]}"
                             f" ({action.type.__name__})") from None
    if action.choices and value not in action.choices:
        raise InputError(f"--grid {spec}: {text!r} is not one of "
                         f"{', '.join(map(str, action.choices))}")
    return value


def parse_value(action, text, spec):
    """One value of a key: (its tokens for run.py, its typed value)."""
    flag = action.option_strings[0]
    if text == "":
        raise InputError(f"--grid {spec}: an empty value")
    if action.nargs == 0:                                  # store_true, --x/--no-x
        if text.lower() not in BOOLEAN:
            raise InputError(f"--grid {spec}: {flag} is a flag; its values are true, false")
        negative = [s for s in action.option_strings if s.startswith("--no-")]
        if BOOLEAN[text.lower()]:
            return (flag,), True
        return tuple(negative[:1]), False          # store_true: off is its absence
    if action.nargs in ("+", "*"):
        items = [_typed(action, t, spec) for t in text.split("+")]
        return (flag, *text.split("+")), items
    if action.dest in JOINED:
        text = text.replace("+", JOINED[action.dest])
    return (flag, text), _typed(action, text, spec)


def parse_grid(specs, parser, refused):
    """The axes of `--grid KEY=VALUES ...` (InputError, one line, for a bad one).
    refused: {dest: why} of the options a grid cannot hold."""
    actions = option_actions(parser)
    axes, seen = [], set()
    for spec in specs:
        key, eq, values = spec.partition("=")
        if not eq or not key:
            raise InputError(f"--grid {spec}: expected KEY=V1,V2,... (e.g. gamma=0.1,0.15)")
        action = actions.get(key)
        if action is None:
            raise InputError(f"--grid {spec}: {key!r} is not an option of run.py "
                             f"(python run.py --help lists them)")
        if action.dest in refused:
            raise InputError(f"--grid {spec}: {key} cannot be swept ({refused[action.dest]})")
        if action.dest in seen:
            raise InputError(f"--grid {spec}: {key} is given twice")
        seen.add(action.dest)
        texts = values.split(",")
        parsed = [Value(t, *parse_value(action, t, spec)) for t in texts]
        typed = [v.typed for v in parsed]
        twice = [t for i, t in enumerate(typed) if t in typed[:i]]
        if twice:
            raise InputError(f"--grid {spec}: the value {twice[0]!r} is given twice")
        axes.append(Axis(action.dest, action.option_strings[0], tuple(parsed)))
    return axes


def points(axes):
    """Every grid point, as a tuple of Values (one per axis), in the order of --grid."""
    return list(itertools.product(*[axis.values for axis in axes]))


def trial_name(axes, point, seed):
    """A plain, deterministic folder name: gamma=0.1_lam=0.5_seed=1 (characters other than
    letters, digits and . _ + : = - become '-'; a very long one ends in a hash)."""
    parts = [f"{axis.dest}={value.label}" for axis, value in zip(axes, point)]
    name = NAME_CHARS.sub("-", "_".join(parts + [f"seed={seed}"]))
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        name = f"{name[:MAX_NAME - 13]}-{digest}"
    return name


def point_label(axes, point):
    """'gamma=0.1 lam=0.5': a grid point in the printed table."""
    return " ".join(f"{axis.dest}={one_line(value.label, 60)}" for axis, value in
                    zip(axes, point)) or "(no grid)"
