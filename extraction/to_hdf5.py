"""--to-hdf5: the finished videos of an extraction's folder collected into our HDF5 file."""
import functools
from types import SimpleNamespace

import numpy as np
import torch

from extraction import record as rec
from extraction.folder import feature_paths
from extraction.inputs import SPLITS
from readers.features import LazyFeatures
from readers.hdf5_format import write_hdf5


def _read_streams(paths):
    return np.load(paths["rgb"], allow_pickle=False), np.load(paths["flow"], allow_pickle=False)


def write_extraction_hdf5(plan, path):
    """The finished videos of the plan's folder as our HDF5 file (readers/hdf5_format.py):
    no classes (the videos have no annotations), each video's duration the time its
    snippets cover (as the folders layout reads it), and a note when the features are not
    comparable (issued again whenever the file is read)."""
    record = plan.record
    videos = []
    for name in sorted(record["videos"], key=lambda n: (SPLITS.index(record["videos"][n]["split"]), n)):
        v = record["videos"][name]
        paths = feature_paths(plan.out, v["split"], name, ("rgb", "flow"))
        videos.append(SimpleNamespace(
            name=name, split=v["split"], duration=v["snippets"] * rec.CHUNK / rec.FPS,
            labels=torch.zeros(0),
            segments=[], features=LazyFeatures(functools.partial(_read_streams, paths),
                                               v["snippets"])))
    notes = [] if record["comparable"] == "approximate" else [
        f"features extracted by extract.py are not comparable with the published ones "
        f"(comparable: {record['comparable']}: {'; '.join(record['reasons'])}); never mix "
        f"them with other features in one run"]
    write_hdf5(path, [], videos, rec.CHUNK / rec.FPS, dataset="", source=plan.out,
               notes=notes, total=len(videos), progress=False)
    return len(videos)
