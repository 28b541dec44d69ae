"""A run's output folder as files: the one owner of the names a run writes there (and into
each seed_<s> subfolder of a --seeds folder), and of reading the small ones back. Torch-free:
analyze.py reads run folders with it."""
import os
import re

from core.errors import InputError
from core.safe_load import read_json


class RunFolder:
    """The files of one run folder: `RunFolder(path).metrics` is the path of its metrics.json.
    The names are class attributes (RunFolder.METRICS), for a folder not yet known."""
    OPTS, LOG, HISTORY = "opts.json", "log.txt", "history.json"
    RESULTS, RESULTS_TXT, METRICS = "results.json", "results.txt", "metrics.json"
    MODEL, CLASSIFIER = "em_mil.pt", "classifier.pt"       # the final weights
    WEIGHTS = (MODEL, CLASSIFIER)
    LAST = "checkpoint_last.pt"                             # what --resume continues from
    SUMMARY, SUMMARY_TXT = "summary.json", "summary.txt"    # a --seeds folder's
    TENSORBOARD, REPORT = "tensorboard", "report"           # folders

    def __init__(self, path):
        self.path = path

    def file(self, name):
        return os.path.join(self.path, name)

    opts = property(lambda self: self.file(self.OPTS))
    log = property(lambda self: self.file(self.LOG))
    history = property(lambda self: self.file(self.HISTORY))
    results = property(lambda self: self.file(self.RESULTS))
    results_txt = property(lambda self: self.file(self.RESULTS_TXT))
    metrics = property(lambda self: self.file(self.METRICS))
    model = property(lambda self: self.file(self.MODEL))
    classifier = property(lambda self: self.file(self.CLASSIFIER))
    last = property(lambda self: self.file(self.LAST))
    summary = property(lambda self: self.file(self.SUMMARY))
    summary_txt = property(lambda self: self.file(self.SUMMARY_TXT))

    def seed(self, seed):
        """The folder of one seed of a --seeds folder."""
        return RunFolder(self.file(f"seed_{seed}"))

    def read_history(self, position):
        """The entries of history.json up to `position` (a checkpoint's); an unreadable or
        foreign file gives an empty history (it only draws the report's curves)."""
        entries = read_json(self.history, or_none=True)
        if not isinstance(entries, list):
            return []
        return [e for e in entries if isinstance(e, dict)
                and isinstance(e.get("position"), int) and e["position"] <= position]

    def read_metrics(self):
        """metrics.json (a dict holding "mAP"); None when there is none; InputError when it
        is not one run.py wrote."""
        if not os.path.isfile(self.metrics):
            return None
        metrics = read_json(self.metrics)
        if not isinstance(metrics, dict) or not isinstance(metrics.get("mAP"), dict):
            raise InputError(f"{self.metrics}: not a metrics.json of run.py")
        return metrics

    def seeds(self):
        """The seeds of a --seeds folder (run.py writes no opts.json beside seed_<s>/), in
        the order of its summary.json (else by number); [] for any other folder."""
        if not os.path.isdir(self.path) or os.path.exists(self.opts):
            return []
        seeds = sorted(int(m.group(1)) for name in os.listdir(self.path)
                       for m in [re.fullmatch(r"seed_(\d+)", name)]
                       if m and os.path.isdir(self.file(name)))
        summary = read_json(self.summary, or_none=True)
        listed = summary.get("seeds") if isinstance(summary, dict) else None
        if isinstance(listed, list) and sorted(listed) == seeds:
            return listed
        return seeds


# What this project writes into an output folder (and into a seed_<s> subfolder of one):
# --overwrite removes these names, and only these; a file of any other name is the user's
# and is left where it is. Numbered checkpoints (--save-every), the hard link's temporary
# name and the writers' temporary files besides.
_NAMED = [RunFolder.OPTS, RunFolder.LOG, RunFolder.METRICS, RunFolder.RESULTS,
          RunFolder.RESULTS_TXT, RunFolder.HISTORY, *RunFolder.WEIGHTS, RunFolder.SUMMARY,
          RunFolder.SUMMARY_TXT]
RUN_FILES = re.compile("|".join([*map(re.escape, _NAMED), re.escape(RunFolder.LAST) + r"(\.link)?",
                                 r"checkpoint_\d+\.pt", r"\.tmp-.*"]))
RUN_FOLDERS = re.compile(rf"{RunFolder.TENSORBOARD}|{RunFolder.REPORT}|seed_\d+")
