"""The videos an extraction is given: the files (a folder: its videos), each one's name
(its file name without the extension) and split, checked before anything is written."""
import os
from dataclasses import dataclass

from extraction.frames import VIDEO_EXTENSIONS
from core.errors import InputError
from core.names import check_video_name
from core.safe_load import read_rows

SPLITS = ("train", "test")


@dataclass
class Job:
    name: str
    path: str          # absolute
    split: str


def find_videos(inputs):
    """Video files from files and folders (a folder: its files with a video extension,
    sorted; not recursive). A path that does not exist is an InputError."""
    paths = []
    for given in inputs:
        if os.path.isdir(given):
            names = sorted(n for n in os.listdir(given) if n.lower().endswith(VIDEO_EXTENSIONS)
                           and os.path.isfile(os.path.join(given, n)))
            if not names:
                raise InputError(f"{given}: no video file in the folder (extensions "
                                 f"{', '.join(VIDEO_EXTENSIONS)})")
            paths += [os.path.join(given, n) for n in names]
        elif os.path.isfile(given):
            paths.append(given)
        else:
            raise InputError(f"{given}: file or folder not found")
    return [os.path.abspath(p) for p in paths]


def video_name(path):
    """A video's name: its file name without the extension."""
    return os.path.splitext(os.path.basename(path))[0]


def read_split_list(path):
    """{video: split} of a file of lines 'video split'."""
    splits = {}
    for number, (name, split) in read_rows(path, 2, "video split"):
        name = check_video_name(name, f"{path}: line {number}")
        if split not in SPLITS:
            raise InputError(f"{path}: line {number}: split {split!r}, expected "
                             f"{' or '.join(SPLITS)}")
        if splits.get(name, split) != split:
            raise InputError(f"{path}: line {number}: video {name} is listed in two splits")
        splits[name] = split
    return splits


def jobs_of(paths, split, split_list):
    """([Job], [problem line]): one job per video, named after its file; a bad name, or a
    name two files share, is a problem of those files (left out). A video the split list
    does not name is an InputError."""
    splits = read_split_list(split_list) if split_list else None
    names, problems = {}, []
    for path in paths:
        try:
            names.setdefault(check_video_name(video_name(path), path), []).append(path)
        except InputError as e:
            problems.append(str(e))
    jobs = []
    for name, where in names.items():
        if len(where) > 1:
            problems += [f"{p}: two videos have the name {name} ({', '.join(where)}); rename "
                         f"one" for p in where]
            continue
        if splits is not None and name not in splits:
            raise InputError(f"{split_list}: video {name} ({where[0]}) is not listed")
        jobs.append(Job(name, where[0], splits[name] if splits is not None else split))
    return jobs, problems
