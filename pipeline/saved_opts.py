"""The options a run saved (opts.json): writing them, and reading them back for --resume,
checked as strictly as a command line (types, choices, the option rules of opts.py)."""
import argparse
import json
import os

from option_checks import finite_number, option_problems
from opts import build_parser, given_options, merge_options
from core.errors import InputError
from core.files import atomic_write_text
from core.safe_load import read_json
from pipeline.run_files import RunFolder
from utils import cuda_available, device_record


def save_opts(opts, path, device=None):
    """Write the resolved options as JSON (tuples become lists); device: the torch device
    the run executes on, recorded as "machine" (utils.device_record; not an option)."""
    out = dict(vars(opts), **({"machine": device_record(device)} if device is not None else {}))
    atomic_write_text(path, json.dumps(out, indent=2, sort_keys=True) + "\n")


# fields that `resolve` adds to the command line's options, with their types
RESOLVED_TYPES = {"generate_synthetic": (bool,), "bundle": (str,),
                  "train_subset": (str,), "test_subset": (str,), "snippet_seconds": (int, float),
                  "averages": (dict,), "thumos_ids": (bool,)}
RESOLVED_MAY_BE_NONE = {"snippet_seconds"}       # None: the layout's own
RESOLVED_NOT_NONE = {"data_root", "classes", "tiou", "output_dir"}


def option_types():
    """{dest: (types, None allowed, is a list, choices)} of every saved option."""
    types = {}
    for a in build_parser()._actions:
        if a.dest == "help":
            continue
        if a.nargs == 0:                                   # flags: store_true, --no-x
            t = (bool,)
        else:
            t = {int: (int,), float: (int, float), None: (str,)}[a.type]
        types[a.dest] = (t, a.default is None and a.dest not in RESOLVED_NOT_NONE,
                         a.nargs == "+", a.choices)
    types.update({k: (t, k in RESOLVED_MAY_BE_NONE, False, None) for k, t in RESOLVED_TYPES.items()})
    return types


def _typed(value, types):
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


# Options added since runs were first saved: their value in an older opts.json (the way
# those runs were trained), so that older runs stay readable and resumable.
ADDED = {"step": "unpadded"}


def saved_problem(saved):
    """What is wrong with the content of a saved opts.json (None: nothing)."""
    if not isinstance(saved, dict):
        return f"not a JSON object but {type(saved).__name__}"
    types = option_types()
    missing = sorted(set(types) - set(saved))
    if missing:
        return f"lacks the option{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    for key, (t, none_ok, is_list, choices) in types.items():
        value = saved[key]
        if value is None and none_ok:
            continue
        items = value if is_list and isinstance(value, list) else [value]
        if (is_list and not (isinstance(value, list) and value)) or \
                not all(_typed(v, t) for v in items):
            kind = f"a list of {t[-1].__name__}" if is_list else t[-1].__name__
            return f"{key} is {json.dumps(value)[:60]}, not {kind}"
        if choices and any(v not in choices for v in items):
            return f"{key} is {json.dumps(value)[:60]}, not one of {', '.join(map(str, choices))}"
    if saved["snippet_seconds"] is not None and (not finite_number(saved["snippet_seconds"]) or
                                                 saved["snippet_seconds"] <= 0):
        return "snippet_seconds out of range"
    for name, span in saved["averages"].items():
        if not (isinstance(span, list) and len(span) == 2 and all(finite_number(x) for x in span)):
            return f"averages[{name!r}] is {json.dumps(span)[:60]}, not [low, high]"
    problems = option_problems(argparse.Namespace(**{k: saved[k] for k in types}))
    return f"saved {problems[0]}" if problems else None


def read_saved(folder, needed):
    """A run's opts.json (a dict), checked as strictly as a command line; InputError naming
    the file. needed: what the folder must be, said when it holds no opts.json."""
    path = RunFolder(folder).opts
    if not os.path.isfile(path):
        raise InputError(f"{path}: not found; {needed}")
    saved = read_json(path, "saved options")
    if isinstance(saved, dict):
        saved = {**ADDED, **saved}
    problem = saved_problem(saved)
    if problem:
        raise InputError(f"{path}: {problem}")
    return {k: saved[k] for k in option_types()}


def resume_opts(argv):
    """The options of the run named by --resume: its saved ones, with the execution options
    given again (opts.merge_options refuses any other that contradicts them)."""
    given = given_options(argv)
    folder = given["resume"]
    if folder == "":
        raise InputError("--resume: must not be empty")
    saved = read_saved(folder, "--resume needs the output folder of an earlier run")
    opts = merge_options(saved, given, "resume", then=dict(output_dir=folder, resume=folder))
    if "device" not in given and opts.device == "cuda" and not cuda_available():
        opts.device = "cpu"                 # run.py says so in one line (moved_note)
    return opts
